import type { EventBus } from '../bus/event-bus.ts'
import type { StoreError } from '../bus/events.ts'
import { sensorTopic } from '../contract/topics.ts'
import type { Alert, Reading } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'
import { type ReadingStore, StoreRejectedError } from './reading-store.ts'
import type { Spool } from './spool.ts'

/** Called once a publish's readings are durable, or with the reason they never will be. */
export type DurableCallback = (err?: Error) => void

export interface StoreWriter {
  /**
   * QoS 1: queues readings for the next group commit; `done` once they are durable (committed
   * to the store, or appended to the on-disk spool while the store is down or slow). A callback,
   * not a Promise: this runs once per publish, and a Promise, its two handlers and a microtask
   * per publish showed in the profile and held memory per publish under overload. The writer
   * keeps the array: the caller must not change it afterwards.
   */
  accept(readings: readonly Reading[], done: DurableCallback): void
  /**
   * QoS 0, best effort: queued like accept() while fewer than queueLimit readings wait in memory;
   * false (the readings dropped, and counted; `done` never called) when the queue is full.
   */
  offer(readings: readonly Reading[], done: DurableCallback): boolean
  /** Resolves when everything accepted so far is durable (stored or spooled). */
  flush(): Promise<void>
  /** Flushes, then stops; accept() after close calls back with an error. What is spooled stays. */
  close(): Promise<void>
  /**
   * The store says it answers again (InfluxDB came up and its schema is created): a retry that
   * waits out its backoff runs now, so the spool's replay starts without waiting up to retryMaxMs.
   */
  retryNow(): void
  /** Alert transitions in the spool, not yet in the store, oldest first (start-up restore). */
  spooledAlerts(): Alert[]
  stats(): StoreWriterStats
}

export interface StoreWriterStats {
  /** Accepted, not yet durable: in memory. */
  pendingReadings: number
  pendingAlerts: number
  batchesWritten: number
  /** Committed to the store (directly or replayed from the spool). */
  readingsWritten: number
  alertsWritten: number
  writeErrors: number
  /** Readings and alerts the store refused for good: dead-lettered, not retried. */
  refusedReadings: number
  refusedAlerts: number
  /** True from a failed (or too slow) write until the spool is replayed and empty. */
  spooling: boolean
  /** True while the spool cannot take the next batch: QoS 1 acknowledgements are withheld. */
  spoolFull: boolean
  spooledItems: number
  spoolBytes: number
  /** Items written to the store from the spool. */
  replayedItems: number
  /** QoS 0 readings dropped because the in-memory queue was full. */
  droppedQos0: number
}

export interface StoreWriterDeps {
  store: ReadingStore
  bus: EventBus
  log: Logger
  /** Where batches go while the store is down or slow; without one, the writer only retries. */
  spool?: Spool
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
  /** A store write in flight longer than this sends newer batches to the spool (default 2 s). */
  spoolAfterMs?: number
  /** Most readings waiting in memory before QoS 0 readings are dropped (default 100,000). */
  queueLimit?: number
}

const OWNER = 'store-writer'
const DEFAULT_CLOSE_MAX_ATTEMPTS = 3
const DEFAULT_SPOOL_AFTER_MS = 2_000
const DEFAULT_QUEUE_LIMIT = 100_000

type Kind = 'readings' | 'alerts'

/** A FIFO of items kept as the arrays they arrived in, so enqueueing never copies a queue. */
class ChunkQueue<T> {
  private chunks: Array<readonly T[]> = []
  private head = 0
  private offset = 0
  length = 0

