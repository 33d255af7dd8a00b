import { EventEmitter, once } from 'node:events'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createEventBus, type EventBus } from '../../../src/bus/event-bus.ts'
import type { ReadingRejected, StoreError } from '../../../src/bus/events.ts'
import type { Alert, Reading } from '../../../src/contract/types.ts'
import { ERROR_CODES } from '../../../src/errors.ts'
import { type ReadingStore, StoreRejectedError } from '../../../src/store/reading-store.ts'
import { openSpool, type Spool } from '../../../src/store/spool.ts'
import { createSqliteStore } from '../../../src/store/sqlite-store.ts'
import {
  createStoreWriter,
  type StoreWriter,
  type StoreWriterOptions,
} from '../../../src/store/store-writer.ts'
import { createSilentLogger, type Logger } from '../../../src/telemetry/logger.ts'
import { captureLogs } from '../../helpers/log-capture.ts'
import { accepted, allReadings, offered } from '../../helpers/store.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

const T0 = Date.UTC(2026, 0, 1)

/**
 * A fault injector around the real store: it delegates every call, but fails the first
 * `failures` writeReadings calls, can hold writes at a gate, and records what it passed on.
 */
interface FaultInjector {
  store: ReadingStore
  /** writeReadings calls, failed ones included. */
  attempts: number
  attemptTimes: number[]
  /** Batches the real store committed, in order. */
  committed: Reading[][]
  /** Emits 'attempt' whenever writeReadings is called. */
  events: EventEmitter
  failures: number
  /** Holds writeReadings calls until the returned function is called. */
  hold(): () => void
  /** Readings the store refuses for good (a 4xx from InfluxDB). */
  refuse: (reading: Reading) => boolean
}

function injectFaults(inner: ReadingStore): FaultInjector {
  let gate: Promise<void> | undefined
  const injector: FaultInjector = {
    attempts: 0,
    attemptTimes: [],
    committed: [],
    events: new EventEmitter(),
    failures: 0,
    refuse: () => false,
    hold() {
      let release = () => {}
      gate = new Promise((resolve) => {
        release = () => {
          gate = undefined
          resolve()
        }
      })
      return release
    },
    store: {
      kind: inner.kind,
      async writeReadings(readings) {
        injector.attempts++
        injector.attemptTimes.push(Date.now())
        injector.events.emit('attempt', readings.length)
        if (injector.attempts <= injector.failures) {
          throw new Error(`disk I/O error (injected, attempt ${injector.attempts})`)
        }
        // Like InfluxDB's 400: one point the store will never take fails the whole request.
        const refused = readings.find((r) => injector.refuse(r))
        if (refused)
          throw new StoreRejectedError(`field type conflict on ${refused.metric} (injected)`)
        if (gate) await gate
        await inner.writeReadings(readings)
        injector.committed.push([...readings])
      },
      writeAlerts: (alerts) => inner.writeAlerts(alerts),
      queryReadings: (query) => inner.queryReadings(query),
      aggregate: (query) => inner.aggregate(query),
      latest: (deviceId) => inner.latest(deviceId),
      queryAlerts: (query) => inner.queryAlerts(query),
      latestAlerts: () => inner.latestAlerts(),
      close: () => inner.close(),
    },
  }
  return injector
}

function readings(count: number, from = 0): Reading[] {
  return Array.from({ length: count }, (_, i) => ({
    deviceId: 'dev-1',
    metric: 'temperature',
    ts: T0 + (from + i) * 1000,
    value: from + i,
  }))
}

