import { createRequire } from 'node:module'
import type { AedesOptions } from 'aedes'
import { Redis } from 'ioredis'
import type { Logger } from '../telemetry/logger.ts'

// Both packages are CommonJS without types for their factories.
const require = createRequire(import.meta.url)
const createRedisEmitter = require('mqemitter-redis') as (options: {
  subConn: Redis
  pubConn: Redis
}) => NonNullable<AedesOptions['mq']> & {
  state: NodeJS.EventEmitter
  close(callback?: () => void): void
}
const createRedisPersistence = require('aedes-persistence-redis') as (options: {
  conn: Redis
}) => NonNullable<AedesOptions['persistence']> & { destroy(): Promise<void> }

/**
 * The broker's shared state on Redis (DESIGN §9): `mqemitter-redis` carries every message
 * between instances, `aedes-persistence-redis` keeps retained messages, sessions and their queued
 * messages where any instance finds them. Three connections (subscribe, publish, persistence)
 * whose health is one flag: the gateway is "up" on Redis only when all three are ready.
 */
export interface RedisBackends {
  mq: NonNullable<AedesOptions['mq']>
  persistence: NonNullable<AedesOptions['persistence']>
  isUp(): boolean
  /** Resolves at once while up, else when every connection is ready again. */
  whenUp(): Promise<void>
  /** A Redis round trip within timeoutMs (readiness): true when it answered. */
  ping(timeoutMs: number): Promise<boolean>
  /** Shutdown has begun: the connections closing from now on are not an outage to report. */
  shuttingDown(): void
  /** Closes the persistence, then the emitter (after the broker has closed). */
  close(): Promise<void>
}

export function openRedisBackends(url: string, deps: { log: Logger }): RedisBackends {
  const log = deps.log.child({ module: 'redis' })
  const options = {
    // Commands issued while Redis is away wait for it (ioredis' offline queue) rather than fail:
    // the gateway withholds QoS 1 acknowledgements meanwhile (src/cluster/redis-gate.ts).
    enableOfflineQueue: true,
    // Never give up reconnecting; back off to 2 s.
    retryStrategy: (attempt: number) => Math.min(attempt * 100, 2_000),
    maxRetriesPerRequest: null,
    lazyConnect: false,
  }
  const connections = {
    subscribe: new Redis(url, options),
    publish: new Redis(url, options),
    persistence: new Redis(url, options),
  }
  const all = Object.values(connections)
  let up = false
  let waiters: Array<() => void> = []
  let closing = false

  const update = () => {
    const now = all.every((conn) => conn.status === 'ready')
    if (now === up) return
    up = now
    if (closing) return
    if (up) {
      log.warn({ url: redactUrl(url) }, 'Redis connected: broker messages and sessions shared')
      for (const resolve of waiters) resolve()
      waiters = []
    } else {
      log.error(
        { url: redactUrl(url) },
        'Redis unreachable: QoS 1 publishes are not acknowledged until it is back; reconnecting',
      )
    }
  }
  for (const [role, conn] of Object.entries(connections)) {
    conn.on('ready', update)
    conn.on('close', update)
    conn.on('end', update)
    // ioredis reports every failed reconnect attempt: the state change is what gets logged.
    conn.on('error', (err: Error) =>
      log.debug({ role, err: err.message }, 'Redis connection error'),
    )
  }

  const persistence = createRedisPersistence({ conn: connections.persistence })
  joinConcurrentAddSubscriptions(persistence)
  const mq = createRedisEmitter({ subConn: connections.subscribe, pubConn: connections.publish })
  // The emitter re-emits its connections' errors on `state`; unheard, an 'error' event would
  // end the process. The connections' own handlers above already report them.
  mq.state.on('error', () => {})
  // Aedes closes its emitter as soon as its clients are closed, while their last messages (the
  // gateway's offline statuses) and the persistence's own clean-up still use it; commands caught
  // on a closed connection would then reject where nobody listens. The emitter is closed here,
  // in close(), after the persistence.
  const closeEmitter = mq.close.bind(mq)
  mq.close = (callback?: () => void) => callback?.()

  return {
    mq,
    persistence,
    isUp: () => up,
    whenUp() {
      if (up) return Promise.resolve()
      return new Promise((resolve) => waiters.push(resolve))
    },
    async ping(timeoutMs) {
      if (!up) return false
      let timer: NodeJS.Timeout | undefined
      try {
        const answer = await Promise.race([
          connections.persistence.ping(),
          new Promise<'timeout'>((resolve) => {
            timer = setTimeout(() => resolve('timeout'), timeoutMs)
          }),
        ])
        return answer === 'PONG'
      } catch {
        return false
      } finally {
        clearTimeout(timer)
      }
    },
    shuttingDown() {
      closing = true
    },
    async close() {
      closing = true
      for (const resolve of waiters) resolve()
      waiters = []
      await persistence.destroy().catch(() => {})
      await new Promise<void>((resolve) => closeEmitter(resolve))
      for (const conn of all) conn.disconnect()
    },
  }
}

interface SubscriptionStore {
  addSubscriptions(
    client: { id: string },
    subs: ReadonlyArray<{ topic: string; qos: number }>,
    callback?: unknown,
  ): Promise<unknown> | undefined
}

/**
 * Aedes 1.2 stores a persistent session's SUBSCRIBE once per topic in it, each time with the
 * whole list (lib/handlers/subscribe.js, storeSubscriptions). aedes-persistence-redis waits for
 * its own broadcast of each call under a key made of the client and the first topic, so the
 * second call replaces the first's waiter and that SUBACK never comes: a clean-session-false
 * SUBSCRIBE of two topics hangs. Identical calls in flight are joined into one here.
 */
function joinConcurrentAddSubscriptions(persistence: object): void {
  const store = persistence as SubscriptionStore
  const original = store.addSubscriptions.bind(store)
  const inFlight = new Map<string, Promise<unknown>>()
  store.addSubscriptions = (client, subs, callback) => {
    if (callback !== undefined) return original(client, subs, callback)
    const key = `${client.id}\u0000${JSON.stringify(subs.map((sub) => [sub.topic, sub.qos]))}`
    let pending = inFlight.get(key)
    if (pending === undefined) {
      pending = (original(client, subs) as Promise<unknown>).finally(() => inFlight.delete(key))
      inFlight.set(key, pending)
    }
    return pending
  }
}

/** The URL without its password, for logs. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(invalid URL)'
  }
}
