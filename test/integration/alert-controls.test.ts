import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import type { Alert } from '../../src/contract/types.ts'
import { generateSecret, hashSecret } from '../../src/security/credentials.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { type GatewayChild, startGatewayChild } from '../helpers/gateway-child.ts'
import { connectClient, endAll, type ReceivedMessage, recordMessages } from '../helpers/mqtt.ts'
import { runToEnd } from '../helpers/processes.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/**
 * Acknowledge and silence (issue 15, point 4) end to end: a real gateway in-process, real HTTP,
 * MQTT.js and mosquitto_sub subscribers, the SQLite file in DATA_DIR across a restart. A reading
 * over the shipped `high-temperature` threshold (above 30, severity major) fires an alert.
 */

const WAIT = { timeout: 10_000, interval: 50 }
const RULE = 'high-temperature'
const topicOf = (deviceId: string) => `alerts/major/${deviceId}/${RULE}`
const ackUrl = (httpUrl: string, deviceId: string) =>
  `${httpUrl}/api/alerts/${encodeURIComponent(`${RULE}:${deviceId}`)}/ack`

interface AlertJson extends Alert {
  time: string
}
interface SilenceJson {
  id: string
  state: string
  matchers: Record<string, unknown>
  startsAt: number
  endsAt: number
  comment: string
  createdBy: string
}

const post = (url: string, body: unknown, token?: string) =>
  fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  })
const get = (url: string, token?: string) =>
  fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {})
const del = (url: string, token?: string) =>
  fetch(url, {
    method: 'DELETE',
    ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
  })

async function firingAlert(httpUrl: string, deviceId: string, token?: string) {
  const res = await get(`${httpUrl}/api/alerts?state=firing&device=${deviceId}`, token)
  expect(res.status).toBe(200)
  return ((await res.json()) as { alerts: AlertJson[] }).alerts[0]
}

const alertsOn = (messages: ReceivedMessage[], deviceId: string) =>
  messages.filter((m) => m.topic === topicOf(deviceId)).map((m) => JSON.parse(m.payload) as Alert)

