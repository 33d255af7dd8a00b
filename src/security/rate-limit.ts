import type { AedesOptions, Client, PublishPacket } from 'aedes'
import { SUPPRESSED_TOPIC } from '../ingest/suppressed-publishes.ts'
import type { Logger } from '../telemetry/logger.ts'

type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>
type PublishCallback = Parameters<AuthorizePublish>[2]

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
  /** Milliseconds from `nowMs` until a token is there (0 when one is). */
  msUntilToken(nowMs: number): number
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
    msUntilToken(nowMs) {
      refill(nowMs)
      return tokens < 1 - EPSILON ? (1 - tokens) / perMs : 0
    },
  }
}

export interface PublishRateLimitOptions extends TokenBucketOptions {
  /**
   * How far ahead of its bucket a client may get before its connection is closed: QoS 1/2
   * publishes waiting for a token, plus QoS 0 publishes dropped and not yet earned back by the
   * refill (RATE_DISCONNECT_AFTER; README Limits).
   */
  disconnectAfter: number
  /** Least time between two warn lines about publishes over the rate (all clients together). */
  noteIntervalMs?: number
}

export interface PublishRateLimitStats {
  /** QoS 0 publishes over the rate: dropped (not forwarded, not retained, not stored). */
  droppedQos0: number
  /** QoS 1 publishes over the rate: held until a token came (or the connection closed). */
  pacedQos1: number
  /** QoS 2 publishes over the rate, likewise. */
  pacedQos2: number
  /** QoS 1/2 publishes waiting for a token now, all clients together. */
  waiting: number
  /** Connections closed for getting RATE_DISCONNECT_AFTER publishes ahead of their bucket. */
  disconnected: number
}

export interface PublishRateLimiter {
  /**
   * Wraps an authorizePublish chain (ingest): a publish within the client's rate goes on to
   * `next` at once; a QoS 1/2 one over it goes on when the client's bucket has a token for it;
   * a QoS 0 one over it is answered here, and `next` never sees it.
   */
  authorizePublish(next: AuthorizePublish): AuthorizePublish
  /** For authorizeForward: false for a publish that was dropped over the rate, which no one receives. */
  forwards(packet: { topic: string }): boolean
  stats(): PublishRateLimitStats
}

/** A QoS 1/2 publish waiting for a token of its client's bucket, then passed on to `next`. */
interface Paced {
  packet: PublishPacket
  callback: PublishCallback
  next: AuthorizePublish
}

/** A dropped QoS 0 publish, answered once the refill has earned it back (`dueMs`). */
interface Dropped {
  callback: PublishCallback
  dueMs: number
}

/** First in, first out, without Array#shift's copying: items from `head` on are queued. */
interface Fifo<T> {
  items: Array<T | undefined>
  head: number
}

const fifo = <T>(): Fifo<T> => ({ items: [], head: 0 })
const sizeOf = (q: Fifo<unknown>) => q.items.length - q.head
const peek = <T>(q: Fifo<T>) => q.items[q.head] as T
const take = <T>(q: Fifo<T>): T => {
  const item = q.items[q.head] as T
  q.items[q.head++] = undefined
  if (q.head === q.items.length) {
    q.items = []
    q.head = 0
  } else if (q.head > 1_024 && q.head * 2 > q.items.length) {
    // Compacted now and then, so a long-held client does not keep a growing array.
    q.items = q.items.slice(q.head)
    q.head = 0
  }
  return item
}

/** One connection's rate state; it lives as long as the Aedes client object (a WeakMap key). */
interface ClientRate {
  bucket: TokenBucket
  /** QoS 1/2 publishes waiting for a token, oldest first: MQTT keeps a client's order. */
  paced: Fifo<Paced>
  /** Dropped QoS 0 publishes not yet answered, by due time (which only grows). */
  dropped: Fifo<Dropped>
  /** The one timer of this client, armed for whichever of the two is due first. */
  timer: NodeJS.Timeout | null
  timerDueMs: number
  /** QoS 0 publishes dropped and not yet earned back by the refill, as of `debtAtMs`. */
  dropDebt: number
  debtAtMs: number
  /** Listening for the connection's close, to release what it holds. */
  watching: boolean
  /** Closed by this limiter: later publishes of the same socket read are ignored. */
  cutOff: boolean
}

const NOTE_INTERVAL_MS = 10_000

