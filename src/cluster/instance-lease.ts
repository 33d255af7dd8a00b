import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import type { MqttPublisher } from '../broker/mqtt-broker.ts'
import type { EventBus } from '../bus/event-bus.ts'
import { deviceStatusTopic } from '../contract/topics.ts'
import type { DeviceStatus } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'

/** Every instance of this run, live or dead and not yet taken over: a Redis set of members. */
export const INSTANCES_KEY = 'gateway:instances'
/** `gateway:instance:{member}`: the lease, a string with a TTL. */
export const leaseKey = (member: string) => `gateway:instance:${member}`
/** `gateway:instance:{member}:devices`: the devices the instance speaks for, a set. */
export const devicesKey = (member: string) => `${leaseKey(member)}:devices`
/**
 * `gateway:instance:{member}:outbox`: the instance's pending notifications, a hash written by
 * src/cluster/cluster-outbox.ts; a take-over moves it to the survivor's.
 */
export const outboxKey = (member: string) => `${leaseKey(member)}:outbox`

/**
 * Renews the lease and (re)registers the member: returns 1 when the member was not registered,
 * i.e. on the first renewal, or when another instance took this one over (or Redis came back
 * empty). KEYS: instances, lease. ARGV: member, TTL ms.
 */
const RENEW = `
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return redis.call('SADD', KEYS[1], ARGV[1])
`

/**
 * The take-over of a dead instance, atomic so exactly one survivor gets each dead instance: nil
 * when its lease exists again or another survivor already took it; else its devices that no
 * registered instance's device set holds (a device that reconnected elsewhere stays online), and
 * the fields of its outbox hash (pending notifications), which move into the survivor's hash in
 * the same step: exactly one survivor gets them, and if it crashes before delivering them the
 * next take-over finds them in its hash. Its keys are gone. KEYS: instances, dead lease, dead
 * devices, dead outbox, survivor outbox. ARGV: dead member, key prefix. Returns
 * {orphans, outbox fields and values flat}. Lua's `false` is Redis' nil; an empty table an
 * empty array.
 */
const TAKE_OVER = `
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return false end
local devices = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
local members = redis.call('SMEMBERS', KEYS[1])
local orphans = {}
for _, device in ipairs(devices) do
  local served = false
  for _, member in ipairs(members) do
    if redis.call('SISMEMBER', ARGV[2] .. member .. ':devices', device) == 1 then
      served = true
      break
    end
  end
  if not served then orphans[#orphans + 1] = device end
end
local handed = redis.call('HGETALL', KEYS[4])
for i = 1, #handed, 2 do redis.call('HSET', KEYS[5], handed[i], handed[i + 1]) end
redis.call('DEL', KEYS[4])
return {orphans, handed}
`

/**
 * A clean stop: the lease and the device set go; the registration and the outbox hash stay when
 * notifications are still pending, so a survivor takes them over at its next check (the lease is
 * gone), else they go too. KEYS: instances, lease, devices, outbox. ARGV: member. Returns the
 * number of pending notifications handed over.
 */
const STOP = `
redis.call('DEL', KEYS[2], KEYS[3])
local pending = redis.call('HLEN', KEYS[4])
if pending == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[4])
end
return pending
`

export interface InstanceLeaseDeps {
  /** `redis://...`: the lease opens a connection of its own (see LEASE_CONNECTION). */
  redisUrl: string
  bus: EventBus
  /** Publishes the `offline` statuses of a dead instance's devices (retained, QoS 1). */
  publisher: MqttPublisher
  /** What this instance's presence learns of the statuses it publishes for a dead instance. */
  presence: { remoteStatus(deviceId: string, status: DeviceStatus): void }
  log: Logger
  /**
   * Takes a dead instance's pending notifications (src/cluster/cluster-outbox.ts): the fields of
   * its outbox hash, already moved into this instance's hash by the take-over.
   */
  outbox?: { adopt(dead: string, entries: ReadonlyMap<string, string>): number }
  now?: () => number
}

export interface InstanceLeaseOptions {
  /** This instance's name (INSTANCE_ID); the member adds a random suffix per run. */
  instanceId: string
  /** The lease's time to live; renewed and others' leases checked every ttlMs / 3. */
  ttlMs: number
}

