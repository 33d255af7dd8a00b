import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Alert, Reading } from '../../../src/contract/types.ts'
import type { ReadingStore } from '../../../src/store/reading-store.ts'
import { createSqliteStore, type SqliteStore } from '../../../src/store/sqlite-store.ts'
import {
  createStoreMonitor,
  type StoreWriteObservation,
} from '../../../src/telemetry/store-monitor.ts'
import { allReadings } from '../../helpers/store.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

const T0 = Date.UTC(2026, 10, 26, 12, 0, 0)
const reading = (value: number, i = 0): Reading => ({
  deviceId: 'dev-1',
  metric: 'temperature',
  value,
  ts: T0 + i,
})
const ALERT: Alert = {
  id: 'hot:dev-1',
  ruleId: 'hot',
  kind: 'threshold',
  deviceId: 'dev-1',
  metric: 'temperature',
  severity: 'major',
  state: 'firing',
  value: 31,
  threshold: 30,
  since: T0,
  ts: T0,
  message: 'temperature above 30',
  flapping: false,
}

describe('store monitor', () => {
  let dir: TempDir
  let sqlite: SqliteStore

  beforeEach(async () => {
    dir = await createTempDir('store-monitor-')
    sqlite = createSqliteStore({ file: join(dir.path, 'gateway.db') })
  })
  afterEach(async () => {
    await sqlite.close()
    await dir.remove()
  })

  it('passes writes and reads through to the store and times every write', async () => {
    const monitor = createStoreMonitor(sqlite)
    const seen: StoreWriteObservation[] = []
    monitor.onWrite((o) => seen.push(o))

    await monitor.store.writeReadings([reading(20, 0), reading(21, 1)])
    await monitor.store.writeAlerts([ALERT])

    expect(monitor.store.kind).toBe('sqlite')
    expect((await allReadings(monitor.store, 'dev-1')).map((r) => r.value)).toEqual([20, 21])
    expect(await monitor.store.latestAlerts()).toEqual([ALERT])
    expect(seen.map(({ kind, count, outcome }) => ({ kind, count, outcome }))).toEqual([
      { kind: 'readings', count: 2, outcome: 'ok' },
      { kind: 'alerts', count: 1, outcome: 'ok' },
    ])
    for (const o of seen) {
      expect(o.seconds).toBeGreaterThan(0)
      expect(o.seconds).toBeLessThan(5)
    }
  })

  it('is up while the store answers its probe', async () => {
    const monitor = createStoreMonitor(sqlite)
    expect(await monitor.check()).toEqual({ up: true })
  })

  it('is down while the last write failed, and up again once a write succeeds', async () => {
    const monitor = createStoreMonitor(sqlite)
    const outcomes: string[] = []
    monitor.onWrite((o) => outcomes.push(o.outcome))

    // A real failure of the real store: SQLite refuses a NULL value (NaN binds as NULL).
    await expect(monitor.store.writeReadings([reading(Number.NaN)])).rejects.toThrow(/NOT NULL/)
    const down = await monitor.check()
    expect(down).toEqual({
      up: false,
      reason: expect.stringMatching(/^last write failed: .*NOT NULL/),
    })

    await monitor.store.writeReadings([reading(20)])
    expect(await monitor.check()).toEqual({ up: true })
    expect(outcomes).toEqual(['error', 'ok'])
  })

  it('is down when the probe read fails', async () => {
    const monitor = createStoreMonitor(sqlite)
    await sqlite.close()
    expect(await monitor.check()).toEqual({
      up: false,
      reason: expect.stringMatching(/^probe query failed: .*closed/),
    })
  })

  it('is down when the probe read does not answer in time, and shares one probe between callers', async () => {
    // A fault injector around the real store (as in store-writer.test.ts): reads wait at a gate.
    let release = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let probes = 0
    const slow: ReadingStore = {
      ...sqlite,
      kind: sqlite.kind,
      async queryReadings(query) {
        probes++
        await gate
        return sqlite.queryReadings(query)
      },
    }
    const monitor = createStoreMonitor(slow, { probeTimeoutMs: 50 })
    // The gate is still closed: an answer at all means the probe stopped waiting for the store.
    const [a, b] = await Promise.all([monitor.check(), monitor.check()])
    expect(a).toEqual({ up: false, reason: 'probe query took longer than 50 ms' })
    expect(b).toEqual(a)
    expect(probes).toBe(1)

    release()
    await expect(monitor.check()).resolves.toEqual({ up: true })
  })

  it('an observer that throws does not fail the write', async () => {
    const monitor = createStoreMonitor(sqlite)
    monitor.onWrite(() => {
      throw new Error('observer failed')
    })
    await expect(monitor.store.writeReadings([reading(20)])).resolves.toBeUndefined()
    expect(await allReadings(sqlite, 'dev-1')).toHaveLength(1)
  })
})
