import type { EventBus } from '../bus/event-bus.ts'
import type { StoreError } from '../bus/events.ts'
import { sensorTopic } from '../contract/topics.ts'
import type { Alert, Reading } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'
import { type ReadingStore, StoreRejectedError } from './reading-store.ts'

export interface StoreWriter {
  /** Queues readings for the next group commit; resolves once they are committed to the store. */
  accept(readings: readonly Reading[]): Promise<void>
  /** Resolves when everything accepted so far is written. */
  flush(): Promise<void>
  /** Flushes, then stops; accept() after close rejects. */
  close(): Promise<void>
  stats(): StoreWriterStats
}

export interface StoreWriterStats {
  pendingReadings: number
  pendingAlerts: number
  batchesWritten: number
  readingsWritten: number
  alertsWritten: number
  writeErrors: number
  /** Readings and alerts the store refused for good: dead-lettered, not retried. */
  refusedReadings: number
  refusedAlerts: number
}

export interface StoreWriterDeps {
  store: ReadingStore
  bus: EventBus
  log: Logger
}

export interface StoreWriterOptions {
  /** Most items handed to the store in one call; a longer queue is split. */
  maxBatchSize: number
  /** First retry delay after a failed write; doubles per consecutive failure. */
  retryBaseMs: number
  /** Cap of the retry delay. */
  retryMaxMs: number
  /**
   * close() gives up on what is still queued after this many failed attempts (default 3).
   * During close retries restart from retryBaseMs, so shutdown is not held up by retryMaxMs.
   */
  closeMaxAttempts?: number
}

const OWNER = 'store-writer'
const DEFAULT_CLOSE_MAX_ATTEMPTS = 3

type Kind = 'readings' | 'alerts'

/** A FIFO of items kept as the arrays they arrived in, so enqueueing never copies a queue. */
class ChunkQueue<T> {
  private chunks: T[][] = []
  private head = 0
  private offset = 0
  length = 0

  push(items: T[]): void {
    if (items.length === 0) return
    this.chunks.push(items)
    this.length += items.length
  }

  take(max: number): T[] {
    const out: T[] = []
    while (out.length < max && this.head < this.chunks.length) {
      const chunk = this.chunks[this.head]!
      const n = Math.min(max - out.length, chunk.length - this.offset)
      for (let i = 0; i < n; i++) out.push(chunk[this.offset + i]!)
      this.offset += n
      if (this.offset === chunk.length) {
        this.head++
        this.offset = 0
      }
    }
    this.length -= out.length
    if (this.head > 1024 || this.head === this.chunks.length) {
      this.chunks = this.chunks.slice(this.head)
      this.head = 0
    }
    return out
  }
}

interface Batch {
  kind: Kind
  items: Reading[] | Alert[]
  attempts: number
}

