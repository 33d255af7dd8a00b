import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Reading } from '../../../src/contract/types.ts'
import { ERROR_CODES } from '../../../src/errors.ts'
import { createSqliteStore, type SqliteStore } from '../../../src/store/sqlite-store.ts'
import { describeReadingStoreContract } from '../../contract/reading-store.contract.ts'
import { allReadings } from '../../helpers/store.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

describeReadingStoreContract('sqlite', async () => {
  const dir = await createTempDir('sqlite-store-contract-')
  // A missing parent directory: the store creates it.
  const store = createSqliteStore({ file: join(dir.path, 'data', 'gateway.db') })
  return {
    store,
    cleanup: async () => {
      await store.close()
      await dir.remove()
    },
  }
})

describe('SQLite store', () => {
  const T0 = Date.UTC(2026, 0, 1)
  const HOUR = 60 * 60_000
  let dir: TempDir
  let file: string
  const open: SqliteStore[] = []

  function openStore(retentionMs?: number): SqliteStore {
    const store = createSqliteStore(retentionMs === undefined ? { file } : { file, retentionMs })
    open.push(store)
    return store
  }

  function reading(metric: string, ts: number, value: number): Reading {
    return { deviceId: 'dev-1', metric, ts, value }
  }

  beforeEach(async () => {
    dir = await createTempDir('sqlite-store-')
    file = join(dir.path, 'gateway.db')
  })

  afterEach(async () => {
    vi.useRealTimers()
    for (const store of open.splice(0)) await store.close()
    await dir.remove()
  })

  it('keeps readings, latest and alerts across close and reopen of the same file', async () => {
    const first = openStore()
    await first.writeReadings([reading('temperature', T0, 1), reading('temperature', T0 + 1, 2)])
    await first.writeAlerts([
      {
        ruleId: 'hot',
        deviceId: 'dev-1',
        metric: 'temperature',
        severity: 'major',
        state: 'firing',
        value: 2,
        threshold: 1.5,
        since: T0 + 1,
        ts: T0 + 1,
        message: 'hot',
      },
    ])
    await first.close()

    const second = openStore()
    expect(await allReadings(second, 'dev-1')).toEqual([
      reading('temperature', T0, 1),
      reading('temperature', T0 + 1, 2),
    ])
    expect(await second.latest()).toEqual([reading('temperature', T0 + 1, 2)])
    expect(await second.queryAlerts({ limit: 10 })).toHaveLength(1)
  })

  it('puts the database in WAL mode', async () => {
    const store = openStore()
    await store.writeReadings([reading('temperature', T0, 1)])
    // journal_mode=WAL is persistent: a second connection sees it in the file.
    const probe = new Database(file, { readonly: true })
    try {
      expect(probe.pragma('journal_mode', { simple: true })).toBe('wal')
    } finally {
      probe.close()
    }
  })

  it('refuses a file written by a newer schema version, naming the file', async () => {
    const future = new Database(file)
    future.pragma('user_version = 99')
    future.close()
    expect(() => openStore()).toThrowError(
      expect.objectContaining({ code: ERROR_CODES.store, message: expect.stringContaining(file) }),
    )
  })

  describe('retention', () => {
    it('deletes readings older than now - retentionMs and drops series left empty', async () => {
      const now = T0 + 10 * HOUR
      const store = openStore(HOUR)
      await store.writeReadings([
        reading('temperature', now - 3 * HOUR, 1),
        reading('temperature', now - HOUR - 1, 2),
        reading('temperature', now - HOUR, 3),
        reading('temperature', now - 1, 4),
        reading('pressure', now - 2 * HOUR, 1013),
      ])
      expect(await store.pruneExpired(now)).toBe(3)
      expect(await allReadings(store, 'dev-1')).toEqual([
        reading('temperature', now - HOUR, 3),
        reading('temperature', now - 1, 4),
      ])
      expect(await store.latest()).toEqual([reading('temperature', now - 1, 4)])
      // A later write of a pruned series brings it back.
      await store.writeReadings([reading('pressure', now, 1000)])
      expect((await store.latest()).map((r) => r.metric).sort()).toEqual([
        'pressure',
        'temperature',
      ])
    })

    it('deletes a backlog larger than one delete chunk', async () => {
      const now = T0 + 100 * HOUR
      const store = openStore(HOUR)
      const old = Array.from({ length: 25_000 }, (_, i) => reading('temperature', T0 + i, i))
      await store.writeReadings([...old, reading('temperature', now, -1)])
      expect(await store.pruneExpired(now)).toBe(25_000)
      expect(await allReadings(store, 'dev-1')).toEqual([reading('temperature', now, -1)])
    })

    it('prunes once at open', async () => {
      const now = Date.now()
      const plain = openStore()
      await plain.writeReadings([reading('temperature', now - 2 * HOUR, 1)])
      await plain.writeReadings([reading('temperature', now, 2)])
      await plain.close()

      const pruning = openStore(HOUR)
      await vi.waitFor(async () => {
        expect(await allReadings(pruning, 'dev-1')).toEqual([reading('temperature', now, 2)])
      })
    })

    it('does nothing without a retention', async () => {
      const store = openStore()
      await store.writeReadings([reading('temperature', 0, 1)])
      expect(await store.pruneExpired()).toBe(0)
      expect(await allReadings(store, 'dev-1')).toHaveLength(1)
    })

    it('clears its interval on close', async () => {
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] })
      const store = openStore(HOUR)
      expect(vi.getTimerCount()).toBe(1)
      await store.close()
      expect(vi.getTimerCount()).toBe(0)
    })
  })

  it('closes idempotently and rejects use after close', async () => {
    const store = openStore()
    await store.close()
    await store.close()
    await expect(store.writeReadings([reading('temperature', T0, 1)])).rejects.toMatchObject({
      code: ERROR_CODES.store,
    })
    await expect(store.latest()).rejects.toMatchObject({ code: ERROR_CODES.store })
  })

  it('aligns buckets of pre-1970 timestamps to the epoch too', async () => {
    const store = openStore()
    await store.writeReadings([
      reading('temperature', -90_000, 1),
      reading('temperature', -30_000, 3),
    ])
    const buckets = await store.aggregate({
      deviceId: 'dev-1',
      metric: 'temperature',
      fromMs: -120_000,
      toMs: 0,
      everyMs: 60_000,
      fn: 'mean',
    })
    expect(buckets).toEqual([
      { ts: -120_000, value: 1, count: 1 },
      { ts: -60_000, value: 3, count: 1 },
    ])
  })

  it('rejects a non-positive bucket width', async () => {
    const store = openStore()
    await expect(
      store.aggregate({
        deviceId: 'dev-1',
        metric: 'temperature',
        fromMs: T0,
        toMs: T0 + HOUR,
        everyMs: 0,
        fn: 'mean',
      }),
    ).rejects.toMatchObject({ code: ERROR_CODES.store })
  })
})