/**
 * Per-connection publish rate limit (DESIGN §8), in front of ingest. Every PUBLISH of a client
 * takes a token of its bucket, whatever its topic. Without one:
 *
 * - QoS 1 and QoS 2 are PACED, never acknowledged-and-dropped: the publish waits here, in a FIFO
 *   per client, until the bucket has a token, then goes on down the chain (ingest: stored, and
 *   only then the PUBACK, DESIGN §5). Aedes dispatches every packet of a socket read at once,
 *   so many may wait together; one timer per client serves them in order. The client's own
 *   in-flight window (and TCP, since Aedes reads on once a read's packets are done) slows it down.
 * - QoS 0 is DROPPED: not passed on, not retained, diverted to SUPPRESSED_TOPIC like a refused
 *   publish (so no subscriber gets it, `forwards`, on any instance), only counted.
 *   Nothing is dead-lettered per message: over-limit traffic must cost less than normal traffic.
 *   Its callback is held until the refill has earned the drop back, so Aedes reads no more of
 *   that socket meanwhile: a flood is held back by TCP instead of read and dropped at full speed
 *   (bench/rate-flood.ts). At most one warn line per `noteIntervalMs` (all clients together)
 *   says how many were dropped and held since the last one.
 *
 * "Far over the rate" (RATE_DISCONNECT_AFTER = `disconnectAfter`): how far a client is ahead of
 * its bucket, counted as the QoS 1/2 publishes it has waiting plus the QoS 0 publishes it had
 * dropped, less what the bucket refilled since (one per token). A single refilled token does not
 * reset it (the old "limited in a row" count did, so it never fired at 100/s). A client sending
 * QoS 0 at up to twice its rate never gets there; beyond, it grows by (sent - 2 x rate) a
 * second. A QoS 1 client gets there with more than `disconnectAfter` publishes in flight waiting
 * (more than disconnectAfter / rate seconds of tokens). The publish that gets it there closes the
 * connection (an error to Aedes: no PUBACK, [MQTT-3.3.5-2]); one warn line says so.
 *
 * A connection that closes while publishes wait releases them: they are dropped without their
 * callbacks (Aedes writes nothing for them, and keeps nothing: a closed client reads no more),
 * never passed on, and not acknowledged: a client with a session sends them again.
 *
 * The bucket belongs to the connection (the Aedes client object, so it goes with it): a client
 * that reconnects starts with a full burst, but pays a new CONNECT for it, and the connection
 * limits bound how many can do so at once.
 */
