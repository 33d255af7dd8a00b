import path from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningRedis, startRedis } from '../../scripts/redis-server.ts'
import type { MqttPublisher } from '../../src/broker/mqtt-broker.ts'
import { createEventBus } from '../../src/bus/event-bus.ts'
import { createClusterOutbox } from '../../src/cluster/cluster-outbox.ts'
import {
  createInstanceLease,
  INSTANCES_KEY,
  type InstanceLease,
  leaseKey,
  outboxKey,
} from '../../src/cluster/instance-lease.ts'
import { openOutbox } from '../../src/notify/outbox.ts'
import { captureLogs } from '../helpers/log-capture.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'
import { notificationFixture } from '../unit/notify/channels/fixtures.ts'

/**
 * The outbox's mirror in Redis (src/cluster/cluster-outbox.ts) on a real redis-server with real
 * SQLite outboxes, and the lease's take-over handing a dead instance's mirror to exactly one
 * survivor (src/cluster/instance-lease.ts). Whole gateways: notifications-scale-out.test.ts.
 */

const TTL_MS = 1_500
const WAIT = { timeout: 15_000, interval: 50 }

describe('outbox mirror in Redis', () => {
  let redis: RunningRedis
  let client: Redis
  let dir: TempDir
  let files = 0
  const closers: Array<() => Promise<void> | void> = []

  beforeAll(async () => {
    ;[redis, dir] = await Promise.all([startRedis(), createTempDir('cluster-outbox-')])
    client = new Redis(redis.url, { maxRetriesPerRequest: null })
    client.on('error', () => {})
  }, 30_000)

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close()
    await client.flushall()
  })

  afterAll(async () => {
    client?.disconnect()
    await Promise.all([redis?.stop(), dir?.remove()])
  })

  function mirrored(
    member: string | (() => string | undefined),
    file = path.join(dir.path, `outbox-${++files}.db`),
  ) {
    const { log, lines } = captureLogs('debug')
    let kicks = 0
    const cluster = createClusterOutbox({
      redisUrl: redis.url,
      log,
      member: typeof member === 'string' ? () => member : member,
      kick: () => {
        kicks++
      },
    })
    const inner = openOutbox({ file })
    const outbox = cluster.wrap(inner)
    closers.push(
      () => inner.close(),
      () => cluster.close(),
    )
    return { cluster, outbox, lines, kicks: () => kicks }
  }

  const fieldsOf = async (member: string) => (await client.hkeys(outboxKey(member))).sort()

  it('holds exactly what is pending: written with the transaction that commits, gone once delivered or dead-lettered, back when retried by hand', async () => {
    const { outbox } = mirrored('gw-a/0001')
    const createdAt = Date.now()
    const n = (id: string) => notificationFixture({ id, createdAt })
    outbox.add(n('n1'))
    // Written once the connection is up (a write before that fails and is made good by a rewrite
    // from the outbox, which would hide what follows).
    await vi.waitFor(async () => expect(await fieldsOf('gw-a/0001')).toEqual(['n:n1']), WAIT)
    outbox.transaction(() => {
      outbox.add(n('n2'))
      outbox.add(n('n3'))
    })
    // A transaction that rolls back writes nothing, here or in Redis.
    expect(() =>
      outbox.transaction(() => {
        outbox.add(n('rolled-back'))
        throw new Error('boom')
      }),
    ).toThrow('boom')
    expect(outbox.get('rolled-back')).toBeUndefined()
    await vi.waitFor(
      async () => expect(await fieldsOf('gw-a/0001')).toEqual(['n:n1', 'n:n2', 'n:n3']),
      WAIT,
    )
    expect(JSON.parse((await client.hget(outboxKey('gw-a/0001'), 'n:n2')) ?? '{}')).toEqual(n('n2'))

    outbox.markDelivered('n1', 1, Date.now())
    outbox.markFailed('n2', 3, 'refused for good', Date.now())
    outbox.markRetry('n3', 1, Date.now() + 60_000, 'try later', Date.now())
    await vi.waitFor(async () => expect(await fieldsOf('gw-a/0001')).toEqual(['n:n3']), WAIT)
    expect(outbox.retry('n2', Date.now())).toBe(true)
    // A group's notification is mirrored as it is stored.
    outbox.closeGroup(
      { route: 'r', channel: 'ops', kind: 'firing', closesAt: 0, alerts: [] },
      n('g1'),
    )
    await vi.waitFor(
      async () => expect(await fieldsOf('gw-a/0001')).toEqual(['n:g1', 'n:n2', 'n:n3']),
      WAIT,
    )
  })

  it('mirrors at start what an earlier run left pending in the outbox file', async () => {
    const file = path.join(dir.path, 'earlier-run.db')
    const earlier = openOutbox({ file })
    earlier.add(notificationFixture({ id: 'left-pending', createdAt: 1 }))
    earlier.add(notificationFixture({ id: 'left-delivered', createdAt: 1 }))
    earlier.markDelivered('left-delivered', 1, 2)
    earlier.close()
    mirrored('gw-a/0005', file)
    await vi.waitFor(
      async () => expect(await fieldsOf('gw-a/0005')).toEqual(['n:left-pending']),
      WAIT,
    )
  })

  it('rewrites the whole hash once Redis answers again after a write failed', async () => {
    const { outbox, lines } = mirrored('gw-a/0002')
    outbox.add(notificationFixture({ id: 'before', createdAt: Date.now() }))
    await vi.waitFor(async () => expect(await fieldsOf('gw-a/0002')).toEqual(['n:before']), WAIT)
    await redis.halt()
    outbox.add(notificationFixture({ id: 'during', createdAt: Date.now() }))
    outbox.markDelivered('before', 1, Date.now())
    // Redis comes back empty (no persistence): only the rewrite can bring `during` there.
    await redis.restart()
    await vi.waitFor(async () => expect(await fieldsOf('gw-a/0002')).toEqual(['n:during']), WAIT)
    expect(lines.some((l) => l.msg === 'outbox mirror rewritten')).toBe(true)
  }, 30_000)

  it('adopts a dead instance’s notifications with their ids, once, and kicks delivery', async () => {
    const { cluster, outbox, kicks } = mirrored('gw-b/0003')
    outbox.add(notificationFixture({ id: 'known-pending', createdAt: 1 }))
    outbox.add(notificationFixture({ id: 'known-delivered', createdAt: 1 }))
    outbox.markDelivered('known-delivered', 1, 2)
    const handed = new Map(
      ['new-1', 'new-2', 'known-pending', 'known-delivered'].map((id) => [
        `n:${id}`,
        JSON.stringify(notificationFixture({ id, createdAt: 5 })),
      ]),
    )
    expect(cluster.adopt('gw-dead/0000', handed)).toBe(2)
    expect(outbox.get('new-1')).toMatchObject({ state: 'pending', attempts: 0 })
    expect(outbox.get('new-1')?.notification).toEqual(
      notificationFixture({ id: 'new-1', createdAt: 5 }),
    )
    expect(outbox.get('known-delivered')?.state).toBe('delivered')
    expect(kicks()).toBe(1)
    await vi.waitFor(
      async () =>
        expect(await fieldsOf('gw-b/0003')).toEqual(['n:known-pending', 'n:new-1', 'n:new-2']),
      WAIT,
    )
  })

  it('exactly one of two survivors gets a dead instance’s pending notifications, moved into its own hash; a clean stop with nothing pending leaves nothing', async () => {
    const survivors = ['gw-s1', 'gw-s2'].map((instanceId) => {
      let lease: InstanceLease | undefined
      const m = mirrored(() => lease?.member)
      const { log } = captureLogs('debug')
      const publisher: MqttPublisher = { publish: async () => {} }
      lease = createInstanceLease(
        {
          redisUrl: redis.url,
          bus: createEventBus(log),
          publisher,
          presence: { remoteStatus: () => {} },
          log,
          outbox: m.cluster,
        },
        { instanceId, ttlMs: TTL_MS },
      )
      closers.push(() => lease?.stop())
      return { ...m, lease }
    })
    const dead = 'gw-dead/0000'
    const handed = ['p1', 'p2', 'p3'].map((id) =>
      notificationFixture({ id, createdAt: Date.now() }),
    )
    await client
      .multi()
      .sadd(INSTANCES_KEY, dead)
      .hset(outboxKey(dead), ...handed.flatMap((n) => [`n:${n.id}`, JSON.stringify(n)]))
      .exec()

    const holders = () => survivors.filter((s) => s.outbox.get('p1') !== undefined)
    await vi.waitFor(async () => {
      // Both check at once, again and again: a hand-over that were not atomic would give both.
      await Promise.all(survivors.map((s) => s.lease.tick()))
      expect(holders()).toHaveLength(1)
    }, WAIT)
    await Promise.all(survivors.map((s) => s.lease.tick()))
    expect(holders()).toHaveLength(1)
    const [taker] = holders()
    if (taker === undefined) throw new Error('no taker')
    for (const n of handed) expect(taker.outbox.get(n.id)?.notification).toEqual(n)
    expect(await client.exists(outboxKey(dead))).toBe(0)
    expect(await client.sismember(INSTANCES_KEY, dead)).toBe(0)
    expect(await fieldsOf(taker.lease.member)).toEqual(['n:p1', 'n:p2', 'n:p3'])

    // Delivered at the taker: gone from its hash; its clean stop then leaves nothing behind.
    for (const n of handed) taker.outbox.markDelivered(n.id, 1, Date.now())
    await vi.waitFor(async () => expect(await fieldsOf(taker.lease.member)).toEqual([]), WAIT)
    await taker.cluster.close()
    await taker.lease.stop()
    expect(await client.sismember(INSTANCES_KEY, taker.lease.member)).toBe(0)
    expect(await client.exists(leaseKey(taker.lease.member), outboxKey(taker.lease.member))).toBe(0)
  }, 30_000)
})
