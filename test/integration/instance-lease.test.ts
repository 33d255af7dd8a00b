import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningRedis, startRedis } from '../../scripts/redis-server.ts'
import type { MqttPublisher } from '../../src/broker/mqtt-broker.ts'
import { createEventBus, type EventBus } from '../../src/bus/event-bus.ts'
import {
  createInstanceLease,
  devicesKey,
  INSTANCES_KEY,
  type InstanceLease,
  leaseKey,
} from '../../src/cluster/instance-lease.ts'
import type { DeviceStatus } from '../../src/contract/types.ts'
import { captureLogs, type LogLine } from '../helpers/log-capture.ts'

/**
 * The instance lease (src/cluster/instance-lease.ts) on a real redis-server: registration, the
 * device set, the atomic take-over of a dead instance, and no judging after an outage until the
 * instance's own lease has been renewed for a full TTL. The publisher and presence are recorders:
 * what goes over MQTT is covered by scale-out-crash.test.ts with real gateway processes.
 */

const TTL_MS = 1_500
const WAIT = { timeout: 15_000, interval: 50 }

interface Survivor {
  lease: InstanceLease
  bus: EventBus
  published: Array<{ topic: string; status: DeviceStatus; retain: boolean; atMs: number }>
  heard: Array<{ deviceId: string; status: DeviceStatus }>
  logs: LogLine[]
}