describe('acknowledge and silence (anonymous on loopback)', () => {
  let dir: TempDir
  let gw: TestGateway
  const clients = new Set<MqttClient>()
  const connect = async (clientId: string) => {
    const client = await connectClient(gw.mqttUrl, { clientId })
    clients.add(client)
    return client
  }
  const publish = async (deviceId: string, value: number) => {
    const client = await connect(`${deviceId}-${clients.size}`)
    await client.publishAsync(`sensors/${deviceId}/temperature`, String(value), { qos: 1 })
  }
  /** The retained alert a new MQTT.js subscriber gets first. */
  const retained = async (deviceId: string): Promise<Alert> => {
    const client = await connect(`peek-${deviceId}-${clients.size}`)
    const messages = recordMessages(client)
    await client.subscribeAsync(topicOf(deviceId), { qos: 1 })
    await vi.waitFor(() => expect(messages.length).toBeGreaterThan(0), WAIT)
    expect(messages[0]?.retain).toBe(true)
    return JSON.parse(messages[0]?.payload ?? '') as Alert
  }
  const mosquittoRetained = async (deviceId: string): Promise<Alert> => {
    const port = new URL(gw.mqttUrl).port
    const { code, stdout, stderr } = await runToEnd('mosquitto_sub', [
      ...['-h', '127.0.0.1', '-p', port, '-i', `mosq-${deviceId}`, '-q', '1'],
      ...['-t', topicOf(deviceId), '-C', '1', '-W', '5'],
    ])
    expect(code, stderr).toBe(0)
    return JSON.parse(stdout.trim()) as Alert
  }
  const fire = async (deviceId: string) => {
    await publish(deviceId, 35)
    await vi.waitFor(
      async () => expect(await firingAlert(gw.httpUrl, deviceId)).toBeDefined(),
      WAIT,
    )
    return (await firingAlert(gw.httpUrl, deviceId)) as AlertJson
  }

  beforeAll(async () => {
    dir = await createTempDir('gw-alert-controls-')
    gw = await startTestGateway({ DATA_DIR: dir.path })
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
  })
  afterAll(async () => {
    await gw.stop()
    await dir.remove()
  })

  it('ack: 200, by loopback; the retained MQTT alert (MQTT.js, mosquitto_sub) and GET /api/alerts carry it', async () => {
    const before = await fire('dev-ack-1')
    expect(before.acknowledged).toBeUndefined()
    const watcher = await connect('watch-ack-1')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync(topicOf('dev-ack-1'), { qos: 1 })
    await vi.waitFor(() => expect(alertsOn(seen, 'dev-ack-1')).toHaveLength(1), WAIT)

    const res = await post(ackUrl(gw.httpUrl, 'dev-ack-1'), { comment: 'fan replaced' })
    expect(res.status).toBe(200)
    const { alert } = (await res.json()) as { alert: AlertJson }
    expect(alert).toMatchObject({ id: before.id, state: 'firing', ts: before.ts })
    expect(alert.acknowledged).toEqual({
      by: 'loopback',
      at: expect.any(Number),
      comment: 'fan replaced',
    })
    const ack = alert.acknowledged

    // The subscriber already there gets the alert again, same state and ts, now acknowledged.
    await vi.waitFor(() => expect(alertsOn(seen, 'dev-ack-1')).toHaveLength(2), WAIT)
    const republished = alertsOn(seen, 'dev-ack-1')[1]
    expect(republished).toMatchObject({ state: 'firing', ts: before.ts, since: before.since })
    expect(republished?.acknowledged).toEqual(ack)
    // A subscriber that comes later gets it retained.
    expect((await retained('dev-ack-1')).acknowledged).toEqual(ack)
    expect((await mosquittoRetained('dev-ack-1')).acknowledged).toEqual(ack)
    // The API: the current firing alert, and its firing transition in the history.
    expect((await firingAlert(gw.httpUrl, 'dev-ack-1'))?.acknowledged).toEqual(ack)
    const history = (await (await get(`${gw.httpUrl}/api/alerts?device=dev-ack-1`)).json()) as {
      alerts: AlertJson[]
    }
    expect(history.alerts.map((a) => a.acknowledged)).toEqual([ack])
  })

  it('refuses: 404 unknown alert, 400 naming the id or body field, 409 once resolved; a resolve ends the ack', async () => {
    const missing = await post(ackUrl(gw.httpUrl, 'nobody'), {})
    expect(missing.status).toBe(404)
    expect(await missing.json()).toMatchObject({ error: 'not_found' })
    const badId = await post(`${gw.httpUrl}/api/alerts/just-a-device/ack`, {})
    expect(badId.status).toBe(400)
    expect(((await badId.json()) as { message: string }).message).toContain('"id"')

    await fire('dev-ack-2')
    const badBody = await post(ackUrl(gw.httpUrl, 'dev-ack-2'), { comment: 42 })
    expect(badBody.status).toBe(400)
    expect(((await badBody.json()) as { message: string }).message).toContain('"comment"')
    const unknownField = await post(ackUrl(gw.httpUrl, 'dev-ack-2'), { note: 'x' })
    expect(unknownField.status).toBe(400)
    expect(((await unknownField.json()) as { message: string }).message).toContain('"note"')
    // No body at all is an ack without a comment.
    const bare = await fetch(ackUrl(gw.httpUrl, 'dev-ack-2'), { method: 'POST' })
    expect(bare.status).toBe(200)
    expect(((await bare.json()) as { alert: AlertJson }).alert.acknowledged).toEqual({
      by: 'loopback',
      at: expect.any(Number),
    })

    // Back under the threshold (hysteresis 1: 29 or less): resolved, and the ack is over.
    await publish('dev-ack-2', 20)
    await vi.waitFor(
      async () => expect(await firingAlert(gw.httpUrl, 'dev-ack-2')).toBeUndefined(),
      WAIT,
    )
    const resolvedNow = await retained('dev-ack-2')
    expect(resolvedNow.state).toBe('resolved')
    expect(resolvedNow).not.toHaveProperty('acknowledged')
    const late = await post(ackUrl(gw.httpUrl, 'dev-ack-2'), {})
    expect(late.status).toBe(409)
    expect(await late.json()).toMatchObject({
      error: 'conflict',
      message: expect.stringContaining('resolved'),
    })
    // A new firing starts unacknowledged.
    const again = await fire('dev-ack-2')
    expect(again.acknowledged).toBeUndefined()
    const retainedAgain = await retained('dev-ack-2')
    expect(retainedAgain).toMatchObject({ state: 'firing', since: again.since })
    expect(retainedAgain).not.toHaveProperty('acknowledged')
  })

  it('silences: 201, listed by state, expired by DELETE; 400s name the field; a silenced alert is still published', async () => {
    const created = await post(`${gw.httpUrl}/api/silences`, {
      matchers: { device: 'dev-sil-*', rule: [RULE] },
      duration: '1h',
      comment: 'greenhouse maintenance',
    })
    expect(created.status).toBe(201)
    const { silence } = (await created.json()) as { silence: SilenceJson }
    expect(silence).toMatchObject({
      id: expect.any(String),
      state: 'active',
      createdBy: 'loopback',
      comment: 'greenhouse maintenance',
      matchers: { device: ['dev-sil-*'], rule: [RULE], severity: null, metric: null, tags: null },
    })
    expect(silence.endsAt - silence.startsAt).toBe(3_600_000)
    const pending = (await (
      await post(`${gw.httpUrl}/api/silences`, {
        matchers: { severity: ['critical'] },
        startsAt: new Date(Date.now() + 3_600_000).toISOString(),
        endsAt: Date.now() + 7_200_000,
        comment: 'tonight',
      })
    ).json()) as { silence: SilenceJson }
    expect(pending.silence.state).toBe('pending')

    const list = async (query = '') => {
      const res = await get(`${gw.httpUrl}/api/silences${query}`)
      expect(res.status).toBe(200)
      return ((await res.json()) as { silences: SilenceJson[] }).silences.map((s) => s.id)
    }
    expect(await list('?state=active')).toContain(silence.id)
    expect(await list('?state=active')).not.toContain(pending.silence.id)
    expect(await list('?state=pending')).toEqual([pending.silence.id])

    // Silenced: not notified (the outbox asks), but recorded and published as always.
    const alert = await fire('dev-sil-1')
    expect((await retained('dev-sil-1')).ts).toBe(alert.ts)

    const expired = await del(`${gw.httpUrl}/api/silences/${pending.silence.id}`)
    expect(expired.status).toBe(200)
    expect(((await expired.json()) as { silence: SilenceJson }).silence.state).toBe('expired')
    expect(await list('?state=expired')).toEqual([pending.silence.id])
    expect(await list('?state=pending')).toEqual([])
    expect((await del(`${gw.httpUrl}/api/silences/no-such-silence`)).status).toBe(404)

    const bad = async (body: unknown, field: string) => {
      const res = await post(`${gw.httpUrl}/api/silences`, body)
      expect(res.status).toBe(400)
      expect(((await res.json()) as { message: string }).message).toContain(field)
    }
    await bad({ duration: '1h', comment: 'c' }, '"matchers"')
    await bad({ matchers: { device: 'a b' }, duration: '1h', comment: 'c' }, '"matchers.device"')
    await bad(
      { matchers: { severity: 'huge' }, duration: '1h', comment: 'c' },
      '"matchers.severity"',
    )
    await bad({ matchers: { device: 'x' }, comment: 'c' }, '"endsAt"')
    await bad({ matchers: { device: 'x' }, endsAt: '-1h', comment: 'c' }, '"endsAt"')
    await bad({ matchers: { device: 'x' }, duration: 'a while', comment: 'c' }, '"duration"')
    await bad({ matchers: { device: 'x' }, duration: '1h' }, '"comment"')
    await bad([1, 2], 'request body')
    const badQuery = await get(`${gw.httpUrl}/api/silences?state=asleep`)
    expect(badQuery.status).toBe(400)
    expect(((await badQuery.json()) as { message: string }).message).toContain('"state"')
  })

  it('a restart on the same DATA_DIR keeps the ack (retained alert rebuilt at start, API) and the silences', async () => {
    await fire('dev-ack-3')
    const res = await post(ackUrl(gw.httpUrl, 'dev-ack-3'), { comment: 'known' })
    const ack = ((await res.json()) as { alert: AlertJson }).alert.acknowledged
    expect(ack).toMatchObject({ by: 'loopback', comment: 'known' })
    const silences = (
      (await (await get(`${gw.httpUrl}/api/silences`)).json()) as {
        silences: SilenceJson[]
      }
    ).silences
    expect(silences.length).toBeGreaterThan(0)

    await gw.stop()
    gw = await startTestGateway({ DATA_DIR: dir.path })

    expect((await firingAlert(gw.httpUrl, 'dev-ack-3'))?.acknowledged).toEqual(ack)
    expect((await retained('dev-ack-3')).acknowledged).toEqual(ack)
    expect((await mosquittoRetained('dev-ack-3')).acknowledged).toEqual(ack)
    // The alert resolved before the restart stays unacknowledged.
    expect((await firingAlert(gw.httpUrl, 'dev-ack-2'))?.acknowledged).toBeUndefined()
    const after = (
      (await (await get(`${gw.httpUrl}/api/silences`)).json()) as {
        silences: SilenceJson[]
      }
    ).silences
    expect(after).toEqual(silences)
  })
})

