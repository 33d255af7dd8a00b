import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import type { Browser, Page, Request } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { generateSecret, hashSecret } from '../../src/security/credentials.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll } from '../helpers/mqtt.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'
import {
  type DashboardPage,
  launchChromium,
  type OpenOptions,
  openDashboard,
  waitForLive,
  waitForText,
} from './browser.ts'
import { CONTRAST_FAILURES_SCRIPT } from './contrast.ts'

/**
 * The dashboard's sign-in in real headless Chromium, against a real gateway whose registry has
 * credentials (authentication required): the page asks for an app token when the API answers
 * 401, sends it as the Bearer header and as the MQTT username and password over WebSocket, keeps
 * it in sessionStorage only, and forgets it on sign-out. Without credentials nothing of this
 * shows. Waits are on page state, each with a bound; nothing sleeps.
 */

/** Every principal of the test registry, with the secret only the test knows. */
const SECRETS = {
  'dev-auth': generateSecret(),
  'dash-app': generateSecret(),
  'alerts-only': generateSecret(),
} as const
type Principal = keyof typeof SECRETS
const token = (app: Principal) => `${app}.${SECRETS[app]}`

const STORAGE_KEY = 'sensor-gateway.token'
const NEEDS_TOKEN =
  'this route needs an app token: Authorization: Bearer <appId>.<secret> (npm run app:add)'
/** How long a state change of the page may take, at most (they take milliseconds). */
const BOUND_MS = 5_000
/** How long a live value may take from publish to the page, at most. */
const LIVE_BOUND_MS = 3_000
const PHONE = { width: 390, height: 844 }

async function writeRegistry(file: string): Promise<void> {
  const h = (id: Principal) => hashSecret(SECRETS[id])
  await writeFile(
    file,
    [
      'devices:',
      '  - id: dev-auth',
      `    secret: ${await h('dev-auth')}`,
      'apps:',
      '  - id: dash-app',
      `    secret: ${await h('dash-app')}`,
      '    roles: [read-alerts, read-readings]',
      '  - id: alerts-only',
      `    secret: ${await h('alerts-only')}`,
      '    roles: [read-alerts]',
      '',
    ].join('\n'),
  )
}

/** The little of the browser the in-page predicates touch (the project has no DOM typings). */
interface PageGlobals {
  document: {
    activeElement: { id: string } | null
    querySelector(selector: string): { hidden: boolean } | null
  }
}

/** Waits until the element's `hidden` is `hidden`, checked in every animation frame. */
async function waitHidden(page: Page, selector: string, hidden: boolean): Promise<void> {
  await page.waitForFunction(
    ([selector, hidden]) =>
      (globalThis as unknown as PageGlobals).document.querySelector(selector)?.hidden === hidden,
    [selector, hidden] as const,
    { polling: 'raf', timeout: BOUND_MS },
  )
}

const formShown = (page: Page) => waitHidden(page, '#sign-in', false)
const formGone = (page: Page) => waitHidden(page, '#sign-in', true)

async function storedToken(page: Page): Promise<string | null> {
  return (await page.evaluate(`sessionStorage.getItem(${JSON.stringify(STORAGE_KEY)})`)) as
    | string
    | null
}

/** Types the token into the form (focused when it appeared) and submits it with Enter. */
async function signIn(page: Page, text: string): Promise<void> {
  await formShown(page)
  await page.locator('#sign-in-token').fill(text)
  await page.locator('#sign-in-token').press('Enter')
}

/**
 * The Authorization header of every API request the page makes from now on, in order. The page
 * is reloaded, so the requests it makes as it starts are recorded too.
 */
async function recordApiAuth(
  page: Page,
): Promise<Array<{ url: string; authorization: string | undefined }>> {
  const seen: Array<{ url: string; authorization: string | undefined }> = []
  page.on('request', (request: Request) => {
    const url = new URL(request.url())
    if (!url.pathname.startsWith('/api/')) return
    seen.push({ url: url.pathname + url.search, authorization: request.headers().authorization })
  })
  await page.reload()
  return seen
}

/** What the page asks the API for as it starts, before anyone signed in. */
const START_REQUESTS = [
  '/api/alerts?limit=50',
  '/api/alerts?state=firing',
  '/api/devices',
  '/api/notifications?state=failed&limit=50',
  '/api/notifications?state=pending&limit=50',
  '/api/rules',
  '/api/silences',
]

