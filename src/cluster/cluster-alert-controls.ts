import { Redis } from 'ioredis'
import type { AlertControlChange } from '../notify/alert-controls.ts'
import type { AlertAck, Silence } from '../notify/types.ts'
import type { Logger } from '../telemetry/logger.ts'
import type { AedesPacket } from './cluster-sync.ts'

/** Every silence any instance created: id -> the silence as JSON (its latest window). */
export const SILENCES_KEY = 'gateway:silences'
/** Acknowledgements in force: alert id -> `{"since","ack"}` (the firing acknowledged). */
export const ACKS_KEY = 'gateway:acks'
/**
 * Where a change is announced to the other instances, on the broker's shared emitter. No client
 * can receive it: `forwardsAlertControls` says no on every instance (wired in gateway.ts), a
 * leading wildcard never matches a `$` topic [MQTT-4.7.2-1], and it is emitted straight on the
 * emitter, so it is neither retained nor queued for an offline session.
 */
export const ALERT_CONTROLS_TOPIC = '$gateway/alert-controls'

/** For the broker's `forwards`: false for the announcements, which no client receives. */
export function forwardsAlertControls(packet: { topic: string }): boolean {
  return packet.topic !== ALERT_CONTROLS_TOPIC
}

/** Deletes an acknowledgement only if it is still the one of the firing that ended. */
const END_ACK = `local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and cjson.decode(v).since == tonumber(ARGV[2]) then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`

/** The broker's message emitter (mqemitter-redis), as far as this uses it. */
export interface AnnouncingEmitter {
  on(
    topic: string,
    listener: (packet: AedesPacket, done: () => void) => void,
    done?: () => void,
  ): void
  removeListener(
    topic: string,
    listener: (packet: AedesPacket, done: () => void) => void,
    done: () => void,
  ): void
  emit(packet: { topic: string; payload: Buffer }, done?: (err?: Error) => void): void
}

export interface ClusterAlertControlsDeps {
  /** `redis://...`: the hashes are written on a connection of this module's own. */
  redisUrl: string
  mq: AnnouncingEmitter
  instanceId: string
  /** The local service (src/notify/alert-controls.ts): what others change is applied there. */
  controls: { apply(change: AlertControlChange): boolean }
  log: Logger
}

export interface ClusterAlertControls {
  /**
   * Listens for announcements, then loads what the hashes hold. Resolves once loaded, or after
   * `loadTimeoutMs` with Redis unreachable (listening and loading go on and apply when Redis
   * answers).
   */
  start(loadTimeoutMs?: number): Promise<void>
  /** A change made on this instance (AlertControlsDeps.onChange): written, then announced. */
  changed(change: AlertControlChange): void
  /** Stops listening, waits for writes in flight, closes the connection. */
  stop(): Promise<void>
}

interface Announcement {
  from: string
  change: AlertControlChange
}

/**
 * Acknowledgements and silences shared by every instance on one Redis (README, Scale-out).
 * Each instance keeps them in memory and in its own SQLite file as without Redis, so what the
 * notifier asks (ackOf, isSilenced) stays a synchronous in-memory look-up. A change made on one
 * instance is written to a Redis hash (`gateway:silences`, `gateway:acks`), then announced on the
 * broker's shared emitter; the others apply it at once. A starting instance (and one whose Redis
 * connection comes back) loads the hashes after it has begun to listen, so it misses nothing in
 * between. Applying is idempotent and order-free (AlertControlChange), so a change heard twice,
 * or heard and loaded, is the same change. An acknowledgement's re-publish of the retained alert
 * is done by the instance that took it, only: applying never emits on the bus.
 */
