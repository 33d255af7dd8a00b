import { join } from 'node:path'
import type { FastifyInstance, RouteOptions } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMqttBroker, type MqttBroker } from '../../../src/broker/mqtt-broker.ts'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import type { Alert, Reading } from '../../../src/contract/types.ts'
import { createHttpServer } from '../../../src/http/http-server.ts'
import { WEBHOOK_NOTIFICATION_SCHEMA } from '../../../src/http/openapi.ts'
import {
  type Parsed,
  parseAggregateQuery,
  parseAlertsQuery,
  parseNoQuery,
  parseNotificationsQuery,
  parseReadingsQuery,
  parseSilencesQuery,
} from '../../../src/http/query-params.ts'
import {
  type AlertControlsService,
  createAlertControls,
} from '../../../src/notify/alert-controls.ts'
import { webhookBody } from '../../../src/notify/channels/webhook.ts'
import { createDeviceRegistry } from '../../../src/rules/device-registry.ts'
import { createRuleEngine } from '../../../src/rules/rule-engine.ts'
import { createRulesView } from '../../../src/rules/rules-view.ts'
import {
  createSecretVerifier,
  generateSecret,
  hashSecret,
  parseSecretHash,
} from '../../../src/security/credentials.ts'
import type { HttpSecurity } from '../../../src/security/http-auth.ts'
import { createSqliteStore, type SqliteStore } from '../../../src/store/sqlite-store.ts'
import { createStoreWriter, type StoreWriter } from '../../../src/store/store-writer.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { createMetrics } from '../../../src/telemetry/metrics.ts'
import { createStoreMonitor } from '../../../src/telemetry/store-monitor.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'
import { alertFixture, groupFixture, notificationFixture } from '../notify/channels/fixtures.ts'
import { rulesFrom } from '../rules/harness.ts'

const NOW = Date.UTC(2026, 10, 26, 10, 0, 0)
const MIN = 60_000
const log = createSilentLogger()

const READINGS: Reading[] = [
  { deviceId: 'gh-1', metric: 'temperature', value: 20, ts: NOW - 30 * MIN, unit: 'Cel' },
  { deviceId: 'gh-1', metric: 'temperature', value: 31, ts: NOW - 20 * MIN, unit: 'Cel' },
  { deviceId: 'gh-1', metric: 'humidity', value: 40, ts: NOW - 10 * MIN },
]
const ALERT: Alert = {
  id: 'high-temperature:gh-1',
  ruleId: 'high-temperature',
  kind: 'threshold',
  deviceId: 'gh-1',
  metric: 'temperature',
  severity: 'major',
  state: 'firing',
  value: 31,
  threshold: 30,
  since: NOW - 20 * MIN,
  ts: NOW - 20 * MIN,
  message: 'temperature 31 above 30',
  flapping: false,
}

/** The API's operations: method and OpenAPI path. */
const API_OPERATIONS = [
  ['get', '/healthz'],
  ['get', '/readyz'],
  ['get', '/metrics'],
  ['get', '/api/devices'],
  ['get', '/api/readings'],
  ['get', '/api/readings/aggregate'],
  ['get', '/api/alerts'],
  ['get', '/api/rules'],
  ['post', '/api/rules/test'],
  ['get', '/api/notifications'],
  ['post', '/api/notifications/{id}/retry'],
  ['post', '/api/alerts/{id}/ack'],
  ['get', '/api/silences'],
  ['post', '/api/silences'],
  ['delete', '/api/silences/{id}'],
] as const

/** Operations that create a resource: 201, not 200. */
const CREATES: readonly string[] = ['post /api/silences']