export interface InstanceLease {
  /** `{instanceId}/{random}`: a restarted instance with the same id is a new member. */
  readonly member: string
  /**
   * Another instance published this device's status. Its `online`, not older than this
   * instance's own connection of the device, means the device moved: it leaves this instance's
   * set (the same rule as Presence.remoteStatus).
   */
  remoteStatus(deviceId: string, status: DeviceStatus): void
  /**
   * An idle device presence has forgotten (DEVICE_IDLE_RELEASE, src/rules/device-idle.ts) while
   * a connection here may still speak for it (a bridge): it leaves the set, as it left presence.
   */
  forget(deviceId: string): 'released'
  /** One renewal and check now (also run every ttlMs / 3). */
  tick(): Promise<void>
  /**
   * Clean stop: the lease, the device set and the registration are removed; with notifications
   * still pending in the outbox hash, the registration and the hash stay for a survivor to take
   * over (README, Scale-out: notifications).
   */
  stop(): Promise<void>
}

/**
 * ioredis options of the lease's own connection: a command while Redis is away fails at once
 * instead of waiting in the offline queue, so a renewal that could not happen is seen as such.
 */
const LEASE_CONNECTION = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  retryStrategy: (attempt: number) => Math.min(attempt * 100, 2_000),
}

const OWNER = 'instance-lease'

/**
 * A crashed instance's devices are reported `offline` by a survivor (README, Scale-out: when an
 * instance crashes). Each instance holds a lease in Redis, renewed every ttlMs / 3, and keeps
 * the set of devices it speaks for there (written on changes only, one pipeline per tick of the
 * event loop). Every ttlMs / 3 each instance looks for registered instances whose lease expired;
 * one survivor takes each over atomically (TAKE_OVER) and publishes `offline` for its devices
 * that no live instance serves. A crash is reported within ttlMs + ttlMs / 3.
 *
 * An instance judges others only after ttlMs of renewing its own lease without a failure: when
 * Redis was unreachable to it, the others may have missed their renewals for the same reason,
 * and get a full TTL to renew before they are judged.
 */
