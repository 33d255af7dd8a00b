import type { AedesOptions, Client } from 'aedes'
import type { EventBus } from '../bus/event-bus.ts'
import { isIdentifier } from '../contract/identifiers.ts'
import { isSensorTopic, SENSOR_ROOT, UNKNOWN_DEVICE_ID } from '../contract/topics.ts'
import { toDeadLetter } from '../ingest/parse-publish.ts'
import type { Logger } from '../telemetry/logger.ts'

type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

export interface TokenBucketOptions {
  /** Tokens added per second. */
  ratePerSec: number
  /** Tokens the bucket holds at most, and holds at the start: the burst allowed at once. */
  burst: number
}

/**
 * A token bucket: `burst` tokens to start with, refilled at `ratePerSec`, one taken per publish.
 * Pure over the clock it is given (milliseconds, any origin, normally monotonic): a clock that
 * steps back refills nothing rather than throwing.
 */
export interface TokenBucket {
  /** Takes a token if there is one; false when the bucket is empty. */
  take(nowMs: number): boolean
  /** Tokens available at `nowMs` (fractional), without taking one. */
  available(nowMs: number): number
}

const EPSILON = 1e-9

export function createTokenBucket(options: TokenBucketOptions, startMs: number): TokenBucket {
  const perMs = options.ratePerSec / 1_000
  let tokens = options.burst
  let updatedAt = startMs
  const refill = (nowMs: number) => {
    if (nowMs > updatedAt) {
      tokens = Math.min(options.burst, tokens + (nowMs - updatedAt) * perMs)
      updatedAt = nowMs
    }
  }
  return {
    take(nowMs) {
      refill(nowMs)
      // Refills add up in floating point (ten 0.1s make 0.9999999999999999): a hair under one
      // token is one token.
      if (tokens < 1 - EPSILON) return false
      tokens = Math.max(0, tokens - 1)
      return true
    },
    available(nowMs) {
      refill(nowMs)
      return tokens
    },
  }
}

export interface PublishRateLimitOptions extends TokenBucketOptions {
  /** Rate-limited publishes in a row after which the client's connection is closed. */
  disconnectAfter: number
}

export interface PublishRateLimitStats {
  /** Publishes over the rate since start (dead-lettered when on sensors/..., never forwarded). */
  limited: number
  /** Connections closed for RATE_DISCONNECT_AFTER limited publishes in a row. */
  disconnected: number
}

export interface PublishRateLimiter {
  /**
   * Wraps an authorizePublish chain (ingest): a publish within the client's rate goes on to
   * `next`; one over it is answered here, and `next` never sees it.
   */
  authorizePublish(next: AuthorizePublish): AuthorizePublish
  /** For authorizeForward: false for a publish that was rate-limited, which no one receives. */
  forwards(packet: { payload: unknown }): boolean
  stats(): PublishRateLimitStats
}

/**
 * Per-connection publish rate limit (DESIGN §8), in front of ingest.
 *
 * Every PUBLISH of a client takes a token, whatever its topic. Without one, the publish is
 * still accepted at the MQTT level (PUBACK for QoS 1: refusing it would close the connection,
 * as ingest explains), but it goes no further: a reading is not stored, and is dead-lettered
 * with reason `rate_limited` on `gateway/deadletter/{deviceId}` (counted like every rejection);
 * a publish on any topic is not forwarded to subscribers and not retained, so a flooding client
 * cannot flood them either. After `disconnectAfter` limited publishes in a row the client's
 * connection is closed (that publish gets no PUBACK; it is dead-lettered too) and one warn
 * line says so. A publish within the rate resets the count.
 *
 * The bucket belongs to the connection (the Aedes client object, so it goes with it): a
 * client that reconnects starts with a full burst, but pays a new CONNECT for it, and the
 * connection limits bound how many can do so at once.
 */
export function createPublishRateLimiter(
  deps: {
    bus: EventBus
    log: Logger
    /** Monotonic milliseconds for the buckets; tests drive it. */
    clock?: () => number
    /** Epoch milliseconds stamped on dead letters. */
    now?: () => number
  },
  options: PublishRateLimitOptions,
): PublishRateLimiter {
  const log = deps.log.child({ module: 'rate-limit' })
  const clock = deps.clock ?? (() => performance.now())
  const now = deps.now ?? Date.now
  const perClient = new WeakMap<Client, { bucket: TokenBucket; inRow: number }>()
  // Aedes copies a publish into a new packet object for delivery, but keeps its payload buffer:
  // that buffer is how authorizeForward recognises a limited publish.
  const limitedPayloads = new WeakSet<object>()
  const stats: PublishRateLimitStats = { limited: 0, disconnected: 0 }
  const detail = `over the publish rate of ${options.ratePerSec}/s (burst ${options.burst}) for this connection`

  const stateOf = (client: Client) => {
    let state = perClient.get(client)
    if (!state) {
      state = { bucket: createTokenBucket(options, clock()), inRow: 0 }
      perClient.set(client, state)
    }
    return state
  }

  return {
    authorizePublish(next) {
      return (client, packet, callback) => {
        // The gateway's own publishes (and wills with no client left) are not rate-limited.
        if (client === null) return next(client, packet, callback)
        const state = stateOf(client)
        if (state.bucket.take(clock())) {
          state.inRow = 0
          return next(client, packet, callback)
        }
        state.inRow++
        stats.limited++
        packet.retain = false
        if (typeof packet.payload === 'object') limitedPayloads.add(packet.payload)
        if (isSensorTopic(packet.topic)) {
          const payload =
            typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
          deps.bus.emit('reading.rejected', {
            deviceId: deviceIdOf(packet.topic),
            clientId: client.id,
            deadLetter: toDeadLetter(
              packet.topic,
              payload,
              { reason: 'rate_limited', detail },
              now(),
            ),
          })
        } else {
          log.debug({ clientId: client.id, topic: packet.topic }, 'publish rate-limited')
        }
        if (state.inRow < options.disconnectAfter) return callback(null)
        stats.disconnected++
        log.warn(
          {
            clientId: client.id,
            limitedInRow: state.inRow,
            ratePerSec: options.ratePerSec,
            burst: options.burst,
          },
          'client disconnected: RATE_DISCONNECT_AFTER publishes in a row over its publish rate',
        )
        // An error here makes Aedes close the connection without a PUBACK ([MQTT-3.3.5-2]).
        callback(new Error('publish rate limit exceeded'))
      }
    },
    forwards: (packet) =>
      typeof packet.payload !== 'object' ||
      packet.payload === null ||
      !limitedPayloads.has(packet.payload),
    stats: () => ({ ...stats }),
  }
}

/** The device level of a sensor topic, as parsePublish files rejections. */
function deviceIdOf(topic: string): string {
  const start = SENSOR_ROOT.length + 1
  const slash = topic.indexOf('/', start)
  const level = slash === -1 ? topic.slice(start) : topic.slice(start, slash)
  return isIdentifier(level) ? level : UNKNOWN_DEVICE_ID
}
