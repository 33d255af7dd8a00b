import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Redis } from 'ioredis'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningRedis, startRedis } from '../../scripts/redis-server.ts'
import type { NotificationJson } from '../../src/http/routes/notifications.ts'
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
 * Notifications with three gateway instances on one Redis (README, Scale-out: notifications):
 * real child processes (test/helpers/gateway-child.ts), a real redis-server, MQTT.js devices on
 * different instances, and one real node:http webhook receiver on 127.0.0.1 that all instances'
 * notifications files point at. Deliveries are counted by `webhook-id`.
 */

const LEASE_TTL_MS = 2_000
const WAIT = { timeout: 30_000, interval: 50 }

async function outboxOf(gw: GatewayChild, state: string): Promise<NotificationJson[]> {
  const res = await fetch(`${gw.httpUrl}/api/notifications?state=${state}&limit=1000`)
  expect(res.status).toBe(200)
  return ((await res.json()) as { notifications: NotificationJson[] }).notifications
}

describe('notifications on three instances sharing Redis', () => {
  let redis: RunningRedis
  let dir: TempDir
  let receiver: Receiver
  const gateways: GatewayChild[] = []
  const clients = new Set<MqttClient>()

  beforeAll(async () => {
    ;[redis, dir, receiver] = await Promise.all([
      startRedis(),
      createTempDir('notify-scale-'),
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
    await receiver.up().catch(() => {})
    receiver.deliveries.length = 0
    await redis.halt()
    await redis.restart()
  }, 60_000)

  afterAll(async () => {
    await receiver?.down()
    await Promise.all([redis?.stop(), dir?.remove()])
  })

  async function startInstances(names: string[], repeat = '0'): Promise<GatewayChild[]> {
    const file = path.join(dir.path, `notifications-${repeat}.yaml`)
    await writeFile(file, notificationsYaml(`http://127.0.0.1:${receiver.port}/hook`, repeat))
    return Promise.all(
      names.map(async (name) => {
        const gw = await startGatewayChild({
          env: {
            REDIS_URL: redis.url,
            INSTANCE_ID: name,
            CLUSTER_LEASE_TTL: `${LEASE_TTL_MS}ms`,
            NOTIFICATIONS_FILE: file,
          },
        })
        gateways.push(gw)
        return gw
      }),
    )
  }

  async function device(gw: GatewayChild, deviceId: string): Promise<MqttClient> {
    const client = await connectClient(gw.mqttUrl, { clientId: deviceId })
    // A client of a killed instance sees its connection reset; that is the point.
    client.on('error', () => {})
    clients.add(client)
    return client
  }

  const publish = (client: MqttClient, deviceId: string, value: number) =>
    client.publishAsync(`sensors/${deviceId}/temperature`, String(value), { qos: 1 })

  it('each alert transition is notified once, by the instance its device is connected to', async () => {
    const gws = await startInstances(['gw-a', 'gw-b', 'gw-c'])
    const ids = ['dev-a', 'dev-b', 'dev-c']
    const devices = await Promise.all(gws.map((gw, i) => device(gw, ids[i] as string)))
    await Promise.all(devices.map((d, i) => publish(d, ids[i] as string, 35)))
    await vi.waitFor(() => expect(receiver.deliveries).toHaveLength(3), WAIT)
    await Promise.all(devices.map((d, i) => publish(d, ids[i] as string, 20)))
    await vi.waitFor(() => expect(receiver.deliveries.length).toBeGreaterThanOrEqual(6), WAIT)

    // Every instance's outbox holds exactly its own device's two notifications, delivered: the
    // others adopted the alerts (cluster-sync) without writing anything.
    for (const [i, gw] of gws.entries()) {
      // The receiver answered; the instance marks the row delivered a moment later.
      await vi.waitFor(async () => {
        const delivered = await outboxOf(gw, 'delivered')
        expect(
          delivered.map((n) => `${n.alerts[0]?.deviceId}:${n.kind}`).sort(),
          `outbox of instance ${i}`,
        ).toEqual([`${ids[i]}:firing`, `${ids[i]}:resolved`])
        expect(await outboxOf(gw, 'pending')).toEqual([])
      }, WAIT)
    }
    const byId = new Map<string, number>()
    for (const d of receiver.deliveries) byId.set(d.id, (byId.get(d.id) ?? 0) + 1)
    expect([...byId.values()]).toEqual([1, 1, 1, 1, 1, 1])
    expect(receiver.deliveries.map((d) => `${d.alerts[0]?.deviceId}:${d.kind}`).sort()).toEqual(
      ids.flatMap((id) => [`${id}:firing`, `${id}:resolved`]).sort(),
    )
  }, 120_000)

  it('a device that moves while its alert fires: reminders come from one instance, and end when the alert resolves elsewhere', async () => {
    const [a, b] = await startInstances(['gw-a', 'gw-b'], '300ms')
    if (!a || !b) throw new Error('instances missing')
    const onA = await device(a, 'dev-moves')
    await publish(onA, 'dev-moves', 35)
    // One per notification id (an attempt that timed out is sent again with its id).
    const remindersOf = (deviceId: string) => [
      ...new Map(
        receiver.deliveries
          .filter((d) => d.kind === 'repeat' && d.alerts[0]?.deviceId === deviceId)
          .map((d) => [d.id, d]),
      ).values(),
    ]
    await vi.waitFor(() => expect(remindersOf('dev-moves').length).toBeGreaterThanOrEqual(2), WAIT)

    // The device reconnects to B and its next reading clears the alert there.
    clients.delete(onA)
    await onA.endAsync()
    const onB = await device(b, 'dev-moves')
    await publish(onB, 'dev-moves', 20)
    const resolved = await vi.waitFor(() => {
      const found = receiver.deliveries.filter(
        (d) => d.kind === 'resolved' && d.alerts[0]?.deviceId === 'dev-moves',
      )
      expect(found).toHaveLength(1)
      return found[0] as Delivery
    }, WAIT)
    // A hears of the resolve through Redis a moment after B wrote its notification; a reminder
    // A wrote in that moment is fair. Past this, none may come (A reminds every 300 ms).
    const settledAt = resolved.createdAt + 1_000

    // A's reminder timer keeps running for another alert of its own: once that one has had three
    // reminders after the resolve, A had every chance to remind of dev-moves again.
    const stays = await device(a, 'dev-stays')
    await publish(stays, 'dev-stays', 36)
    await vi.waitFor(
      () =>
        expect(
          remindersOf('dev-stays').filter((d) => d.createdAt > settledAt).length,
        ).toBeGreaterThanOrEqual(3),
      WAIT,
    )
    expect(remindersOf('dev-moves').filter((d) => d.createdAt > settledAt)).toEqual([])
    // Reminders of dev-moves: A's alone, one a period (two instances' would come closer).
    const times = remindersOf('dev-moves')
      .map((d) => d.createdAt)
      .sort((x, y) => x - y)
    for (let i = 1; i < times.length; i++) {
      expect((times[i] as number) - (times[i - 1] as number)).toBeGreaterThanOrEqual(300)
    }
  }, 120_000)

  it('pending notifications of a SIGKILLed instance are delivered by one survivor, with their ids; a clean stop hands its pending over too', async () => {
    const [a, b, c] = await startInstances(['gw-a', 'gw-b', 'gw-c'])
    if (!a || !b || !c) throw new Error('instances missing')
    await receiver.down()
    const ids = ['dev-k1', 'dev-k2', 'dev-k3']
    for (const id of ids) await publish(await device(a, id), id, 35)

    // A holds three pending notifications, retried against the closed port, mirrored in Redis.
    const pendingOfA = await vi.waitFor(async () => {
      const pending = await outboxOf(a, 'pending')
      expect(pending).toHaveLength(3)
      expect(pending.every((n) => n.attempts > 0)).toBe(true)
      return pending.map((n) => n.id).sort()
    }, WAIT)
    const inspect = new Redis(redis.url)
    try {
      await vi.waitFor(async () => {
        const member = (await inspect.smembers('gateway:instances')).find((m) =>
          m.startsWith('gw-a/'),
        )
        expect(member).toBeDefined()
        const fields = await inspect.hkeys(`gateway:instance:${member}:outbox`)
        expect(fields.sort()).toEqual(pendingOfA.map((id) => `n:${id}`))
      }, WAIT)

      a.kill()
      expect(await a.exited).toBe('SIGKILL')
      const killedAt = Date.now()
      await receiver.up()
      await vi.waitFor(() => {
        expect([...new Set(receiver.deliveries.map((d) => d.id))].sort()).toEqual(pendingOfA)
      }, WAIT)
      const lastAt = Math.max(...receiver.deliveries.map((d) => d.at))
      console.log(
        `3 pending notifications of a SIGKILLed instance delivered by a survivor ${lastAt - killedAt} ms after the kill (lease ${LEASE_TTL_MS} ms)`,
      )
      // Duplicates, if any, only with the same id: nothing but A's three ids arrived.
      expect(receiver.deliveries.every((d) => pendingOfA.includes(d.id))).toBe(true)
      expect(
        receiver.deliveries
          .map((d) => d.alerts[0]?.deviceId)
          .filter((id, i, all) => all.indexOf(id) === i)
          .sort(),
      ).toEqual(ids)
      // Exactly one survivor took them (same ids in its outbox), the other has none.
      const deliveredBy = await vi.waitFor(async () => {
        const [ofB, ofC] = await Promise.all([outboxOf(b, 'delivered'), outboxOf(c, 'delivered')])
        expect(ofB.length + ofC.length).toBe(3)
        return [ofB, ofC].map((rows) => rows.map((n) => n.id).sort())
      }, WAIT)
      const taker = deliveredBy[0]?.length === 3 ? b : c
      const other = taker === b ? c : b
      expect(deliveredBy).toContainEqual(pendingOfA)
      expect(deliveredBy).toContainEqual([])

      // A clean stop with the receiver down: its pending notification is left in Redis and the
      // other instance takes it over.
      await receiver.down()
      const before = receiver.deliveries.length
      await publish(await device(other, 'dev-k4'), 'dev-k4', 35)
      const [pendingOfOther] = await vi.waitFor(async () => {
        const pending = await outboxOf(other, 'pending')
        expect(pending).toHaveLength(1)
        return pending.map((n) => n.id)
      }, WAIT)
      expect(await other.stop(20_000)).toBe(0)
      await receiver.up()
      await vi.waitFor(() => {
        expect(receiver.deliveries.slice(before).map((d) => d.id)).toContain(pendingOfOther)
      }, WAIT)
      expect(receiver.deliveries.slice(before).every((d) => d.id === pendingOfOther)).toBe(true)
      await vi.waitFor(async () => {
        expect((await outboxOf(taker, 'delivered')).map((n) => n.id)).toContain(pendingOfOther)
        // Nothing of the stopped instance is left in Redis once it is taken over.
        const stoppedName = other === b ? 'gw-b' : 'gw-c'
        expect(await inspect.keys(`gateway:instance:${stoppedName}/*`)).toEqual([])
        const members = await inspect.smembers('gateway:instances')
        expect(members.filter((m) => m.startsWith(`${stoppedName}/`))).toEqual([])
      }, WAIT)
    } finally {
      inspect.disconnect()
    }
  }, 180_000)
})
