import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import type { Reading } from '../../../src/contract/types.ts'
import { createHttpServer } from '../../../src/http/http-server.ts'
import { RULE_TEST_BODY_LIMIT_BYTES } from '../../../src/http/routes/rules.ts'
import { parseRules } from '../../../src/rules/load-rules.ts'
import { createRuleEngine, type RuleEngine } from '../../../src/rules/rule-engine.ts'
import { createRulesView } from '../../../src/rules/rules-view.ts'
import type { ReadingStore } from '../../../src/store/reading-store.ts'
import { createSqliteStore } from '../../../src/store/sqlite-store.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

const NOW = Date.UTC(2026, 10, 26, 10, 0, 0, 0)

/** Rules as written in rules.yaml, loaded by the real loader. */
const RULES = [
  {
    id: 'high-temperature',
    kind: 'threshold',
    match: { metric: 'temperature' },
    above: 30,
    hysteresis: 1,
    severity: 'major',
  },
  {
    id: 'high-co2',
    kind: 'threshold',
    match: { device: ['office-*', 'lab-1'], metric: 'co2' },
    above: 1500,
  },
]

/**
 * The view the gateway builds: the running engine's rules and their firing alerts, and the real
 * dry run. Built from the real rule code, never a stand-in for rule behaviour.
 */
let dir: TempDir
let store: ReadingStore
let engine: RuleEngine
let app: FastifyInstance

beforeAll(async () => {
  dir = await createTempDir('http-rules-')
  store = createSqliteStore({ file: join(dir.path, 'readings.db') })
  const loaded = parseRules(stringify({ rules: RULES }), 'rules.yaml')
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'))
  const log = createSilentLogger()
  const bus = createEventBus(log)
  engine = createRuleEngine({ bus, log, now: () => NOW, tickMs: 0 }, loaded.rules)
  engine.start()
  const send = (deviceId: string, metric: string, value: number, ts: number) =>
    bus.emit('reading', { deviceId, metric, value, ts } satisfies Reading)
  // high-temperature: firing on gh-1 and gh-2; fired and resolved on gh-3; never on gh-4.
  send('gh-1', 'temperature', 31, NOW - 3000)
  send('gh-2', 'temperature', 35, NOW - 2000)
  send('gh-3', 'temperature', 32, NOW - 2000)
  send('gh-3', 'temperature', 20, NOW - 1000)
  send('gh-4', 'temperature', 21, NOW - 1000)
  // high-co2: a breaching value on a device it does not match, a normal one on one it does.
  send('cellar-1', 'co2', 5000, NOW - 1000)
  send('office-1', 'co2', 900, NOW - 1000)
  app = createHttpServer({ store, log, now: () => NOW, rules: createRulesView(engine) })
  await app.ready()
})

afterAll(async () => {
  engine?.stop()
  await app?.close()
  await store?.close()
  await dir?.remove()
})

describe('GET /api/rules', () => {
  it('lists every loaded rule with its definition and how many of its alerts fire now', async () => {
    const response = await app.inject('/api/rules')
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^application\/json/)
    const [temperature, co2] = engine.rules()
    expect(response.json()).toEqual({
      rules: [
        {
          id: 'high-temperature',
          kind: 'threshold',
          severity: 'major',
          match: JSON.parse(JSON.stringify(temperature?.match)),
          definition: RULES[0],
          firing: 2,
        },
        {
          id: 'high-co2',
          kind: 'threshold',
          // The loader's default severity.
          severity: 'warning',
          match: JSON.parse(JSON.stringify(co2?.match)),
          definition: RULES[1],
          firing: 0,
        },
      ],
    })
    expect(response.json().rules[0].match).toMatchObject({ metric: 'temperature' })
  })

  it('answers 400 naming an unknown query parameter', async () => {
    const response = await app.inject('/api/rules?id=high-co2')
    expect(response.statusCode).toBe(400)
    expect(response.json()).toEqual({
      error: 'bad_request',
      message: 'unknown query parameter "id" (this route takes none)',
      statusCode: 400,
    })
  })
})