type QueryParser = (query: unknown, nowMs: number) => Parsed<unknown>
/** The parser each route validates its query string with. */
const PARSERS: Record<string, QueryParser> = {
  'get /api/readings': parseReadingsQuery,
  'get /api/readings/aggregate': parseAggregateQuery,
  'get /api/alerts': parseAlertsQuery,
  'get /api/devices': parseNoQuery,
  'get /api/rules': parseNoQuery,
  'post /api/rules/test': parseNoQuery,
  'get /api/notifications': parseNotificationsQuery,
  'post /api/notifications/{id}/retry': parseNoQuery,
  'post /api/alerts/{id}/ack': parseNoQuery,
  'get /api/silences': parseSilencesQuery,
  'post /api/silences': parseNoQuery,
  'delete /api/silences/{id}': parseNoQuery,
}
/**
 * What each operation needs once the gateway requires authentication (README "Who may do what
 * (HTTP)"): nothing, a token with this role, or a token only off this machine (`/metrics`).
 */
const ACCESS: Record<
  string,
  'public' | 'read-readings' | 'read-alerts' | 'write-alerts' | 'admin' | 'off-host'
> = {
  'get /healthz': 'public',
  'get /readyz': 'public',
  'get /metrics': 'off-host',
  'get /api/devices': 'read-readings',
  'get /api/readings': 'read-readings',
  'get /api/readings/aggregate': 'read-readings',
  'get /api/alerts': 'read-alerts',
  'get /api/rules': 'read-alerts',
  'post /api/rules/test': 'admin',
  'get /api/notifications': 'read-alerts',
  'post /api/notifications/{id}/retry': 'write-alerts',
  'post /api/alerts/{id}/ack': 'write-alerts',
  'get /api/silences': 'read-alerts',
  'post /api/silences': 'write-alerts',
  'delete /api/silences/{id}': 'write-alerts',
}
/** An app of the secured server: it may read alerts, nothing else. */
const APP_ID = 'alerts-reader'
const APP_SECRET = generateSecret()

/** Probes and scrapes ignore the query string on purpose (a cache-buster must not fail them). */
const IGNORES_QUERY = ['get /healthz', 'get /readyz', 'get /metrics']

// ---- A little of OpenAPI 3.0, typed as much as this test reads of it ----

type JsonSchema = {
  type?: string
  nullable?: boolean
  enum?: unknown[]
  pattern?: string
  format?: string
  required?: string[]
  properties?: Record<string, JsonSchema>
  additionalProperties?: boolean | JsonSchema
  items?: JsonSchema
  oneOf?: JsonSchema[]
  default?: unknown
}
interface Parameter {
  name: string
  in: string
  required?: boolean
  description?: string
  example?: unknown
  schema: JsonSchema
}
interface Operation {
  summary?: string
  description?: string
  security?: Array<Record<string, string[]>>
  tags?: string[]
  parameters?: Parameter[]
  requestBody?: { content: Record<string, { schema: JsonSchema }> }
  responses: Record<
    string,
    { description: string; content?: Record<string, { schema: JsonSchema }> }
  >
}
interface OpenApiDoc {
  openapi: string
  components?: {
    securitySchemes?: Record<string, Record<string, unknown>>
    schemas?: Record<string, JsonSchema>
  }
  info: { title: string; version: string }
  tags?: Array<{ name: string }>
  paths: Record<string, Record<string, Operation>>
}

/** Where `value` breaks `schema`, as `$.path: problem` lines; empty when it conforms. */
function violations(schema: JsonSchema, value: unknown, at = '$'): string[] {
  if (value === null && schema.nullable) return []
  if (schema.oneOf) {
    return schema.oneOf.some((s) => violations(s, value, at).length === 0)
      ? []
      : [`${at}: matches none of oneOf`]
  }
  const problems: string[] = []
  const isObject = typeof value === 'object' && value !== null && !Array.isArray(value)
  const typeOk: Record<string, boolean> = {
    object: isObject,
    array: Array.isArray(value),
    string: typeof value === 'string',
    number: typeof value === 'number' && Number.isFinite(value),
    integer: Number.isInteger(value),
    boolean: typeof value === 'boolean',
  }
  if (schema.type !== undefined && !typeOk[schema.type]) {
    return [`${at}: expected ${schema.type}, got ${JSON.stringify(value)}`]
  }
  if (schema.enum && !schema.enum.includes(value))
    problems.push(`${at}: ${String(value)} not in enum`)
  if (typeof value === 'string') {
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) {
      problems.push(`${at}: ${value} does not match ${schema.pattern}`)
    }
    if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) {
      problems.push(`${at}: ${value} is not a date-time`)
    }
  }
  if (isObject) {
    const object = value as Record<string, unknown>
    for (const key of schema.required ?? []) {
      if (!(key in object)) problems.push(`${at}: missing ${key}`)
    }
    for (const [key, item] of Object.entries(object)) {
      const property = schema.properties?.[key]
      if (property) problems.push(...violations(property, item, `${at}.${key}`))
      else if (schema.additionalProperties === false) problems.push(`${at}: unexpected ${key}`)
      else if (typeof schema.additionalProperties === 'object') {
        problems.push(...violations(schema.additionalProperties, item, `${at}.${key}`))
      }
    }
  }
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => {
      problems.push(...violations(schema.items as JsonSchema, item, `${at}[${i}]`))
    })
  }
  return problems
}

