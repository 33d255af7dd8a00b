import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import type { MqttClient } from 'mqtt'
import type { Browser } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createFleet } from '../../devices/fleet.ts'
import { createSensor, deviceSeed } from '../../devices/signals.ts'
import { createEventBus } from '../../src/bus/event-bus.ts'
import { createHttpServer } from '../../src/http/http-server.ts'
import { createAlertControls } from '../../src/notify/alert-controls.ts'
import { createSqliteStore } from '../../src/store/sqlite-store.ts'
import { createSilentLogger } from '../../src/telemetry/logger.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll } from '../helpers/mqtt.ts'
import { createTempDir } from '../helpers/temp-dir.ts'
import {
  type DashboardPage,
  launchChromium,
  NEXT_FRAME,
  type OpenOptions,
  openDashboard,
  waitForLive,
  waitForText,
} from './browser.ts'
import { CONTRAST_FAILURES_SCRIPT } from './contrast.ts'

/**
 * The dashboard (GET /) in real headless Chromium against a real gateway started in-process:
 * data over the JSON API, live updates over MQTT over WebSocket on the same HTTP port, readings
 * published by real MQTT.js clients over TCP. Every page must load and run without one console
 * error, uncaught error or failed request.
 */

const RESULTS_DIR = path.resolve('test-results')
const DOCS_SCREENSHOT = path.resolve('docs/dashboard.png')
const PHONE = { width: 390, height: 844 }
const HOUR_MS = 3_600_000
/** How long a live value may take from publish to the page, at most (measured: well below). */
const LIVE_BOUND_MS = 3_000
/** Readings timed in the latency test. */
const SAMPLES = 20

