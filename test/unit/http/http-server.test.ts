import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Alert, Reading } from '../../../src/contract/types.ts'
import { createHttpServer } from '../../../src/http/http-server.ts'
import { type ReadingStore, StoreQueryLimitError } from '../../../src/store/reading-store.ts'
import { createSqliteStore } from '../../../src/store/sqlite-store.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { captureLogs } from '../../helpers/log-capture.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

/** 2026-11-26T10:00:00.000Z: the server's clock in every test. */
const NOW = Date.UTC(2026, 10, 26, 10, 0, 0, 0)
const MIN = 60_000
const HOUR = 60 * MIN
const iso = (ms: number) => new Date(ms).toISOString()

const READINGS: Reading[] = [
  { deviceId: 'gh-1', metric: 'temperature', value: 20, ts: NOW - 50 * MIN, unit: 'Cel' },
  { deviceId: 'gh-1', metric: 'temperature', value: 21, ts: NOW - 40 * MIN, unit: 'Cel' },
  { deviceId: 'gh-1', metric: 'temperature', value: 22.5, ts: NOW - 30 * MIN, unit: 'Cel' },
  // Stamped exactly now: the default `to` must include it.
  { deviceId: 'gh-1', metric: 'temperature', value: 23, ts: NOW, unit: 'Cel' },
  { deviceId: 'gh-1', metric: 'humidity', value: 40, ts: NOW - 45 * MIN, unit: '%RH' },
  // Outside the default hour.
  { deviceId: 'gh-1', metric: 'humidity', value: 38, ts: NOW - 2 * HOUR, unit: '%RH' },
  { deviceId: 'gh-2', metric: 'temperature', value: 18.5, ts: NOW - 10 * MIN },
  // `__proto__` is a valid identifier; it must come back as a metric, not vanish into a prototype.
  { deviceId: 'aa-0', metric: '__proto__', value: 1, ts: NOW - 5 * MIN },
]

const TEMP_FIRING: Alert = {
  id: 'temp-high:gh-1',
  ruleId: 'temp-high',
  kind: 'threshold',
  deviceId: 'gh-1',
  metric: 'temperature',
  severity: 'critical',
  state: 'firing',
  value: 22.5,
  threshold: 22,
  since: NOW - 30 * MIN,
  ts: NOW - 30 * MIN,
  message: 'temperature above 22',
  flapping: false,
}
const TEMP_RESOLVED: Alert = {
  ...TEMP_FIRING,
  state: 'resolved',
  value: 21.4,
  since: NOW - 5 * MIN,
  ts: NOW - 5 * MIN,
  message: 'temperature back below 22',
}
const HUMIDITY_FIRING: Alert = {
  id: 'humidity-low:gh-2',
  ruleId: 'humidity-low',
  kind: 'threshold',
  deviceId: 'gh-2',
  metric: 'humidity',
  severity: 'warning',
  state: 'firing',
  value: 20,
  threshold: 25,
  since: NOW - 48 * HOUR,
  ts: NOW - 48 * HOUR,
  message: 'humidity below 25',
  flapping: false,
}

function alertJson(alert: Alert) {
  return { ...alert, sinceTime: iso(alert.since), time: iso(alert.ts) }
}

let dir: TempDir
let store: ReadingStore
let app: FastifyInstance

beforeAll(async () => {
  dir = await createTempDir('http-test-')
  store = createSqliteStore({ file: join(dir.path, 'readings.db') })
  await store.writeReadings(READINGS)
  await store.writeAlerts([HUMIDITY_FIRING, TEMP_FIRING, TEMP_RESOLVED])
  app = createHttpServer({ store, log: createSilentLogger(), now: () => NOW })
  await app.ready()
})

afterAll(async () => {
  await app?.close()
  await store?.close()
  await dir?.remove()
})

async function getJson(url: string): Promise<{ statusCode: number; body: unknown }> {
  const response = await app.inject({ method: 'GET', url })
  expect(response.headers['content-type']).toMatch(/^application\/json/)
  return { statusCode: response.statusCode, body: response.json() }
}

