import { Redis } from 'ioredis'
import type { Alert } from '../contract/types.ts'
import type { Outbox } from '../notify/outbox.ts'
import type { Notification } from '../notify/types.ts'
import type { Logger } from '../telemetry/logger.ts'
import { outboxKey } from './instance-lease.ts'

/** A pending notification's field in the mirror hash: `n:{id}` -> the notification as JSON. */
const fieldOf = (id: string) => `n:${id}`

export interface ClusterOutboxDeps {
  /** `redis://...`: the mirror opens a connection of its own. */
  redisUrl: string
  log: Logger
  /**
   * This instance's lease member (src/cluster/instance-lease.ts), undefined until the lease
   * exists: the mirror is the hash `gateway:instance:{member}:outbox`, which the lease's take-over
   * hands to exactly one survivor.
   */
  member: () => string | undefined
  /** Looks for due work now (Notifier.kick): what a take-over inserted is delivered at once. */
  kick: () => void
}

export interface ClusterOutbox {
  /** The outbox, with what is pending written through to the mirror hash in Redis. */
  wrap(outbox: Outbox): Outbox
  /**
   * A dead instance's mirror, handed to this instance by the lease's take-over: its pending
   * notifications go into this outbox with their ids (one this outbox already holds is skipped),
   * and are delivered from here. Returns how many were inserted.
   */
  adopt(dead: string, entries: ReadonlyMap<string, string>): number
  /**
   * A transition of `alert` that another instance published (src/cluster/cluster-sync.ts): that
   * instance serves the device now and owns the alert's reminders; the ones scheduled here end.
   */
  remoteAlert(alert: Alert): void
  /** Writes what is still queued (a clean stop), then closes the connection. */
  close(): Promise<void>
}

/**
 * The outbox of one instance of a cluster (README, Scale-out: notifications). Each instance
 * delivers from its own SQLite outbox; with REDIS_URL it also mirrors its pending notifications
 * into a Redis hash in its lease's namespace: set when a notification is written, removed when it
 * is delivered or dead-lettered, a failed one retried by hand set again. Writes are queued with
 * the outbox transaction that made them (dropped if it rolls back) and sent as one MULTI per tick
 * of the event loop, so ingest never waits on Redis. A write that fails (Redis away) makes the
 * next one rewrite the whole hash from the outbox. The take-over of a dead instance
 * (instance-lease.ts, TAKE_OVER) moves its hash into the survivor's in the same atomic step, so
 * exactly one survivor gets each pending notification, and re-delivers it with the same id.
 *
 * Not mirrored, on purpose: open grouping windows and repeat schedules. A survivor would send
 * them under new ids, and a crashed instance that restarts with its DATA_DIR sends them too:
 * receivers could not drop those duplicates. They stay with the instance that wrote them.
 */