describe('store writer', () => {
  let dir: TempDir
  let sqlite: ReadingStore
  let faults: FaultInjector
  let bus: EventBus
  const writers: StoreWriter[] = []

  const defaults: StoreWriterOptions = { maxBatchSize: 5000, retryBaseMs: 1, retryMaxMs: 4 }

  function createWriter(options: Partial<StoreWriterOptions> = {}, log?: Logger): StoreWriter {
    const writer = createStoreWriter(
      { store: faults.store, bus, log: log ?? createSilentLogger() },
      { ...defaults, ...options },
    )
    writers.push(writer)
    return writer
  }

  const stored = () => allReadings(sqlite, 'dev-1')

  beforeEach(async () => {
    dir = await createTempDir('store-writer-')
    sqlite = createSqliteStore({ file: join(dir.path, 'gateway.db') })
    faults = injectFaults(sqlite)
    bus = createEventBus(createSilentLogger())
  })

  afterEach(async () => {
    vi.useRealTimers()
    faults.failures = 0
    for (const writer of writers.splice(0)) await writer.close().catch(() => {})
    await sqlite.close()
    await dir.remove()
  })

  it('writes what is accepted in one event-loop turn as one group commit', async () => {
    const writer = createWriter()
    const input = readings(1000)
    await Promise.all(input.map((r) => accepted(writer, [r])))
    expect(faults.attempts).toBe(1)
    expect(faults.committed.map((b) => b.length)).toEqual([1000])
    expect(await stored()).toEqual(input)
    expect(writer.stats()).toEqual({
      pendingReadings: 0,
      pendingAlerts: 0,
      batchesWritten: 1,
      readingsWritten: 1000,
      alertsWritten: 0,
      writeErrors: 0,
      refusedReadings: 0,
      refusedAlerts: 0,
      spooling: false,
      spoolFull: false,
      spooledItems: 0,
      spoolBytes: 0,
      replayedItems: 0,
      droppedQos0: 0,
    })
  })

  it('calls every callback of a commit even when one of them throws, and logs the throw', async () => {
    const { log, lines } = captureLogs('debug')
    const writer = createWriter({}, log)
    const calls: string[] = []
    writer.accept(readings(1), () => {
      calls.push('first')
      throw new Error('handler bug')
    })
    await accepted(writer, readings(1, 1)).then(() => calls.push('second'))
    expect(calls).toEqual(['first', 'second'])
    expect(lines).toContainEqual(
      expect.objectContaining({
        msg: 'a durable callback threw',
        err: expect.objectContaining({ message: 'handler bug' }),
      }),
    )
  })

  it('splits a queue longer than maxBatchSize and keeps its order', async () => {
    const writer = createWriter({ maxBatchSize: 100 })
    const input = readings(1050)
    await Promise.all([accepted(writer, input.slice(0, 30)), accepted(writer, input.slice(30))])
    expect(faults.committed.map((b) => b.length)).toEqual([...Array(10).fill(100), 50])
    expect(faults.committed.flat()).toEqual(input)
    expect(await stored()).toEqual(input)
  })

  it('keeps one write in flight; what arrives meanwhile goes in the next batch', async () => {
    const writer = createWriter()
    const release = faults.hold()
    const firstAttempt = once(faults.events, 'attempt')
    let firstDone = false
    const first = accepted(writer, readings(1)).then(() => {
      firstDone = true
    })
    await firstAttempt

    let laterDone = false
    const later = Promise.all([
      accepted(writer, readings(2, 1)),
      accepted(writer, readings(3, 3)),
    ]).then(() => {
      laterDone = true
    })
    // Let the loop turn: nothing may start while the first write is held.
    await new Promise((resolve) => setImmediate(resolve))
    expect(faults.attempts).toBe(1)
    expect(firstDone).toBe(false)
    expect(writer.stats().pendingReadings).toBe(6)

    release()
    await first
    await later
    expect(laterDone).toBe(true)
    expect(faults.committed.map((b) => b.length)).toEqual([1, 5])
    expect(await stored()).toEqual(readings(6))
  })

  it('stores alert transitions from the bus and unsubscribes on close', async () => {
    const writer = createWriter()
    const alert = (ts: number, state: Alert['state']): Alert => ({
      id: 'hot:dev-1',
      ruleId: 'hot',
      kind: 'threshold',
      deviceId: 'dev-1',
      metric: 'temperature',
      severity: 'major',
      state,
      value: 31,
      threshold: 30,
      since: ts,
      ts,
      message: `temperature ${state}`,
      flapping: false,
    })
    const transitions = [
      alert(T0, 'firing'),
      alert(T0 + 1000, 'resolved'),
      alert(T0 + 2000, 'firing'),
    ]
    for (const transition of transitions) bus.emit('alert', transition)
    expect(writer.stats().pendingAlerts).toBe(3)
    await writer.flush()
    expect(await sqlite.queryAlerts({ limit: 10 })).toEqual([...transitions].reverse())
    expect(writer.stats()).toMatchObject({ pendingAlerts: 0, alertsWritten: 3, batchesWritten: 1 })

    expect(bus.listenerCount('alert')).toBe(1)
    await writer.close()
    expect(bus.listenerCount('alert')).toBe(0)
  })

  it('retries a failed batch until it is written, reporting the outage once each way', async () => {
    const { log, lines } = captureLogs('debug')
    const errors: StoreError[] = []
    bus.on('test', 'store.error', (event) => errors.push(event))
    faults.failures = 3
    const writer = createWriter({ maxBatchSize: 10 }, log)

    const input = readings(25)
    await Promise.all([
      accepted(writer, input.slice(0, 10)),
      accepted(writer, input.slice(10, 20)),
      accepted(writer, input.slice(20)),
    ])

    expect(errors).toHaveLength(3)
    for (const event of errors) {
      expect(event).toMatchObject({ operation: 'write_readings', count: 10 })
      expect(event.message).toContain('injected')
      expect(JSON.parse(JSON.stringify(event))).toEqual(event)
    }
    const warnings = lines.filter((line) => line.level === 40 && line.module === 'store-writer')
    expect(warnings).toHaveLength(2)
    expect(warnings[0]).toMatchObject({
      operation: 'write_readings',
      count: 10,
      msg: expect.stringMatching(/failed/),
      err: { message: expect.stringContaining('injected') },
    })
    expect(warnings[1]).toMatchObject({ failedAttempts: 3 })
    expect(warnings[1]?.msg).toMatch(/recovered/)

    // Exactly once and in order: the batches the store committed are the input, as accepted.
    expect(faults.committed.map((b) => b.length)).toEqual([10, 10, 5])
    expect(faults.committed.flat()).toEqual(input)
    expect(await stored()).toEqual(input)
    expect(writer.stats()).toMatchObject({
      pendingReadings: 0,
      batchesWritten: 3,
      readingsWritten: 25,
      writeErrors: 3,
    })
  })

  it('isolates readings the store refuses for good: dead-lettered with its reason, the rest stored', async () => {
    faults.refuse = (r) => r.value === 13 || r.value === 77
    const letters: ReadingRejected[] = []
    bus.on('test', 'reading.rejected', (event) => letters.push(event))
    const writer = createWriter({ maxBatchSize: 100 })
    const input = readings(100)
    // Every accept resolves: a refused reading is answered (and dead-lettered), not retried forever.
    await Promise.all(input.map((r) => accepted(writer, [r])))
    expect(await stored()).toEqual(input.filter((r) => r.value !== 13 && r.value !== 77))
    expect(letters.map((l) => [l.deviceId, l.deadLetter.reason, l.deadLetter.topic])).toEqual([
      ['dev-1', 'store_rejected', 'sensors/dev-1/temperature'],
      ['dev-1', 'store_rejected', 'sensors/dev-1/temperature'],
    ])
    expect(letters[0]?.deadLetter.detail).toBe('field type conflict on temperature (injected)')
    expect(JSON.parse(letters[1]?.deadLetter.payload ?? '{}')).toEqual(input[77])
    expect(writer.stats()).toMatchObject({
      readingsWritten: 98,
      refusedReadings: 2,
      pendingReadings: 0,
    })
    // Halving finds two bad points in 100 with a few dozen requests, not one per reading.
    expect(faults.attempts).toBeLessThan(40)
  })

  it('backs off exponentially from retryBaseMs up to retryMaxMs', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    faults.failures = 5
    const writer = createWriter({ retryBaseMs: 100, retryMaxMs: 500 })
    const firstAttempt = once(faults.events, 'attempt')
    const durable = accepted(writer, readings(1))
    await firstAttempt
    await vi.runAllTimersAsync()
    await durable

    const delays = faults.attemptTimes.slice(1).map((t, i) => t - faults.attemptTimes[i]!)
    expect(delays).toEqual([100, 200, 400, 500, 500])
    expect(await stored()).toEqual(readings(1))
  })

  it('flushes on close', async () => {
    const writer = createWriter({ maxBatchSize: 10 })
    const durable = accepted(writer, readings(95))
    bus.emit('alert', {
      id: 'hot:dev-1',
      ruleId: 'hot',
      kind: 'threshold',
      deviceId: 'dev-1',
      metric: 'temperature',
      severity: 'minor',
      state: 'firing',
      value: 1,
      threshold: 0,
      since: T0,
      ts: T0,
      message: 'hot',
      flapping: false,
    })
    await writer.close()
    await durable
    expect(await stored()).toEqual(readings(95))
    expect(await sqlite.queryAlerts({ limit: 10 })).toHaveLength(1)
    expect(writer.stats()).toMatchObject({ pendingReadings: 0, pendingAlerts: 0 })
  })

  it('rejects accept after close, and close is idempotent', async () => {
    const writer = createWriter()
    const closing = writer.close()
    expect(writer.close()).toBe(closing)
    await closing
    await expect(accepted(writer, readings(1))).rejects.toMatchObject({ code: ERROR_CODES.store })
    await writer.flush()
  })

  it('does not wait out a long backoff at close', async () => {
    faults.failures = 1
    const writer = createWriter({ retryBaseMs: 60_000, retryMaxMs: 60_000 })
    const failed = new Promise<void>((resolve) => bus.on('test', 'store.error', () => resolve()))
    const durable = accepted(writer, readings(3))
    await failed
    await writer.close()
    await durable
    expect(await stored()).toEqual(readings(3))
  })

  it('rejects close, naming what it could not write, when the store still fails', async () => {
    faults.failures = Number.POSITIVE_INFINITY
    const writer = createWriter({ closeMaxAttempts: 3 })
    const firstAttempt = once(faults.events, 'attempt')
    const durable = accepted(writer, readings(7))
    const acceptRejected = expect(durable).rejects.toMatchObject({ code: ERROR_CODES.store })
    await firstAttempt

    const attemptsBeforeClose = faults.attempts
    await expect(writer.close()).rejects.toMatchObject({
      code: ERROR_CODES.store,
      message: expect.stringMatching(/7 readings .*not written/),
    })
    await acceptRejected
    expect(faults.attempts - attemptsBeforeClose).toBeLessThanOrEqual(3)
    expect(writer.stats()).toMatchObject({ pendingReadings: 7, readingsWritten: 0 })
    expect(await stored()).toEqual([])
  })
})