export function createClusterAlertControls(deps: ClusterAlertControlsDeps): ClusterAlertControls {
  const log = deps.log.child({ module: 'cluster-alert-controls' })
  // Commands wait for Redis while it is away (ioredis' offline queue): a change made meanwhile is
  // written, and announced, once it is back.
  const redis = new Redis(deps.redisUrl, {
    maxRetriesPerRequest: null,
    retryStrategy: (attempt: number) => Math.min(attempt * 100, 2_000),
  })
  redis.on('error', (err: Error) => log.debug({ err: err.message }, 'Redis connection error'))
  const pending = new Set<Promise<void>>()
  let listening = false
  let stopped = false
  let loadedOnce = false

  const onMessage = (packet: AedesPacket, done: () => void) => {
    try {
      const text =
        typeof packet.payload === 'string' ? packet.payload : packet.payload.toString('utf8')
      const message = JSON.parse(text) as Announcement
      if (message.from !== deps.instanceId) deps.controls.apply(message.change)
    } catch (err) {
      log.warn({ err }, 'acknowledgement or silence from another instance not understood')
    }
    done()
  }

  const load = async () => {
    const [silences, acks] = await Promise.all([
      redis.hgetall(SILENCES_KEY),
      redis.hgetall(ACKS_KEY),
    ])
    let applied = 0
    for (const text of Object.values(silences)) {
      const silence = JSON.parse(text) as Silence
      if (deps.controls.apply({ kind: 'silence', silence })) applied++
    }
    for (const [alertId, text] of Object.entries(acks)) {
      const held = JSON.parse(text) as { since: number; ack: AlertAck }
      if (deps.controls.apply({ kind: 'ack', alertId, since: held.since, ack: held.ack })) applied++
    }
    log.info(
      { silences: Object.keys(silences).length, acks: Object.keys(acks).length, applied },
      'acknowledgements and silences loaded from Redis',
    )
  }

  const track = (task: Promise<void>) => {
    const p = task.catch((err: unknown) => {
      log.warn({ err }, 'acknowledgement or silence not shared with the other instances')
    })
    pending.add(p)
    void p.finally(() => pending.delete(p))
  }

  const write = async (change: AlertControlChange) => {
    if (change.kind === 'silence') {
      await redis.hset(SILENCES_KEY, change.silence.id, JSON.stringify(change.silence))
    } else if (change.kind === 'ack') {
      await redis.hset(
        ACKS_KEY,
        change.alertId,
        JSON.stringify({ since: change.since, ack: change.ack }),
      )
    } else {
      await redis.eval(END_ACK, 1, ACKS_KEY, change.alertId, String(change.since))
    }
    // Announced after the write: an instance that starts in between finds it in the hash.
    const announcement: Announcement = { from: deps.instanceId, change }
    await new Promise<void>((resolve, reject) =>
      deps.mq.emit(
        { topic: ALERT_CONTROLS_TOPIC, payload: Buffer.from(JSON.stringify(announcement)) },
        (err) => (err ? reject(err) : resolve()),
      ),
    )
  }

  // Announcements sent while this connection was away may have been missed: load again.
  redis.on('ready', () => {
    if (!loadedOnce || stopped) return
    track(load())
  })

  return {
    async start(loadTimeoutMs = 5_000) {
      // Listening first, then loading: a change made in between is heard, or found in the hash.
      const subscribed = new Promise<void>((resolve) =>
        deps.mq.on(ALERT_CONTROLS_TOPIC, onMessage, resolve),
      )
      listening = true
      const loading = subscribed
        .then(load)
        .catch((err: unknown) => {
          log.warn({ err }, 'acknowledgements and silences not loaded from Redis')
        })
        .finally(() => {
          // From now on, a connection that comes back loads again.
          loadedOnce = true
        })
      let timer: NodeJS.Timeout | undefined
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), loadTimeoutMs)
        timer.unref()
      })
      const outcome = await Promise.race([loading.then(() => 'loaded' as const), timedOut])
      clearTimeout(timer)
      if (outcome === 'timeout') {
        log.warn(
          { loadTimeoutMs },
          'Redis did not answer: acknowledgements and silences of the other instances are loaded when it does',
        )
      }
    },

    changed(change) {
      if (stopped) return
      track(write(change))
    },

    async stop() {
      if (stopped) return
      stopped = true
      // Writes in flight (and the unsubscribe) are given a moment; with Redis away they would
      // wait for ever.
      await Promise.race([
        Promise.all([
          listening
            ? new Promise<void>((resolve) =>
                deps.mq.removeListener(ALERT_CONTROLS_TOPIC, onMessage, () => resolve()),
              )
            : undefined,
          Promise.allSettled([...pending]),
        ]),
        new Promise((resolve) => setTimeout(resolve, 2_000).unref()),
      ])
      redis.disconnect()
    },
  }
}