describe('instance lease on Redis', () => {
  let redis: RunningRedis
  let client: Redis
  const running: InstanceLease[] = []

  beforeAll(async () => {
    redis = await startRedis()
    client = new Redis(redis.url, { maxRetriesPerRequest: null })
    client.on('error', () => {})
  }, 30_000)

  afterEach(async () => {
    await Promise.all(running.splice(0).map((lease) => lease.stop()))
    await client.flushall()
  })

  afterAll(async () => {
    client?.disconnect()
    await redis?.stop()
  })

  function startSurvivor(instanceId: string): Survivor {
    const { log, lines } = captureLogs('debug')
    const bus = createEventBus(log)
    const published: Survivor['published'] = []
    const heard: Survivor['heard'] = []
    const publisher: MqttPublisher = {
      async publish(topic, payload, options) {
        published.push({
          topic,
          status: JSON.parse(payload) as DeviceStatus,
          retain: options.retain === true,
          atMs: Date.now(),
        })
      },
    }
    const lease = createInstanceLease(
      {
        redisUrl: redis.url,
        bus,
        publisher,
        presence: { remoteStatus: (deviceId, status) => heard.push({ deviceId, status }) },
        log,
      },
      { instanceId, ttlMs: TTL_MS },
    )
    running.push(lease)
    return { lease, bus, published, heard, logs: lines }
  }

  const online = (bus: EventBus, deviceId: string, ts = Date.now()) =>
    bus.emit('device.online', { deviceId, clientId: deviceId, ts })

  /** What a crashed instance leaves: its registration and device set, its lease expiring. */
  async function crashedInstance(member: string, devices: string[], leaseLeftMs: number) {
    const batch = client
      .multi()
      .sadd(INSTANCES_KEY, member)
      .sadd(devicesKey(member), ...devices)
    if (leaseLeftMs > 0) batch.set(leaseKey(member), member, 'PX', leaseLeftMs)
    await batch.exec()
  }

  it('registers, keeps its device set on changes, and removes everything on a clean stop', async () => {
    const a = startSurvivor('gw-a')
    await vi.waitFor(async () => {
      expect(await client.sismember(INSTANCES_KEY, a.lease.member)).toBe(1)
      expect(await client.pttl(leaseKey(a.lease.member))).toBeGreaterThan(0)
    }, WAIT)
    online(a.bus, 'd1')
    online(a.bus, 'd2', 1_000)
    a.bus.emit('device.online', { deviceId: 'd3', clientId: 'd3', ts: 1_000 })
    a.bus.emit('device.offline', { deviceId: 'd3', clientId: 'd3', ts: 2_000 })
    // d2 moved to another instance after it connected here; d1's remote status is older than its
    // connection here, so d1 stays.
    a.lease.remoteStatus('d2', { state: 'online', ts: 2_000 })
    a.lease.remoteStatus('d1', { state: 'online', ts: 1 })
    await vi.waitFor(async () => {
      expect((await client.smembers(devicesKey(a.lease.member))).sort()).toEqual(['d1'])
    }, WAIT)
    // Presence forgot d1 as idle (a bridge's device, its connection still open): it leaves too.
    expect(a.lease.forget('d1')).toBe('released')
    await vi.waitFor(async () => {
      expect(await client.scard(devicesKey(a.lease.member))).toBe(0)
    }, WAIT)

    await a.lease.stop()
    expect(await client.sismember(INSTANCES_KEY, a.lease.member)).toBe(0)
    expect(await client.exists(leaseKey(a.lease.member), devicesKey(a.lease.member))).toBe(0)
  })

  it('exactly one of two survivors takes a dead instance over; a device served elsewhere stays online', async () => {
    const [s1, s2] = [startSurvivor('gw-s1'), startSurvivor('gw-s2')]
    // d2 reconnected to a live instance (in another process) before the take-over, d4 to s2.
    await crashedInstance('gw-live/0000', ['d2'], 60_000)
    online(s2.bus, 'd4')
    await vi.waitFor(async () => {
      expect(await client.sismember(devicesKey(s2.lease.member), 'd4')).toBe(1)
    }, WAIT)
    const dead = 'gw-dead/0000'
    await crashedInstance(dead, ['d1', 'd2', 'd3', 'd4'], TTL_MS)

    const offline = () => [...s1.published, ...s2.published]
    await vi.waitFor(async () => {
      // Both check at once, again and again, besides their own timers: a claim that were not
      // atomic would let both publish.
      await Promise.all([s1.lease.tick(), s2.lease.tick()])
      expect(offline().length).toBeGreaterThan(0)
    }, WAIT)
    await Promise.all([s1.lease.tick(), s2.lease.tick()])

    const byDevice = offline().map((p) => p.topic)
    expect(byDevice.sort()).toEqual(['devices/d1/status', 'devices/d3/status'])
    for (const p of offline()) {
      expect(p.status.state).toBe('offline')
      expect(p.retain).toBe(true)
    }
    // One survivor did it all, and told its own presence.
    const taker = s1.published.length > 0 ? s1 : s2
    const other = taker === s1 ? s2 : s1
    expect(other.published).toEqual([])
    expect(taker.heard.map((h) => h.deviceId).sort()).toEqual(['d1', 'd3'])
    expect(
      taker.logs.some((l) => l.msg === 'instance lease expired: its devices reported offline'),
    ).toBe(true)
    expect(await client.sismember(INSTANCES_KEY, dead)).toBe(0)
    expect(await client.exists(devicesKey(dead))).toBe(0)
    expect(await client.sismember(devicesKey(s2.lease.member), 'd4')).toBe(1)
    expect(await client.sismember(INSTANCES_KEY, 'gw-live/0000')).toBe(1)
  })

  it('does not judge others until its own lease was renewed for a full TTL after Redis was unreachable', async () => {
    const s1 = startSurvivor('gw-s1')
    await vi.waitFor(async () => {
      expect(await client.sismember(INSTANCES_KEY, s1.lease.member)).toBe(1)
    }, WAIT)
    await redis.halt()
    await vi.waitFor(() => {
      expect(s1.logs.some((l) => l.msg === 'lease not renewed: others are not judged')).toBe(true)
    }, WAIT)
    await redis.restart()
    // Leftovers of an instance whose lease ran out while Redis was away (as if Redis kept them).
    await crashedInstance('gw-dead/0000', ['d9'], 0)
    const backMs = Date.now()

    await vi.waitFor(
      () => expect(s1.published.map((p) => p.topic)).toEqual(['devices/d9/status']),
      {
        ...WAIT,
        timeout: 20_000,
      },
    )
    // s1 renews every TTL / 3: judging at its first renewal would have come well before.
    expect(s1.published[0]!.atMs - backMs).toBeGreaterThanOrEqual(TTL_MS)
  }, 40_000)

  it('announces its devices again when another instance took it over', async () => {
    const a = startSurvivor('gw-a')
    online(a.bus, 'd5')
    await vi.waitFor(async () => {
      expect(await client.sismember(devicesKey(a.lease.member), 'd5')).toBe(1)
    }, WAIT)
    // What a survivor's take-over does (TAKE_OVER) when this instance missed renewals for a TTL.
    await client
      .multi()
      .srem(INSTANCES_KEY, a.lease.member)
      .del(leaseKey(a.lease.member), devicesKey(a.lease.member))
      .exec()

    await vi.waitFor(async () => {
      expect(a.heard).toEqual([
        { deviceId: 'd5', status: { state: 'offline', ts: expect.any(Number) } },
      ])
      expect(await client.sismember(devicesKey(a.lease.member), 'd5')).toBe(1)
      expect(await client.sismember(INSTANCES_KEY, a.lease.member)).toBe(1)
    }, WAIT)
    expect(a.logs.some((l) => l.msg === 'lease was lost: devices announced again')).toBe(true)
  })
})