describe('without rules', () => {
  it.each([
    ['GET', '/api/rules', undefined],
    ['POST', '/api/rules/test', { rule: RULES[0], readings: [] }],
  ] as const)('%s %s -> 503 rules_unavailable', async (method, url, payload) => {
    const server = createHttpServer({ store, log: createSilentLogger(), now: () => NOW })
    try {
      const response = await server.inject({ method, url, ...(payload ? { payload } : {}) })
      expect(response.statusCode).toBe(503)
      expect(response.json()).toEqual({
        error: 'rules_unavailable',
        message: 'the rule engine is not available',
        statusCode: 503,
      })
    } finally {
      await server.close()
    }
  })
})

describe('POST /api/rules/test: requests refused before the rule is looked at', () => {
  it.each([
    ['text/plain', 'content-type must be application/json, got "text/plain"'],
    [
      'application/x-www-form-urlencoded',
      'content-type must be application/json, got "application/x-www-form-urlencoded"',
    ],
    ['application/yaml', 'content-type must be application/json, got "application/yaml"'],
  ])('content-type %s -> 415', async (contentType, message) => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/rules/test',
      headers: { 'content-type': contentType },
      payload: JSON.stringify({ rule: RULES[0], readings: [] }),
    })
    expect(response.statusCode).toBe(415)
    expect(response.json()).toEqual({ error: 'unsupported_media_type', message, statusCode: 415 })
  })

  it('no content-type -> 415', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/rules/test',
      payload: Buffer.from(JSON.stringify({ rule: RULES[0], readings: [] })),
    })
    expect(response.statusCode).toBe(415)
    expect(response.json()).toMatchObject({
      error: 'unsupported_media_type',
      message: 'content-type must be application/json, got none',
    })
  })

  it(`a body over ${RULE_TEST_BODY_LIMIT_BYTES} bytes -> 413`, async () => {
    const readings = Array.from({ length: 20_000 }, (_, i) => ({
      deviceId: 'gh-1',
      metric: 'temperature',
      value: 20 + (i % 15),
      ts: NOW + i * 1000,
    }))
    const payload = JSON.stringify({ rule: RULES[0], readings })
    expect(payload.length).toBeGreaterThan(RULE_TEST_BODY_LIMIT_BYTES)
    const response = await app.inject({
      method: 'POST',
      url: '/api/rules/test',
      headers: { 'content-type': 'application/json' },
      payload,
    })
    expect(response.statusCode).toBe(413)
    expect(response.json()).toEqual({
      error: 'payload_too_large',
      message: `request body is larger than ${RULE_TEST_BODY_LIMIT_BYTES} bytes`,
      statusCode: 413,
    })
  })

  it.each([
    ['{"rule":', /^request body: .*not valid JSON/],
    ['', /^request body: .*cannot be empty/],
    // Prototype poisoning is refused by Fastify's JSON parser, never handed to the rule code.
    ['{"__proto__":{"x":1},"rule":{},"readings":[]}', /^request body: .*not valid JSON/],
  ])('malformed JSON %j -> 400 listing the problem', async (payload, message) => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/rules/test',
      headers: { 'content-type': 'application/json' },
      payload,
    })
    expect(response.statusCode).toBe(400)
    const body = response.json()
    expect(body).toMatchObject({ error: 'bad_request', message, statusCode: 400 })
    expect(body.errors).toEqual([body.message])
  })

  it.each([
    [[], ['request body: must be a JSON object with "rule" and "readings", got an array']],
    [42, ['request body: must be a JSON object with "rule" and "readings", got a number']],
    [{}, ['request body: field "rule" is required', 'request body: field "readings" is required']],
    [{ readings: [] }, ['request body: field "rule" is required']],
    [
      { rules: [RULES[0]], readings: [] },
      [
        'request body: unknown field "rules"; known: rule, readings',
        'request body: field "rule" is required',
      ],
    ],
  ])('%j -> 400 with every problem', async (payload, errors) => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/rules/test',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify(payload),
    })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toEqual({
      error: 'bad_request',
      message: errors.length > 1 ? `${errors[0]} (and ${errors.length - 1} more)` : errors[0],
      errors,
      statusCode: 400,
    })
  })
})

