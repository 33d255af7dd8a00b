import { EventEmitter, once } from 'node:events'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createEventBus, type EventBus } from '../../../src/bus/event-bus.ts'
import type { ReadingRejected, StoreError } from '../../../src/bus/events.ts'
import type { Alert, Reading } from '../../../src/contract/types.ts'
import { ERROR_CODES } from '../../../src/errors.ts'
import { type ReadingStore, StoreRejectedError } from '../../../src/store/reading-store.ts'
import { createSqliteStore } from '../../../src/store/sqlite-store.ts'
import {
  createStoreWriter,
  type StoreWriter,
  type StoreWriterOptions,
} from '../../../src/store/store-writer.ts'
import { createSilentLogger, type Logger } from '../../../src/telemetry/logger.ts'
import { captureLogs } from '../../helpers/log-capture.ts'
import { allReadings } from '../../helpers/store.ts'
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
    await Promise.all(input.map((r) => writer.accept([r])))
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
    })
  })

  it('splits a queue longer than maxBatchSize and keeps its order', async () => {
    const writer = createWriter({ maxBatchSize: 100 })
    const input = readings(1050)
    await Promise.all([writer.accept(input.slice(0, 30)), writer.accept(input.slice(30))])
    expect(faults.committed.map((b) => b.length)).toEqual([...Array(10).fill(100), 50])
    expect(faults.committed.flat()).toEqual(input)
    expect(await stored()).toEqual(input)
  })

  it('keeps one write in flight; what arrives meanwhile goes in the next batch', async () => {
    const writer = createWriter()
    const release = faults.hold()
    const firstAttempt = once(faults.events, 'attempt')
    let firstDone = false
    const first = writer.accept(readings(1)).then(() => {
      firstDone = true
    })
    await firstAttempt

    let laterDone = false
    const later = Promise.all([writer.accept(readings(2, 1)), writer.accept(readings(3, 3))]).then(
      () => {
        laterDone = true
      },
    )
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
      writer.accept(input.slice(0, 10)),
      writer.accept(input.slice(10, 20)),
      writer.accept(input.slice(20)),
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
    await Promise.all(input.map((r) => writer.accept([r])))
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
    const accepted = writer.accept(readings(1))
    await firstAttempt
    await vi.runAllTimersAsync()
    await accepted

    const delays = faults.attemptTimes.slice(1).map((t, i) => t - faults.attemptTimes[i]!)
    expect(delays).toEqual([100, 200, 400, 500, 500])
    expect(await stored()).toEqual(readings(1))
  })

  it('flushes on close', async () => {
    const writer = createWriter({ maxBatchSize: 10 })
    const accepted = writer.accept(readings(95))
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
    await accepted
    expect(await stored()).toEqual(readings(95))
    expect(await sqlite.queryAlerts({ limit: 10 })).toHaveLength(1)
    expect(writer.stats()).toMatchObject({ pendingReadings: 0, pendingAlerts: 0 })
  })

  it('rejects accept after close, and close is idempotent', async () => {
    const writer = createWriter()
    const closing = writer.close()
    expect(writer.close()).toBe(closing)
    await closing
    await expect(writer.accept(readings(1))).rejects.toMatchObject({ code: ERROR_CODES.store })
    await writer.flush()
  })

  it('does not wait out a long backoff at close', async () => {
    faults.failures = 1
    const writer = createWriter({ retryBaseMs: 60_000, retryMaxMs: 60_000 })
    const failed = new Promise<void>((resolve) => bus.on('test', 'store.error', () => resolve()))
    const accepted = writer.accept(readings(3))
    await failed
    await writer.close()
    await accepted
    expect(await stored()).toEqual(readings(3))
  })

  it('rejects close, naming what it could not write, when the store still fails', async () => {
    faults.failures = Number.POSITIVE_INFINITY
    const writer = createWriter({ closeMaxAttempts: 3 })
    const firstAttempt = once(faults.events, 'attempt')
    const accepted = writer.accept(readings(7))
    const acceptRejected = expect(accepted).rejects.toMatchObject({ code: ERROR_CODES.store })
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
