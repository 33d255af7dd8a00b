import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import type { Browser } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Alert } from '../../src/contract/types.ts'
import type { NotificationJson } from '../../src/http/routes/notifications.ts'
import { generateSecret, hashSecret } from '../../src/security/credentials.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll } from '../helpers/mqtt.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'
import { type Receiver, startReceiver } from '../unit/notify/channels/fixtures.ts'
import {
  type DashboardPage,
  launchChromium,
  NEXT_FRAME,
  openDashboard,
  waitForLive,
} from './browser.ts'
import { CONTRAST_FAILURES_SCRIPT } from './contrast.ts'

/**
 * The dashboard's notification controls in real headless Chromium, against a real gateway that
 * requires authentication and has a notifications file whose webhook channel posts to a real
 * node:http receiver on 127.0.0.1: Ack on a firing alert (the page, the API and the retained MQTT
 * alert agree; a read-only app gets the 403 message), silences created and expired from the page,
 * and a dead-lettered notification listed with its error and retried by hand. Waits are on page
 * state and on the receiver, each with a bound; nothing sleeps.
 */

const SECRETS = {
  'dev-n': generateSecret(),
  'dev-o': generateSecret(),
  ops: generateSecret(),
  viewer: generateSecret(),
} as const
type Principal = keyof typeof SECRETS
const token = (id: Principal) => `${id}.${SECRETS[id]}`
/** How long a state change of the page may take, at most (they take milliseconds). */
const BOUND_MS = 5_000
/** Delivery, retry and the outbox's 2 s refresh while something is pending. */
const DELIVERY_BOUND_MS = 10_000
const RESULTS_DIR = path.resolve('test-results')

async function writeFiles(dir: string, receiverUrl: string) {
  const h = (id: Principal) => hashSecret(SECRETS[id])
  const registry = path.join(dir, 'devices.yaml')
  await writeFile(
    registry,
    [
      'devices:',
      '  - id: dev-n',
      `    secret: ${await h('dev-n')}`,
      '  - id: dev-o',
      `    secret: ${await h('dev-o')}`,
      'apps:',
      '  - id: ops',
      `    secret: ${await h('ops')}`,
      '    roles: [write-alerts, read-readings]',
      '  - id: viewer',
      `    secret: ${await h('viewer')}`,
      '    roles: [read-alerts, read-readings]',
      '',
    ].join('\n'),
  )
  const notifications = path.join(dir, 'notifications.yaml')
  await writeFile(
    notifications,
    [
      'channels:',
      '  - name: ops-hook',
      '    kind: webhook',
      `    url: "${receiverUrl}/hook"`,
      '    timeout: 5s',
      'routes:',
      '  - name: everything',
      '    channels: [ops-hook]',
      '    on: [firing, resolved]',
      'delivery: { maxAttempts: 5, maxAge: 1h, retryBase: 50ms, retryMax: 200ms }',
      '',
    ].join('\n'),
  )
  return { registry, notifications }
}

