import path from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningRedis, startRedis } from '../../scripts/redis-server.ts'
import { createEventBus, type EventBus } from '../../src/bus/event-bus.ts'
import {
  ACKS_KEY,
  createClusterAlertControls,
  SILENCES_KEY,
} from '../../src/cluster/cluster-alert-controls.ts'
import { openRedisBackends } from '../../src/cluster/redis-backends.ts'
import type { Alert } from '../../src/contract/types.ts'
import { type AlertControlsService, createAlertControls } from '../../src/notify/alert-controls.ts'
import { createSilentLogger } from '../../src/telemetry/logger.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/**
 * Acknowledgements and silences shared through Redis (src/cluster/cluster-alert-controls.ts):
 * each "instance" is a real AlertControlsService on its own SQLite file and bus, with the
 * broker's real mqemitter-redis emitter, on a real redis-server. Whole gateways:
 * alert-controls-scale-out.test.ts.
 */

const WAIT = { timeout: 10_000, interval: 20 }
const log = createSilentLogger()

const firing = (deviceId: string, since: number): Alert => ({
  id: `high-temperature:${deviceId}`,
  ruleId: 'high-temperature',
  kind: 'threshold',
  deviceId,
  metric: 'temperature',
  severity: 'major',
  state: 'firing',
  value: 35,
  threshold: 30,
  since,
  ts: since,
  message: 'temperature 35 above 30',
  flapping: false,
})

interface Instance {
  controls: AlertControlsService
  bus: EventBus
  /** `alert.acknowledged` events on this instance's bus (the re-publish of the retained alert). */
  acknowledged: Alert[]
  /** When each change from another instance was applied here (performance.now()). */
  appliedAt: number[]
}