export function createPublishRateLimiter(
  deps: {
    log: Logger
    /** Monotonic milliseconds for the buckets; tests drive it. */
    clock?: () => number
  },
  options: PublishRateLimitOptions,
): PublishRateLimiter {
  const log = deps.log.child({ module: 'rate-limit' })
  const clock = deps.clock ?? (() => performance.now())
  const perMs = options.ratePerSec / 1_000
  const noteIntervalMs = options.noteIntervalMs ?? NOTE_INTERVAL_MS
  const perClient = new WeakMap<Client, ClientRate>()
  const stats: PublishRateLimitStats = {
    droppedQos0: 0,
    pacedQos1: 0,
    pacedQos2: 0,
    waiting: 0,
    disconnected: 0,
  }
  // Since the last warn line: what it will report.
  let note = { at: Number.NEGATIVE_INFINITY, droppedQos0: 0, paced: 0 }

  const stateOf = (client: Client): ClientRate => {
    let state = perClient.get(client)
    if (!state) {
      state = {
        bucket: createTokenBucket(options, clock()),
        paced: fifo(),
        dropped: fifo(),
        timer: null,
        timerDueMs: 0,
        dropDebt: 0,
        debtAtMs: 0,
        watching: false,
        cutOff: false,
      }
      perClient.set(client, state)
    }
    return state
  }

  const debtAt = (state: ClientRate, nowMs: number) =>
    Math.max(0, state.dropDebt - Math.max(0, nowMs - state.debtAtMs) * perMs)

  /** Drops what the client holds, without a callback: its connection is gone or going. */
  const release = (state: ClientRate) => {
    stats.waiting -= sizeOf(state.paced)
    state.paced = fifo()
    state.dropped = fifo()
    if (state.timer) clearTimeout(state.timer)
    state.timer = null
  }

  const noteOverRate = (client: Client, nowMs: number, qos: number) => {
    if (qos === 0) note.droppedQos0++
    else note.paced++
    if (nowMs - note.at < noteIntervalMs) return
    log.warn(
      {
        clientId: client.id,
        droppedQos0: note.droppedQos0,
        pacedQos12: note.paced,
        ratePerSec: options.ratePerSec,
        burst: options.burst,
      },
      'publishes over PUBLISH_RATE: QoS 0 dropped, QoS 1/2 held for a token (counts since the last such line, all clients)',
    )
    note = { at: nowMs, droppedQos0: 0, paced: 0 }
  }

  const disconnect = (
    client: Client,
    state: ClientRate,
    ahead: number,
    callback: PublishCallback,
  ) => {
    stats.disconnected++
    state.cutOff = true
    release(state)
    log.warn(
      {
        clientId: client.id,
        aheadOfBucket: Math.round(ahead),
        ratePerSec: options.ratePerSec,
        burst: options.burst,
      },
      'client disconnected: RATE_DISCONNECT_AFTER publishes ahead of its publish rate',
    )
    // An error here makes Aedes close the connection without a PUBACK ([MQTT-3.3.5-2]).
    callback(new Error('publish rate limit exceeded'))
  }

  /**
   * The client's timer: answers the dropped publishes that are due, passes paced ones on while
   * the bucket has tokens, and re-arms itself for what is left.
   */
  const serve = (client: Client, state: ClientRate) => {
    state.timer = null
    if (client.closed) return release(state)
    const nowMs = clock()
    while (sizeOf(state.dropped) > 0 && peek(state.dropped).dueMs <= nowMs) {
      take(state.dropped).callback(null)
    }
    while (sizeOf(state.paced) > 0 && state.bucket.take(nowMs)) {
      const { packet, callback, next } = take(state.paced)
      stats.waiting--
      next(client, packet, callback)
      // Passing one on may have ended the connection (an error down the chain).
      if (client.closed) return release(state)
    }
    arm(client, state, nowMs)
  }

  const arm = (client: Client, state: ClientRate, nowMs: number) => {
    let dueMs = Number.POSITIVE_INFINITY
    if (sizeOf(state.dropped) > 0) dueMs = peek(state.dropped).dueMs
    if (sizeOf(state.paced) > 0) dueMs = Math.min(dueMs, nowMs + state.bucket.msUntilToken(nowMs))
    if (dueMs === Number.POSITIVE_INFINITY || (state.timer && state.timerDueMs <= dueMs)) return
    if (state.timer) clearTimeout(state.timer)
    state.timerDueMs = dueMs
    // At least 1 ms: Node's timers and performance.now() may disagree by a fraction of one.
    state.timer = setTimeout(serve, Math.max(1, Math.ceil(dueMs - nowMs)), client, state)
    // Pacing never keeps the process alive; a closing broker closes the client, which releases.
    state.timer.unref()
  }

  const watchClose = (client: Client, state: ClientRate) => {
    if (state.watching) return
    state.watching = true
    // Aedes destroys the socket when it closes a client, whoever ended it: 'close' then comes.
    client.conn.once('close', () => release(state))
  }

  return {
    authorizePublish(next) {
      return (client, packet, callback) => {
        // The gateway's own publishes (and wills with no client left) are not rate-limited.
        if (client === null) return next(client, packet, callback)
        const state = stateOf(client)
        // Behind publishes of the same socket read that this limiter has already closed on.
        if (state.cutOff) return
        const nowMs = clock()
        // Paced publishes come first: a token goes to the oldest ([MQTT-4.6.0-6], order).
        if (sizeOf(state.paced) === 0 && state.bucket.take(nowMs)) {
          return next(client, packet, callback)
        }

        const debt = debtAt(state, nowMs)
        const ahead = sizeOf(state.paced) + debt + 1
        noteOverRate(client, nowMs, packet.qos)
        if (packet.qos === 0) {
          stats.droppedQos0++
          packet.retain = false
          // Out of circulation, as refused publishes are: a topic nobody receives (forwards) or
          // listens to, on any instance (the shared emitter with REDIS_URL carries it).
          packet.topic = SUPPRESSED_TOPIC
          if (ahead >= options.disconnectAfter) return disconnect(client, state, ahead, callback)
          state.dropDebt = debt + 1
          state.debtAtMs = nowMs
          // Dropped, but answered only once the refill has earned it back: until then Aedes
          // reads no more of this socket (it reads on once a read's packets are all answered),
          // so a flood is held back by TCP instead of being read and dropped as fast as it
          // comes, and costs the gateway about twice the client's rate at most.
          state.dropped.items.push({ callback, dueMs: nowMs + state.dropDebt / perMs })
        } else {
          if (packet.qos === 2) stats.pacedQos2++
          else stats.pacedQos1++
          if (ahead >= options.disconnectAfter) return disconnect(client, state, ahead, callback)
          state.paced.items.push({ packet, callback, next })
          stats.waiting++
        }
        watchClose(client, state)
        arm(client, state, nowMs)
      }
    },
    forwards: (packet) => packet.topic !== SUPPRESSED_TOPIC,
    stats: () => ({ ...stats }),
  }
}