describe('GET /healthz', () => {
  it('answers ok', async () => {
    expect(await getJson('/healthz')).toEqual({ statusCode: 200, body: { status: 'ok' } })
  })

  it('ignores a query string: probes must not fail over one', async () => {
    expect(await getJson('/healthz?t=1')).toEqual({ statusCode: 200, body: { status: 'ok' } })
  })
})

describe('GET /api/devices', () => {
  it('lists every device with its newest value per metric, sorted by id', async () => {
    expect(await getJson('/api/devices')).toEqual({
      statusCode: 200,
      body: {
        devices: [
          {
            id: 'aa-0',
            lastSeen: iso(NOW - 5 * MIN),
            lastSeenMs: NOW - 5 * MIN,
            metrics: JSON.parse(
              `{"__proto__":{"value":1,"ts":${NOW - 5 * MIN},"time":"${iso(NOW - 5 * MIN)}"}}`,
            ),
          },
          {
            id: 'gh-1',
            lastSeen: iso(NOW),
            lastSeenMs: NOW,
            metrics: {
              humidity: { value: 40, ts: NOW - 45 * MIN, time: iso(NOW - 45 * MIN), unit: '%RH' },
              temperature: { value: 23, ts: NOW, time: iso(NOW), unit: 'Cel' },
            },
          },
          {
            id: 'gh-2',
            lastSeen: iso(NOW - 10 * MIN),
            lastSeenMs: NOW - 10 * MIN,
            metrics: {
              temperature: { value: 18.5, ts: NOW - 10 * MIN, time: iso(NOW - 10 * MIN) },
            },
          },
        ],
      },
    })
  })

  it('keeps a metric named __proto__ as an own key', async () => {
    const response = await app.inject('/api/devices')
    expect(response.body).toContain('"metrics":{"__proto__":{"value":1,')
  })
})

describe('GET /api/readings', () => {
  it('defaults to the last hour up to and including now, all metrics, oldest first', async () => {
    const reading = (r: Reading) => ({ ...r, time: iso(r.ts) })
    expect(await getJson('/api/readings?device=gh-1')).toEqual({
      statusCode: 200,
      body: {
        device: 'gh-1',
        metric: null,
        from: iso(NOW - HOUR),
        to: iso(NOW + 1),
        fromMs: NOW - HOUR,
        toMs: NOW + 1,
        order: 'asc',
        limit: 1000,
        count: 5,
        truncated: false,
        readings: [
          reading(READINGS[0] as Reading),
          reading(READINGS[4] as Reading),
          reading(READINGS[1] as Reading),
          reading(READINGS[2] as Reading),
          reading(READINGS[3] as Reading),
        ],
      },
    })
  })

  it('filters by metric, orders newest first and says when the limit cut the answer', async () => {
    const { statusCode, body } = await getJson(
      '/api/readings?device=gh-1&metric=temperature&order=desc&limit=2',
    )
    expect(statusCode).toBe(200)
    expect(body).toMatchObject({ metric: 'temperature', count: 2, truncated: true, limit: 2 })
    expect((body as { readings: unknown[] }).readings).toEqual([
      {
        deviceId: 'gh-1',
        metric: 'temperature',
        value: 23,
        ts: NOW,
        time: '2026-11-26T10:00:00.000Z',
        unit: 'Cel',
      },
      {
        deviceId: 'gh-1',
        metric: 'temperature',
        value: 22.5,
        ts: NOW - 30 * MIN,
        time: '2026-11-26T09:30:00.000Z',
        unit: 'Cel',
      },
    ])
  })

  it('is not truncated when the range holds exactly limit readings', async () => {
    const { body } = await getJson('/api/readings?device=gh-1&metric=temperature&limit=4')
    expect(body).toMatchObject({ count: 4, truncated: false })
  })

  it('treats to as exclusive and takes ISO, epoch ms and relative times', async () => {
    const url = `/api/readings?device=gh-1&metric=temperature&from=2026-11-26T09:10:00Z&to=${NOW - 30 * MIN}`
    const { body } = await getJson(url)
    expect(body).toMatchObject({
      from: '2026-11-26T09:10:00.000Z',
      to: '2026-11-26T09:30:00.000Z',
      count: 2,
    })
    const values = (body as { readings: Reading[] }).readings.map((r) => r.value)
    expect(values).toEqual([20, 21])

    const relative = await getJson('/api/readings?device=gh-1&from=-3h&to=-1h')
    expect(relative.body).toMatchObject({ count: 1, readings: [{ metric: 'humidity', value: 38 }] })
  })

  it('answers an empty list for a device with no readings', async () => {
    const { statusCode, body } = await getJson('/api/readings?device=nobody')
    expect(statusCode).toBe(200)
    expect(body).toMatchObject({ device: 'nobody', count: 0, truncated: false, readings: [] })
  })
})