describe('acknowledgements and silences shared through Redis', () => {
  let redis: RunningRedis
  let client: Redis
  let dir: TempDir
  let count = 0
  /** What every instance's engine knows of each alert (adopted alike on all of them). */
  const current = new Map<string, Alert>()
  const closers: Array<() => Promise<void> | void> = []

  beforeAll(async () => {
    ;[redis, dir] = await Promise.all([startRedis(), createTempDir('cluster-controls-')])
    client = new Redis(redis.url, { maxRetriesPerRequest: null })
    client.on('error', () => {})
  }, 30_000)

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close()
    current.clear()
    await client.flushall()
  })

  afterAll(async () => {
    client?.disconnect()
    await Promise.all([redis?.stop(), dir?.remove()])
  })

  async function instance(name: string): Promise<Instance> {
    const bus = createEventBus(log)
    const backends = openRedisBackends(redis.url, { log })
    await backends.whenUp()
    const acknowledged: Alert[] = []
    const appliedAt: number[] = []
    bus.on('test', 'alert.acknowledged', (alert) => acknowledged.push(alert))
    let cluster: ReturnType<typeof createClusterAlertControls> | undefined
    const controls = createAlertControls(
      {
        bus,
        log,
        alertById: (id) => current.get(id),
        onChange: (change) => cluster?.changed(change),
      },
      { file: path.join(dir.path, `controls-${++count}.db`) },
    )
    cluster = createClusterAlertControls({
      redisUrl: redis.url,
      mq: backends.mq,
      instanceId: name,
      controls: {
        apply(change) {
          appliedAt.push(performance.now())
          return controls.apply(change)
        },
      },
      log,
    })
    await cluster.start()
    const started = cluster
    closers.push(async () => {
      await started.stop()
      controls.close()
      backends.shuttingDown()
      await backends.close()
    })
    return { controls, bus, acknowledged, appliedAt }
  }

  const window = { startsAt: Date.now(), endsAt: Date.now() + 3_600_000 }
  const matchers = { rule: null, device: ['dev-x'], severity: null, tags: null }

  it('a silence created on one instance holds on the other at once, its expiry too, and a later instance loads both', async () => {
    const [a, b] = await Promise.all([instance('a'), instance('b')])
    const created = a.controls.createSilence({ matchers, ...window, comment: 'pump' }, 'ops')
    if (!created.ok) throw new Error(created.message)
    const alert = firing('dev-x', Date.now())
    await vi.waitFor(() => expect(b.controls.isSilenced(alert, {}, Date.now())).toBe(true), WAIT)
    expect(b.controls.silences('active').map((s) => s.id)).toEqual([created.silence.id])
    expect(JSON.parse((await client.hget(SILENCES_KEY, created.silence.id)) ?? '{}')).toEqual(
      created.silence,
    )

    const c = await instance('c')
    expect(c.controls.silences('active').map((s) => s.id)).toEqual([created.silence.id])

    const expired = b.controls.expireSilence(created.silence.id)
    expect(expired?.endsAt).toBeLessThanOrEqual(Date.now())
    for (const other of [a, c]) {
      await vi.waitFor(
        () => expect(other.controls.isSilenced(alert, {}, Date.now())).toBe(false),
        WAIT,
      )
      expect(other.controls.silences('expired').map((s) => s.id)).toEqual([created.silence.id])
    }
    // Heard again (an announcement and a load of the hash alike), the created one changes nothing:
    // the earlier end wins.
    expect(a.controls.apply({ kind: 'silence', silence: created.silence })).toBe(false)
    const d = await instance('d')
    expect(d.controls.silences('expired').map((s) => s.id)).toEqual([created.silence.id])
  }, 30_000)

  it('an ack taken on one instance holds on the other without a second re-publish, and ends everywhere when the alert resolves on the device instance', async () => {
    const [a, b] = await Promise.all([instance('a'), instance('b')])
    const alert = firing('dev-r', Date.now() - 5_000)
    current.set(alert.id, alert)
    const taken = a.controls.acknowledge(alert.id, 'ops', 'on it')
    expect(taken.ok).toBe(true)
    await vi.waitFor(() => expect(b.controls.ackOf(alert.id)).toMatchObject({ by: 'ops' }), WAIT)
    expect(b.controls.withAck(alert).acknowledged).toMatchObject({ by: 'ops', comment: 'on it' })
    expect(a.acknowledged).toHaveLength(1)
    expect(b.acknowledged).toEqual([])
    expect(JSON.parse((await client.hget(ACKS_KEY, alert.id)) ?? '{}')).toMatchObject({
      since: alert.since,
      ack: { by: 'ops', comment: 'on it' },
    })
    const c = await instance('c')
    expect(c.controls.ackOf(alert.id)).toMatchObject({ by: 'ops' })

    // B serves the device: its resolve ends the ack there, in Redis, and on A and C.
    b.bus.emit('alert', { ...alert, state: 'resolved', ts: Date.now() })
    expect(b.controls.ackOf(alert.id)).toBeUndefined()
    for (const other of [a, c]) {
      await vi.waitFor(() => expect(other.controls.ackOf(alert.id)).toBeUndefined(), WAIT)
    }
    await vi.waitFor(async () => expect(await client.hget(ACKS_KEY, alert.id)).toBeNull(), WAIT)
  }, 30_000)

  it('the end of an earlier firing never deletes the ack of a later one', async () => {
    const [a, b] = await Promise.all([instance('a'), instance('b')])
    const earlier = firing('dev-q', Date.now() - 60_000)
    current.set(earlier.id, earlier)
    expect(a.controls.acknowledge(earlier.id, 'ops', undefined).ok).toBe(true)
    await vi.waitFor(() => expect(b.controls.ackOf(earlier.id)).toBeDefined(), WAIT)
    // Meanwhile another instance acknowledged a later firing (written there, not yet heard here).
    const later = { since: earlier.since + 30_000, ack: { by: 'night-shift', at: Date.now() } }
    await client.hset(ACKS_KEY, earlier.id, JSON.stringify(later))
    // The earlier firing resolves on A: its end is written and announced, then a silence after it
    // on the same connection, so once B has the silence the end has been applied in Redis.
    a.bus.emit('alert', { ...earlier, state: 'resolved', ts: Date.now() })
    const marker = a.controls.createSilence({ matchers, ...window, comment: 'marker' }, 'ops')
    if (!marker.ok) throw new Error(marker.message)
    await vi.waitFor(
      () => expect(b.controls.silences().map((s) => s.id)).toContain(marker.silence.id),
      WAIT,
    )
    expect(JSON.parse((await client.hget(ACKS_KEY, earlier.id)) ?? '{}')).toEqual(later)
    const c = await instance('c')
    expect(c.controls.ackOf(earlier.id)).toEqual(later.ack)
  }, 30_000)

  it('measures how long a silence takes to reach another instance', async () => {
    const [a, b] = await Promise.all([instance('a'), instance('b')])
    const lags: number[] = []
    for (let i = 0; i < 50; i++) {
      const before = b.appliedAt.length
      const startedAt = performance.now()
      const created = a.controls.createSilence({ matchers, ...window, comment: `n${i}` }, 'ops')
      if (!created.ok) throw new Error(created.message)
      await vi.waitFor(() => expect(b.appliedAt.length).toBe(before + 1), WAIT)
      lags.push((b.appliedAt[before] as number) - startedAt)
    }
    lags.sort((x, y) => x - y)
    const at = (q: number) => (lags[Math.floor(q * (lags.length - 1))] as number).toFixed(2)
    console.log(
      `silence created on one instance applied on another: p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms (${lags.length} silences, HSET then announce)`,
    )
    expect(b.controls.silences('active')).toHaveLength(50)
  }, 30_000)
})