describe('dashboard notifications: ack, silences, outbox', () => {
  let dir: TempDir
  let gw: TestGateway
  let browser: Browser
  let receiver: Receiver
  let device: MqttClient
  const clients: MqttClient[] = []
  const pages: DashboardPage[] = []

  /** The refusals a read-only app meets on purpose (Chromium logs each as an error). */
  const unexpected = (problems: string[], statuses: number[]) =>
    problems.filter((m) => {
      const http = /^HTTP (\d{3}) http:\/\/127\.0\.0\.1:\d+\/api\//.exec(m)
      if (http) return !statuses.includes(Number(http[1]))
      const logged = /^console error: Failed to load resource: .* status of (\d{3})/.exec(m)
      return !(logged && statuses.includes(Number(logged[1])))
    })

  /** Opens the page, signs in as `app` through the form, and waits for the live link. */
  const openAs = async (app: Principal): Promise<DashboardPage> => {
    const opened = await openDashboard(browser, gw.httpUrl, { live: false })
    pages.push(opened)
    const { page } = opened
    await page.locator('#sign-in-token').fill(token(app))
    await page.locator('#sign-in-token').press('Enter')
    await page.locator('#session-app', { hasText: app }).waitFor({ timeout: BOUND_MS })
    await waitForLive(page)
    return opened
  }

  const apiAs = async (app: Principal, route: string): Promise<unknown> => {
    const res = await fetch(`${gw.httpUrl}${route}`, {
      headers: { authorization: `Bearer ${token(app)}` },
    })
    expect(res.status, route).toBe(200)
    return res.json()
  }

  beforeAll(async () => {
    dir = await createTempDir('dashboard-notify-')
    receiver = await startReceiver()
    const files = await writeFiles(dir.path, receiver.url)
    ;[gw, browser] = await Promise.all([
      startTestGateway({
        DEVICES_FILE: files.registry,
        NOTIFICATIONS_FILE: files.notifications,
        LOG_LEVEL: 'error',
        RULES_WATCH: 'false',
      }),
      launchChromium(),
    ])
    device = await connectClient(gw.mqttUrl, {
      clientId: 'dev-n',
      username: 'dev-n',
      password: SECRETS['dev-n'],
    })
    clients.push(device)
  })

  afterEach(async () => {
    await Promise.all(pages.splice(0).map((p) => p.context.close()))
  })

  afterAll(async () => {
    await browser?.close()
    await endAll(clients)
    await gw?.cleanup()
    await receiver?.close()
    await dir?.remove()
  })

  it('acknowledges a firing alert with a comment: the page, the API and the retained MQTT alert agree; a read-only app gets the 403', async () => {
    // Over the shipped high-temperature threshold (above 30, major).
    await device.publishAsync('sensors/dev-n/temperature', '36.5', { qos: 1 })
    const selector = '#alerts-current [data-alert-id="high-temperature:dev-n"]'

    // A read-only app sees the button, and the gateway's refusal when it clicks it.
    const viewer = await openAs('viewer')
    const viewerAlert = viewer.page.locator(selector)
    await viewerAlert.locator('[data-action="ack"]').click()
    await viewer.page.locator('#ack-comment').fill('not mine to ack')
    await viewer.page.locator('#ack-submit').click()
    await viewer.page
      .locator('#ack-form-message', {
        hasText:
          'Not acknowledged: app "viewer" lacks the role write-alerts that POST /api/alerts/:id/ack needs',
      })
      .waitFor({ timeout: BOUND_MS })
    expect(await viewer.page.locator('#ack-dialog').isVisible()).toBe(true)
    await viewer.page.locator('#ack-cancel').click()
    expect(await viewerAlert.getAttribute('data-acknowledged')).toBe('false')
    expect(unexpected(viewer.problems, [401, 403])).toEqual([])

    const { page, problems } = await openAs('ops')
    const alert = page.locator(selector)
    await alert.locator('[data-action="ack"]').click()
    await page.locator('#ack-dialog').waitFor({ state: 'visible', timeout: BOUND_MS })
    expect(await page.locator('#ack-alert').textContent()).toContain('high-temperature on dev-n')
    await page.locator('#ack-comment').fill('fan replaced, cooling down')
    await page.locator('#ack-submit').click()
    await page.locator(`${selector}[data-acknowledged="true"]`).waitFor({ timeout: BOUND_MS })
    expect(await alert.locator('.alert-ack').textContent()).toMatch(
      /^Acknowledged by ops \d\d:\d\d:\d\d (AM|PM) \((just now|\d+ s ago)\): fan replaced, cooling down$/,
    )
    expect(await alert.locator('[data-action="ack"]').count()).toBe(0)
    expect(await page.locator('#ack-dialog').isHidden()).toBe(true)

    // The API and the retained MQTT alert say the same.
    const firing = (await apiAs('ops', '/api/alerts?state=firing')) as { alerts: Alert[] }
    const acked = firing.alerts.find((a) => a.id === 'high-temperature:dev-n')
    expect(acked?.acknowledged).toMatchObject({ by: 'ops', comment: 'fan replaced, cooling down' })
    const sub = await connectClient(gw.mqttUrl, {
      clientId: 'ops-sub',
      username: 'ops',
      password: SECRETS.ops,
    })
    clients.push(sub)
    const retained = new Promise<Alert>((resolve) => {
      sub.on('message', (_topic, payload) => resolve(JSON.parse(payload.toString()) as Alert))
    })
    await sub.subscribeAsync('alerts/major/dev-n/high-temperature', { qos: 1 })
    expect((await retained).acknowledged).toEqual(acked?.acknowledged)

    // The viewer's page learns it from the live message alone (it made no request since).
    await viewer.page
      .locator(`${selector}[data-acknowledged="true"]`)
      .waitFor({ timeout: BOUND_MS })
    expect(await viewerAlert.locator('.ack-by').textContent()).toBe('ops')
    expect(unexpected(problems, [401])).toEqual([])
  }, 30_000)

  it('creates a silence from the page, lists it active, and expires it', async () => {
    // Firing (again, if the test above ran): the alert offers a silence for itself.
    await device.publishAsync('sensors/dev-n/temperature', '36.5', { qos: 1 })
    const { page, problems } = await openAs('ops')
    await page.locator('#silence-new summary').click()
    const form = page.locator('#silence-form')
    // Without a matcher the gateway says what is missing, and the form stays.
    await form.locator('[name="comment"]').fill('greenhouse maintenance')
    await form.locator('button[type="submit"]').click()
    await page
      .locator('#silence-form-message', { hasText: 'Not created: body field "matchers"' })
      .waitFor({ timeout: BOUND_MS })

    // Silence on the alert fills in its rule and device.
    await page
      .locator('#alerts-current [data-alert-id="high-temperature:dev-n"] [data-action="silence"]')
      .click()
    expect(await form.locator('[name="rule"]').inputValue()).toBe('high-temperature')
    expect(await form.locator('[name="device"]').inputValue()).toBe('dev-n')
    expect(await page.locator('#silence-form-message').isHidden()).toBe(true)
    await form.locator('[name="comment"]').fill('greenhouse maintenance')
    await form.locator('[name="device"]').fill('dev-n, gh-*')
    await form.locator('[name="duration"]').fill('1h')
    await form.locator('button[type="submit"]').click()
    const item = page.locator('#silences-active .silence').first()
    await item.waitFor({ timeout: BOUND_MS })
    expect(await item.locator('.silence-matchers').textContent()).toBe(
      'rule high-temperature · device dev-n, gh-*',
    )
    expect(await item.locator('.silence-comment').textContent()).toBe('greenhouse maintenance')
    expect(await item.locator('.silence-when').textContent()).toMatch(
      /^until \d\d:\d\d:\d\d (AM|PM) \(in (59 min|1 h)\) · by ops$/,
    )
    expect(await page.locator('#silence-count').textContent()).toBe('(1 active)')
    expect(await page.locator('#silence-form-message').isHidden()).toBe(true)
    const id = await item.getAttribute('data-silence-id')
    const active = (await apiAs('ops', '/api/silences?state=active')) as {
      silences: Array<{ id: string; createdBy: string; matchers: { device: string[] } }>
    }
    expect(active.silences).toEqual([
      expect.objectContaining({
        id,
        createdBy: 'ops',
        matchers: expect.objectContaining({ device: ['dev-n', 'gh-*'] }),
      }),
    ])

    await item.locator('[data-action="expire"]').click()
    await page
      .locator(`#silences-expired .silence[data-silence-id="${id}"]`)
      .waitFor({ timeout: BOUND_MS })
    expect(await page.locator('#silences-active .silence').count()).toBe(0)
    expect(await page.locator('#silences-active-empty').isVisible()).toBe(true)
    expect(await page.locator('#silence-count').textContent()).toBe('')
    const expired = (await apiAs('ops', '/api/silences?state=expired')) as {
      silences: Array<{ id: string }>
    }
    expect(expired.silences.map((s) => s.id)).toContain(id)
    expect(unexpected(problems, [401, 400])).toEqual([])
  }, 30_000)

  it('lists a dead-lettered notification with its error, and Retry delivers it', async () => {
    const { page, problems } = await openAs('ops')
    const other = await connectClient(gw.mqttUrl, {
      clientId: 'dev-o',
      username: 'dev-o',
      password: SECRETS['dev-o'],
    })
    clients.push(other)
    const before = receiver.requests.length
    // The next delivery is refused for good: dead-lettered at once.
    receiver.answers.push({ status: 410, body: 'hook gone' })
    await other.publishAsync('sensors/dev-o/temperature', '37', { qos: 1 })

    const failed = page.locator('#outbox-failed .notification').first()
    await failed.waitFor({ timeout: DELIVERY_BOUND_MS })
    expect(receiver.requests.length).toBe(before + 1)
    const id = receiver.requests[before]?.headers['webhook-id']
    expect(await failed.getAttribute('data-notification-id')).toBe(id)
    expect(await failed.locator('.notification-title').textContent()).toBe(
      '[major] high-temperature on dev-o: firing',
    )
    expect(await failed.locator('.notification-route').textContent()).toBe(
      'ops-hook · route everything · 1 attempt',
    )
    expect(await failed.locator('.notification-last-error').textContent()).toContain('410')
    expect(await page.locator('#outbox-count').textContent()).toBe('(1 failed)')

    // Everything of the panels on screen (the silence form open too): readable in both schemes.
    await page.locator('#silence-new summary').click()
    await mkdir(RESULTS_DIR, { recursive: true })
    for (const colorScheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme })
      await page.evaluate(NEXT_FRAME)
      const contrast = (await page.evaluate(CONTRAST_FAILURES_SCRIPT)) as {
        checked: number
        failures: unknown[]
      }
      expect(contrast.checked, colorScheme).toBeGreaterThan(80)
      expect(contrast.failures, colorScheme).toEqual([])
      await page.screenshot({
        path: path.join(RESULTS_DIR, `dashboard-notifications-${colorScheme}.png`),
        fullPage: true,
      })
    }

    // The receiver takes it now (it answers 200 once the 410 is used up).
    await failed.locator('[data-action="retry"]').click()
    await page
      .locator(`#outbox-failed [data-notification-id="${id}"]`)
      .waitFor({ state: 'detached', timeout: BOUND_MS })
    await expect
      .poll(() => receiver.requests.length, { timeout: DELIVERY_BOUND_MS })
      .toBe(before + 2)
    expect(receiver.requests[before + 1]?.headers['webhook-id']).toBe(id)
    // Delivered: the outbox shows nothing failed nor pending, and the API agrees.
    await page
      .locator('#outbox-pending-empty')
      .waitFor({ state: 'visible', timeout: DELIVERY_BOUND_MS })
    expect(await page.locator('#outbox-failed-empty').isVisible()).toBe(true)
    expect(await page.locator('#outbox-count').textContent()).toBe('')
    const delivered = (await apiAs('ops', '/api/notifications?state=delivered')) as {
      notifications: NotificationJson[]
    }
    expect(delivered.notifications.find((n) => n.id === id)).toMatchObject({ state: 'delivered' })
    expect(unexpected(problems, [401])).toEqual([])
  }, 30_000)
})