describe('GET /api/readings/aggregate', () => {
  it('buckets one metric with the requested function and width', async () => {
    expect(
      await getJson('/api/readings/aggregate?device=gh-1&metric=temperature&every=30m&fn=mean'),
    ).toEqual({
      statusCode: 200,
      body: {
        device: 'gh-1',
        metric: 'temperature',
        fn: 'mean',
        every: 30 * MIN,
        from: iso(NOW - HOUR),
        to: iso(NOW + 1),
        fromMs: NOW - HOUR,
        toMs: NOW + 1,
        buckets: [
          { ts: NOW - HOUR, time: '2026-11-26T09:00:00.000Z', value: 20.5, count: 2 },
          { ts: NOW - 30 * MIN, time: '2026-11-26T09:30:00.000Z', value: 22.5, count: 1 },
          { ts: NOW, time: '2026-11-26T10:00:00.000Z', value: 23, count: 1 },
        ],
      },
    })
  })

  it.each([
    ['max', [21, 22.5, 23]],
    ['min', [20, 22.5, 23]],
    ['last', [21, 22.5, 23]],
    ['count', [2, 1, 1]],
  ])('fn=%s', async (fn, values) => {
    const { body } = await getJson(
      `/api/readings/aggregate?device=gh-1&metric=temperature&every=30m&fn=${fn}`,
    )
    expect((body as { buckets: Array<{ value: number }> }).buckets.map((b) => b.value)).toEqual(
      values,
    )
  })

  it('defaults to mean with a width giving about 500 buckets over the range', async () => {
    const { body } = await getJson('/api/readings/aggregate?device=gh-1&metric=temperature')
    expect(body).toMatchObject({ fn: 'mean', every: 10_000 })
    expect((body as { buckets: unknown[] }).buckets).toHaveLength(4)
    const week = await getJson('/api/readings/aggregate?device=gh-1&metric=humidity&from=-7d')
    expect(week.body).toMatchObject({ every: 30 * MIN, buckets: [{ value: 38 }, { value: 40 }] })
  })
})