export function createClusterOutbox(deps: ClusterOutboxDeps): ClusterOutbox {
  const log = deps.log.child({ module: 'cluster-outbox' })
  const redis = new Redis(deps.redisUrl, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt: number) => Math.min(attempt * 100, 2_000),
  })
  // A failed write is what matters (it forces a rewrite); connection errors alone are noise.
  redis.on('error', () => {})

  let inner: Outbox | undefined
  let wrapped: Outbox | undefined
  /** Field -> JSON to set, or null to delete; in the order written. */
  let queued = new Map<string, string | null>()
  /** Writes of the open transaction, kept apart until it commits. */
  let inTransaction: Map<string, string | null> | null = null
  let scheduled = false
  let rewrite = false
  let closed = false
  const sending = new Set<Promise<void>>()

  const write = (field: string, value: string | null) => {
    const target = inTransaction ?? queued
    // A field written again moves to the end: its last write is the one sent.
    target.delete(field)
    target.set(field, value)
    if (inTransaction === null) schedule()
  }

  const schedule = () => {
    if (scheduled || closed) return
    scheduled = true
    setImmediate(() => {
      scheduled = false
      track(flush())
    })
  }

  const track = (task: Promise<void>) => {
    // Never a rejection left unhandled: reading the outbox can fail (closed at a stop).
    const p = task.catch((err: unknown) => {
      rewrite = true
      log.warn({ err }, 'outbox mirror not written')
    })
    sending.add(p)
    void p.finally(() => sending.delete(p))
  }

  const flush = async (): Promise<void> => {
    const member = deps.member()
    if (member === undefined || inner === undefined) {
      if (queued.size > 0 || rewrite) setTimeout(schedule, 50).unref()
      return
    }
    if (rewrite) return rewriteAll(member)
    if (queued.size === 0) return
    const batch = queued
    queued = new Map()
    const key = outboxKey(member)
    const multi = redis.multi()
    const sets: string[] = []
    const dels: string[] = []
    for (const [field, value] of batch) {
      if (value === null) {
        if (sets.length > 0) multi.hset(key, ...sets.splice(0))
        dels.push(field)
      } else {
        if (dels.length > 0) multi.hdel(key, ...dels.splice(0))
        sets.push(field, value)
      }
    }
    if (sets.length > 0) multi.hset(key, ...sets)
    if (dels.length > 0) multi.hdel(key, ...dels)
    try {
      const results = await multi.exec()
      if (results === null || results.some(([err]) => err !== null)) throw new Error('not written')
    } catch (err) {
      log.debug({ err }, 'outbox mirror not written; it is rewritten whole next time')
      rewrite = true
      setTimeout(schedule, 1_000).unref()
    }
  }

  /** The hash again from the outbox's pending rows: after a failed write. */
  const rewriteAll = async (member: string) => {
    if (inner === undefined) return
    rewrite = false
    queued = new Map()
    const key = outboxKey(member)
    const multi = redis.multi().del(key)
    const pending = inner.list({ state: 'pending', limit: Number.MAX_SAFE_INTEGER })
    const fields: string[] = []
    for (const { notification } of pending)
      fields.push(fieldOf(notification.id), toJson(notification))
    if (fields.length > 0) multi.hset(key, ...fields)
    try {
      const results = await multi.exec()
      if (results === null || results.some(([err]) => err !== null)) throw new Error('not written')
      log.info({ pending: pending.length }, 'outbox mirror rewritten')
    } catch (err) {
      log.debug({ err }, 'outbox mirror not rewritten; trying again in 1 s')
      rewrite = true
      setTimeout(schedule, 1_000).unref()
    }
  }
  redis.on('ready', () => {
    if (rewrite) schedule()
  })

  const mirrorOf = (outbox: Outbox, id: string) => {
    const stored = outbox.get(id)
    if (stored?.state === 'pending') write(fieldOf(id), toJson(stored.notification))
  }

  return {
    wrap(outbox) {
      inner = outbox
      // What an earlier run left pending (resumed at start) is this run's: one full write first.
      rewrite = true
      schedule()
      wrapped = {
        ...outbox,
        transaction(fn) {
          if (inTransaction !== null) return outbox.transaction(fn)
          inTransaction = new Map()
          let committed: Map<string, string | null> | null = null
          try {
            const result = outbox.transaction(fn)
            committed = inTransaction
            return result
          } finally {
            inTransaction = null
            if (committed !== null) for (const [f, v] of committed) write(f, v)
          }
        },
        add(notification) {
          outbox.add(notification)
          write(fieldOf(notification.id), toJson(notification))
        },
        markDelivered(id, attempts, nowMs) {
          outbox.markDelivered(id, attempts, nowMs)
          write(fieldOf(id), null)
        },
        markFailed(id, attempts, error, nowMs) {
          outbox.markFailed(id, attempts, error, nowMs)
          write(fieldOf(id), null)
        },
        retry(id, nowMs) {
          const retried = outbox.retry(id, nowMs)
          if (retried) mirrorOf(outbox, id)
          return retried
        },
        closeGroup(group, notification) {
          outbox.closeGroup(group, notification)
          if (notification !== null) write(fieldOf(notification.id), toJson(notification))
        },
      }
      return wrapped
    },

    adopt(dead, entries) {
      if (inner === undefined) return 0
      // Writes through the wrapper: the hash gets them again (the Lua step put them there already).
      const outbox = wrapped ?? inner
      const notifications: Notification[] = []
      for (const [field, value] of entries) {
        if (!field.startsWith('n:')) continue
        try {
          notifications.push(JSON.parse(value) as Notification)
        } catch (err) {
          log.warn({ err, dead, field }, 'a handed-over notification not understood; skipped')
        }
      }
      let inserted = 0
      outbox.transaction(() => {
        for (const notification of notifications) {
          const known = outbox.get(notification.id)
          if (known === undefined) {
            outbox.add(notification)
            inserted++
          } else if (known.state !== 'pending') {
            // This instance's own earlier run (same DATA_DIR) delivered or dead-lettered it: the
            // Lua step put it in this instance's hash, where it has no business.
            write(fieldOf(notification.id), null)
          }
        }
      })
      log.warn(
        { dead, handed: notifications.length, inserted },
        'pending notifications of a dead instance taken over',
      )
      deps.kick()
      return inserted
    },

    remoteAlert(alert) {
      inner?.clearRepeats(alert.id)
    },

    async close() {
      if (closed) return
      const member = deps.member()
      if (member !== undefined && inner !== undefined && (rewrite || queued.size > 0)) {
        await Promise.allSettled([...sending])
        track(rewrite ? rewriteAll(member) : flush())
      }
      closed = true
      await Promise.allSettled([...sending])
      redis.disconnect()
    },
  }
}

function toJson(notification: Notification): string {
  return JSON.stringify(notification)
}