describe('acknowledge and silence with credentials: the write-alerts role', () => {
  const SECRETS = {
    'dev-x': generateSecret(),
    'reader-app': generateSecret(),
    'ops-app': generateSecret(),
    'admin-app': generateSecret(),
  } as const
  const token = (app: keyof typeof SECRETS) => `${app}.${SECRETS[app]}`
  let dir: TempDir
  let gw: TestGateway
  let device: MqttClient | null = null

  beforeAll(async () => {
    dir = await createTempDir('gw-alert-controls-auth-')
    const file = path.join(dir.path, 'devices.yaml')
    await writeFile(
      file,
      [
        'devices:',
        '  - id: dev-x',
        `    secret: ${await hashSecret(SECRETS['dev-x'])}`,
        'apps:',
        '  - id: reader-app',
        `    secret: ${await hashSecret(SECRETS['reader-app'])}`,
        '    roles: [read-alerts]',
        '  - id: ops-app',
        `    secret: ${await hashSecret(SECRETS['ops-app'])}`,
        '    roles: [write-alerts]',
        '  - id: admin-app',
        `    secret: ${await hashSecret(SECRETS['admin-app'])}`,
        '    roles: [admin]',
        '',
      ].join('\n'),
    )
    gw = await startTestGateway({ DEVICES_FILE: file, DATA_DIR: path.join(dir.path, 'data') })
    device = await connectClient(gw.mqttUrl, {
      clientId: 'dev-x',
      username: 'dev-x',
      password: SECRETS['dev-x'],
    })
    await device.publishAsync('sensors/dev-x/temperature', '35', { qos: 1 })
    await vi.waitFor(
      async () => expect(await firingAlert(gw.httpUrl, 'dev-x', token('reader-app'))).toBeDefined(),
      WAIT,
    )
  })
  afterAll(async () => {
    await device?.endAsync(true)
    await gw.stop()
    await dir.remove()
  })

  const silenceBody = { matchers: { device: 'dev-x' }, duration: '10m', comment: 'test' }

  it('a read-alerts app gets 403 naming write-alerts; no token 401; reading silences is fine', async () => {
    const ack = await post(ackUrl(gw.httpUrl, 'dev-x'), {}, token('reader-app'))
    expect(ack.status).toBe(403)
    expect(((await ack.json()) as { message: string }).message).toContain('write-alerts')
    expect(
      (await post(`${gw.httpUrl}/api/silences`, silenceBody, token('reader-app'))).status,
    ).toBe(403)
    expect((await del(`${gw.httpUrl}/api/silences/x`, token('reader-app'))).status).toBe(403)
    expect((await post(ackUrl(gw.httpUrl, 'dev-x'), {})).status).toBe(401)
    expect((await get(`${gw.httpUrl}/api/silences`, token('reader-app'))).status).toBe(200)
    expect(
      (await firingAlert(gw.httpUrl, 'dev-x', token('reader-app')))?.acknowledged,
    ).toBeUndefined()
  })

  it('a write-alerts app acknowledges (by = its id), sets and expires silences, and reads alerts', async () => {
    const ack = await post(ackUrl(gw.httpUrl, 'dev-x'), { comment: 'mine' }, token('ops-app'))
    expect(ack.status).toBe(200)
    expect(((await ack.json()) as { alert: AlertJson }).alert.acknowledged).toMatchObject({
      by: 'ops-app',
      comment: 'mine',
    })
    expect((await firingAlert(gw.httpUrl, 'dev-x', token('ops-app')))?.acknowledged?.by).toBe(
      'ops-app',
    )
    const created = await post(`${gw.httpUrl}/api/silences`, silenceBody, token('ops-app'))
    expect(created.status).toBe(201)
    const { silence } = (await created.json()) as { silence: SilenceJson }
    expect(silence.createdBy).toBe('ops-app')
    const expired = await del(`${gw.httpUrl}/api/silences/${silence.id}`, token('ops-app'))
    expect(expired.status).toBe(200)
    // admin may too.
    const byAdmin = await post(ackUrl(gw.httpUrl, 'dev-x'), {}, token('admin-app'))
    expect(byAdmin.status).toBe(200)
    expect(((await byAdmin.json()) as { alert: AlertJson }).alert.acknowledged?.by).toBe(
      'admin-app',
    )
  })
})