interface Waiter {
  /** Resolved once this many readings (counted since start) are committed. */
  readings: number
  /** ... and this many alerts. */
  alerts: number
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * Group-commit writer between the pipeline and the ReadingStore (DESIGN §2, §5).
 *
 * Everything accepted in one event-loop turn goes to the store in the next setImmediate, as
 * one call of at most maxBatchSize items. At most one store call is in flight; what arrives
 * meanwhile waits for the next batch, so batches grow with load and idle latency stays at
 * one loop turn. A failed batch stays at the head of the queue and is retried with
 * exponential backoff, so order is kept and nothing is written twice by the writer.
 */
export function createStoreWriter(deps: StoreWriterDeps, options: StoreWriterOptions): StoreWriter {
  const { store, bus } = deps
  const log = deps.log.child({ module: OWNER })
  const { maxBatchSize, retryBaseMs, retryMaxMs } = options
  const closeMaxAttempts = options.closeMaxAttempts ?? DEFAULT_CLOSE_MAX_ATTEMPTS
  if (!(Number.isInteger(maxBatchSize) && maxBatchSize > 0)) {
    throw new GatewayError(ERROR_CODES.store, `maxBatchSize must be a positive integer`)
  }

  const readings = new ChunkQueue<Reading>()
  const alerts = new ChunkQueue<Alert>()
  // Monotonic counters: a waiter is done when the committed count passes its target. Batches
  // leave the queues in order, so "committed >= target" means "all of mine are committed".
  let acceptedReadings = 0
  let acceptedAlerts = 0
  let committedReadings = 0
  let committedAlerts = 0
  let acceptWaiters: Waiter[] = []
  let flushWaiters: Waiter[] = []

  let current: Batch | undefined
  /** Halves of a batch the store refused, written (in order) before anything newer. */
  let splits: Batch[] = []
  let refusedReadings = 0
  let refusedAlerts = 0
  let lastKind: Kind = 'alerts'
  let scheduled = false
  let inFlight = false
  let retryTimer: NodeJS.Timeout | undefined
  let failingSince: number | undefined
  let failedAttempts = 0

  let closing = false
  let closeFailures = 0
  let closePromise: Promise<void> | undefined
  let fatal: Error | undefined

  let batchesWritten = 0
  let writeErrors = 0

  bus.on(OWNER, 'alert', (alert) => {
    if (closing) return
    alerts.push([alert])
    acceptedAlerts++
    schedule()
  })

  function schedule(): void {
    if (scheduled || inFlight || retryTimer !== undefined || fatal) return
    scheduled = true
    setImmediate(run)
  }

  /** Alternates kinds when both are queued, so neither readings nor alerts can starve. */
  function nextBatch(): Batch | undefined {
    const preferAlerts = lastKind === 'readings' || readings.length === 0
    if (alerts.length > 0 && preferAlerts) {
      return { kind: 'alerts', items: alerts.take(maxBatchSize), attempts: 0 }
    }
    if (readings.length > 0) {
      return { kind: 'readings', items: readings.take(maxBatchSize), attempts: 0 }
    }
    return undefined
  }

  function run(): void {
    scheduled = false
    retryTimer = undefined
    if (inFlight || fatal) return
    current ??= splits.shift() ?? nextBatch()
    const batch = current
    if (batch === undefined) return
    inFlight = true
    let write: Promise<void>
    try {
      write =
        batch.kind === 'readings'
          ? store.writeReadings(batch.items as Reading[])
          : store.writeAlerts(batch.items as Alert[])
    } catch (err) {
      // A backend that throws instead of rejecting is handled the same way.
      write = Promise.reject(err)
    }
    write.then(
      () => {
        inFlight = false
        onCommitted(batch)
        schedule()
      },
      (err: unknown) => {
        inFlight = false
        onFailed(batch, err)
      },
    )
  }

  function onCommitted(batch: Batch): void {
    current = undefined
    lastKind = batch.kind
    batchesWritten++
    if (batch.kind === 'readings') committedReadings += batch.items.length
    else committedAlerts += batch.items.length
    if (failingSince !== undefined) {
      // Recovery is logged at warn like the outage, so a warn-level log shows both ends.
      log.warn(
        { failedAttempts, outageMs: Date.now() - failingSince },
        'store writes recovered; retried batch committed',
      )
      failingSince = undefined
      failedAttempts = 0
    }
    releaseWaiters()
  }

  function onFailed(batch: Batch, err: unknown): void {
    if (err instanceof StoreRejectedError) {
      onRefused(batch, err)
      return
    }
    batch.attempts++
    writeErrors++
    failedAttempts++
    const message = err instanceof Error ? err.message : String(err)
    const event: StoreError = {
      operation: batch.kind === 'readings' ? 'write_readings' : 'write_alerts',
      message,
      count: batch.items.length,
      ts: Date.now(),
    }
    bus.emit('store.error', event)
    if (failingSince === undefined) {
      failingSince = event.ts
      log.warn(
        { err, operation: event.operation, count: event.count },
        'store write failed; retrying with backoff until it recovers',
      )
    }
    if (closing && ++closeFailures >= closeMaxAttempts) {
      giveUp(message)
      return
    }
    const attempt = closing ? closeFailures : batch.attempts
    const delayMs = Math.min(retryMaxMs, retryBaseMs * 2 ** (attempt - 1))
    retryTimer = setTimeout(run, delayMs)
    // Outside shutdown a retry must not keep the process alive; during close it must, or the
    // process could exit before the data is written.
    if (!closing) retryTimer.unref()
  }

  /**
   * The store refused the batch for good (STYLE habit 7): retrying it whole cannot succeed, so it
   * is split in halves until the refused items stand alone. Those are dead-lettered with the
   * store's reason and count as done (their devices are not asked to resend something the store
   * will never take); every other item of the batch is written.
   */
  function onRefused(batch: Batch, err: StoreRejectedError): void {
    current = undefined
    if (batch.items.length > 1) {
      const half = Math.ceil(batch.items.length / 2)
      splits = [
        { kind: batch.kind, items: batch.items.slice(0, half) as Reading[] | Alert[], attempts: 0 },
        { kind: batch.kind, items: batch.items.slice(half) as Reading[] | Alert[], attempts: 0 },
        ...splits,
      ]
      schedule()
      return
    }
    const ts = Date.now()
    if (batch.kind === 'readings') {
      const reading = batch.items[0] as Reading
      refusedReadings++
      committedReadings++
      bus.emit('reading.rejected', {
        deviceId: reading.deviceId,
        clientId: null,
        deadLetter: {
          topic: sensorTopic(reading.deviceId, reading.metric),
          reason: 'store_rejected',
          detail: err.reason,
          payload: JSON.stringify(reading),
          payloadEncoding: 'utf8',
          ts,
        },
      })
    } else {
      const alert = batch.items[0] as Alert
      refusedAlerts++
      committedAlerts++
      log.error({ alert, reason: err.reason }, 'alert transition refused by the store')
    }
    bus.emit('store.error', {
      operation: batch.kind === 'readings' ? 'write_readings' : 'write_alerts',
      message: err.message,
      count: 1,
      ts,
    })
    releaseWaiters()
    schedule()
  }

  /** At close with the store still failing: fail everyone still waiting, and say how much. */
  function giveUp(lastError: string): void {
    const lostReadings = acceptedReadings - committedReadings
    const lostAlerts = acceptedAlerts - committedAlerts
    fatal = new GatewayError(
      ERROR_CODES.store,
      `store writer closed with ${lostReadings} readings and ${lostAlerts} alerts not written ` +
        `after ${closeFailures} failed attempts at close: ${lastError}`,
    )
    log.error({ lostReadings, lostAlerts, err: fatal }, 'store writer gave up at close')
    for (const waiter of [...acceptWaiters, ...flushWaiters]) waiter.reject(fatal)
    acceptWaiters = []
    flushWaiters = []
  }

  function releaseWaiters(): void {
    // acceptWaiters are in acceptance order with growing targets: stop at the first pending one.
    let done = 0
    while (done < acceptWaiters.length && acceptWaiters[done]!.readings <= committedReadings) {
      acceptWaiters[done]!.resolve()
      done++
    }
    if (done > 0) acceptWaiters = acceptWaiters.slice(done)
    if (flushWaiters.length > 0) {
      flushWaiters = flushWaiters.filter((waiter) => {
        const ready = waiter.readings <= committedReadings && waiter.alerts <= committedAlerts
        if (ready) waiter.resolve()
        return !ready
      })
    }
  }

  function flush(): Promise<void> {
    if (fatal) return Promise.reject(fatal)
    if (committedReadings >= acceptedReadings && committedAlerts >= acceptedAlerts) {
      return Promise.resolve()
    }
    return new Promise((resolve, reject) => {
      flushWaiters.push({ readings: acceptedReadings, alerts: acceptedAlerts, resolve, reject })
    })
  }

  return {
    accept(batch) {
      if (closing) {
        return Promise.reject(new GatewayError(ERROR_CODES.store, 'store writer is closed'))
      }
      if (batch.length === 0) return Promise.resolve()
      // A copy: the caller may reuse its array once accept() returns.
      readings.push(batch.slice())
      acceptedReadings += batch.length
      const target = acceptedReadings
      const done = new Promise<void>((resolve, reject) => {
        acceptWaiters.push({ readings: target, alerts: 0, resolve, reject })
      })
      schedule()
      return done
    },

    flush,

    close() {
      if (closePromise) return closePromise
      closing = true
      bus.removeOwner(OWNER)
      if (retryTimer !== undefined) {
        // Shutdown does not wait out a long backoff: retry now, then on the close schedule.
        clearTimeout(retryTimer)
        retryTimer = undefined
        schedule()
      }
      closePromise = flush().then(() => {
        log.info(
          { batchesWritten, readingsWritten: committedReadings - refusedReadings, refusedReadings },
          'store writer closed',
        )
      })
      return closePromise
    },

    stats() {
      return {
        pendingReadings: acceptedReadings - committedReadings,
        pendingAlerts: acceptedAlerts - committedAlerts,
        batchesWritten,
        readingsWritten: committedReadings - refusedReadings,
        alertsWritten: committedAlerts - refusedAlerts,
        writeErrors,
        refusedReadings,
        refusedAlerts,
      }
    },
  }
}