describe('dashboard sign-in when the gateway requires authentication', () => {
  let dir: TempDir
  let gw: TestGateway
  let browser: Browser
  let device: MqttClient
  const pages: DashboardPage[] = []

  const open = async (options: OpenOptions = {}) => {
    const opened = await openDashboard(browser, gw.httpUrl, { live: false, ...options })
    pages.push(opened)
    return opened
  }
  /**
   * The refusals the page meets on purpose: Chromium reports every 401 (and, for an app without
   * read-readings, every 403) of the API as a console error and as a failed answer. Anything else
   * is a fault.
   */
  const unexpected = (problems: string[], statuses: number[] = [401]) =>
    problems.filter((m) => {
      const http = /^HTTP (\d{3}) http:\/\/127\.0\.0\.1:\d+\/api\//.exec(m)
      if (http) return !statuses.includes(Number(http[1]))
      const logged = /^console error: Failed to load resource: .* status of (\d{3})/.exec(m)
      return !(logged && statuses.includes(Number(logged[1])))
    })

  beforeAll(async () => {
    dir = await createTempDir('dashboard-auth-')
    const file = path.join(dir.path, 'devices.yaml')
    await writeRegistry(file)
    ;[gw, browser] = await Promise.all([
      startTestGateway({ DEVICES_FILE: file, LOG_LEVEL: 'error', RULES_WATCH: 'false' }),
      launchChromium(),
    ])
    device = await connectClient(gw.mqttUrl, {
      clientId: 'dev-auth',
      username: 'dev-auth',
      password: SECRETS['dev-auth'],
    })
    await device.publishAsync('sensors/dev-auth/temperature', '21.5', { qos: 1 })
  })

  afterEach(async () => {
    await Promise.all(pages.splice(0).map((p) => p.context.close()))
  })

  afterAll(async () => {
    await browser?.close()
    if (device) await endAll([device])
    await gw?.cleanup()
    await dir?.remove()
  })

  it('shows the sign-in form with the gateway message when the API answers 401', async () => {
    const { page, problems } = await open()
    const requests = await recordApiAuth(page)
    await formShown(page)
    await waitForText(page, '#sign-in-message', NEEDS_TOKEN, BOUND_MS)
    expect(await page.locator('#sign-in-message').isVisible()).toBe(true)
    // Ready to type into, and labelled.
    expect(
      await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.id),
    ).toBe('sign-in-token')
    expect(await page.getByLabel('App token').getAttribute('type')).toBe('password')
    // The live link was refused too (CONNACK 5), and says what it needs.
    await page.locator('#live[data-state="signed-out"]').waitFor({ timeout: BOUND_MS })
    expect(await page.locator('#live').textContent()).toContain('Sign in for live updates')
    // Each panel says why it is empty; nobody is signed in.
    await waitForText(page, '#devices-message', 'Sign in to see the devices.', BOUND_MS)
    await waitForText(page, '#alerts-message', 'Sign in to see the alerts.', BOUND_MS)
    await waitForText(page, '#rules-message', 'Sign in to see the rules.', BOUND_MS)
    expect(await page.locator('#session').isHidden()).toBe(true)
    expect(requests.map((r) => r.url).sort()).toEqual(START_REQUESTS)
    expect(requests.filter((r) => r.authorization !== undefined)).toEqual([])
    expect(await storedToken(page)).toBeNull()
    expect(problems.some((m) => m.startsWith('HTTP 401'))).toBe(true)
    expect(unexpected(problems)).toEqual([])
  })

  it('keeps the form and shows the gateway message for a wrong secret', async () => {
    const { page, problems } = await open()
    await signIn(page, 'not a token')
    await waitForText(
      page,
      '#sign-in-message',
      'Enter the token as <appId>.<secret>, as npm run app:add printed it.',
      BOUND_MS,
    )

    const requests: Array<string | undefined> = []
    page.on('request', (request) => {
      if (new URL(request.url()).pathname.startsWith('/api/')) {
        requests.push(request.headers().authorization)
      }
    })
    await signIn(page, `dash-app.${generateSecret()}`)
    await waitForText(page, '#sign-in-message', 'unknown app or wrong secret', BOUND_MS)
    // The gateway was asked with the token given, and said no.
    expect(requests).toEqual([expect.stringMatching(/^Bearer dash-app\.[A-Za-z0-9_-]{43}$/)])
    expect(await page.locator('#sign-in').isVisible()).toBe(true)
    expect(await page.locator('#session').isHidden()).toBe(true)
    expect(await storedToken(page)).toBeNull()
    // Focus back in the field, the wrong token selected, ready to be typed over.
    expect(
      await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.id),
    ).toBe('sign-in-token')
    expect(await page.locator('#live').getAttribute('data-state')).toBe('signed-out')
    expect(unexpected(problems)).toEqual([])
  })

  it('signs in with the right token: data over the API, live readings over MQTT, token in sessionStorage', async () => {
    const { page, problems } = await open()
    const requests = await recordApiAuth(page)
    await formShown(page)
    // From the keyboard: the field has the focus when the form appears.
    await page.keyboard.type(token('dash-app'))
    await page.keyboard.press('Enter')

    const value = page.locator('[data-device="dev-auth"] [data-metric="temperature"] .value')
    await waitForText(
      page,
      '[data-device="dev-auth"] [data-metric="temperature"] .value',
      '21.5',
      BOUND_MS,
    )
    await formGone(page)
    await waitForText(page, '#session-app', 'dash-app', BOUND_MS)
    expect(await page.locator('#sign-out').isVisible()).toBe(true)
    // The device's chart is loaded with the token too.
    await page
      .locator('#charts [data-metric="temperature"] .chart-plot[data-points="1"]')
      .waitFor({ timeout: BOUND_MS })
    await page.locator('#rules-table tbody tr').first().waitFor({ timeout: BOUND_MS })
    expect(await page.locator('#devices-message').isHidden()).toBe(true)
    expect(await page.locator('#alerts-message').isHidden()).toBe(true)

    // The live link logged in as the app (anonymous is refused here) and gets the readings.
    await page.locator('#live[data-state="live"]').waitFor({ timeout: BOUND_MS })
    expect(await page.locator('#live').getAttribute('title')).toBe('Live')
    await device.publishAsync('sensors/dev-auth/temperature', '22.75', { qos: 1 })
    await waitForText(
      page,
      '[data-device="dev-auth"] [data-metric="temperature"] .value',
      '22.75',
      LIVE_BOUND_MS,
    )
    expect(await value.textContent()).toBe('22.75')

    // Every API call since the sign-in carried the token, as a header and nowhere else.
    const bearer = `Bearer ${token('dash-app')}`
    const anonymous = requests.filter((r) => r.authorization === undefined)
    expect(anonymous.map((r) => r.url).sort()).toEqual(START_REQUESTS)
    const signedIn = requests.filter((r) => r.authorization !== undefined)
    expect(signedIn.filter((r) => r.authorization !== bearer)).toEqual([])
    expect(signedIn.map((r) => r.url.split('?')[0])).toEqual(
      expect.arrayContaining([
        ...START_REQUESTS.map((u) => u.split('?')[0]),
        '/api/readings/aggregate',
      ]),
    )
    expect(requests.filter((r) => r.url.includes(SECRETS['dash-app']))).toEqual([])
    expect(page.url()).not.toContain(SECRETS['dash-app'])
    expect(await storedToken(page)).toBe(token('dash-app'))
    expect(await page.evaluate('localStorage.length')).toBe(0)
    expect(await page.evaluate('document.cookie')).toBe('')

    // The tab keeps it across a reload: no form, straight to the data.
    await page.reload()
    await waitForText(page, '#session-app', 'dash-app', BOUND_MS)
    await waitForLive(page)
    await waitForText(
      page,
      '[data-device="dev-auth"] [data-metric="temperature"] .value',
      '22.75',
      BOUND_MS,
    )
    expect(await page.locator('#sign-in').isHidden()).toBe(true)
    expect(unexpected(problems)).toEqual([])
  }, 30_000)

  it('signs out: forgets the token, clears what was shown and asks again', async () => {
    const { page, problems } = await open()
    await signIn(page, token('dash-app'))
    const row = page.locator('[data-device="dev-auth"]')
    await row.waitFor({ timeout: BOUND_MS })
    await waitForLive(page)
    expect(await storedToken(page)).toBe(token('dash-app'))

    await page.locator('#sign-out').click()
    await formShown(page)
    await waitForText(page, '#sign-in-message', NEEDS_TOKEN, BOUND_MS)
    expect(await storedToken(page)).toBeNull()
    expect(await page.locator('#session').isHidden()).toBe(true)
    expect(await page.locator('[data-device]').count()).toBe(0)
    await expect
      .poll(() => page.locator('#rules-table tbody tr').count(), { timeout: BOUND_MS })
      .toBe(0)
    await page.locator('#live[data-state="signed-out"]').waitFor({ timeout: BOUND_MS })
    // And signs in again from there.
    await signIn(page, token('dash-app'))
    await row.waitFor({ timeout: BOUND_MS })
    await waitForLive(page)
    expect(unexpected(problems)).toEqual([])
  })

  it('names the missing role (403) for an app that may read alerts only', async () => {
    const { page, problems } = await open()
    await signIn(page, token('alerts-only'))
    await waitForText(
      page,
      '#devices-message',
      'Devices could not be loaded: app "alerts-only" lacks the role read-readings that GET /api/devices needs',
      BOUND_MS,
    )
    await formGone(page)
    await waitForText(page, '#session-app', 'alerts-only', BOUND_MS)
    expect(await storedToken(page)).toBe(token('alerts-only'))
    // What its role grants still loads: rules and alerts, and live alerts and device states.
    await page.locator('#rules-table tbody tr').first().waitFor({ timeout: BOUND_MS })
    expect(await page.locator('#alerts-message').isHidden()).toBe(true)
    await waitForLive(page)
    // Device states come with read-alerts (devices/+/status), readings do not (sensors/#).
    await waitForText(page, '[data-device="dev-auth"] .state', 'online', BOUND_MS)
    expect(await page.locator('[data-device] [data-metric]').count()).toBe(0)
    expect(await page.locator('#live').getAttribute('title')).toBe(
      'Live (not allowed for this app: sensors/#)',
    )
    expect(unexpected(problems, [401, 403])).toEqual([])
  })

  it('keeps the sign-in form and the session readable in light and dark mode (contrast at least 4.5:1)', async () => {
    for (const colorScheme of ['light', 'dark'] as const) {
      const { page } = await open({ colorScheme })
      await formShown(page)
      await waitForText(page, '#sign-in-message', NEEDS_TOKEN, BOUND_MS)
      const form = (await page.evaluate(CONTRAST_FAILURES_SCRIPT)) as {
        checked: number
        failures: unknown[]
      }
      expect(form.checked, colorScheme).toBeGreaterThan(20)
      expect(form.failures, colorScheme).toEqual([])

      await signIn(page, token('dash-app'))
      await waitForText(page, '#session-app', 'dash-app', BOUND_MS)
      await page.locator('[data-device="dev-auth"]').waitFor({ timeout: BOUND_MS })
      const session = (await page.evaluate(CONTRAST_FAILURES_SCRIPT)) as {
        checked: number
        failures: unknown[]
      }
      expect(session.failures, colorScheme).toEqual([])
    }
  }, 30_000)

  it('fits the sign-in form on a phone screen (390 px) without horizontal scrolling', async () => {
    const { page } = await open({ viewport: PHONE })
    await formShown(page)
    const overflow = (await page.evaluate(
      '({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })',
    )) as { scrollWidth: number; innerWidth: number }
    expect(overflow.scrollWidth).toBeLessThanOrEqual(overflow.innerWidth)
    const box = await page.locator('#sign-in-token').boundingBox()
    expect(box?.width).toBeGreaterThan(150)
  })
})

