import { readFile, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { networkInterfaces } from 'node:os'
import path from 'node:path'
import type { IClientOptions, MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { WebSocket } from 'ws'
import { parse as parseYaml } from 'yaml'
import type { DeadLetter } from '../../src/contract/types.ts'
import { generateSecret, hashSecret } from '../../src/security/credentials.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages, refusal } from '../helpers/mqtt.ts'
import { type RunningProcess, runToEnd, startProcess } from '../helpers/processes.ts'
import { allReadings } from '../helpers/store.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/** Every principal of the test registry, with the secret only the test knows. */
const SECRETS = {
  'dev-a': generateSecret(),
  'dev-b': generateSecret(),
  'dev-m': generateSecret(),
  'alerts-app': generateSecret(),
  'readings-app': generateSecret(),
  'admin-app': generateSecret(),
} as const
type Principal = keyof typeof SECRETS

async function writeRegistry(file: string): Promise<void> {
  const h = async (id: Principal) => hashSecret(SECRETS[id])
  await writeFile(
    file,
    [
      'devices:',
      '  - id: dev-a',
      `    secret: ${await h('dev-a')}`,
      '  - id: dev-b',
      `    secret: ${await h('dev-b')}`,
      '  - id: dev-m',
      `    secret: ${await h('dev-m')}`,
      '    metrics: [temperature]',
      'apps:',
      '  - id: alerts-app',
      `    secret: ${await h('alerts-app')}`,
      '    roles: [read-alerts]',
      '  - id: readings-app',
      `    secret: ${await h('readings-app')}`,
      '    roles: [read-readings]',
      '  - id: admin-app',
      `    secret: ${await h('admin-app')}`,
      '    roles: [admin]',
      '',
    ].join('\n'),
  )
}

/**
 * The SUBACK return code of each filter, in order: 0-2 granted, 128 refused. MQTT.js rejects a
 * subscribe with any refusal in it; the SUBACK packet comes with the error.
 */
async function subackCodes(client: MqttClient, filters: string | string[], qos: 0 | 1 = 1) {
  const packet = await client.subscribeAsync(filters, { qos }).then(
    (granted) => ({ granted: granted.map((g) => g.qos) }),
    (err: unknown) => (err as { packet?: { granted: number[] } }).packet,
  )
  if (packet === undefined) throw new Error('no SUBACK')
  return packet.granted
}

describe('security: authentication required (credentials in the registry)', () => {
  let dir: TempDir
  let gw: TestGateway
  const clients = new Set<MqttClient>()

  const connectAs = async (who: Principal, options: IClientOptions = {}, url = gw.mqttUrl) => {
    const client = await connectClient(url, {
      clientId: who,
      username: who,
      password: SECRETS[who],
      ...options,
    })
    clients.add(client)
    return client
  }
  const get = (route: string, token?: string, headers: Record<string, string> = {}) =>
    fetch(`${gw.httpUrl}${route}`, {
      headers: { ...headers, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    })
  const token = (app: Principal) => `${app}.${SECRETS[app]}`
  const stored = async (deviceId: string) =>
    (await allReadings(gw.gateway.store, deviceId)).map((r) => `${r.metric}=${r.value}`)

  beforeAll(async () => {
    dir = await createTempDir('gw-security-')
    const file = path.join(dir.path, 'devices.yaml')
    await writeRegistry(file)
    gw = await startTestGateway({ DEVICES_FILE: file, LOG_LEVEL: 'debug' })
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
  })
  afterAll(async () => {
    await gw.cleanup()
    await dir.remove()
  })

  it('says at start that authentication is required', () => {
    const line = gw.logs.find((l) => l.msg === 'authentication required')
    expect(line).toMatchObject({ level: 30, mode: 'authentication-required', apps: 3 })
    expect(line?.devicesWithSecrets).toBe(3)
  })

  it('refuses anonymous (5), a wrong password (4), an unknown device (4), a taken client id (2)', async () => {
    expect(await refusal(gw.mqttUrl, { clientId: 'anon' })).toBe(5)
    expect(
      await refusal(gw.mqttUrl, { clientId: 'dev-a', username: 'dev-a', password: 'wrong' }),
    ).toBe(4)
    expect(await refusal(gw.mqttUrl, { clientId: 'dev-a', username: 'dev-a' })).toBe(4)
    expect(
      await refusal(gw.mqttUrl, {
        clientId: 'dev-z',
        username: 'dev-z',
        password: SECRETS['dev-a'],
      }),
    ).toBe(4)
    // dev-a's secret is right, but the client id is dev-b's: it would kick dev-b off.
    expect(
      await refusal(gw.mqttUrl, {
        clientId: 'dev-b',
        username: 'dev-a',
        password: SECRETS['dev-a'],
      }),
    ).toBe(2)
    const ok = await connectAs('dev-a')
    expect(ok.connected).toBe(true)
  })

  it('holds MQTT over WebSocket to the same authentication', async () => {
    const ws = `${gw.httpUrl.replace(/^http/, 'ws')}/mqtt`
    expect(await refusal(ws, { clientId: 'browser' })).toBe(5)
    expect(await refusal(ws, { clientId: 'browser', username: 'alerts-app', password: 'x' })).toBe(
      4,
    )
    const app = await connectAs('alerts-app', { clientId: 'alerts-app-ws' }, ws)
    expect(app.connected).toBe(true)
  })

  it('acknowledges a device that publishes as another, dead-letters it and keeps it; nothing is stored for the other, nothing lost for anyone', async () => {
    const a = await connectAs('dev-a')
    const b = await connectAs('dev-b')
    const own = recordMessages(a)
    await a.subscribeAsync('gateway/deadletter/dev-a', { qos: 1 })
    await a.publishAsync('sensors/dev-a/temperature', '20', { qos: 1 })
    await b.publishAsync('sensors/dev-b/temperature', '10', { qos: 1 })

    // PUBACK, and the connection stays (it used to be closed, and the device sent it again).
    await a.publishAsync('sensors/dev-b/temperature', '99', { qos: 1 })
    expect(a.connected).toBe(true)
    // The device reads why on its own dead-letter topic; one warn line per device and reason.
    await vi.waitFor(() => expect(own).toHaveLength(1))
    expect(JSON.parse(own[0]?.payload ?? '{}')).toMatchObject({
      topic: 'sensors/dev-b/temperature',
      reason: 'not_authorized',
      detail: "device dev-a may not publish on sensors/dev-b/temperature: another device's topic",
    })
    const denial = gw.logs.find(
      (l) => l.msg === 'publish rejected' && l.topic === 'sensors/dev-b/temperature',
    )
    expect(denial).toMatchObject({ level: 40, clientId: 'dev-a', deviceId: 'dev-a' })

    // b was never disturbed; a carries on on the same connection.
    await b.publishAsync('sensors/dev-b/temperature', '11', { qos: 1 })
    await a.publishAsync('sensors/dev-a/temperature', '21', { qos: 1 })
    expect(await stored('dev-b')).toEqual(['temperature=10', 'temperature=11'])
    expect(await stored('dev-a')).toEqual(['temperature=20', 'temperature=21'])
  })

  it('acknowledges and keeps a device that publishes on alerts/..., devices/+/status or elsewhere', async () => {
    const a = await connectAs('dev-a')
    for (const topic of ['alerts/critical/dev-a/fake', 'devices/dev-a/status', 'other/topic']) {
      await a.publishAsync(topic, '{"state":"firing"}', { qos: 1 })
      expect(a.connected).toBe(true)
    }
    await a.publishAsync('sensors/dev-a/humidity', '40', { qos: 1 })
    expect(await stored('dev-a')).toContain('humidity=40')
  })

  it("denies a device's subscription to another device (SUBACK 0x80) and to #, and keeps it connected", async () => {
    const a = await connectAs('dev-a')
    const filters = [
      'sensors/dev-b/#',
      '#',
      'sensors/+/temperature',
      'devices/dev-a/#',
      'gateway/deadletter/dev-a',
    ]
    expect(await subackCodes(a, filters)).toEqual([128, 128, 128, 1, 1])
    const seen = recordMessages(a)
    const b = await connectAs('dev-b')
    await b.publishAsync('sensors/dev-b/temperature', '12', { qos: 1 })
    // Still connected and served: its own publish goes through, and its own status arrives.
    expect(a.connected).toBe(true)
    await a.publishAsync('sensors/dev-a/temperature', '22', { qos: 1 })
    expect(await stored('dev-a')).toContain('temperature=22')
    expect(seen.filter((m) => m.topic.startsWith('sensors/dev-b'))).toEqual([])
  })

  it('gives an app with read-alerts the retained alerts and status, and nothing else', async () => {
    const a = await connectAs('dev-a')
    await a.publishAsync('sensors/dev-a/temperature', '25', { qos: 1 })
    await a.publishAsync('sensors/dev-a/temperature', '35', { qos: 1 })

    const app = await connectAs('alerts-app', { clientId: 'alerts-app-1' })
    const received = recordMessages(app)
    expect(await subackCodes(app, ['alerts/#', 'devices/+/status', 'sensors/#', '#'])).toEqual([
      1, 1, 128, 128,
    ])
    await vi.waitFor(() =>
      expect(received.find((m) => m.topic === 'alerts/major/dev-a/high-temperature')).toMatchObject(
        {
          retain: true,
        },
      ),
    )
    await vi.waitFor(() => expect(received.map((m) => m.topic)).toContain('devices/dev-a/status'))
    await a.publishAsync('sensors/dev-a/temperature', '20', { qos: 1 })
    await vi.waitFor(() =>
      expect(
        received
          .filter((m) => m.topic === 'alerts/major/dev-a/high-temperature')
          .map((m) => JSON.parse(m.payload).state),
      ).toEqual(['firing', 'resolved']),
    )
    expect(received.filter((m) => m.topic.startsWith('sensors/'))).toEqual([])

    // Read-only: an app that publishes is answered like a device out of bounds (acknowledged,
    // dead-lettered, nothing stored) and keeps its connection.
    await app.publishAsync('sensors/dev-a/temperature', '1', { qos: 1 })
    expect(app.connected).toBe(true)
    expect(await stored('dev-a')).not.toContain('temperature=1')
  })

  it('gives an app with read-readings the readings, and an admin everything but the gateway topics to publish', async () => {
    const readings = await connectAs('readings-app', { clientId: 'readings-app-1' })
    const got = recordMessages(readings)
    expect(await subackCodes(readings, 'sensors/#')).toEqual([1])
    expect(await subackCodes(readings, 'alerts/#')).toEqual([128])

    const admin = await connectAs('admin-app', { clientId: 'admin-console' })
    const adminGot = recordMessages(admin)
    expect(await subackCodes(admin, '#', 0)).toEqual([0])
    // An admin may publish readings for a device (a bridge, a backfill)...
    await admin.publishAsync('sensors/dev-b/co2', '700', { qos: 1 })
    await vi.waitFor(() => expect(got.map((m) => m.topic)).toContain('sensors/dev-b/co2'))
    expect(await stored('dev-b')).toContain('co2=700')
    // ... but not on the topics the gateway owns: acknowledged, not delivered, connection kept.
    await admin.publishAsync('alerts/critical/dev-b/fake', '{"fake":true}', { qos: 1 })
    await admin.publishAsync('sensors/dev-b/co2', '701', { qos: 1 })
    await vi.waitFor(() => expect(adminGot.map((m) => m.payload)).toContain('701'))
    expect(admin.connected).toBe(true)
    // Only its dead letter carries it, on the admin's own dead-letter topic.
    await vi.waitFor(() =>
      expect(adminGot.filter((m) => m.payload.includes('fake')).map((m) => m.topic)).toEqual([
        'gateway/deadletter/admin-app',
      ]),
    )
  })

  it("dead-letters a metric outside a device's allow-list and keeps the device connected", async () => {
    const admin = await connectAs('admin-app', { clientId: 'admin-dl' })
    const letters = recordMessages(admin)
    await admin.subscribeAsync('gateway/deadletter/#', { qos: 1 })
    const rejectedBefore = gw.gateway.stats().rejectedByReason.not_authorized ?? 0
    const m = await connectAs('dev-m')
    await m.publishAsync('sensors/dev-m/temperature', '21', { qos: 1 })
    await m.publishAsync('sensors/dev-m/humidity', '50', { qos: 1 })
    await m.publishAsync('sensors/dev-m', JSON.stringify({ temperature: 22, co2: 900 }), { qos: 1 })
    await m.publishAsync('sensors/dev-m', JSON.stringify({ temperature: 23 }), { qos: 1 })
    expect(m.connected).toBe(true)
    expect(await stored('dev-m')).toEqual(['temperature=21', 'temperature=23'])
    await vi.waitFor(() => expect(letters).toHaveLength(2))
    const [first, second] = letters.map((l) => JSON.parse(l.payload) as DeadLetter)
    expect(first).toMatchObject({ topic: 'sensors/dev-m/humidity', reason: 'not_authorized' })
    expect(first?.detail).toBe(
      'device dev-m may not publish metric humidity (allowed: temperature)',
    )
    expect(second).toMatchObject({ topic: 'sensors/dev-m', reason: 'not_authorized' })
    expect(gw.gateway.stats().rejectedByReason.not_authorized).toBe(rejectedBefore + 2)
  })

  describe('HTTP API', () => {
    it('answers 401 without a token or with a bad one, with a Bearer challenge', async () => {
      const none = await get('/api/alerts')
      expect(none.status).toBe(401)
      expect(none.headers.get('www-authenticate')).toBe('Bearer realm="sensor-gateway"')
      expect(await none.json()).toEqual({
        error: 'unauthorized',
        message:
          'this route needs an app token: Authorization: Bearer <appId>.<secret> (npm run app:add)',
        statusCode: 401,
      })
      expect((await get('/api/alerts', `alerts-app.${SECRETS['readings-app']}`)).status).toBe(401)
      expect((await get('/api/alerts', `nobody.${SECRETS['alerts-app']}`)).status).toBe(401)
      expect((await get('/api/alerts', 'garbage')).status).toBe(401)
      // A device's credentials are for MQTT: not an app token.
      expect((await get('/api/readings?device=dev-a', token('dev-a'))).status).toBe(401)
    })

    it('answers 403 for the wrong role and 200 for the right one', async () => {
      expect((await get('/api/alerts', token('readings-app'))).status).toBe(403)
      expect((await get('/api/rules', token('readings-app'))).status).toBe(403)
      expect((await get('/api/readings?device=dev-a', token('alerts-app'))).status).toBe(403)
      expect((await get('/api/devices', token('alerts-app'))).status).toBe(403)
      const forbidden = await get('/api/alerts', token('readings-app'))
      expect(await forbidden.json()).toMatchObject({
        error: 'forbidden',
        message: 'app "readings-app" lacks the role read-alerts that GET /api/alerts needs',
      })

      expect((await get('/api/alerts', token('alerts-app'))).status).toBe(200)
      expect((await get('/api/rules', token('alerts-app'))).status).toBe(200)
      expect((await get('/api/readings?device=dev-a', token('readings-app'))).status).toBe(200)
      expect(
        (
          await get(
            '/api/readings/aggregate?device=dev-a&metric=temperature',
            token('readings-app'),
          )
        ).status,
      ).toBe(200)
      expect((await get('/api/devices', token('readings-app'))).status).toBe(200)
      for (const route of ['/api/alerts', '/api/devices', '/api/readings?device=dev-a']) {
        expect((await get(route, token('admin-app'))).status).toBe(200)
      }
    })

    it('lets only an admin dry-run a rule', async () => {
      const body = JSON.stringify({
        rule: { id: 't', kind: 'threshold', match: { metric: 'temperature' }, above: 30 },
        readings: [{ deviceId: 'd', metric: 'temperature', value: 31, ts: 1_764_000_000_000 }],
      })
      const post = (app: Principal) =>
        fetch(`${gw.httpUrl}/api/rules/test`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token(app)}` },
          body,
        })
      expect((await post('alerts-app')).status).toBe(403)
      expect((await post('admin-app')).status).toBe(200)
    })

    it('keeps the dashboard, health, readiness and docs public, and /metrics open to this machine', async () => {
      for (const route of [
        '/',
        '/assets/app.js',
        '/healthz',
        '/readyz',
        '/docs/json',
        '/metrics',
      ]) {
        expect((await get(route)).status, route).toBe(200)
      }
      // Behind a proxy every client looks local: a forwarded request needs an admin token.
      expect((await get('/metrics', undefined, { 'x-forwarded-for': '203.0.113.9' })).status).toBe(
        401,
      )
      expect(
        (await get('/metrics', token('alerts-app'), { 'x-forwarded-for': '203.0.113.9' })).status,
      ).toBe(403)
      expect(
        (await get('/metrics', token('admin-app'), { 'x-forwarded-for': '203.0.113.9' })).status,
      ).toBe(200)
    })

    it('sends the security headers on every answer, no-store on API JSON, no stack traces', async () => {
      for (const [route, auth] of [
        ['/', undefined],
        ['/healthz', undefined],
        ['/api/alerts', undefined],
        ['/api/alerts', token('alerts-app')],
        ['/api/readings?device=dev-a&from=yesterday', token('readings-app')],
        ['/nothing-here', undefined],
      ] as const) {
        const res = await get(route, auth)
        expect(res.headers.get('x-content-type-options'), route).toBe('nosniff')
        expect(res.headers.get('x-frame-options'), route).toBe('DENY')
        expect(res.headers.get('referrer-policy'), route).toBe('no-referrer')
        expect(res.headers.get('content-security-policy'), route).toContain(
          "frame-ancestors 'none'",
        )
        const text = await res.text()
        expect(text, route).not.toMatch(/\bat .+:\d+:\d+|"stack"/)
        if (route.startsWith('/api'))
          expect(res.headers.get('cache-control'), route).toBe('no-store')
      }
      const bad = await get('/api/readings?device=dev-a&from=yesterday', token('readings-app'))
      expect(bad.status).toBe(400)
    })

    it('has CORS off by default', async () => {
      const res = await get('/api/alerts', token('alerts-app'), { origin: 'https://ops.example' })
      expect(res.status).toBe(200)
      expect(res.headers.get('access-control-allow-origin')).toBeNull()
      const preflight = await fetch(`${gw.httpUrl}/api/alerts`, {
        method: 'OPTIONS',
        headers: { origin: 'https://ops.example', 'access-control-request-method': 'GET' },
      })
      // Not answered as a preflight: an unknown route under /api, which needs a token first.
      expect(preflight.status).toBe(401)
      expect(preflight.headers.get('access-control-allow-origin')).toBeNull()
      expect(preflight.headers.get('access-control-allow-methods')).toBeNull()
    })
  })

  it('never writes a secret to the log', async () => {
    // Failed and successful logins, bad and good tokens have all been logged at debug by now.
    expect(
      await refusal(gw.mqttUrl, { clientId: 'x', username: 'dev-a', password: 'typo-secret' }),
    ).toBe(4)
    expect(
      gw.logs.find((l) => l.msg === 'MQTT connection refused: bad username or password'),
    ).toMatchObject({ username: 'dev-a' })
    const text = JSON.stringify(gw.logs)
    for (const secret of [...Object.values(SECRETS), 'typo-secret'])
      expect(text).not.toContain(secret)
    expect(text).not.toMatch(/scrypt\$/)
  })
})

describe('security: CORS for configured origins', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startTestGateway({ CORS_ORIGINS: 'https://ops.example.com, http://localhost:3000' })
  })
  afterAll(async () => {
    await gw.cleanup()
  })

  it('answers a preflight and adds Allow-Origin for an allowed origin only', async () => {
    const preflight = await fetch(`${gw.httpUrl}/api/alerts`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://ops.example.com',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization',
      },
    })
    expect(preflight.status).toBe(204)
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://ops.example.com')
    expect(preflight.headers.get('access-control-allow-headers')).toContain('Authorization')
    expect(preflight.headers.get('vary')).toContain('Origin')

    const allowed = await fetch(`${gw.httpUrl}/api/alerts`, {
      headers: { origin: 'http://localhost:3000' },
    })
    expect(allowed.status).toBe(200)
    expect(allowed.headers.get('access-control-allow-origin')).toBe('http://localhost:3000')

    const other = await fetch(`${gw.httpUrl}/api/alerts`, {
      headers: { origin: 'https://evil.example' },
    })
    expect(other.headers.get('access-control-allow-origin')).toBeNull()
    const otherPreflight = await fetch(`${gw.httpUrl}/api/alerts`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' },
    })
    expect(otherPreflight.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('refuses what only a tricked browser sends: a foreign Host, a WebSocket from another origin', async () => {
    const { port } = gw.gateway.addresses().http
    const status = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port, path: '/api/alerts', headers: { host } },
          (res) => {
            res.resume()
            resolve(res.statusCode ?? 0)
          },
        )
        req.on('error', reject)
        req.end()
      })
    expect(await status(`127.0.0.1:${port}`)).toBe(200)
    expect(await status(`localhost:${port}`)).toBe(200)
    // DNS rebinding: a page of evil.example whose name now points at 127.0.0.1.
    expect(await status(`evil.example:${port}`)).toBe(403)

    const upgrade = (origin?: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, ['mqtt'], origin ? { origin } : {})
        ws.on('open', () => {
          ws.terminate()
          resolve(101)
        })
        ws.on('unexpected-response', (_req, res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        ws.on('error', () => {})
      })
    expect(await upgrade()).toBe(101) // MQTT.js in Node, mosquitto: no Origin
    expect(await upgrade(`http://127.0.0.1:${port}`)).toBe(101) // the dashboard itself
    expect(await upgrade('http://localhost:3000')).toBe(101) // in CORS_ORIGINS
    expect(await upgrade('https://evil.example')).toBe(403) // cross-site WebSocket hijacking
    expect(gw.logs.find((l) => l.msg === 'MQTT WebSocket upgrade refused')).toMatchObject({
      origin: 'https://evil.example',
    })
  })

  it('without credentials on loopback everything stays open, as before', async () => {
    expect((await fetch(`${gw.httpUrl}/api/alerts`)).status).toBe(200)
    const device = await connectClient(gw.mqttUrl, { clientId: 'anon-dev' })
    await device.publishAsync('sensors/anon-dev/temperature', '20', { qos: 1 })
    await device.endAsync(true)
    expect(gw.logs.find((l) => l.msg === 'anonymous clients allowed: loopback only')).toMatchObject(
      {
        level: 30,
        mode: 'anonymous-loopback',
      },
    )
  })
})

/** An address of this machine that is not loopback (traffic to it stays on the machine). */
const ownAddress = Object.values(networkInterfaces())
  .flat()
  .find((a) => a !== undefined && !a.internal && a.family === 'IPv4')?.address

describe.skipIf(ownAddress === undefined)(`security: off loopback (${ownAddress})`, () => {
  it('needs a token for the API when listening on a non-loopback address with credentials', async () => {
    const dir = await createTempDir('gw-security-public-')
    const file = path.join(dir.path, 'devices.yaml')
    await writeRegistry(file)
    const gw = await startTestGateway({ DEVICES_FILE: file, HTTP_HOST: ownAddress as string })
    try {
      const { address, port } = gw.gateway.addresses().http
      expect(address).toBe(ownAddress)
      const url = `http://${address}:${port}/api/alerts`
      expect((await fetch(url)).status).toBe(401)
      expect(
        (
          await fetch(url, {
            headers: { authorization: `Bearer alerts-app.${SECRETS['alerts-app']}` },
          })
        ).status,
      ).toBe(200)
    } finally {
      await gw.cleanup()
      await dir.remove()
    }
  })

  it('refuses to start there without credentials', async () => {
    const dir = await createTempDir('gw-security-public-')
    try {
      const err = await startTestGateway({
        DEVICES_FILE: path.join(dir.path, 'none.yaml'),
        HTTP_HOST: ownAddress as string,
        DATA_DIR: dir.path,
      }).catch((e: unknown) => e as Error)
      expect(err).toBeInstanceOf(Error)
      expect((err as Error).message).toContain(
        `HTTP_HOST=${ownAddress}: refusing to listen beyond loopback`,
      )
    } finally {
      await dir.remove()
    }
  })
})

describe('security: safe defaults, as a real process (npm start)', () => {
  const BASE_ENV = { LOG_PRETTY: 'false', LOG_LEVEL: 'info', MQTT_PORT: '0', HTTP_PORT: '0' }
  let dir: TempDir
  let proc: RunningProcess | null = null
  beforeAll(async () => {
    dir = await createTempDir('gw-security-proc-')
  })
  afterEach(async () => {
    if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.signal('SIGTERM')
      await proc.exited
    }
    proc = null
  })
  afterAll(async () => {
    await dir.remove()
  })

  const emptyRegistry = () => path.join(dir.path, 'empty.yaml')

  it('refuses to start on 0.0.0.0 without credentials: exit 1, naming the variable and the fix', async () => {
    const result = await runToEnd('npm', ['start', '--silent'], {
      ...BASE_ENV,
      MQTT_HOST: '0.0.0.0',
      DEVICES_FILE: emptyRegistry(),
      DATA_DIR: path.join(dir.path, 'refused'),
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(
      'GW_ERR_CONFIG: MQTT_HOST=0.0.0.0: refusing to listen beyond loopback',
    )
    expect(result.stderr).toContain(
      'configure device credentials (npm run device:add) or set ALLOW_ANONYMOUS_PUBLIC=true',
    )
  })

  const startAndWait = async (env: Record<string, string>) => {
    proc = startProcess('npm', ['start', '--silent'], { ...BASE_ENV, ...env })
    const running = proc
    await vi.waitFor(
      () =>
        expect(
          running.logLines().some((l) => String(l.msg).startsWith('HTTP listening')),
          running.stderr(),
        ).toBe(true),
      { timeout: 20_000, interval: 50 },
    )
    return running
  }

  it('starts on 0.0.0.0 with ALLOW_ANONYMOUS_PUBLIC=true, warning loudly', async () => {
    const running = await startAndWait({
      MQTT_HOST: '0.0.0.0',
      ALLOW_ANONYMOUS_PUBLIC: 'true',
      DEVICES_FILE: emptyRegistry(),
      DATA_DIR: path.join(dir.path, 'public'),
    })
    const warn = running.logLines().find((l) => l.mode === 'anonymous-public')
    expect(warn).toMatchObject({ level: 40 })
    expect(String(warn?.msg)).toContain('ALLOW_ANONYMOUS_PUBLIC=true')
    running.signal('SIGTERM')
    expect(await running.exited).toBe(0)
  })

  it('starts on 0.0.0.0 with credentials, requiring authentication', async () => {
    const file = path.join(dir.path, 'devices.yaml')
    await writeRegistry(file)
    const running = await startAndWait({
      MQTT_HOST: '0.0.0.0',
      DEVICES_FILE: file,
      DATA_DIR: path.join(dir.path, 'auth'),
    })
    const line = running.logLines().find((l) => l.mode === 'authentication-required')
    expect(line).toMatchObject({ level: 30, msg: 'authentication required' })
    const port = running.logLines().find((l) => String(l.msg).startsWith('MQTT listening'))?.port
    expect(await refusal(`mqtt://127.0.0.1:${port}`, { clientId: 'anon' })).toBe(5)
    running.signal('SIGTERM')
    expect(await running.exited).toBe(0)
  })
})

describe('security: the simulator against an authenticated gateway', () => {
  it('runs with the credentials device:add --fleet wrote for it; without them it is refused', async () => {
    const dir = await createTempDir('gw-security-sim-')
    const registry = path.join(dir.path, 'devices.yaml')
    const fleet = path.join(dir.path, 'fleet.yaml')
    const secrets = path.join(dir.path, 'fleet-secrets.yaml')
    await writeFile(fleet, 'devices: 3\nprefix: auth\ninterval: 50ms\nform: mixed\nqos: 1\n')
    const provisioned = await runToEnd(
      'npm',
      [
        'run',
        '--silent',
        'device:add',
        '--',
        '--fleet',
        fleet,
        '--secrets-out',
        secrets,
        '--file',
        registry,
      ],
      {},
      30_000,
    )
    expect(provisioned.code, provisioned.stderr).toBe(0)
    const gw = await startTestGateway({ DEVICES_FILE: registry })
    try {
      // node itself, not npm: npm would pass the test's SIGTERM on as a second one.
      const args = [
        '--import',
        'tsx',
        'devices/simulator.ts',
        '--fleet',
        fleet,
        '--url',
        gw.mqttUrl,
      ]
      const env = { LOG_LEVEL: 'warn', LOG_PRETTY: 'false' }
      const sim = startProcess('node', [...args, '--credentials', secrets], env)
      try {
        // Every device logs in with its own secret and gets its readings stored.
        await vi.waitFor(
          async () => {
            for (const id of ['auth-001', 'auth-002', 'auth-003']) {
              expect((await allReadings(gw.gateway.store, id)).length, id).toBeGreaterThan(0)
            }
          },
          { timeout: 20_000, interval: 100 },
        )
      } finally {
        sim.signal('SIGTERM')
      }
      expect(await sim.exited).toBe(0)
      const run = { stdout: sim.stdout(), stderr: sim.stderr() }
      expect(run.stdout).not.toContain('device cannot connect')
      // No secret of the fleet reaches the simulator's output or the gateway's log.
      const written = Object.values(
        parseYaml(await readFile(secrets, 'utf8')) as Record<string, string>,
      )
      expect(written).toHaveLength(3)
      for (const secret of written) {
        expect(run.stdout + run.stderr).not.toContain(secret)
        expect(JSON.stringify(gw.logs)).not.toContain(secret)
      }

      // Without them every device is refused (CONNACK 5) and keeps retrying.
      const anonymous = startProcess('node', args, env)
      try {
        await vi.waitFor(
          () => expect(anonymous.stdout()).toContain('device cannot connect, retrying'),
          { timeout: 20_000, interval: 100 },
        )
      } finally {
        anonymous.signal('SIGTERM')
      }
      expect(await anonymous.exited).toBe(0)
    } finally {
      await gw.cleanup()
      await dir.remove()
    }
  })
})