describe('GET /api/alerts', () => {
  it('lists every transition, newest first', async () => {
    expect(await getJson('/api/alerts')).toEqual({
      statusCode: 200,
      body: {
        alerts: [alertJson(TEMP_RESOLVED), alertJson(TEMP_FIRING), alertJson(HUMIDITY_FIRING)],
      },
    })
  })

  it('presents id, kind and flapping with the ISO twins of since and ts', async () => {
    const { body } = await getJson('/api/alerts?limit=1')
    expect(body).toEqual({
      alerts: [
        {
          id: 'temp-high:gh-1',
          ruleId: 'temp-high',
          kind: 'threshold',
          deviceId: 'gh-1',
          metric: 'temperature',
          severity: 'critical',
          state: 'resolved',
          value: 21.4,
          threshold: 22,
          since: NOW - 5 * MIN,
          sinceTime: '2026-11-26T09:55:00.000Z',
          ts: NOW - 5 * MIN,
          time: '2026-11-26T09:55:00.000Z',
          message: 'temperature back below 22',
          flapping: false,
        },
      ],
    })
  })

  it.each([
    ['state=all', [TEMP_RESOLVED, TEMP_FIRING, HUMIDITY_FIRING]],
    // Current state: temp-high on gh-1 fired, then resolved, so it is not firing now.
    ['state=firing', [HUMIDITY_FIRING]],
    ['state=resolved', [TEMP_RESOLVED]],
    ['device=gh-2', [HUMIDITY_FIRING]],
    ['rule=temp-high&state=firing', []],
    ['rule=temp-high&state=resolved', [TEMP_RESOLVED]],
    ['rule=temp-high&state=all', [TEMP_RESOLVED, TEMP_FIRING]],
    ['severity=critical', [TEMP_RESOLVED, TEMP_FIRING]],
    ['severity=warning&state=firing', [HUMIDITY_FIRING]],
    ['severity=critical&state=firing', []],
    ['severity=info', []],
    ['from=-1h', [TEMP_RESOLVED, TEMP_FIRING]],
    ['from=-1h&state=firing', []],
    ['to=-30m', [HUMIDITY_FIRING]],
    ['limit=1', [TEMP_RESOLVED]],
  ])('%s', async (query, alerts) => {
    expect(await getJson(`/api/alerts?${query}`)).toEqual({
      statusCode: 200,
      body: { alerts: alerts.map(alertJson) },
    })
  })
})

describe('GET /api/alerts current state', () => {
  // co2-high on gh-3 fired, resolved and fired again; temp-high on gh-3 fired and resolved.
  const co2 = (state: Alert['state'], minutesAgo: number): Alert => ({
    ...HUMIDITY_FIRING,
    id: 'co2-high:gh-3',
    ruleId: 'co2-high',
    deviceId: 'gh-3',
    metric: 'co2',
    severity: 'major',
    state,
    since: NOW - minutesAgo * MIN,
    ts: NOW - minutesAgo * MIN,
  })
  const temp = (state: Alert['state'], minutesAgo: number): Alert => ({
    ...co2(state, minutesAgo),
    id: 'temp-high:gh-3',
    ruleId: 'temp-high',
    metric: 'temperature',
    severity: 'critical',
  })
  const history = [
    co2('firing', 20),
    co2('resolved', 15),
    temp('firing', 12),
    temp('resolved', 11),
    co2('firing', 10),
  ]
  let currentDir: TempDir
  let currentStore: ReadingStore
  let server: FastifyInstance

  beforeAll(async () => {
    currentDir = await createTempDir('http-current-')
    currentStore = createSqliteStore({ file: join(currentDir.path, 'current.db') })
    await currentStore.writeAlerts(history)
    server = createHttpServer({ store: currentStore, log: createSilentLogger(), now: () => NOW })
  })

  afterAll(async () => {
    await server?.close()
    await currentStore?.close()
    await currentDir?.remove()
  })

  async function alertsOf(query: string): Promise<unknown> {
    const response = await server.inject(`/api/alerts?${query}`)
    expect(response.statusCode).toBe(200)
    return response.json()
  }

  it.each([
    // Firing now: co2-high once, as of its latest transition; its first firing is history.
    ['state=firing', [co2('firing', 10)]],
    ['state=resolved', [temp('resolved', 11)]],
    ['state=all', [...history].reverse()],
    ['', [...history].reverse()],
    ['state=firing&severity=major', [co2('firing', 10)]],
    ['state=firing&severity=critical', []],
    ['state=resolved&rule=co2-high', []],
    ['state=firing&device=gh-3&rule=co2-high', [co2('firing', 10)]],
    ['state=firing&from=-11m', [co2('firing', 10)]],
    ['state=firing&to=-11m', []],
    ['severity=major', [co2('firing', 10), co2('resolved', 15), co2('firing', 20)]],
  ])('%s', async (query, alerts) => {
    expect(await alertsOf(query)).toEqual({ alerts: alerts.map(alertJson) })
  })
})