describe('dashboard in Chromium', () => {
  let gw: TestGateway
  let browser: Browser
  let device: MqttClient
  const pages: DashboardPage[] = []

  const open = async (options: OpenOptions = {}) => {
    const opened = await openDashboard(browser, gw.httpUrl, options)
    pages.push(opened)
    return opened
  }
  const publish = (topic: string, payload: string) =>
    device.publishAsync(topic, payload, { qos: 1 })

  beforeAll(async () => {
    ;[gw, browser] = await Promise.all([
      startTestGateway({ LOG_LEVEL: 'warn', RULES_WATCH: 'false' }),
      launchChromium(),
    ])
    device = await connectClient(gw.mqttUrl, { clientId: 'browser-test-publisher' })
  })

  afterEach(async () => {
    const opened = pages.splice(0)
    await Promise.all(opened.map((p) => p.context.close()))
    for (const p of opened) expect(p.problems).toEqual([])
  })

  afterAll(async () => {
    await browser?.close()
    if (device) await endAll([device])
    await gw?.cleanup()
  })

  it('serves the page, its modules and the vendored uPlot and MQTT.js from the gateway', async () => {
    const page = await fetch(`${gw.httpUrl}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    expect(page.headers.get('content-security-policy')).toContain("connect-src 'self'")
    expect(await page.text()).toContain('<script type="module" src="assets/app.js">')

    for (const [name, type] of [
      ['app.js', /javascript/],
      ['charts.js', /javascript/],
      ['payloads.js', /javascript/],
      ['styles.css', /^text\/css/],
      ['uPlot.esm.js', /javascript/],
      ['uPlot.min.css', /^text\/css/],
      ['mqtt.esm.js', /javascript/],
    ] as const) {
      const res = await fetch(`${gw.httpUrl}/assets/${name}`)
      expect(res.status, name).toBe(200)
      expect(res.headers.get('content-type'), name).toMatch(type)
      expect(res.headers.get('etag'), name).toBeTruthy()
      await res.arrayBuffer()
    }
    // Only known names: nothing else of the folder or of node_modules.
    for (const name of ['index.html', 'mqtt.js', '..%2Fpackage.json', 'nope.js']) {
      const res = await fetch(`${gw.httpUrl}/assets/${name}`)
      expect(res.status, name).toBe(404)
      expect(await res.json()).toMatchObject({ error: 'not_found' })
    }
  })

  it('loads without errors and shows devices, alerts and rules from the API', async () => {
    await publish('sensors/dev-api', JSON.stringify({ temperature: 21.5, humidity: 40 }))
    const { page } = await open({ live: false })

    const row = page.locator('[data-device="dev-api"]')
    await expect
      .poll(() => row.locator('[data-metric="temperature"] .value').textContent())
      .toBe('21.5')
    expect(await row.locator('[data-metric="humidity"] .value').textContent()).toBe('40')
    await expect.poll(() => page.locator('#rules-table tbody tr').count()).toBe(8)
    expect(await page.locator('[data-rule="high-temperature"] td').first().textContent()).toBe(
      'threshold',
    )
    // The first device is selected and charted.
    await expect.poll(() => page.locator('#charts figure').count()).toBeGreaterThan(0)

    await waitForLive(page)
    expect(await page.locator('#live').textContent()).toContain('Live')
    // Presence over MQTT: the publishing client's device is online.
    await expect.poll(() => row.locator('.state').textContent()).toBe('online')
  })

  it('shows a published reading within seconds without reload, and measures publish-to-paint', async () => {
    const id = 'dev-latency'
    await publish(`sensors/${id}/temperature`, '20')
    const { page } = await open({ device: id })
    // Charted from the API: one bucket, the reading published above.
    await page.locator('#charts [data-metric="temperature"] .chart-plot[data-points="1"]').waitFor()
    await page.evaluate('window.loadedOnce = true')
    const pointsBefore = Number(
      await page.locator('[data-metric="temperature"] .chart-plot').getAttribute('data-points'),
    )

    const samples: Array<{ value: number; listMs: number; chartMs: number }> = []
    const shown = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 })
    for (let i = 1; i <= SAMPLES; i++) {
      const value = 21 + i / 100
      const text = shown.format(value)
      const started = performance.now()
      // QoS 0 as a cheap sensor sends it; the clock starts before the client writes the packet.
      const sent = device.publishAsync(`sensors/${id}/temperature`, String(value), { qos: 0 })
      // polling 'raf' evaluates in animation frames: true means the value is in a painted frame.
      const painted = (selector: string) =>
        waitForText(page, selector, text, LIVE_BOUND_MS).then(() => performance.now() - started)
      const inList = painted(`[data-device="${id}"] [data-metric="temperature"] .value`)
      const inChart = painted('#charts [data-metric="temperature"] .chart-latest strong')
      const [listMs, chartMs] = await Promise.all([inList, inChart, sent])
      samples.push({ value, listMs: round(listMs), chartMs: round(chartMs) })
    }

    // The same page, never reloaded, with the new points in its chart.
    expect(await page.evaluate('window.loadedOnce')).toBe(true)
    const pointsAfter = Number(
      await page.locator('[data-metric="temperature"] .chart-plot').getAttribute('data-points'),
    )
    expect(pointsAfter).toBeGreaterThanOrEqual(pointsBefore)

    const chartMs = samples.map((s) => s.chartMs).sort((a, b) => a - b)
    const report = {
      what: 'publish (MQTT.js over TCP, QoS 0) to the value painted in the device list and the chart caption (waitForFunction, polling per animation frame)',
      samples: samples.length,
      unit: 'ms',
      chart: summary(chartMs),
      list: summary(samples.map((s) => s.listMs).sort((a, b) => a - b)),
      raw: samples,
      measuredAt: new Date().toISOString(),
    }
    await mkdir(RESULTS_DIR, { recursive: true })
    await writeFile(path.join(RESULTS_DIR, 'latency.json'), `${JSON.stringify(report, null, 2)}\n`)
    console.log(
      `publish-to-paint latency over ${samples.length} readings: chart median ${report.chart.median} ms, ` +
        `p90 ${report.chart.p90} ms, max ${report.chart.max} ms; device list median ${report.list.median} ms`,
    )
    expect(report.chart.max).toBeLessThan(LIVE_BOUND_MS)
  })

  it('shows high-temperature firing at 35, then resolved at 20, live', async () => {
    const id = 'dev-alert'
    await publish(`sensors/${id}/temperature`, '25')
    const { page } = await open({ device: id })
    const current = page.locator('#alerts-current [data-alert-id="high-temperature:dev-alert"]')
    const rule = page.locator('[data-rule="high-temperature"] td.num')
    await rule.waitFor()
    expect(await current.count()).toBe(0)
    // Other tests share the gateway: count from what fires now.
    const firingBefore = Number(await rule.getAttribute('data-firing'))

    await publish(`sensors/${id}/temperature`, '35')
    await current.and(page.locator('[data-state="firing"]')).waitFor()
    expect(await current.getAttribute('data-severity')).toBe('major')
    expect(await current.locator('.sev').textContent()).toBe('major')
    expect(await current.locator('[data-fact="value"] dd').textContent()).toBe('35')
    expect(await current.locator('[data-fact="threshold"] dd').textContent()).toBe('30')
    expect(await current.locator('[data-fact="since"] time').getAttribute('datetime')).toMatch(
      /^\d{4}-\d\d-\d\dT/,
    )
    // Firing comes first in the list, and the device and the rules table say so too.
    expect(await page.locator('#alerts-current > li').first().getAttribute('data-state')).toBe(
      'firing',
    )
    await expect
      .poll(() => page.locator(`[data-device="${id}"] .device-alerts`).textContent())
      .toBe('1 firing')
    await expect.poll(() => rule.getAttribute('data-firing')).toBe(String(firingBefore + 1))
    await expect
      .poll(() =>
        page
          .locator(
            '#alerts-history [data-alert-id="high-temperature:dev-alert"][data-state="firing"]',
          )
          .count(),
      )
      .toBe(1)

    await publish(`sensors/${id}/temperature`, '20')
    await current.and(page.locator('[data-state="resolved"]')).waitFor()
    expect(await current.locator('[data-fact="value"] dd').textContent()).toBe('20')
    await expect
      .poll(() =>
        page
          .locator(
            '#alerts-history [data-alert-id="high-temperature:dev-alert"][data-state="resolved"]',
          )
          .count(),
      )
      .toBe(1)
    // Newest first: the resolve is above the fire.
    expect(await page.locator('#alerts-history > li').first().getAttribute('data-state')).toBe(
      'resolved',
    )
    await expect.poll(() => rule.getAttribute('data-firing')).toBe(String(firingBefore))
    expect(await page.locator(`[data-device="${id}"] .device-alerts`).isHidden()).toBe(true)
  })

  it('refetches the charts when the range changes (presets and custom from/to)', async () => {
    const id = 'dev-range'
    await publish(`sensors/${id}`, JSON.stringify({ temperature: 22, co2: 600 }))
    const aggregate = (params: Record<string, string>) => (url: string) => {
      const parsed = new URL(url)
      return (
        parsed.pathname === '/api/readings/aggregate' &&
        Object.entries(params).every(([k, v]) => parsed.searchParams.get(k) === v)
      )
    }
    const { page } = await open({ device: id, live: false })
    // The default range: the last hour in 10 s buckets, one request per metric.
    await page.waitForResponse((r) =>
      aggregate({ device: id, metric: 'temperature', from: '-1h', every: '10s', fn: 'mean' })(
        r.url(),
      ),
    )

    const day = page.waitForRequest((r) =>
      aggregate({ device: id, metric: 'co2', from: '-24h', to: 'now', every: '5m' })(r.url()),
    )
    await page.getByText('24 h', { exact: true }).click()
    const dayRequest = await day
    expect((await dayRequest.response())?.status()).toBe(200)
    await expect
      .poll(() => page.locator('[data-metric="co2"] .chart-plot').getAttribute('data-points'))
      .toBe('1')

    const week = page.waitForRequest((r) =>
      aggregate({ metric: 'temperature', from: '-7d', every: '30m' })(r.url()),
    )
    await page.getByText('7 d', { exact: true }).click()
    await week

    await page.getByText('Custom', { exact: true }).click()
    await page.locator('#range-from').fill('2026-11-26T10:00:00')
    await page.locator('#range-to').fill('2026-11-26T12:00:00')
    // The page runs in UTC (browser.ts), so these local times are these epoch ms.
    const custom = page.waitForRequest((r) =>
      aggregate({
        metric: 'temperature',
        from: String(Date.UTC(2026, 10, 26, 10)),
        to: String(Date.UTC(2026, 10, 26, 12)),
        every: '15s',
      })(r.url()),
    )
    await page.getByRole('button', { name: 'Show' }).click()
    expect((await (await custom).response())?.status()).toBe(200)
    await expect
      .poll(() =>
        page.locator('[data-metric="temperature"] .chart-plot').getAttribute('aria-label'),
      )
      .toContain('no readings in this range')
  })

  it('can be used with the keyboard: device list and range selector', async () => {
    for (const id of ['kbd-a', 'kbd-b', 'kbd-c']) await publish(`sensors/${id}/temperature`, '20')
    const { page } = await open({ device: 'kbd-a', live: false })
    await page.locator('[data-device="kbd-a"][aria-selected="true"]').waitFor()

    const focused = () =>
      page.evaluate(`(() => {
        const el = document.activeElement
        return {
          device: el?.closest('[role="option"]')?.getAttribute('data-device') ?? null,
          range: el instanceof HTMLInputElement && el.name === 'range' ? el.value : null,
          outline: el ? getComputedStyle(el).outlineStyle : null,
        }
      })()`) as Promise<{ device: string | null; range: string | null; outline: string | null }>
    // Tab reaches the device list (the skip link comes first), on the selected device.
    let presses = 0
    while ((await focused()).device === null && presses < 5) {
      await page.keyboard.press('Tab')
      presses++
    }
    expect(await focused()).toMatchObject({ device: 'kbd-a', outline: 'solid' })

    await page.keyboard.press('ArrowDown')
    await expect.poll(focused).toMatchObject({ device: 'kbd-b' })
    expect(await page.locator('[data-device="kbd-b"]').getAttribute('aria-selected')).toBe('true')
    expect(await page.locator('#detail-heading').textContent()).toBe('kbd-b')
    expect(new URL(page.url()).hash).toBe('#kbd-b')

    await page.keyboard.press('ArrowDown')
    await page.keyboard.press('ArrowUp')
    await page.keyboard.press('Enter')
    await expect.poll(() => page.locator('#detail-heading').textContent()).toBe('kbd-b')
    // One tab stop for the whole list: the next Tab leaves it for the range selector.
    await page.keyboard.press('Tab')
    expect(await focused()).toMatchObject({ device: null, range: '1h' })
    const day = page.waitForRequest((r) => r.url().includes('from=-24h'))
    await page.keyboard.press('ArrowRight')
    await day
    expect(await page.locator('input[name="range"][value="24h"]').isChecked()).toBe(true)
    expect((await focused()).range).toBe('24h')
  })

  it('fits a phone screen (390 px) without horizontal scrolling', async () => {
    await publish(
      'sensors/a-device-with-a-rather-long-identifier-0123456789',
      JSON.stringify({ temperature: 19.25, humidity: 55.5, co2: 812 }),
    )
    const { page } = await open({ viewport: PHONE, live: false })
    await page.locator('#rules-table tbody tr').first().waitFor()
    await page.locator('#charts figure').first().waitFor()
    const overflow = () =>
      page.evaluate(
        '({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })',
      ) as Promise<{ scrollWidth: number; innerWidth: number }>
    const before = await overflow()
    expect(before.scrollWidth).toBeLessThanOrEqual(before.innerWidth)
    // With the custom range inputs open too.
    await page.getByText('Custom', { exact: true }).click()
    await page.locator('#range-from').waitFor()
    const after = await overflow()
    expect(after.scrollWidth).toBeLessThanOrEqual(after.innerWidth)
    await mkdir(RESULTS_DIR, { recursive: true })
    await page.screenshot({ path: path.join(RESULTS_DIR, 'dashboard-phone.png'), fullPage: true })
  })

  it('keeps text readable in light and dark mode (contrast at least 4.5:1)', async () => {
    await publish('sensors/dev-contrast/temperature', '36')
    for (const colorScheme of ['light', 'dark'] as const) {
      const { page } = await open({ colorScheme, device: 'dev-contrast', live: false })
      await page.locator('#rules-table tbody tr').first().waitFor()
      await page.locator('#alerts-current li').first().waitFor()
      const result = (await page.evaluate(CONTRAST_FAILURES_SCRIPT)) as {
        checked: number
        failures: unknown[]
      }
      expect(result.checked, colorScheme).toBeGreaterThan(50)
      expect(result.failures, colorScheme).toEqual([])
    }
  })

  it('reads the payload forms of the gateway in the browser, and ignores what it rejects', async () => {
    const { page } = await open({ live: false })
    const now = Date.UTC(2026, 10, 26, 12)
    const cases: Array<[string, string]> = [
      ['sensors/d1/temperature', '21.5'],
      ['sensors/d1/temperature', JSON.stringify({ value: 22, ts: now, unit: 'Cel' })],
      ['sensors/d1/temperature', '{"value":22,"ts":"2026-11-26T11:59:00Z"}'],
      ['sensors/d1', JSON.stringify({ ts: now, temperature: 23, humidity: 40 })],
      [
        'sensors/d1',
        JSON.stringify([
          { bn: 'd1:', bt: now / 1000, n: 'co2', u: 'ppm', v: 650 },
          { n: 't', v: 1 },
        ]),
      ],
      // What the gateway dead-letters (the simulator's malformed kinds among them).
      ['sensors/d1/temperature', 'ERR_SENSOR_TIMEOUT'],
      ['sensors/d1/humidity', 'NaN'],
      ['sensors/d1', JSON.stringify({ ts: now, temperature: 21 }).slice(0, 20)],
      ['sensors/d1', '{"temperature":21,"status":"ok"}'],
      ['sensors/d1/temperature', '{"value":21.5,"ts":3605000,"unit":"Cel"}'],
      ['sensors/d1/co2 ppm', '612'],
      ['sensors/d1/temperature', '{"value":"21"}'],
      ['sensors/d1', '[{"n":"door","vb":true}]'],
    ]
    const results = await page.evaluate(`import('/assets/payloads.js').then(({ parseReadings }) =>
      ${JSON.stringify(cases)}.map(([topic, payload]) => parseReadings(topic, payload, ${now})))`)
    expect(results).toEqual([
      [{ deviceId: 'd1', metric: 'temperature', value: 21.5, ts: now }],
      [{ deviceId: 'd1', metric: 'temperature', value: 22, ts: now, unit: 'Cel' }],
      [{ deviceId: 'd1', metric: 'temperature', value: 22, ts: now - 60_000 }],
      [
        { deviceId: 'd1', metric: 'temperature', value: 23, ts: now },
        { deviceId: 'd1', metric: 'humidity', value: 40, ts: now },
      ],
      [
        { deviceId: 'd1', metric: 'co2', value: 650, ts: now, unit: 'ppm' },
        { deviceId: 'd1', metric: 't', value: 1, ts: now },
      ],
      [],
      [],
      [],
      [],
      [],
      [],
      [],
      [],
    ])
  })
})

describe('dashboard when the live link is down', () => {
  let browser: Browser
  const cleanups: Array<() => Promise<unknown>> = []

  beforeAll(async () => {
    browser = await launchChromium()
  })

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  afterAll(async () => {
    await browser?.close()
  })

  /** Chromium logs every refused WebSocket attempt itself; here they are expected, nothing else. */
  // While the link is down Chromium itself logs two things, neither a fault of the page: each
  // failed reconnect attempt, and a send that MQTT.js had queued as the server closed the socket.
  const unexpected = (problems: string[]) =>
    problems.filter(
      (m) =>
        !/^console error: WebSocket connection to 'ws:\/\/[^']+\/mqtt' failed/.test(m) &&
        m !== 'console error: WebSocket is already in CLOSING or CLOSED state.',
    )

  it('says "live updates unavailable" and still shows the stored data without /mqtt', async () => {
    // The HTTP API alone, without the gateway around it: no broker, so no MQTT over WebSocket.
    const dir = await createTempDir('dashboard-nolive-')
    cleanups.push(() => dir.remove())
    const store = createSqliteStore({ file: path.join(dir.path, 'gateway.db') })
    cleanups.push(() => store.close())
    await store.writeReadings([
      { deviceId: 'dev-stored', metric: 'temperature', value: 18.5, ts: Date.now() - 60_000 },
    ])
    const log = createSilentLogger()
    // Acks and silences, as the gateway always has them (the page lists the silences).
    const alertControls = createAlertControls(
      { bus: createEventBus(log), log, alertById: () => undefined },
      { file: path.join(dir.path, 'alert-controls.db') },
    )
    cleanups.push(async () => alertControls.close())
    const http = createHttpServer(
      {
        store,
        log,
        rules: { list: () => [], dryRun: async () => ({ ok: false, errors: [] }) },
        alertControls,
      },
      { requestLogging: 'off' },
    )
    cleanups.push(() => http.close())
    await http.listen({ host: '127.0.0.1', port: 0 })
    const { port } = http.server.address() as AddressInfo

    const opened = await openDashboard(browser, `http://127.0.0.1:${port}`, { live: false })
    cleanups.push(() => opened.context.close())
    const { page } = opened
    await page.locator('#live[data-state="unavailable"]').waitFor()
    expect(await page.locator('#live').textContent()).toContain('Live updates unavailable')
    await expect
      .poll(() =>
        page.locator('[data-device="dev-stored"] [data-metric="temperature"] .value').textContent(),
      )
      .toBe('18.5')
    await expect
      .poll(() =>
        page.locator('[data-metric="temperature"] .chart-plot').getAttribute('data-points'),
      )
      .toBe('1')
    // Without a status message the device's state is unknown, and the page says so.
    expect(await page.locator('[data-device="dev-stored"] .state').textContent()).toBe('unknown')
    expect(unexpected(opened.problems)).toEqual([])
  })

  it('shows the link lost while the gateway restarts, reconnects, and catches up', async () => {
    const dir = await createTempDir('dashboard-restart-')
    cleanups.push(() => dir.remove())
    let gw = await startTestGateway({ LOG_LEVEL: 'warn', RULES_WATCH: 'false', DATA_DIR: dir.path })
    cleanups.push(() => gw.stop())
    const device = await connectClient(gw.mqttUrl, { clientId: 'restart-publisher' })
    await device.publishAsync('sensors/dev-restart/temperature', '20', { qos: 1 })
    await device.endAsync()

    const opened = await openDashboard(browser, gw.httpUrl, { device: 'dev-restart' })
    cleanups.push(() => opened.context.close())
    const { page } = opened

    await gw.stop()
    await page.locator('#live[data-state="reconnecting"]').waitFor()
    expect(await page.locator('#live').textContent()).toContain('reconnecting')

    // The same ports and data folder: what a restart of the service looks like to the page.
    gw = await startTestGateway({
      LOG_LEVEL: 'warn',
      RULES_WATCH: 'false',
      DATA_DIR: dir.path,
      HTTP_PORT: new URL(gw.httpUrl).port,
      MQTT_PORT: new URL(gw.mqttUrl).port,
    })
    cleanups.push(() => gw.stop())
    // A reading stored while the page was not connected yet: it comes from the refetch.
    const again = await connectClient(gw.mqttUrl, { clientId: 'restart-publisher-2' })
    cleanups.push(() => again.endAsync())
    await again.publishAsync(
      'sensors/dev-restart/humidity',
      JSON.stringify({ value: 44, ts: Date.now() - 1_000 }),
      { qos: 1 },
    )
    await page.locator('#live[data-state="live"]').waitFor({ timeout: 15_000 })
    await expect
      .poll(() =>
        page.locator('[data-device="dev-restart"] [data-metric="humidity"] .value').textContent(),
      )
      .toBe('44')
    // And live again.
    await again.publishAsync('sensors/dev-restart/temperature', '23.5', { qos: 1 })
    await waitForText(
      page,
      '[data-device="dev-restart"] [data-metric="temperature"] .value',
      '23.5',
      LIVE_BOUND_MS,
    )
    expect(unexpected(opened.problems)).toEqual([])
  }, 30_000)
})

describe('dashboard screenshot with simulated data', () => {
  let gw: TestGateway
  let browser: Browser
  const clients: MqttClient[] = []

  beforeAll(async () => {
    ;[gw, browser] = await Promise.all([
      startTestGateway({ LOG_LEVEL: 'warn', RULES_WATCH: 'false' }),
      launchChromium(),
    ])
  })

  afterAll(async () => {
    await browser?.close()
    await endAll(clients)
    await gw?.cleanup()
  })

  it('renders a fleet with an hour of history, live values and alerts', async () => {
    const fleet = createFleet({ url: gw.mqttUrl, devices: 4, intervalMs: 500, seed: 4 })
    // The hour before: the same devices' signal models (same seeds, so the same slow cycles),
    // sampled every 30 s and published with explicit timestamps, as a device catching up would.
    const history = await connectClient(gw.mqttUrl, { clientId: 'history-loader' })
    clients.push(history)
    const now = Date.now()
    const spike = { id: 'greenhouse-sim-001', signals: fleet.devices[0]!.signals }
    const published: Array<Promise<unknown>> = []
    for (const spec of [...fleet.devices, { ...spike, seed: deviceSeed(4, spike.id) }]) {
      const sensor = createSensor(spec.signals, spec.seed)
      for (let ts = now - HOUR_MS; ts < now - 5_000; ts += 30_000) {
        const sample = sensor.sample(ts)
        const payload = JSON.stringify({
          ts,
          temperature: round1(sample.temperature),
          humidity: round1(sample.humidity),
          co2: Math.round(sample.co2),
        })
        published.push(history.publishAsync(`sensors/${spec.id}`, payload, { qos: 1 }))
      }
    }
    await Promise.all(published)
    // One alert fired and resolved before the fleet starts.
    await history.publishAsync('sensors/sim-003/temperature', '34.2', { qos: 1 })
    await history.publishAsync('sensors/sim-003/temperature', '24.1', { qos: 1 })

    const opened = await openDashboard(browser, gw.httpUrl, { device: 'sim-001', live: false })
    try {
      await fleet.start()
      await waitUntil(() => fleet.stats().readings >= 40)
      // A spike on a device outside the fleet (a fleet device's next reading would resolve it).
      await history.publishAsync(`sensors/${spike.id}/temperature`, '35.6', { qos: 1 })
      const { page } = opened
      await waitForLive(page)
      await page.locator('#alerts-current [data-state="firing"]').first().waitFor()
      await expect
        .poll(() =>
          page.locator('[data-metric="temperature"] .chart-plot').getAttribute('data-points'),
        )
        .not.toBe('0')
      await page.evaluate(NEXT_FRAME)

      await mkdir(RESULTS_DIR, { recursive: true })
      const file = path.join(RESULTS_DIR, 'dashboard.png')
      await page.screenshot({ path: file })
      if (process.env.UPDATE_SCREENSHOT === '1') {
        await mkdir(path.dirname(DOCS_SCREENSHOT), { recursive: true })
        await copyFile(file, DOCS_SCREENSHOT)
      }
      await page.emulateMedia({ colorScheme: 'dark' })
      await page.evaluate(NEXT_FRAME)
      await page.screenshot({ path: path.join(RESULTS_DIR, 'dashboard-dark.png') })
      expect(opened.problems).toEqual([])
    } finally {
      await fleet.stop()
      await opened.context.close()
    }
  }, 40_000)
})

function round(ms: number): number {
  return Math.round(ms * 10) / 10
}

function round1(value: number): number {
  return Math.round(value * 10) / 10
}

function summary(sorted: number[]) {
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0
  return { min: sorted[0] ?? 0, median: at(0.5), p90: at(0.9), max: sorted.at(-1) ?? 0 }
}

/** Polls a condition every 50 ms for at most 10 s (the fleet has no event for "published n"). */
async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  await expect.poll(condition, { timeout: timeoutMs, interval: 50 }).toBe(true)
}
