import type { Logger } from '../telemetry/logger.ts'
import type { Outbox, StoredNotification } from './outbox.ts'
import type { DeliveryPolicy, DeliveryResult, NotificationChannel } from './types.ts'

/** What happened to a notification after one attempt. */
export type AttemptOutcome =
  | { state: 'delivered' }
  | { state: 'pending'; nextAttemptAt: number; error: string }
  | { state: 'failed'; error: string }

/**
 * Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): a delay drawn uniformly
 * from [0, min(retryMaxMs, retryBaseMs * 2^(attempt-1))). Receivers that failed together do not
 * come back together. `random` is Math.random's range, [0, 1).
 */
export function backoffMs(policy: DeliveryPolicy, attempt: number, random: () => number): number {
  const cap = Math.min(policy.retryMaxMs, policy.retryBaseMs * 2 ** Math.max(0, attempt - 1))
  return Math.floor(random() * cap)
}

/**
 * The outbox's decision after attempt number `attempts` (1 for the first) of a notification
 * built at `createdAtMs`: delivered; dead-lettered (a permanent refusal at once, else after
 * maxAttempts attempts or once maxAgeMs has passed); or tried again after a backoff, or when the
 * receiver said (`Retry-After`), never later than the notification's age limit. A Retry-After
 * that reaches past the age limit dead-letters at once: coming back earlier would ignore the
 * receiver, coming back later is past the limit.
 */
export function decideAfterAttempt(
  policy: DeliveryPolicy,
  attempt: { attempts: number; createdAtMs: number },
  result: DeliveryResult,
  nowMs: number,
  random: () => number,
): AttemptOutcome {
  if (result.ok) return { state: 'delivered' }
  if (result.permanent) return { state: 'failed', error: `refused for good: ${result.error}` }
  if (attempt.attempts >= policy.maxAttempts) {
    return {
      state: 'failed',
      error: `${result.error} (gave up after ${attempt.attempts} attempts)`,
    }
  }
  const deadline = attempt.createdAtMs + policy.maxAgeMs
  if (nowMs >= deadline) {
    return { state: 'failed', error: `${result.error} (expired: older than ${policy.maxAgeMs} ms)` }
  }
  if (result.retryAfterMs !== undefined) {
    const at = nowMs + Math.max(0, result.retryAfterMs)
    if (at > deadline) {
      return {
        state: 'failed',
        error: `${result.error} (Retry-After ${result.retryAfterMs} ms reaches past the age limit of ${policy.maxAgeMs} ms)`,
      }
    }
    return { state: 'pending', nextAttemptAt: at, error: result.error }
  }
  const at = nowMs + backoffMs(policy, attempt.attempts, random)
  return { state: 'pending', nextAttemptAt: Math.min(at, deadline), error: result.error }
}

/** A configured channel as delivery uses it. */
export interface ActiveChannel {
  channel: NotificationChannel
  timeoutMs: number
  concurrency: number
}

export type DeliveryOutcome = 'delivered' | 'retried' | 'failed'
export const DELIVERY_OUTCOMES: readonly DeliveryOutcome[] = ['delivered', 'retried', 'failed']

export interface DeliveryEvent {
  channel: string
  outcome: DeliveryOutcome
  /** Delivered: seconds from the notification's creation to the receiver's acceptance. */
  latencySeconds?: number
}

export interface Delivery {
  /** Something of `channel` became due (added, retried by hand): look now. All channels if absent. */
  kick(channel?: string): void
  /** Attempts in flight now, per channel. */
  inFlight(): Map<string, number>
  /** Aborts the attempts in flight and waits for them; their notifications stay pending. */
  stop(): Promise<void>
}

export interface DeliveryDeps {
  outbox: Outbox
  /** The channels in force (hot reload may change them); a pending row of another waits. */
  channels: () => ReadonlyMap<string, ActiveChannel>
  policy: () => DeliveryPolicy
  log: Logger
  onEvent?: (event: DeliveryEvent) => void
  now?: () => number
  random?: () => number
}

interface Queue {
  name: string
  inFlight: Map<string, AbortController>
  timer: NodeJS.Timeout | undefined
  timerAt: number
}

/**
 * Delivers the outbox's pending notifications (DESIGN §10): each channel has its own queue, with
 * at most `concurrency` attempts in flight and its own timer, so a slow or dead receiver holds
 * only its own channel's slots. Each attempt is bounded by the channel's timeout through an
 * AbortSignal, and its outcome is written to the outbox before the next is taken. Nothing of
 * ingest waits on this: the notifier only writes rows and kicks.
 */