describe('OpenAPI at /docs', () => {
  let dir: TempDir
  let store: SqliteStore
  let writer: StoreWriter
  let broker: MqttBroker
  let app: FastifyInstance
  /** The same API with authentication required, as a gateway with credentials serves it. */
  let secured: FastifyInstance
  let doc: OpenApiDoc
  let controls: AlertControlsService
  /** A silence to expire (DELETE /api/silences/{id}). */
  let silenceId: string
  /** Every route the server registered, as Fastify saw it. */
  const routes: RouteOptions[] = []

  const operation = (method: string, path: string): Operation => {
    const op = doc.paths[path]?.[method]
    if (!op) throw new Error(`${method} ${path} is not in the OpenAPI document`)
    return op
  }

  beforeAll(async () => {
    dir = await createTempDir('openapi-')
    store = createSqliteStore({ file: join(dir.path, 'gateway.db') })
    await store.writeReadings(READINGS)
    await store.writeAlerts([ALERT])
    const bus = createEventBus(log)
    const monitor = createStoreMonitor(store)
    writer = createStoreWriter(
      { store: monitor.store, bus, log },
      { maxBatchSize: 100, retryBaseMs: 10, retryMaxMs: 20 },
    )
    broker = await createMqttBroker(
      { log },
      { authorizePublish: (_client, _packet, callback) => callback(null) },
    )
    const engine = createRuleEngine(
      { bus, log, tickMs: 0 },
      rulesFrom({
        id: 'high-temperature',
        kind: 'threshold',
        match: { metric: 'temperature' },
        above: 30,
        severity: 'major',
      }),
    )
    engine.restore([ALERT])
    controls = createAlertControls(
      { bus, log, now: () => NOW, alertById: (id) => engine.alerts().find((a) => a.id === id) },
      { file: join(dir.path, 'alert-controls.db') },
    )
    const created = controls.createSilence(
      {
        matchers: { rule: null, device: ['gh-*'], severity: null, tags: null },
        startsAt: NOW,
        endsAt: NOW + 60 * MIN,
        comment: 'to expire',
      },
      'test',
    )
    if (!created.ok) throw new Error(created.message)
    silenceId = created.silence.id
    const metrics = createMetrics(
      { bus, writer, broker, engine, storeMonitor: monitor },
      { processMetrics: false },
    )
    app = createHttpServer(
      {
        store,
        log,
        now: () => NOW,
        rules: createRulesView(engine),
        metrics,
        alertControls: controls,
      },
      { requestLogging: 'off' },
    )
    // A cheap hash (the default cost is for registries): this test checks answers, not scrypt.
    const hash = parseSecretHash(await hashSecret(APP_SECRET, { N: 1024, r: 8, p: 1 }))
    if (!hash.ok) throw new Error(hash.message)
    const security: HttpSecurity = {
      authRequired: true,
      loopbackOnly: false,
      corsOrigins: [],
      registry: createDeviceRegistry(
        [],
        [{ id: APP_ID, secret: hash.hash, roles: ['read-alerts'] }],
      ),
      verifier: createSecretVerifier(),
    }
    secured = createHttpServer(
      {
        store,
        log,
        now: () => NOW,
        rules: createRulesView(engine),
        metrics,
        security,
        alertControls: controls,
      },
      { requestLogging: 'off' },
    )
    // Routes are registered by plugins, which load at ready(): this hook sees every one of them.
    app.addHook('onRoute', (route) => {
      routes.push(route)
    })
    await app.ready()
    const res = await app.inject('/docs/json')
    expect(res.statusCode).toBe(200)
    doc = res.json<OpenApiDoc>()
  })
  afterAll(async () => {
    await app?.close()
    await secured?.close()
    await writer?.close()
    await broker?.close()
    await store?.close()
    controls?.close()
    await dir?.remove()
  })

  it('is an OpenAPI 3.0 document with every route, each with tags, a summary and described responses', async () => {
    expect(doc.openapi).toMatch(/^3\.0\.\d+$/)
    expect(doc.info.title).toBe('Sensor gateway HTTP API')
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/)
    const tagNames = (doc.tags ?? []).map((t) => t.name)

    for (const [method, path] of API_OPERATIONS) {
      const op = operation(method, path)
      expect(op.summary, `${method} ${path}`).toBeTruthy()
      expect(op.tags?.length, `${method} ${path}`).toBe(1)
      expect(tagNames).toContain(op.tags?.[0])
      // A creation answers 201 (POST /api/silences); every other operation 200.
      expect(Object.keys(op.responses)).toContain(
        CREATES.includes(`${method} ${path}`) ? '201' : '200',
      )
    }
    // Every route the server has (but HEAD twins and the docs themselves) is in the document.
    const documented = routes.filter(
      (r) =>
        !r.url.startsWith('/docs') && (r.schema as { hide?: boolean } | undefined)?.hide !== true,
    )
    expect(documented.length).toBeGreaterThanOrEqual(API_OPERATIONS.length)
    for (const route of documented) {
      const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter(
        (m) => m !== 'HEAD',
      )
      const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
      for (const method of methods)
        expect(doc.paths[path], path).toHaveProperty(method.toLowerCase())
    }
    // Structure OpenAPI 3.0 requires of every operation.
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        expect(['get', 'post', 'put', 'patch', 'delete', 'head', 'options']).toContain(method)
        for (const [status, response] of Object.entries(op.responses)) {
          expect(status, `${method} ${path}`).toMatch(/^([1-5]\d\d|[1-5]XX|default)$/)
          expect(response.description, `${method} ${path} ${status}`).toBeTruthy()
        }
        for (const p of op.parameters ?? []) {
          expect(['query', 'path', 'header', 'cookie']).toContain(p.in)
          expect(p.name).toBeTruthy()
          expect(p.schema).toBeTypeOf('object')
          if (p.in === 'path') expect(path).toContain(`{${p.name}}`)
        }
      }
    }
    expect(JSON.stringify(doc)).not.toContain('$ref')

    const ui = await app.inject('/docs')
    expect(ui.statusCode).toBe(200)
    expect(ui.headers['content-type']).toMatch(/^text\/html/)
  })

  it('documents exactly the query parameters each parser accepts, with what it requires and takes', () => {
    for (const [key, parse] of Object.entries(PARSERS)) {
      const [method, path] = key.split(' ') as [string, string]
      const params = (operation(method, path).parameters ?? []).filter((p) => p.in === 'query')
      const names = params.map((p) => p.name)

      // The parser names what it accepts when it meets a parameter it does not.
      const unknown = parse({ zz_unknown: 'x' }, NOW)
      expect(unknown.ok).toBe(false)
      const allowedText = (unknown as { message: string }).message.match(/\((.*)\)$/)?.[1] ?? ''
      const allowed =
        allowedText === 'this route takes none'
          ? []
          : allowedText.replace(/^allowed: /, '').split(', ')
      expect(names.sort(), key).toEqual([...allowed].sort())

      // Every documented parameter has an example (or an enum, or a default) the parser takes.
      const exampleOf = (p: Parameter) =>
        String(p.example ?? p.schema.enum?.[0] ?? p.schema.default)
      const full = Object.fromEntries(params.map((p) => [p.name, exampleOf(p)]))
      for (const p of params) expect(exampleOf(p), `${key} ${p.name}`).not.toBe('undefined')
      expect(parse(full, NOW), `${key} with every example`).toMatchObject({ ok: true })

      for (const p of params) {
        const { [p.name]: _left, ...without } = full
        const result = parse(without, NOW)
        if (p.required) {
          expect(result, `${key} without ${p.name}`).toEqual({
            ok: false,
            message: `query parameter "${p.name}": is required`,
          })
        } else {
          expect(result, `${key} without ${p.name}`).toMatchObject({ ok: true })
        }
        // An enum is exactly the values the parser takes.
        for (const value of p.schema.enum ?? []) {
          expect(
            parse({ ...full, [p.name]: value }, NOW),
            `${key} ${p.name}=${value}`,
          ).toMatchObject({ ok: true })
        }
        if (p.schema.enum) {
          const bad = parse({ ...full, [p.name]: 'not-in-enum' }, NOW)
          expect(bad.ok).toBe(false)
          expect((bad as { message: string }).message).toContain(`"${p.name}"`)
        }
      }
    }
    for (const key of IGNORES_QUERY) {
      const [method, path] = key.split(' ') as [string, string]
      expect(operation(method, path).parameters ?? [], key).toEqual([])
    }
  })

  it('leaves validation to the parsers: Fastify neither rejects nor coerces against the schemas', async () => {
    const limit = await app.inject('/api/readings?device=gh-1&limit=abc')
    expect(limit.statusCode).toBe(400)
    expect(limit.json().message).toBe(
      'query parameter "limit": expected an integer from 1 to 10000, got "abc"',
    )
    const twice = await app.inject('/api/alerts?severity=major&severity=minor')
    expect(twice.json().message).toBe(
      'query parameter "severity": given 2 times, expected at most once',
    )
    // Defaults in the schema are documentation: the parser's own defaults apply.
    const defaults = await app.inject('/api/readings?device=gh-1')
    expect(defaults.json()).toMatchObject({ limit: 1_000, order: 'asc', count: 3 })
    for (const key of IGNORES_QUERY) {
      const path = key.split(' ')[1] as string
      expect((await app.inject(`${path}?cache=${Date.now()}`)).statusCode, path).toBe(200)
    }
  })

  it('answers in the documented shapes, successes and errors', async () => {
    const rule = { id: 'hot', kind: 'threshold', match: { metric: 'temperature' }, above: 30 }
    const cases: Array<{
      method: 'GET' | 'POST' | 'DELETE'
      url: string
      path: string
      status: number
      body?: unknown
      contentType?: string
    }> = [
      { method: 'GET', url: '/healthz', path: '/healthz', status: 200 },
      { method: 'GET', url: '/readyz', path: '/readyz', status: 200 },
      { method: 'GET', url: '/metrics', path: '/metrics', status: 200 },
      { method: 'GET', url: '/api/devices', path: '/api/devices', status: 200 },
      { method: 'GET', url: '/api/devices?x=1', path: '/api/devices', status: 400 },
      { method: 'GET', url: '/api/readings?device=gh-1', path: '/api/readings', status: 200 },
      {
        method: 'GET',
        url: '/api/readings?device=gh-1&metric=humidity&order=desc&limit=1',
        path: '/api/readings',
        status: 200,
      },
      { method: 'GET', url: '/api/readings?device=bad%20id', path: '/api/readings', status: 400 },
      {
        method: 'GET',
        url: '/api/readings/aggregate?device=gh-1&metric=temperature&every=10m&fn=max',
        path: '/api/readings/aggregate',
        status: 200,
      },
      {
        method: 'GET',
        url: '/api/readings/aggregate?device=gh-1',
        path: '/api/readings/aggregate',
        status: 400,
      },
      { method: 'GET', url: '/api/alerts', path: '/api/alerts', status: 200 },
      { method: 'GET', url: '/api/alerts?state=firing', path: '/api/alerts', status: 200 },
      { method: 'GET', url: '/api/rules', path: '/api/rules', status: 200 },
      {
        method: 'POST',
        url: '/api/rules/test',
        path: '/api/rules/test',
        status: 200,
        body: { rule, readings: [{ deviceId: 'd', metric: 'temperature', value: 31, ts: NOW }] },
      },
      {
        method: 'POST',
        url: '/api/rules/test',
        path: '/api/rules/test',
        status: 400,
        body: { rule: { id: 'x' }, readings: [] },
      },
      {
        method: 'POST',
        url: '/api/rules/test',
        path: '/api/rules/test',
        status: 415,
        body: 'rule=x',
        contentType: 'text/plain',
      },
      ...(['high-temperature%3Agh-1', 'nobody%3Agh-1', 'no-colon'] as const).map((id, i) => ({
        method: 'POST' as const,
        url: `/api/alerts/${id}/ack`,
        path: '/api/alerts/{id}/ack',
        status: [200, 404, 400][i] as number,
        body: { comment: 'seen' },
      })),
      // After the ack: the firing alert carries `acknowledged`, as documented.
      { method: 'GET', url: '/api/alerts?state=firing', path: '/api/alerts', status: 200 },
      {
        method: 'POST',
        url: '/api/silences',
        path: '/api/silences',
        status: 201,
        body: {
          matchers: { severity: 'major', tags: { site: 'gh*' } },
          duration: '1h',
          comment: 'c',
        },
      },
      {
        method: 'POST',
        url: '/api/silences',
        path: '/api/silences',
        status: 400,
        body: { matchers: {}, duration: '1h', comment: 'c' },
      },
      { method: 'GET', url: '/api/silences', path: '/api/silences', status: 200 },
      { method: 'GET', url: '/api/silences?state=nope', path: '/api/silences', status: 400 },
      {
        method: 'DELETE',
        url: `/api/silences/${silenceId}`,
        path: '/api/silences/{id}',
        status: 200,
      },
      { method: 'DELETE', url: '/api/silences/unknown', path: '/api/silences/{id}', status: 404 },
    ]
    for (const c of cases) {
      const res = await app.inject({
        method: c.method,
        url: c.url,
        ...(c.body !== undefined
          ? {
              payload: typeof c.body === 'string' ? c.body : JSON.stringify(c.body),
              headers: { 'content-type': c.contentType ?? 'application/json' },
            }
          : {}),
      })
      const label = `${c.method} ${c.url}`
      expect(res.statusCode, label).toBe(c.status)
      const response = operation(c.method.toLowerCase(), c.path).responses[String(c.status)]
      expect(response, `${label}: status ${c.status} documented`).toBeDefined()
      const [mediaType, media] = Object.entries(response?.content ?? {})[0] ?? []
      expect(res.headers['content-type'], label).toContain(mediaType)
      const body = mediaType === 'application/json' ? res.json() : res.body
      expect(violations(media?.schema ?? {}, body), label).toEqual([])
    }
  })

  it('documents the webhook body in components.schemas, and the webhook channel posts bodies that match it', () => {
    const schema = doc.components?.schemas?.[WEBHOOK_NOTIFICATION_SCHEMA]
    expect(schema?.required).toEqual(
      expect.arrayContaining(['id', 'kind', 'alerts', 'title', 'text', 'createdAt']),
    )
    const bodies = [
      notificationFixture(),
      notificationFixture({
        kind: 'repeat',
        alerts: [alertFixture({ acknowledged: { by: 'ops', at: NOW, comment: 'on it' } })],
      }),
      groupFixture(3),
    ].map((n) => JSON.parse(webhookBody(n)) as unknown)
    for (const body of bodies) expect(violations(schema ?? {}, body)).toEqual([])
    // And it can fail: a body with a field the document does not know.
    expect(violations(schema ?? {}, { ...(bodies[0] as object), extra: 1 })).toEqual([
      '$: unexpected extra',
    ])
  })

  it('documents the app token: a bearer scheme, and security, 401 and 403 on the routes that need it', () => {
    expect(doc.components?.securitySchemes?.bearer).toMatchObject({
      type: 'http',
      scheme: 'bearer',
      bearerFormat: '<appId>.<secret>',
    })
    expect(String(doc.components?.securitySchemes?.bearer?.description)).toContain(
      'Authorization: Bearer <appId>.<secret>',
    )
    expect(Object.keys(ACCESS).sort()).toEqual(API_OPERATIONS.map((o) => o.join(' ')).sort())
    for (const [method, path] of API_OPERATIONS) {
      const key = `${method} ${path}`
      const op = operation(method, path)
      const access = ACCESS[key]
      if (access === 'public') {
        expect(op.security, key).toBeUndefined()
        expect(Object.keys(op.responses), key).not.toContain('401')
        continue
      }
      // `{}` first: no token needed on this machine, a token from elsewhere.
      expect(op.security, key).toEqual(
        access === 'off-host' ? [{}, { bearer: [] }] : [{ bearer: [] }],
      )
      expect(Object.keys(op.responses), key).toEqual(expect.arrayContaining(['401', '403']))
      const role = access === 'off-host' ? 'admin' : access
      expect(op.description, key).toContain(`the role \`${role}\``)
      expect(op.responses['403']?.description, key).toContain(`\`${role}\``)
    }
  })

  it('answers a missing, wrong or insufficient token in the documented 401 and 403 shapes', async () => {
    const cases: Array<{
      url: string
      path: string
      status: 401 | 403
      headers?: Record<string, string>
      message: string
    }> = [
      {
        url: '/api/devices',
        path: '/api/devices',
        status: 401,
        message:
          'this route needs an app token: Authorization: Bearer <appId>.<secret> (npm run app:add)',
      },
      {
        url: '/api/alerts',
        path: '/api/alerts',
        status: 401,
        headers: { authorization: `Bearer ${APP_ID}.wrong` },
        message: 'unknown app or wrong secret',
      },
      {
        url: '/api/readings?device=gh-1',
        path: '/api/readings',
        status: 403,
        headers: { authorization: `Bearer ${APP_ID}.${APP_SECRET}` },
        message: `app "${APP_ID}" lacks the role read-readings that GET /api/readings needs`,
      },
      {
        url: '/metrics',
        path: '/metrics',
        status: 401,
        headers: { 'x-forwarded-for': '203.0.113.9' },
        message:
          'this route needs an app token: Authorization: Bearer <appId>.<secret> (npm run app:add)',
      },
    ]
    for (const c of cases) {
      const res = await secured.inject({ url: c.url, headers: c.headers ?? {} })
      const label = `${c.url} ${JSON.stringify(c.headers ?? {})}`
      expect(res.statusCode, label).toBe(c.status)
      expect(res.json().message, label).toBe(c.message)
      const schema = operation('get', c.path).responses[String(c.status)]?.content?.[
        'application/json'
      ]?.schema
      expect(schema, `${label}: ${c.status} documented`).toBeDefined()
      expect(violations(schema ?? {}, res.json()), label).toEqual([])
    }
    // The token the app was given opens what its role grants.
    const alerts = await secured.inject({
      url: '/api/alerts',
      headers: { authorization: `Bearer ${APP_ID}.${APP_SECRET}` },
    })
    expect(alerts.statusCode).toBe(200)
  })

  it('documents the 503s of a store that fails, in the shapes they have', async () => {
    const closedDir = await createTempDir('openapi-closed-')
    const closed = createSqliteStore({ file: join(closedDir.path, 'gateway.db') })
    await closed.close()
    const down = createHttpServer({ store: closed, log, now: () => NOW }, { requestLogging: 'off' })
    try {
      for (const [url, path] of [
        ['/api/readings?device=gh-1', '/api/readings'],
        ['/readyz', '/readyz'],
      ] as const) {
        const res = await down.inject(url)
        expect(res.statusCode, url).toBe(503)
        const schema = operation('get', path).responses['503']?.content?.['application/json']
          ?.schema
        expect(violations(schema ?? {}, res.json()), url).toEqual([])
      }
    } finally {
      await down.close()
      await closedDir.remove()
    }
  })
})