export function createInstanceLease(
  deps: InstanceLeaseDeps,
  opts: InstanceLeaseOptions,
): InstanceLease {
  const log = deps.log.child({ module: 'instance-lease' })
  const now = deps.now ?? Date.now
  const member = `${opts.instanceId}/${randomBytes(4).toString('hex')}`
  const periodMs = Math.max(Math.floor(opts.ttlMs / 3), 1)
  const redis = new Redis(deps.redisUrl, { ...LEASE_CONNECTION, commandTimeout: periodMs })
  // A failed connection attempt is reported by the renewal that fails (at debug, once per tick).
  redis.on('error', () => {})

  /** The devices this instance speaks for, and since when (DevicePresence.ts). */
  const served = new Map<string, number>()
  /** Changes not written yet: true adds the device to the set, false removes it. */
  const pending = new Map<string, boolean>()
  let flushScheduled = false
  /** The set in Redis may be wrong (a write failed, the lease was taken over): rewrite it. */
  let rewrite = false
  let registered = false
  /** Start of the current run of renewals without a failure; null after a failure. */
  let healthySinceMs: number | null = null
  let ticking: Promise<void> | null = null
  let stopped = false

  const queue = (deviceId: string, add: boolean) => {
    pending.set(deviceId, add)
    if (flushScheduled) return
    flushScheduled = true
    setImmediate(flush)
  }

  const flush = () => {
    flushScheduled = false
    if (pending.size === 0 || stopped) return
    const adds: string[] = []
    const removes: string[] = []
    for (const [deviceId, add] of pending) (add ? adds : removes).push(deviceId)
    pending.clear()
    // Until the first renewal the whole set is written then; while a rewrite is due, likewise.
    if (!registered || rewrite) return
    const batch = redis.pipeline()
    if (adds.length > 0) batch.sadd(devicesKey(member), ...adds)
    if (removes.length > 0) batch.srem(devicesKey(member), ...removes)
    batch.exec().then(
      (results) => {
        if (results?.some(([err]) => err !== null)) rewrite = true
      },
      () => {
        rewrite = true
      },
    )
  }

  const writeAll = async () => {
    rewrite = false
    const batch = redis.multi().del(devicesKey(member))
    if (served.size > 0) batch.sadd(devicesKey(member), ...served.keys())
    try {
      await batch.exec()
    } catch (err) {
      rewrite = true
      throw err
    }
  }

  deps.bus.on(OWNER, 'device.online', ({ deviceId, ts }) => {
    served.set(deviceId, ts)
    queue(deviceId, true)
  })
  deps.bus.on(OWNER, 'device.offline', ({ deviceId }) => {
    if (served.delete(deviceId)) queue(deviceId, false)
  })

  const renew = async () => {
    const added = (await redis.eval(
      RENEW,
      2,
      INSTANCES_KEY,
      leaseKey(member),
      member,
      String(opts.ttlMs),
    )) as number
    if (added === 1) {
      if (registered) {
        // Another instance took this one over (it missed renewals for a TTL: Redis unreachable
        // from here, or this process stalled) and reported its devices offline, maybe while this
        // one could not hear it; or Redis came back empty. Presence answers an `offline` for a
        // device connected here with its status again; the set is written again below.
        log.warn({ member, devices: served.size }, 'lease was lost: devices announced again')
        const status: DeviceStatus = { state: 'offline', ts: now() }
        for (const deviceId of served.keys()) deps.presence.remoteStatus(deviceId, status)
      }
      rewrite = true
    }
    registered = true
    if (rewrite) await writeAll()
  }

  const judge = async () => {
    const members = (await redis.smembers(INSTANCES_KEY)).filter((m) => m !== member)
    if (members.length === 0) return
    const checks = redis.pipeline()
    for (const other of members) checks.exists(leaseKey(other))
    const results = (await checks.exec()) ?? []
    for (const [i, other] of members.entries()) {
      const [err, exists] = results[i] ?? [null, 1]
      if (err !== null || exists !== 0) continue
      const taken = (await redis.eval(
        TAKE_OVER,
        5,
        INSTANCES_KEY,
        leaseKey(other),
        devicesKey(other),
        outboxKey(other),
        outboxKey(member),
        other,
        'gateway:instance:',
      )) as [string[], string[]] | null
      if (taken === null) continue
      const [orphans, handed] = taken
      if (handed.length > 0) {
        const entries = new Map<string, string>()
        for (let i = 0; i + 1 < handed.length; i += 2) {
          entries.set(handed[i] as string, handed[i + 1] as string)
        }
        try {
          deps.outbox?.adopt(other, entries)
        } catch (err) {
          // They stay in this instance's hash: the next take-over (of this one) finds them.
          log.error({ err, dead: other }, 'pending notifications of a dead instance not taken')
        }
      }
      log.warn(
        { dead: other, devices: orphans.length },
        'instance lease expired: its devices reported offline',
      )
      const status: DeviceStatus = { state: 'offline', ts: now() }
      const payload = JSON.stringify(status)
      for (const deviceId of orphans) {
        // Connected here since the set was last written.
        if (served.has(deviceId)) continue
        deps.presence.remoteStatus(deviceId, status)
        deps.publisher
          .publish(deviceStatusTopic(deviceId), payload, { qos: 1, retain: true })
          .catch((err: unknown) => log.error({ err, deviceId }, 'device status not published'))
      }
    }
  }

  const runTick = async () => {
    try {
      await renew()
    } catch (err) {
      if (healthySinceMs !== null) log.warn({ err }, 'lease not renewed: others are not judged')
      healthySinceMs = null
      rewrite = true
      return
    }
    const t = now()
    healthySinceMs ??= t
    if (t - healthySinceMs < opts.ttlMs) return
    try {
      await judge()
    } catch (err) {
      log.warn({ err }, 'instances not checked')
    }
  }

  const tick = () => {
    if (stopped) return Promise.resolve()
    ticking ??= runTick().finally(() => {
      ticking = null
    })
    return ticking
  }

  const timer = setInterval(() => void tick(), periodMs)
  timer.unref()
  redis.on('ready', () => void tick())

  return {
    member,
    remoteStatus(deviceId, { state, ts }) {
      if (state !== 'online') return
      const since = served.get(deviceId)
      if (since === undefined || since > ts) return
      served.delete(deviceId)
      queue(deviceId, false)
    },
    forget(deviceId) {
      if (served.delete(deviceId)) queue(deviceId, false)
      return 'released'
    },
    tick,
    async stop() {
      if (stopped) return
      stopped = true
      clearInterval(timer)
      await ticking
      deps.bus.removeOwner(OWNER)
      try {
        // Devices still connected were reported offline by the broker's close already.
        const handed = (await redis.eval(
          STOP,
          4,
          INSTANCES_KEY,
          leaseKey(member),
          devicesKey(member),
          outboxKey(member),
          member,
        )) as number
        if (handed > 0) {
          log.info(
            { pending: handed },
            'pending notifications left for another instance to take over',
          )
        }
      } catch (err) {
        log.warn({ err }, 'lease not removed: another instance will take it over when it expires')
      }
      redis.disconnect()
    },
  }
}