  push(items: readonly T[]): void {
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

/** A replayed spool row: removed from the spool once every piece of it is stored or refused. */
interface SpoolOrigin {
  seq: number
  pieces: number
}

interface Batch {
  kind: Kind
  items: Reading[] | Alert[]
  attempts: number
  /** Set when the batch came from the spool: it is already durable (and acknowledged). */
  origin?: SpoolOrigin
}

interface Waiter {
  /** Done once this many readings (counted since start) are durable. */
  readings: number
  /** ... and this many alerts. */
  alerts: number
  done: DurableCallback
}

/**
 * Group-commit writer between the pipeline and the ReadingStore (DESIGN §2, §5).
 *
 * Everything accepted in one event-loop turn goes to the store in the next setImmediate, as
 * one call of at most maxBatchSize items. At most one store call is in flight; what arrives
 * meanwhile waits for the next batch, so batches grow with load and idle latency stays at
 * one loop turn.
 *
 * When a write fails (or is still in flight after spoolAfterMs) and a spool is configured, the
 * writer switches to spooling: the failed batch and everything after it are appended to the
 * on-disk spool, which makes them durable, so their devices get their PUBACK; the spool is
 * replayed to the store in order, one batch at a time with backoff while the store keeps failing,
 * and once it is empty the writer writes directly again. Writes are idempotent by
 * (device, metric, ts), so a batch replayed twice (a crash between the store's commit and the
 * removal from the spool) is stored once. Without a spool, or with the spool full, a failed batch
 * stays at the head of the queue and is retried: nothing newer is acknowledged meanwhile.
 */
export function createStoreWriter(deps: StoreWriterDeps, options: StoreWriterOptions): StoreWriter {
  const { store, bus, spool } = deps
  const log = deps.log.child({ module: OWNER })
  const { maxBatchSize, retryBaseMs, retryMaxMs } = options
  const closeMaxAttempts = options.closeMaxAttempts ?? DEFAULT_CLOSE_MAX_ATTEMPTS
  const spoolAfterMs = options.spoolAfterMs ?? DEFAULT_SPOOL_AFTER_MS
  const queueLimit = options.queueLimit ?? DEFAULT_QUEUE_LIMIT
  if (!(Number.isInteger(maxBatchSize) && maxBatchSize > 0)) {
    throw new GatewayError(ERROR_CODES.store, `maxBatchSize must be a positive integer`)
  }

  const readings = new ChunkQueue<Reading>()
  const alerts = new ChunkQueue<Alert>()
  // Monotonic counters: a waiter is done when the durable count passes its target. Batches
  // become durable in acceptance order, so "durable >= target" means "all of mine are durable".
  let acceptedReadings = 0
  let acceptedAlerts = 0
  let durableReadings = 0
  let durableAlerts = 0
  // A FIFO read from acceptHead: taking from the front never copies the array.
  let acceptWaiters: Waiter[] = []
  let acceptHead = 0
  let flushWaiters: Waiter[] = []

  /** The batch being written to the store (direct, or replayed from the spool). */
  let current: Batch | undefined
  /** Halves of a batch the store refused, written (in order) before anything newer. */
  let splits: Batch[] = []
  /** A batch taken from memory that the full spool could not take: the next to spool. */
  let overflow: Batch | undefined
  let lastKind: Kind = 'alerts'
  let scheduled = false
  let inFlight = false
  let idleWaiters: Array<() => void> = []
  let retryTimer: NodeJS.Timeout | undefined
  let slowTimer: NodeJS.Timeout | undefined
  let failingSince: number | undefined
  let failedAttempts = 0

  let spooling = spool !== undefined && spool.stats().batches > 0
  let spoolFull = false
  let queueFull = false

  let closing = false
  let closeFailures = 0
  let closePromise: Promise<void> | undefined
  let fatal: Error | undefined

  let batchesWritten = 0
  let writeErrors = 0
  let storedReadings = 0
  let storedAlerts = 0
  let refusedReadings = 0
  let refusedAlerts = 0
  let replayedItems = 0
  let droppedQos0 = 0

  if (spooling) {
    log.warn(
      { spooledItems: spool?.stats().items },
      'spool holds batches from an earlier run: replaying them to the store',
    )
    schedule()
  }

  bus.on(OWNER, 'alert', (alert) => {
    if (closing) return
    alerts.push([alert])
    acceptedAlerts++
    schedule()
  })

  function schedule(): void {
    if (scheduled || fatal) return
    scheduled = true
    setImmediate(run)
  }

  /** Alternates kinds when both are queued, so neither readings nor alerts can starve. */
  function nextBatch(): Batch | undefined {
    const preferAlerts = lastKind === 'readings' || readings.length === 0
    if (alerts.length > 0 && preferAlerts) {
      lastKind = 'alerts'
      return { kind: 'alerts', items: alerts.take(maxBatchSize), attempts: 0 }
    }
    if (readings.length > 0) {
      lastKind = 'readings'
      return { kind: 'readings', items: readings.take(maxBatchSize), attempts: 0 }
    }
    return undefined
  }

  function replayBatch(): Batch | undefined {
    const oldest = spool?.oldest()
    if (oldest === undefined) return undefined
    return {
      kind: oldest.kind,
      items: oldest.items,
      attempts: 0,
      origin: { seq: oldest.seq, pieces: 1 },
    }
  }

  function run(): void {
    scheduled = false
    if (fatal) return
    if (spooling) moveToSpool()
    if (inFlight || retryTimer !== undefined) return
    if (current === undefined) {
      current = splits.shift()
      // At close the spool is left for the next start: shutdown does not wait for a replay.
      if (current === undefined && spooling && !closing) current = replayBatch()
      if (current === undefined && !spooling) current = nextBatch()
    }
    if (current === undefined) {
      if (spooling && !closing && overflow === undefined && spool?.stats().batches === 0) {
        spooling = false
        log.warn({ replayedItems }, 'spool replayed: writing to the store directly again')
        schedule()
      }
      notifyIdle()
      return
    }
    write(current)
  }

  /** While spooling: everything queued in memory goes to the spool, and is durable from then. */
  function moveToSpool(): void {
    if (!spool) return
    for (;;) {
      const batch = overflow ?? nextBatch()
      if (batch === undefined) break
      if (spool.append(batch.kind, batch.items) === undefined) {
        overflow = batch
        if (!spoolFull) {
          spoolFull = true
          log.error(
            { ...spool.stats() },
            'spool full: QoS 1 publishes are not acknowledged (devices resend) until the store takes the spool',
          )
        }
        return
      }
      overflow = undefined
      markDurable(batch)
    }
    if (spoolFull) {
      spoolFull = false
      log.warn({ ...spool.stats() }, 'spool has room again: acknowledging QoS 1 publishes')
    }
  }

  function enterSpooling(why: string): void {
    if (spooling || !spool || closing) return
    spooling = true
    log.warn({ why }, 'spooling to disk until the store recovers')
    schedule()
  }

  /**
   * A direct write is taking too long: the batch in flight is spooled first (so it stays the
   * oldest, and durability stays in acceptance order), and newer batches follow it. The write
   * goes on; if it commits, its spool row is removed as if replayed.
   */
  function spoolSlowWrite(): void {
    slowTimer = undefined
    const batch = current
    if (!spool || spooling || closing || batch === undefined || batch.origin !== undefined) return
    const seq = spool.append(batch.kind, batch.items)
    if (seq === undefined) return
    batch.origin = { seq, pieces: 1 }
    markDurable(batch)
    enterSpooling(`a store write is taking longer than ${spoolAfterMs} ms`)
  }

  function write(batch: Batch): void {
    inFlight = true
    if (spool && !spooling && batch.origin === undefined && !closing) {
      slowTimer = setTimeout(spoolSlowWrite, spoolAfterMs)
      slowTimer.unref()
    }
    let written: Promise<void>
    try {
      written =
        batch.kind === 'readings'
          ? store.writeReadings(batch.items as Reading[])
          : store.writeAlerts(batch.items as Alert[])
    } catch (err) {
      // A backend that throws instead of rejecting is handled the same way.
      written = Promise.reject(err)
    }
    written.then(
      () => {
        settle()
        onCommitted(batch)
        schedule()
      },
      (err: unknown) => {
        settle()
        onFailed(batch, err)
        schedule()
      },
    )
  }

  function settle(): void {
    inFlight = false
    clearTimeout(slowTimer)
    slowTimer = undefined
  }

  function notifyIdle(): void {
    if (inFlight || scheduled) return
    for (const resolve of idleWaiters) resolve()
    idleWaiters = []
  }

  function markDurable(batch: Batch): void {
    if (batch.kind === 'readings') durableReadings += batch.items.length
    else durableAlerts += batch.items.length
    releaseWaiters()
  }

  /** A piece of a batch is done (stored or refused): durable now, or its spool row removable. */
  function pieceDone(batch: Batch): void {
    if (batch.origin === undefined) {
      markDurable(batch)
      return
    }
    replayedItems += batch.items.length
    if (--batch.origin.pieces === 0) spool?.remove(batch.origin.seq)
  }

  function onCommitted(batch: Batch): void {
    current = undefined
    batchesWritten++
    if (batch.kind === 'readings') storedReadings += batch.items.length
    else storedAlerts += batch.items.length
    pieceDone(batch)
    if (failingSince !== undefined) {
      // Recovery is logged at warn like the outage, so a warn-level log shows both ends.
      log.warn(
        { failedAttempts, outageMs: Date.now() - failingSince },
        'store writes recovered; retried batch committed',
      )
      failingSince = undefined
      failedAttempts = 0
    }
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
        spool
          ? 'store write failed; spooling to disk and retrying with backoff until it recovers'
          : 'store write failed; retrying with backoff until it recovers',
      )
    }
    // A direct batch that fails goes to the spool (durable: its devices are acknowledged) and
    // everything after it follows; the retries then replay the spool from its oldest batch.
    if (batch.origin === undefined && spool !== undefined && !spoolFull) {
      if (spool.append(batch.kind, batch.items) !== undefined) {
        current = undefined
        markDurable(batch)
        enterSpooling('a store write failed')
        // During close enterSpooling logs nothing, but what is still queued must follow.
        spooling = true
      }
    }
    if (closing) {
      // At close a spooled batch is safe for the next start; only unspooled ones are retried.
      if (current === undefined || current.origin !== undefined) {
        current = undefined
        return
      }
      if (++closeFailures >= closeMaxAttempts) {
        giveUp(message)
        return
      }
    }
    const attempt = closing ? closeFailures : failedAttempts
    const delayMs = Math.min(retryMaxMs, retryBaseMs * 2 ** (attempt - 1))
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      run()
    }, delayMs)
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
      if (batch.origin) batch.origin.pieces++
      const piece = (items: Reading[] | Alert[]): Batch => ({
        kind: batch.kind,
        items,
        attempts: 0,
        ...(batch.origin ? { origin: batch.origin } : {}),
      })
      splits = [
        piece(batch.items.slice(0, half) as Reading[] | Alert[]),
        piece(batch.items.slice(half) as Reading[] | Alert[]),
        ...splits,
      ]
      return
    }
    const ts = Date.now()
    if (batch.kind === 'readings') {
      const reading = batch.items[0] as Reading
      refusedReadings++
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
      log.error({ alert, reason: err.reason }, 'alert transition refused by the store')
    }
    bus.emit('store.error', {
      operation: batch.kind === 'readings' ? 'write_readings' : 'write_alerts',
      message: err.message,
      count: 1,
      ts,
    })
    pieceDone(batch)
  }

  /** At close with the store failing and nowhere to spool: fail everyone waiting, and say how much. */
  function giveUp(lastError: string): void {
    const lostReadings = acceptedReadings - durableReadings
    const lostAlerts = acceptedAlerts - durableAlerts
    fatal = new GatewayError(
      ERROR_CODES.store,
      `store writer closed with ${lostReadings} readings and ${lostAlerts} alerts not written ` +
        `after ${closeFailures} failed attempts at close (not acknowledged to QoS 1 devices): ${lastError}`,
    )
    log.error({ lostReadings, lostAlerts, err: fatal }, 'store writer gave up at close')
    const waiting = [...acceptWaiters.slice(acceptHead), ...flushWaiters]
    acceptWaiters = []
    acceptHead = 0
    flushWaiters = []
    for (const waiter of waiting) call(waiter, fatal)
    notifyIdle()
  }

  function releaseWaiters(): void {
    // acceptWaiters are in acceptance order with growing targets: stop at the first pending one.
    while (
      acceptHead < acceptWaiters.length &&
      (acceptWaiters[acceptHead] as Waiter).readings <= durableReadings
    ) {
      call(acceptWaiters[acceptHead++] as Waiter)
    }
    if (acceptHead === acceptWaiters.length) {
      acceptWaiters = []
      acceptHead = 0
    } else if (acceptHead > 1024 && acceptHead * 2 > acceptWaiters.length) {
      acceptWaiters = acceptWaiters.slice(acceptHead)
      acceptHead = 0
    }
    if (flushWaiters.length > 0) {
      const ready = flushWaiters.filter(
        (waiter) => waiter.readings <= durableReadings && waiter.alerts <= durableAlerts,
      )
      flushWaiters = flushWaiters.filter((waiter) => !ready.includes(waiter))
      for (const waiter of ready) call(waiter)
    }
    if (queueFull && acceptedReadings - durableReadings < queueLimit) {
      queueFull = false
      log.warn({ droppedQos0 }, 'store queue has room again: QoS 0 readings are queued again')
    }
  }

  function flush(): Promise<void> {
    if (fatal) return Promise.reject(fatal)
    if (durableReadings >= acceptedReadings && durableAlerts >= acceptedAlerts) {
      return Promise.resolve()
    }
    return new Promise((resolve, reject) => {
      flushWaiters.push({
        readings: acceptedReadings,
        alerts: acceptedAlerts,
        done: (err) => (err ? reject(err) : resolve()),
      })
    })
  }

  /** Resolves once no store call is in flight (so the store can be closed under it). */
  function idle(): Promise<void> {
    if (!inFlight) return Promise.resolve()
    return new Promise((resolve) => idleWaiters.push(resolve))
  }

  /** A waiter's callback; one that throws must not keep the others from their acknowledgement. */
  function call(waiter: Waiter, err?: Error): void {
    try {
      waiter.done(err)
    } catch (thrown) {
      log.error({ err: thrown }, 'a durable callback threw')
    }
  }

  function enqueue(batch: readonly Reading[], done: DurableCallback): void {
    readings.push(batch)
    acceptedReadings += batch.length
    acceptWaiters.push({ readings: acceptedReadings, alerts: 0, done })
    schedule()
  }

  return {
    accept(batch, done) {
      if (closing) {
        done(new GatewayError(ERROR_CODES.store, 'store writer is closed'))
        return
      }
      if (batch.length === 0) {
        done()
        return
      }
      enqueue(batch, done)
    },

    offer(batch, done) {
      if (closing) return false
      if (acceptedReadings - durableReadings + batch.length > queueLimit) {
        droppedQos0 += batch.length
        if (!queueFull) {
          queueFull = true
          log.warn(
            { queueLimit, spooling, spoolFull },
            'store queue full: QoS 0 readings are dropped (counted) until it drains',
          )
        }
        return false
      }
      if (batch.length === 0) done()
      else enqueue(batch, done)
      return true
    },

    flush,

    close() {
      if (closePromise) return closePromise
      closing = true
      bus.removeOwner(OWNER)
      clearTimeout(slowTimer)
      if (retryTimer !== undefined) {
        // Shutdown does not wait out a long backoff: retry now, then on the close schedule.
        clearTimeout(retryTimer)
        retryTimer = undefined
        // A replayed batch is already in the spool: nothing to retry for it at close.
        if (current?.origin !== undefined) current = undefined
      }
      schedule()
      closePromise = flush()
        .then(idle)
        .then(() => {
          log.info(
            {
              batchesWritten,
              readingsWritten: storedReadings,
              refusedReadings,
              spooledItems: spool?.stats().items ?? 0,
            },
            'store writer closed',
          )
        })
      return closePromise
    },

    retryNow() {
      if (retryTimer === undefined || closing || fatal) return
      clearTimeout(retryTimer)
      retryTimer = undefined
      run()
    },

    spooledAlerts: () => spool?.alerts() ?? [],

    stats() {
      const spoolStats = spool?.stats()
      return {
        pendingReadings: acceptedReadings - durableReadings,
        pendingAlerts: acceptedAlerts - durableAlerts,
        batchesWritten,
        readingsWritten: storedReadings,
        alertsWritten: storedAlerts,
        writeErrors,
        refusedReadings,
        refusedAlerts,
        spooling,
        spoolFull,
        spooledItems: spoolStats?.items ?? 0,
        spoolBytes: spoolStats?.bytes ?? 0,
        replayedItems,
        droppedQos0,
      }
    },
  }
}