describe('store writer with the on-disk spool', () => {
  let dir: TempDir
  let sqlite: ReadingStore
  let faults: FaultInjector
  let bus: EventBus
  let spool: Spool
  const writers: StoreWriter[] = []
  const defaults: StoreWriterOptions = { maxBatchSize: 10, retryBaseMs: 1, retryMaxMs: 4 }

  const spoolFile = () => join(dir.path, 'spool.db')

  function createWriter(
    options: Partial<StoreWriterOptions> = {},
    log?: Logger,
    withSpool: Spool = spool,
  ): StoreWriter {
    const writer = createStoreWriter(
      { store: faults.store, bus, log: log ?? createSilentLogger(), spool: withSpool },
      { ...defaults, ...options },
    )
    writers.push(writer)
    return writer
  }

  const stored = () => allReadings(sqlite, 'dev-1')

  beforeEach(async () => {
    dir = await createTempDir('store-spool-')
    sqlite = createSqliteStore({ file: join(dir.path, 'gateway.db') })
    faults = injectFaults(sqlite)
    bus = createEventBus(createSilentLogger())
    spool = openSpool({ file: spoolFile(), maxBytes: 1_000_000 })
  })

  afterEach(async () => {
    faults.failures = 0
    for (const writer of writers.splice(0)) await writer.close().catch(() => {})
    spool.close()
    await sqlite.close()
    await dir.remove()
  })

  it('spool: appends in order, survives reopening, and refuses what would pass maxBytes', () => {
    const small = openSpool({ file: join(dir.path, 'small.db'), maxBytes: 400 })
    const first = small.append('readings', readings(2))
    const second = small.append('readings', readings(2, 2))
    expect(first).toBeDefined()
    expect(second).toBeGreaterThan(first ?? Infinity)
    // Each batch of two is ~160 bytes of JSON: a third does not fit in 400.
    expect(small.append('readings', readings(2, 4))).toBeUndefined()
    expect(small.stats()).toMatchObject({ batches: 2, items: 4, maxBytes: 400 })
    small.close()

    const reopened = openSpool({ file: join(dir.path, 'small.db'), maxBytes: 400 })
    expect(reopened.stats()).toMatchObject({ batches: 2, items: 4 })
    const oldest = reopened.oldest()
    expect(oldest).toEqual({ seq: first, kind: 'readings', items: readings(2) })
    reopened.remove(oldest?.seq ?? -1)
    expect(reopened.oldest()?.items).toEqual(readings(2, 2))
    expect(reopened.stats()).toMatchObject({ batches: 1, items: 2 })
    expect(reopened.append('readings', readings(2, 4))).toBeDefined()
    reopened.close()
  })

  it('acknowledges from the spool while the store fails, then replays in order, each once', async () => {
    const { log, lines } = captureLogs('debug')
    faults.failures = 1_000_000
    const writer = createWriter({}, log)
    const input = readings(35)
    // Every accept resolves although the store has not taken one reading: they are spooled.
    await Promise.all([
      accepted(writer, input.slice(0, 10)),
      accepted(writer, input.slice(10, 20)),
      accepted(writer, input.slice(20)),
    ])
    expect(faults.committed).toEqual([])
    expect(writer.stats()).toMatchObject({ spooling: true, pendingReadings: 0, spooledItems: 35 })
    await vi.waitFor(() => expect(faults.attempts).toBeGreaterThan(3))

    faults.failures = 0
    await vi.waitFor(() => expect(writer.stats().spooling).toBe(false), { timeout: 5_000 })
    expect(faults.committed.flat()).toEqual(input)
    expect(await stored()).toEqual(input)
    expect(spool.stats()).toMatchObject({ batches: 0, items: 0, bytes: 0 })
    expect(writer.stats()).toMatchObject({ replayedItems: 35, readingsWritten: 35 })

    // Then it writes directly again.
    await accepted(writer, readings(1, 35))
    expect(writer.stats().replayedItems).toBe(35)
    expect(await stored()).toHaveLength(36)

    // One line per change of state, not one per failed attempt.
    const messages = lines.filter((l) => l.module === 'store-writer').map((l) => l.msg)
    expect(messages).toEqual([
      'store write failed; spooling to disk and retrying with backoff until it recovers',
      'spooling to disk until the store recovers',
      'store writes recovered; retried batch committed',
      'spool replayed: writing to the store directly again',
    ])
  })

  it('retryNow starts the replay at once instead of waiting out the backoff', async () => {
    faults.failures = 1_000_000
    // A backoff far longer than the test: only retryNow can bring the replay within it.
    const writer = createWriter({ retryBaseMs: 600_000, retryMaxMs: 600_000 })
    await accepted(writer, readings(5))
    expect(writer.stats()).toMatchObject({ spooling: true, spooledItems: 5 })
    await vi.waitFor(() => expect(faults.attempts).toBe(1))

    faults.failures = 0
    writer.retryNow()
    await vi.waitFor(() => expect(writer.stats().spooling).toBe(false), { timeout: 5_000 })
    expect(await stored()).toEqual(readings(5))
    expect(faults.attempts).toBe(2)
    // With nothing waiting to be retried, it is a no-op.
    writer.retryNow()
    expect(faults.attempts).toBe(2)
  })

  it('spools the write in flight, then what follows, when the store is slow', async () => {
    const release = faults.hold()
    const writer = createWriter({ spoolAfterMs: 20 })
    const first = accepted(writer, readings(5))
    await once(faults.events, 'attempt')
    // The first write hangs at the gate; after spoolAfterMs it and everything after it are durable.
    await first
    await accepted(writer, readings(5, 5))
    expect(writer.stats()).toMatchObject({ spooling: true, spooledItems: 10 })
    expect(faults.committed).toEqual([])
    release()
    await vi.waitFor(() => expect(writer.stats().spooling).toBe(false), { timeout: 5_000 })
    // The hung write committed and its spool row was removed, not replayed a second time.
    expect(faults.committed).toEqual([readings(5), readings(5, 5)])
    expect(await stored()).toEqual(readings(10))
  })

  it('withholds acknowledgement when the spool is full, and resumes when it drains', async () => {
    const { log, lines } = captureLogs('debug')
    spool.close()
    // Room for about one batch of ten readings.
    spool = openSpool({ file: spoolFile(), maxBytes: 1_000 })
    faults.failures = 1_000_000
    const writer = createWriter({}, log)
    await accepted(writer, readings(10))
    let secondDone = false
    const second = accepted(writer, readings(10, 10)).then(() => {
      secondDone = true
    })
    await vi.waitFor(() => expect(writer.stats().spoolFull).toBe(true))
    expect(secondDone).toBe(false)
    expect(writer.stats()).toMatchObject({ pendingReadings: 10, spooledItems: 10 })

    faults.failures = 0
    await second
    await vi.waitFor(() => expect(writer.stats().spooling).toBe(false), { timeout: 5_000 })
    expect(await stored()).toEqual(readings(20))
    const messages = lines.filter((l) => l.module === 'store-writer').map((l) => l.msg)
    expect(messages.filter((m) => String(m).startsWith('spool full'))).toHaveLength(1)
    expect(messages).toContain('spool has room again: acknowledging QoS 1 publishes')
  })

  it('keeps the spool at close and replays it at the next start, without duplicates', async () => {
    faults.failures = 1_000_000
    const writer = createWriter()
    await accepted(writer, readings(25))
    await writer.close()
    expect(spool.stats().items).toBe(25)
    expect(await stored()).toEqual([])

    // "Restart": the same spool file, the store working again.
    spool.close()
    spool = openSpool({ file: spoolFile(), maxBytes: 1_000_000 })
    faults.failures = 0
    const next = createWriter()
    expect(next.stats().spooling).toBe(true)
    await vi.waitFor(() => expect(next.stats().spooling).toBe(false), { timeout: 5_000 })
    expect(await stored()).toEqual(readings(25))
    // A batch replayed twice (crash between commit and removal) is stored once: writes upsert.
    await sqlite.writeReadings(readings(25))
    expect(await stored()).toEqual(readings(25))
  })

  it('dead-letters what the store refuses during a replay and stores the rest', async () => {
    faults.failures = 1_000_000
    const letters: ReadingRejected[] = []
    bus.on('test', 'reading.rejected', (event) => letters.push(event))
    const writer = createWriter()
    await accepted(writer, readings(10))
    faults.refuse = (r) => r.value === 3
    faults.failures = 0
    await vi.waitFor(() => expect(writer.stats().spooling).toBe(false), { timeout: 5_000 })
    expect(await stored()).toEqual(readings(10).filter((r) => r.value !== 3))
    expect(letters.map((l) => l.deadLetter.reason)).toEqual(['store_rejected'])
    expect(spool.stats().batches).toBe(0)
  })

  it('drops QoS 0 readings over queueLimit, counted, while QoS 1 readings still wait', async () => {
    const release = faults.hold()
    const writer = createWriter({ queueLimit: 15, spoolAfterMs: 60_000 })
    const first = accepted(writer, readings(10))
    await once(faults.events, 'attempt')
    expect(offered(writer, readings(5, 10))).toBeDefined()
    expect(offered(writer, readings(1, 15))).toBeUndefined()
    expect(writer.stats()).toMatchObject({ droppedQos0: 1, pendingReadings: 15 })
    release()
    await first
    await writer.flush()
    expect(await stored()).toEqual(readings(15))
  })

  it('tells the start-up restore about alert transitions still in the spool', async () => {
    faults.failures = 1_000_000
    const failingAlerts: ReadingStore = {
      ...faults.store,
      writeAlerts: async () => {
        throw new Error('alerts down (injected)')
      },
    }
    const writer = createStoreWriter(
      { store: failingAlerts, bus, log: createSilentLogger(), spool },
      defaults,
    )
    writers.push(writer)
    const alert: Alert = {
      id: 'hot:dev-1',
      ruleId: 'hot',
      kind: 'threshold',
      deviceId: 'dev-1',
      metric: 'temperature',
      severity: 'major',
      state: 'firing',
      value: 35,
      threshold: 30,
      since: T0,
      ts: T0,
      message: 'dev-1 temperature 35 > 30',
      flapping: false,
    }
    bus.emit('alert', alert)
    await writer.flush()
    expect(writer.spooledAlerts()).toEqual([alert])
  })
})