describe('acknowledge and silence across kill -9 (the gateway as a child process)', () => {
  let child: GatewayChild | null = null
  let dir: TempDir | null = null
  afterAll(async () => {
    child?.kill()
    await child?.exited
    await dir?.remove()
  })

  it('an acknowledgement and a silence written before SIGKILL are there after the restart', async () => {
    dir = await createTempDir('gw-alert-controls-kill-')
    const env = { DATA_DIR: path.join(dir.path, 'data') }
    child = await startGatewayChild({ env })
    const device = await connectClient(child.mqttUrl, { clientId: 'dev-kill' })
    await device.publishAsync('sensors/dev-kill/temperature', '35', { qos: 1 })
    await device.endAsync()
    const running = child
    await vi.waitFor(
      async () => expect(await firingAlert(running.httpUrl, 'dev-kill')).toBeDefined(),
      WAIT,
    )
    const acked = await post(ackUrl(child.httpUrl, 'dev-kill'), { comment: 'before the crash' })
    expect(acked.status).toBe(200)
    const ack = ((await acked.json()) as { alert: AlertJson }).alert.acknowledged
    const created = await post(`${child.httpUrl}/api/silences`, {
      matchers: { device: 'dev-kill' },
      duration: '1h',
      comment: 'before the crash',
    })
    expect(created.status).toBe(201)
    const { silence } = (await created.json()) as { silence: SilenceJson }

    child.kill()
    expect(await child.exited).toBe('SIGKILL')
    child = await startGatewayChild({ env })

    expect((await firingAlert(child.httpUrl, 'dev-kill'))?.acknowledged).toEqual(ack)
    const { code, stdout, stderr } = await runToEnd('mosquitto_sub', [
      ...['-h', '127.0.0.1', '-p', new URL(child.mqttUrl).port, '-i', 'mosq-kill'],
      ...['-t', topicOf('dev-kill'), '-C', '1', '-W', '5'],
    ])
    expect(code, stderr).toBe(0)
    expect((JSON.parse(stdout.trim()) as Alert).acknowledged).toEqual(ack)
    const active = (await (await get(`${child.httpUrl}/api/silences?state=active`)).json()) as {
      silences: SilenceJson[]
    }
    expect(active.silences.map((s) => s.id)).toEqual([silence.id])
    expect(await child.stop()).toBe(0)
  }, 60_000)
})