describe('bad requests', () => {
  const time = 'expected ISO-8601 time, epoch ms or relative time like -1h'
  const id = 'expected an identifier matching ^[A-Za-z0-9_.-]{1,64}$'
  it.each([
    ['/api/readings', 'device', 'query parameter "device": is required'],
    ['/api/readings?metric=temperature', 'device', 'query parameter "device": is required'],
    ['/api/readings?device=gh%2F1', 'device', `query parameter "device": ${id}, got "gh/1"`],
    ['/api/readings?device=gh-1&metric=', 'metric', `query parameter "metric": ${id}, got ""`],
    [
      '/api/readings?device=gh-1&device=gh-2',
      'device',
      'query parameter "device": given 2 times, expected at most once',
    ],
    [
      '/api/readings?device=gh-1&from=yesterday',
      'from',
      `query parameter "from": ${time}, got "yesterday"`,
    ],
    ['/api/readings?device=gh-1&to=soon', 'to', `query parameter "to": ${time}, got "soon"`],
    [
      '/api/readings?device=gh-1&from=-1h&to=-2h',
      'from',
      'query parameter "from": must be before "to" (to is exclusive), got from 2026-11-26T09:00:00.000Z and to 2026-11-26T08:00:00.000Z',
    ],
    [
      '/api/readings?device=gh-1&limit=0',
      'limit',
      'query parameter "limit": expected an integer from 1 to 10000, got "0"',
    ],
    [
      '/api/readings?device=gh-1&order=up',
      'order',
      'query parameter "order": expected one of asc, desc, got "up"',
    ],
    [
      '/api/readings/aggregate?metric=temperature',
      'device',
      'query parameter "device": is required',
    ],
    ['/api/readings/aggregate?device=gh-1', 'metric', 'query parameter "metric": is required'],
    [
      '/api/readings/aggregate?device=gh-1&metric=temperature&fn=avg',
      'fn',
      'query parameter "fn": expected one of mean, min, max, count, last, got "avg"',
    ],
    [
      '/api/readings/aggregate?device=gh-1&metric=temperature&every=100ms',
      'every',
      'query parameter "every": expected a duration of at least 1s like 30s, 5m or 1h, got "100ms"',
    ],
    [
      '/api/readings/aggregate?device=gh-1&metric=temperature&from=-7d&every=1m',
      'every',
      'query parameter "every": 1m over the requested range makes 10081 buckets, more than the 10000 allowed; use a larger "every" or a shorter range',
    ],
    [
      '/api/alerts?state=open',
      'state',
      'query parameter "state": expected one of firing, resolved, all, got "open"',
    ],
    ['/api/alerts?rule=a%20b', 'rule', `query parameter "rule": ${id}, got "a b"`],
    ['/api/alerts?device=*', 'device', `query parameter "device": ${id}, got "*"`],
    ['/api/alerts?from=today', 'from', `query parameter "from": ${time}, got "today"`],
    [
      '/api/alerts?severity=fatal',
      'severity',
      'query parameter "severity": expected one of critical, major, minor, warning, info, got "fatal"',
    ],
    [
      '/api/alerts?severity=critical&severity=major',
      'severity',
      'query parameter "severity": given 2 times, expected at most once',
    ],
    [
      '/api/alerts?limit=99999',
      'limit',
      'query parameter "limit": expected an integer from 1 to 10000, got "99999"',
    ],
  ])('%s -> 400 naming %s', async (url, param, message) => {
    const { statusCode, body } = await getJson(url)
    expect(statusCode).toBe(400)
    expect(body).toEqual({ error: 'bad_request', message, statusCode: 400 })
    expect(message).toContain(`"${param}"`)
  })

  it.each([
    [
      '/api/readings?device=gh-1&form=-1h',
      'unknown query parameter "form" (allowed: device, metric, from, to, limit, order)',
    ],
    [
      '/api/readings/aggregate?device=gh-1&metric=t&every=1m&func=max&step=1',
      'unknown query parameters "func", "step" (allowed: device, metric, from, to, every, fn)',
    ],
    [
      '/api/alerts?sev=critical',
      'unknown query parameter "sev" (allowed: state, device, rule, severity, from, to, limit)',
    ],
    ['/api/devices?device=gh-1', 'unknown query parameter "device" (this route takes none)'],
  ])('%s -> 400 naming the unknown parameter', async (url, message) => {
    expect(await getJson(url)).toEqual({
      statusCode: 400,
      body: { error: 'bad_request', message, statusCode: 400 },
    })
  })
})