export function createDelivery(deps: DeliveryDeps): Delivery {
  const log = deps.log.child({ module: 'delivery' })
  const now = deps.now ?? Date.now
  const random = deps.random ?? Math.random
  const queues = new Map<string, Queue>()
  const running = new Set<Promise<void>>()
  let stopped = false

  const queueOf = (name: string): Queue => {
    let queue = queues.get(name)
    if (queue === undefined) {
      queue = { name, inFlight: new Map(), timer: undefined, timerAt: Number.POSITIVE_INFINITY }
      queues.set(name, queue)
    }
    return queue
  }

  const wakeAt = (queue: Queue, at: number) => {
    if (queue.timer !== undefined && queue.timerAt <= at) return
    clearTimeout(queue.timer)
    queue.timerAt = at
    // setTimeout holds at most 2^31-1 ms; a later wake just looks again.
    const delay = Math.min(Math.max(0, at - now()), 2_147_483_647)
    queue.timer = setTimeout(() => {
      queue.timer = undefined
      queue.timerAt = Number.POSITIVE_INFINITY
      pump(queue)
    }, delay)
    queue.timer.unref()
  }

  const pump = (queue: Queue) => {
    if (stopped) return
    const active = deps.channels().get(queue.name)
    if (active === undefined) return
    const free = active.concurrency - queue.inFlight.size
    if (free <= 0) return // an attempt that ends pumps again
    const nowMs = now()
    let rows: StoredNotification[]
    try {
      rows = deps.outbox.due(queue.name, nowMs, free, new Set(queue.inFlight.keys()))
    } catch (err) {
      log.error({ err, channel: queue.name }, 'outbox read failed; trying again in 1 s')
      wakeAt(queue, nowMs + 1_000)
      return
    }
    for (const row of rows) start(queue, active, row)
    if (rows.length < free) {
      const next = deps.outbox.nextDueAfter(queue.name, nowMs)
      if (next !== undefined) wakeAt(queue, next)
    }
  }

  const start = (queue: Queue, active: ActiveChannel, row: StoredNotification) => {
    const controller = new AbortController()
    queue.inFlight.set(row.notification.id, controller)
    const task = attempt(queue, active, row, controller).finally(() => {
      running.delete(task)
      queue.inFlight.delete(row.notification.id)
      pump(queue)
    })
    running.add(task)
  }

  const attempt = async (
    queue: Queue,
    active: ActiveChannel,
    row: StoredNotification,
    controller: AbortController,
  ) => {
    const { notification } = row
    const attemptNo = row.attempts + 1
    const timer = setTimeout(
      () => controller.abort(new Error(`timed out after ${active.timeoutMs} ms`)),
      active.timeoutMs,
    )
    let result: DeliveryResult
    try {
      result = await settleOrAbort(
        active.channel.deliver(notification, attemptNo, controller.signal),
        controller.signal,
      )
    } catch (err) {
      // Channels return errors; one that throws is still a retryable failure, never a crash.
      result = { ok: false, permanent: false, error: (err as Error)?.message ?? String(err) }
    } finally {
      clearTimeout(timer)
    }
    // Stopping: the attempt was cut short by us, not by the receiver; it stays as it was, pending.
    if (stopped) return
    const nowMs = now()
    const outcome = decideAfterAttempt(
      deps.policy(),
      { attempts: attemptNo, createdAtMs: notification.createdAt },
      result,
      nowMs,
      random,
    )
    const fields = { id: notification.id, channel: queue.name, attempt: attemptNo }
    try {
      if (outcome.state === 'delivered') {
        deps.outbox.markDelivered(notification.id, attemptNo, nowMs)
        log.debug(fields, 'notification delivered')
        deps.onEvent?.({
          channel: queue.name,
          outcome: 'delivered',
          latencySeconds: Math.max(0, nowMs - notification.createdAt) / 1000,
        })
      } else if (outcome.state === 'pending') {
        deps.outbox.markRetry(
          notification.id,
          attemptNo,
          outcome.nextAttemptAt,
          outcome.error,
          nowMs,
        )
        log.info(
          { ...fields, error: outcome.error, retryInMs: outcome.nextAttemptAt - nowMs },
          'notification not delivered; will retry',
        )
        deps.onEvent?.({ channel: queue.name, outcome: 'retried' })
      } else {
        deps.outbox.markFailed(notification.id, attemptNo, outcome.error, nowMs)
        log.warn({ ...fields, error: outcome.error }, 'notification dead-lettered')
        deps.onEvent?.({ channel: queue.name, outcome: 'failed' })
      }
    } catch (err) {
      // The row stays pending and is tried again: at least once, never lost.
      log.error({ err, ...fields }, 'outbox write failed after a delivery attempt')
    }
  }

  return {
    kick(channel) {
      const names = channel === undefined ? [...deps.channels().keys()] : [channel]
      for (const name of names) pump(queueOf(name))
    },
    inFlight: () => new Map([...queues].map(([name, q]) => [name, q.inFlight.size])),
    async stop() {
      stopped = true
      for (const queue of queues.values()) {
        clearTimeout(queue.timer)
        for (const controller of queue.inFlight.values())
          controller.abort(new Error('gateway stopping'))
      }
      await Promise.allSettled([...running])
    },
  }
}

/**
 * The channel's answer, or a retryable failure as soon as `signal` aborts: a channel that ignores
 * its signal cannot hold a slot past the timeout (it is left to finish on its own).
 */
function settleOrAbort(
  delivery: Promise<DeliveryResult>,
  signal: AbortSignal,
): Promise<DeliveryResult> {
  const aborted = (): DeliveryResult => ({
    ok: false,
    permanent: false,
    error: (signal.reason as Error | undefined)?.message ?? 'aborted',
  })
  if (signal.aborted) return Promise.resolve(aborted())
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(aborted())
    signal.addEventListener('abort', onAbort, { once: true })
    delivery.then(
      (result) => {
        signal.removeEventListener('abort', onAbort)
        resolve(result)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}