describe('POST /api/rules/test', () => {
  async function post(payload: unknown) {
    const response = await app.inject({
      method: 'POST',
      url: '/api/rules/test',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      payload: JSON.stringify(payload),
    })
    expect(response.headers['content-type']).toMatch(/^application\/json/)
    return { statusCode: response.statusCode, body: response.json() }
  }

  const temperature = (value: number, ts: number | string) => ({
    deviceId: 'gh-9',
    metric: 'temperature',
    value,
    ts,
  })

  it('answers the transitions the rule would have made, in reading-time order', async () => {
    const { statusCode, body } = await post({
      rule: RULES[0],
      // Out of order and with an ISO time: the dry run sorts by ts.
      readings: [
        temperature(31, NOW + 1000),
        temperature(29, NOW),
        // Inside the hysteresis band (> 29): still firing.
        temperature(30, NOW + 2000),
        temperature(28.5, '2026-11-26T10:00:03Z'),
      ],
    })
    expect(statusCode).toBe(200)
    const common = {
      id: 'high-temperature:gh-9',
      ruleId: 'high-temperature',
      kind: 'threshold',
      deviceId: 'gh-9',
      metric: 'temperature',
      severity: 'major',
      threshold: 30,
      flapping: false,
    }
    expect(body).toEqual({
      transitions: [
        {
          ...common,
          state: 'firing',
          value: 31,
          since: NOW + 1000,
          sinceTime: '2026-11-26T10:00:01.000Z',
          ts: NOW + 1000,
          time: '2026-11-26T10:00:01.000Z',
          message: expect.any(String),
        },
        {
          ...common,
          state: 'resolved',
          value: 28.5,
          since: NOW + 3000,
          sinceTime: '2026-11-26T10:00:03.000Z',
          ts: NOW + 3000,
          time: '2026-11-26T10:00:03.000Z',
          message: expect.any(String),
        },
      ],
    })
  })

  it('answers no transitions when nothing would have changed', async () => {
    expect(await post({ rule: RULES[0], readings: [temperature(20, NOW)] })).toEqual({
      statusCode: 200,
      body: { transitions: [] },
    })
    expect(await post({ rule: RULES[1], readings: [] })).toEqual({
      statusCode: 200,
      body: { transitions: [] },
    })
  })

  it('touches nothing live: the running engine and the store are as before', async () => {
    const before = engine.alerts()
    const { statusCode } = await post({
      rule: RULES[0],
      readings: [temperature(40, NOW), { ...temperature(40, NOW), deviceId: 'gh-3' }],
    })
    expect(statusCode).toBe(200)
    expect(engine.alerts()).toEqual(before)
    expect(engine.firingCounts().get('high-temperature')).toBe(2)
    expect(await store.queryAlerts({ limit: 10 })).toEqual([])
  })

  it('answers 400 with every problem of the rule and of the readings', async () => {
    const { statusCode, body } = await post({
      rule: { id: 'x y', kind: 'threshold', match: { device: 'gh-*' }, abov: 30 },
      readings: [temperature(20, NOW), { ...temperature(Number.NaN, NOW), value: 'hot' }, 5],
    })
    expect(statusCode).toBe(400)
    expect(body).toMatchObject({ error: 'bad_request', statusCode: 400 })
    const errors = body.errors as string[]
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^request body: .*"id"/),
        expect.stringMatching(/^request body: .*"match\.metric".*required/),
        expect.stringMatching(/^request body: .*"abov".*did you mean "above"/),
        expect.stringMatching(/^request body: readings\[1\]\.value: .*"hot"/),
        expect.stringMatching(/^request body: readings\[2\]: /),
      ]),
    )
    expect(body.message).toBe(`${errors[0]} (and ${errors.length - 1} more)`)
  })

  it('reports an unknown field of the body together with the problems of the rule', async () => {
    const { statusCode, body } = await post({
      rule: { ...RULES[0], above: 'thirty' },
      readings: [],
      dryRun: true,
    })
    expect(statusCode).toBe(400)
    expect(body.errors).toEqual([
      'request body: unknown field "dryRun"; known: rule, readings',
      expect.stringMatching(/^request body: .*"above"/),
    ])
  })

  it('a valid rule with an unknown body field is still a 400', async () => {
    const { statusCode, body } = await post({ rule: RULES[0], readings: [], extra: 1 })
    expect(statusCode).toBe(400)
    expect(body.errors).toEqual(['request body: unknown field "extra"; known: rule, readings'])
  })

  it('answers 400 naming an unknown query parameter', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/rules/test?verbose=1',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ rule: RULES[0], readings: [] }),
    })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject({
      message: 'unknown query parameter "verbose" (this route takes none)',
    })
  })
})