describe('not found', () => {
  it.each([
    ['GET', '/nope', 'no route for GET /nope'],
    ['GET', '/api/readings/latest?device=gh-1', 'no route for GET /api/readings/latest'],
    ['POST', '/api/devices', 'no route for POST /api/devices'],
  ] as const)('%s %s -> 404 JSON', async (method, url, message) => {
    const response = await app.inject({ method, url })
    expect(response.statusCode).toBe(404)
    expect(response.headers['content-type']).toMatch(/^application\/json/)
    expect(response.json()).toEqual({ error: 'not_found', message, statusCode: 404 })
  })
})

describe('URL handling', () => {
  it('a malformed URL gets the JSON error shape', async () => {
    expect(await getJson('/%zz')).toEqual({
      statusCode: 400,
      body: {
        error: 'bad_request',
        message: "'/%zz' is not a valid url component",
        statusCode: 400,
      },
    })
  })

  it('a trailing slash names the same route', async () => {
    const { statusCode, body } = await getJson('/api/readings/?device=gh-2')
    expect(statusCode).toBe(200)
    expect(body).toMatchObject({ device: 'gh-2', count: 1 })
  })

  it('a percent-encoded value is decoded before validation', async () => {
    const { body } = await getJson('/api/readings?device=gh-1&from=2026-11-26T09%3A55%3A00Z')
    expect(body).toMatchObject({ from: '2026-11-26T09:55:00.000Z', count: 1 })
  })

  it('an empty parameter name is an unknown parameter', async () => {
    expect(await getJson('/api/readings?=x&device=gh-1')).toEqual({
      statusCode: 400,
      body: {
        error: 'bad_request',
        message: 'unknown query parameter "" (allowed: device, metric, from, to, limit, order)',
        statusCode: 400,
      },
    })
  })
})

/** The real store, with its query methods broken: a fault injector, not a stand-in. */
function withFailingQueries(real: ReadingStore, error: Error): ReadingStore {
  return {
    kind: real.kind,
    writeReadings: (readings) => real.writeReadings(readings),
    writeAlerts: (alerts) => real.writeAlerts(alerts),
    // One rejects, one throws synchronously: both must become a 503.
    queryReadings: () => Promise.reject(error),
    aggregate: () => Promise.reject(error),
    latest: () => {
      throw error
    },
    queryAlerts: () => Promise.reject(error),
    latestAlerts: () => Promise.reject(error),
    close: () => real.close(),
  }
}