describe('dashboard without credentials (the demo)', () => {
  let gw: TestGateway
  let browser: Browser

  beforeAll(async () => {
    ;[gw, browser] = await Promise.all([
      startTestGateway({ LOG_LEVEL: 'warn', RULES_WATCH: 'false' }),
      launchChromium(),
    ])
  })

  afterAll(async () => {
    await browser?.close()
    await gw?.cleanup()
  })

  it('shows no sign-in form and sends no token', async () => {
    const publisher = await connectClient(gw.mqttUrl, { clientId: 'no-auth-publisher' })
    await publisher.publishAsync('sensors/dev-open/temperature', '19', { qos: 1 })
    await endAll([publisher])
    const opened = await openDashboard(browser, gw.httpUrl, { live: false })
    try {
      const { page } = opened
      const requests = await recordApiAuth(page)
      await waitForLive(page)
      await page.locator('#rules-table tbody tr').first().waitFor({ timeout: BOUND_MS })
      await page.locator('#charts figure').first().waitFor({ timeout: BOUND_MS })
      expect(requests.map((r) => r.url).sort()).toEqual(expect.arrayContaining(START_REQUESTS))
      expect(requests.filter((r) => r.authorization !== undefined)).toEqual([])
      expect(await page.locator('#sign-in').isHidden()).toBe(true)
      expect(await page.locator('#session').isHidden()).toBe(true)
      expect(await storedToken(page)).toBeNull()
      expect(opened.problems).toEqual([])
    } finally {
      await opened.context.close()
    }
  })
})
