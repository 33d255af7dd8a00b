import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningRedis, startRedis } from '../../scripts/redis-server.ts'
import type { SilenceJson } from '../../src/http/routes/alert-controls.ts'
import { type GatewayChild, startGatewayChild } from '../helpers/gateway-child.ts'
import { connectClient, endAll } from '../helpers/mqtt.ts'
import {
  type Delivery,
  notificationsYaml,
  type Receiver,
  startReceiver,
} from '../helpers/scale-out-notifications.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/**
 * Acknowledgements and silences with several gateway instances on one Redis (README, Scale-out:
 * acknowledgements and silences): real child processes, a real redis-server, MQTT.js devices and
 * one real node:http webhook receiver. What one instance's API takes holds on the others.
 */

const WAIT = { timeout: 30_000, interval: 50 }

async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  return JSON.parse(text) as T
}

const post = (url: string, body: unknown) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })

async function silencesOf(gw: GatewayChild): Promise<SilenceJson[]> {
  return (await json<{ silences: SilenceJson[] }>(await fetch(`${gw.httpUrl}/api/silences`), 200))
    .silences
}

describe('acknowledgements and silences shared by instances on Redis', () => {
  let redis: RunningRedis
  let dir: TempDir
  let receiver: Receiver
  const gateways: GatewayChild[] = []
  const clients = new Set<MqttClient>()

  beforeAll(async () => {
    ;[redis, dir, receiver] = await Promise.all([
      startRedis(),
      createTempDir('controls-scale-'),
      startReceiver(),
    ])
  }, 30_000)

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await Promise.all(
      gateways.splice(0).map(async (gw) => {
        await gw.stop(20_000)
        await gw.removeDataDir()
      }),
    )
    receiver.deliveries.length = 0
    await redis.halt()
    await redis.restart()
  }, 60_000)

  afterAll(async () => {
    await receiver?.down()
    await Promise.all([redis?.stop(), dir?.remove()])
  })

  async function startInstance(name: string, repeat: string): Promise<GatewayChild> {
    const file = path.join(dir.path, `notifications-${repeat}.yaml`)
    await writeFile(file, notificationsYaml(`http://127.0.0.1:${receiver.port}/hook`, repeat))
    const gw = await startGatewayChild({
      env: {
        REDIS_URL: redis.url,
        INSTANCE_ID: name,
        CLUSTER_LEASE_TTL: '2s',
        NOTIFICATIONS_FILE: file,
      },
    })
    gateways.push(gw)
    return gw
  }

  async function device(gw: GatewayChild, deviceId: string): Promise<MqttClient> {
    const client = await connectClient(gw.mqttUrl, { clientId: deviceId })
    clients.add(client)
    return client
  }

  const publish = (client: MqttClient, deviceId: string, value: number) =>
    client.publishAsync(`sensors/${deviceId}/temperature`, String(value), { qos: 1 })

  /** Alerts published on MQTT, as a subscriber of `alerts/#` on `gw` sees them. */
  async function alertsSeen(gw: GatewayChild) {
    const seen: Array<{ deviceId: string; state: string; acknowledged?: { by: string } }> = []
    const sub = await connectClient(gw.mqttUrl, { clientId: `watch-${gw.pid}` })
    clients.add(sub)
    sub.on('message', (_topic, payload) => seen.push(JSON.parse(payload.toString())))
    await sub.subscribeAsync('alerts/#', { qos: 1 })
    return seen
  }

  const deliveriesOf = (deviceId: string, kind: string): Delivery[] =>
    receiver.deliveries.filter((d) => d.kind === kind && d.alerts[0]?.deviceId === deviceId)

  it('a silence created on one instance stops the notifications of another, is listed everywhere (a later instance too), and expired on any ends everywhere', async () => {
    const [a, b] = await Promise.all([startInstance('gw-a', '0'), startInstance('gw-b', '0')])
    if (!a || !b) throw new Error('instances missing')
    // The announcements between instances reach no client, even one that asks for them.
    const snooped: string[] = []
    const snoop = await connectClient(b.mqttUrl, { clientId: 'snoop' })
    clients.add(snoop)
    snoop.on('message', (topic) => snooped.push(topic))
    await snoop.subscribeAsync(['$gateway/#', '#'], { qos: 0 })
    const created = await json<{ silence: SilenceJson }>(
      await post(`${a.httpUrl}/api/silences`, {
        matchers: { device: 'dev-x' },
        duration: '1h',
        comment: 'pump swap',
      }),
      201,
    )
    const id = created.silence.id
    await vi.waitFor(async () => {
      expect((await silencesOf(b)).map((s) => [s.id, s.state])).toEqual([[id, 'active']])
    }, WAIT)

    // X on B: its alert is published on MQTT, but not notified; Y, unsilenced, after it is.
    const seen = await alertsSeen(a)
    const x = await device(b, 'dev-x')
    const y = await device(b, 'dev-y')
    await publish(x, 'dev-x', 35)
    await vi.waitFor(
      () =>
        expect(seen.filter((s) => s.deviceId === 'dev-x' && s.state === 'firing')).toHaveLength(1),
      WAIT,
    )
    await publish(y, 'dev-y', 35)
    await vi.waitFor(() => expect(deliveriesOf('dev-y', 'firing')).toHaveLength(1), WAIT)
    expect(deliveriesOf('dev-x', 'firing')).toEqual([])

    // An instance started now knows the silence.
    const c = await startInstance('gw-c', '0')
    expect((await silencesOf(c)).map((s) => [s.id, s.state])).toEqual([[id, 'active']])

    // Expired on B: A and C list it expired, and X's next firing on B is notified.
    const expired = await json<{ silence: SilenceJson }>(
      await fetch(`${b.httpUrl}/api/silences/${id}`, { method: 'DELETE' }),
      200,
    )
    expect(expired.silence.state).toBe('expired')
    for (const gw of [a, c]) {
      await vi.waitFor(async () => {
        expect((await silencesOf(gw)).map((s) => [s.id, s.state])).toEqual([[id, 'expired']])
      }, WAIT)
    }
    await publish(x, 'dev-x', 20)
    await publish(x, 'dev-x', 36)
    await vi.waitFor(() => expect(deliveriesOf('dev-x', 'firing')).toHaveLength(1), WAIT)
    expect(snooped.filter((topic) => topic.startsWith('$gateway/'))).toEqual([])
    expect(snooped).toContain('alerts/major/dev-x/high-temperature')
  }, 120_000)

  it('an acknowledgement taken on one instance stops the reminders of the instance the device is on, shows in its API, and is published once', async () => {
    const [a, b] = await Promise.all([
      startInstance('gw-a', '300ms'),
      startInstance('gw-b', '300ms'),
    ])
    if (!a || !b) throw new Error('instances missing')
    const seen = await alertsSeen(a)
    const r = await device(b, 'dev-r')
    await publish(r, 'dev-r', 35)
    await vi.waitFor(
      () => expect(deliveriesOf('dev-r', 'repeat').length).toBeGreaterThanOrEqual(2),
      WAIT,
    )

    // A knows the alert by adopting B's transition; the ack is taken there.
    const alertId = encodeURIComponent('high-temperature:dev-r')
    const acked = await json<{ alert: { acknowledged?: { by: string; comment?: string } } }>(
      await post(`${a.httpUrl}/api/alerts/${alertId}/ack`, { comment: 'on it' }),
      200,
    )
    expect(acked.alert.acknowledged).toMatchObject({ by: 'loopback', comment: 'on it' })
    const ackedAt = Date.now()

    await vi.waitFor(async () => {
      const { alerts } = await json<{
        alerts: Array<{ deviceId: string; acknowledged?: { by: string; comment?: string } }>
      }>(await fetch(`${b.httpUrl}/api/alerts?state=firing&device=dev-r`), 200)
      expect(alerts).toHaveLength(1)
      expect(alerts[0]?.acknowledged).toMatchObject({ by: 'loopback', comment: 'on it' })
    }, WAIT)

    // B reminds of another alert of its own every 300 ms: once it has had three reminders after
    // the ack had a second to spread, B had every chance to remind of dev-r again.
    const settledAt = ackedAt + 1_000
    const s = await device(b, 'dev-s')
    await publish(s, 'dev-s', 36)
    await vi.waitFor(
      () =>
        expect(
          deliveriesOf('dev-s', 'repeat').filter((d) => d.createdAt > settledAt).length,
        ).toBeGreaterThanOrEqual(3),
      WAIT,
    )
    expect(deliveriesOf('dev-r', 'repeat').filter((d) => d.createdAt > settledAt)).toEqual([])
    // The retained alert went out again with the ack once, from A: not once per instance.
    expect(seen.filter((m) => m.deviceId === 'dev-r' && m.acknowledged !== undefined)).toHaveLength(
      1,
    )
  }, 120_000)
})