describe('store failures', () => {
  it.each([
    '/api/devices',
    '/api/readings?device=gh-1',
    '/api/readings/aggregate?device=gh-1&metric=temperature',
    '/api/alerts',
    '/api/alerts?state=firing',
  ])('%s -> 503 without internals, cause logged at warn', async (url) => {
    const { log, lines } = captureLogs('info')
    const error = new Error('SQLITE_IOERR: disk I/O error in /var/secret/readings.db')
    const faulty = createHttpServer({
      store: withFailingQueries(store, error),
      log,
      now: () => NOW,
    })
    try {
      const response = await faulty.inject(url)
      expect(response.statusCode).toBe(503)
      expect(response.json()).toEqual({
        error: 'store_unavailable',
        message: 'the reading store is unavailable, try again later',
        statusCode: 503,
      })
      expect(response.body).not.toContain('secret')
      const warn = lines.find((line) => line.msg === 'store query failed')
      expect(warn).toMatchObject({
        level: 40,
        module: 'http',
        err: { message: error.message },
      })
      // Bad parameters are still a 400: the store is not even asked.
      const bad = await faulty.inject('/api/readings?device=gh-1&limit=0')
      expect(bad.statusCode).toBe(400)
    } finally {
      await faulty.close()
    }
  })

  it('an answer the store cut at its own row limit is no outage: 500 store_query_limit, not 503', async () => {
    const error = new StoreQueryLimitError(
      'InfluxDB cut the answer at its max-row-limit; narrow the query or raise the limit: SELECT ...',
    )
    const server = createHttpServer({
      store: withFailingQueries(store, error),
      log: createSilentLogger(),
      now: () => NOW,
    })
    try {
      const response = await server.inject('/api/readings/aggregate?device=gh-1&metric=temperature')
      expect(response.statusCode).toBe(500)
      expect(response.json()).toEqual({
        error: 'store_query_limit',
        message: error.message,
        statusCode: 500,
      })
    } finally {
      await server.close()
    }
  })

  it('a closed store answers 503', async () => {
    const closedDir = await createTempDir('http-closed-')
    const closed = createSqliteStore({ file: join(closedDir.path, 'closed.db') })
    await closed.close()
    const server = createHttpServer({ store: closed, log: createSilentLogger(), now: () => NOW })
    try {
      const response = await server.inject('/api/readings?device=gh-1')
      expect(response.statusCode).toBe(503)
      expect(response.json()).toMatchObject({ error: 'store_unavailable' })
    } finally {
      await server.close()
      await closedDir.remove()
    }
  })

  it('any other failure is a 500 with a fixed message', async () => {
    const server = createHttpServer({ store, log: createSilentLogger(), now: () => NOW })
    server.get('/test/boom', async () => {
      throw new Error('secret internals')
    })
    try {
      const response = await server.inject('/test/boom')
      expect(response.statusCode).toBe(500)
      expect(response.json()).toEqual({
        error: 'internal',
        message: 'internal server error',
        statusCode: 500,
      })
    } finally {
      await server.close()
    }
  })
})

describe('request logging', () => {
  it('writes one debug line per request, nothing at info', async () => {
    const debug = captureLogs('debug')
    const info = captureLogs('info')
    const servers = [
      createHttpServer({ store, log: debug.log, now: () => NOW }),
      createHttpServer({ store, log: info.log, now: () => NOW }),
    ]
    try {
      for (const server of servers) {
        await server.inject('/api/devices')
        await server.inject('/nope')
      }
      const requestLines = debug.lines.filter((line) => line.reqId !== undefined)
      expect(requestLines).toEqual([
        expect.objectContaining({
          level: 20,
          module: 'http',
          msg: 'request completed',
          method: 'GET',
          url: '/api/devices',
          statusCode: 200,
        }),
        expect.objectContaining({
          level: 20,
          msg: 'request completed',
          url: '/nope',
          statusCode: 404,
        }),
      ])
      expect(info.lines).toEqual([])
    } finally {
      await Promise.all(servers.map((server) => server.close()))
    }
  })

  it("requestLogging: 'off' writes none", async () => {
    const debug = captureLogs('debug')
    const server = createHttpServer(
      { store, log: debug.log, now: () => NOW },
      { requestLogging: 'off' },
    )
    try {
      await server.inject('/api/devices')
      expect(debug.lines.filter((line) => line.reqId !== undefined)).toEqual([])
    } finally {
      await server.close()
    }
  })
})

describe('listening', () => {
  it('serves /healthz on 127.0.0.1 port 0', async () => {
    const server = createHttpServer({ store, log: createSilentLogger() })
    try {
      await server.listen({ host: '127.0.0.1', port: 0 })
      const address = server.server.address()
      if (address === null || typeof address === 'string') throw new Error('no TCP address')
      expect(address.port).toBeGreaterThan(0)
      const response = await fetch(`http://127.0.0.1:${address.port}/healthz`)
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({ status: 'ok' })
    } finally {
      await server.close()
    }
  })
})
