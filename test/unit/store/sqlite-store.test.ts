import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Alert, Reading } from '../../../src/contract/types.ts'
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

  function alert(ruleId: string, ts: number, overrides: Partial<Alert> = {}): Alert {
    return {
      id: `${ruleId}:dev-1`,
      ruleId,
      kind: 'threshold',
      deviceId: 'dev-1',
      metric: 'temperature',
      severity: 'major',
      state: 'firing',
      value: 2,
      threshold: 1.5,
      since: ts,
      ts,
      message: ruleId,
      flapping: false,
      ...overrides,
    }
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
    const hot = alert('hot', T0 + 1, { kind: 'rate', flapping: true })
    await first.writeAlerts([hot])
    await first.close()

    const second = openStore()
    expect(await allReadings(second, 'dev-1')).toEqual([
      reading('temperature', T0, 1),
      reading('temperature', T0 + 1, 2),
    ])
    expect(await second.latest()).toEqual([reading('temperature', T0 + 1, 2)])
    expect(await second.queryAlerts({ limit: 10 })).toEqual([hot])
    expect(await second.latestAlerts()).toEqual([hot])
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

  describe('alert history details', () => {
    it('of two transitions of a key with the same ts, the one written later is current', async () => {
      const store = openStore()
      const fired = alert('hot', T0)
      const resolved = alert('hot', T0, { state: 'resolved' })
      await store.writeAlerts([fired])
      await store.writeAlerts([resolved])
      expect(await store.latestAlerts()).toEqual([resolved])
      expect(await store.queryAlerts({ current: true, state: 'firing', limit: 10 })).toEqual([])
      expect(await store.queryAlerts({ limit: 10 })).toEqual([resolved, fired])
    })

    it('stores an alert that arrived without id or kind with what they mean, not refusing the batch', async () => {
      const store = openStore()
      const { id: _id, kind: _kind, ...legacy } = alert('hot', T0)
      await store.writeAlerts([legacy as Alert])
      expect(await store.latestAlerts()).toEqual([alert('hot', T0, { kind: 'unknown' })])
    })

    it('reads current alerts through alert_current, never scanning the history', async () => {
      const store = openStore()
      await store.writeAlerts([alert('hot', T0)])
      const probe = new Database(file, { readonly: true })
      try {
        const plan = (sql: string) =>
          (probe.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map(
            (row) => row.detail,
          )
        // The shape of latestAlerts() and of current-state queries.
        const steps = plan(
          `SELECT alerts.* FROM alert_current AS c CROSS JOIN alerts ON alerts.id = c.transition
           WHERE alerts.state = 'firing' ORDER BY alerts.ts DESC, alerts.id DESC`,
        )
        expect(steps).toEqual([
          expect.stringMatching(/^SCAN c\b/),
          expect.stringMatching(/^SEARCH alerts USING INTEGER PRIMARY KEY \(rowid=\?\)/),
          expect.stringMatching(/^USE TEMP B-TREE FOR ORDER BY/),
        ])
      } finally {
        probe.close()
      }
    })
  })

  describe('schema versions', () => {
    /** The schema gateway 0.1 wrote (user_version 1), verbatim: files like this are on users' disks. */
    const V1_SCHEMA = `
      CREATE TABLE readings (
        device TEXT NOT NULL, metric TEXT NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
        unit TEXT, PRIMARY KEY (device, metric, ts)
      ) WITHOUT ROWID;
      CREATE TABLE latest (
        device TEXT NOT NULL, metric TEXT NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
        unit TEXT, PRIMARY KEY (device, metric)
      ) WITHOUT ROWID;
      CREATE TABLE alerts (
        id INTEGER PRIMARY KEY, rule TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
        severity TEXT NOT NULL, state TEXT NOT NULL, value REAL, threshold REAL,
        since INTEGER NOT NULL, ts INTEGER NOT NULL, message TEXT NOT NULL
      );
      CREATE INDEX alerts_device_rule_ts ON alerts (device, rule, ts);
      CREATE INDEX alerts_ts ON alerts (ts);
    `

    type V1Alert = Omit<Alert, 'id' | 'kind' | 'flapping'>

    const v1Alerts: V1Alert[] = [
      // hot on dev-1: fired, resolved, fired again; written out of ts order.
      alert('hot', T0),
      alert('hot', T0 + 3000, { message: 'again' }),
      alert('hot', T0 + 2000, { state: 'resolved', value: 1 }),
      // cold on dev-2: two transitions with the same ts; the later row is current.
      alert('cold', T0 + 1000, { deviceId: 'dev-2', severity: 'warning' }),
      alert('cold', T0 + 1000, { deviceId: 'dev-2', severity: 'warning', state: 'resolved' }),
    ].map(({ id: _id, kind: _kind, flapping: _flapping, ...rest }) => rest)

    function writeV1File(extraSql = ''): void {
      const v1 = new Database(file)
      try {
        v1.pragma('journal_mode = WAL')
        v1.exec(V1_SCHEMA)
        const insertReading = v1.prepare(
          'INSERT INTO readings (device, metric, ts, value, unit) VALUES (?, ?, ?, ?, ?)',
        )
        const insertLatest = v1.prepare(
          'INSERT INTO latest (device, metric, ts, value, unit) VALUES (?, ?, ?, ?, ?)',
        )
        insertReading.run('dev-1', 'temperature', T0, 21.5, 'Cel')
        insertLatest.run('dev-1', 'temperature', T0, 21.5, 'Cel')
        const insertAlert = v1.prepare(
          `INSERT INTO alerts (rule, device, metric, severity, state, value, threshold, since, ts, message)
           VALUES (@ruleId, @deviceId, @metric, @severity, @state, @value, @threshold, @since, @ts, @message)`,
        )
        for (const a of v1Alerts) insertAlert.run(a)
        v1.exec(extraSql)
        v1.pragma('user_version = 1')
      } finally {
        v1.close()
      }
    }

    function inspect<T>(read: (db: Database.Database) => T): T {
      const probe = new Database(file, { readonly: true })
      try {
        return read(probe)
      } finally {
        probe.close()
      }
    }

    const userVersion = (db: Database.Database) => db.pragma('user_version', { simple: true })
    /** Tables (columns, WITHOUT ROWID) and indexes (columns), whatever the DDL's layout. */
    const schemaOf = (db: Database.Database) => {
      const objects = db
        .prepare(
          "SELECT type, name, tbl_name AS tableName FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .all() as Array<{ type: string; name: string; tableName: string }>
      return objects.map(({ type, name, tableName }) =>
        type === 'table'
          ? {
              name,
              columns: db.pragma(`table_info(${name})`),
              withoutRowid: (db.pragma(`table_list(${name})`) as Array<{ wr: number }>)[0]?.wr,
            }
          : { name, tableName, columns: db.pragma(`index_info(${name})`) },
      )
    }

    it('migrates a version 1 file to version 2, backfilling id, kind and flapping', async () => {
      writeV1File()
      const store = openStore()
      expect(inspect(userVersion)).toBe(2)

      const backfilled = (a: V1Alert): Alert => ({
        ...a,
        id: `${a.ruleId}:${a.deviceId}`,
        kind: 'threshold',
        flapping: false,
      })
      const [hotFired, hotAgain, hotResolved, coldFired, coldResolved] = v1Alerts.map(backfilled)
      expect(await store.queryAlerts({ limit: 10 })).toEqual([
        hotAgain,
        hotResolved,
        coldResolved,
        coldFired,
        hotFired,
      ])
      // The current transition of every key is derived from the history.
      expect(await store.latestAlerts()).toEqual([hotAgain, coldResolved])
      expect(await store.queryAlerts({ current: true, state: 'firing', limit: 10 })).toEqual([
        hotAgain,
      ])
      // Readings are untouched, and the migrated file takes new writes of both kinds.
      expect(await allReadings(store, 'dev-1')).toEqual([
        { deviceId: 'dev-1', metric: 'temperature', ts: T0, value: 21.5, unit: 'Cel' },
      ])
      const resolved = alert('hot', T0 + 4000, { state: 'resolved', kind: 'rate' })
      await store.writeAlerts([resolved])
      expect(await store.latestAlerts()).toEqual([resolved, coldResolved])
      await store.close()

      // Reopening migrates nothing twice.
      const again = openStore()
      expect(await again.latestAlerts()).toEqual([resolved, coldResolved])
      expect(inspect(userVersion)).toBe(2)
    })

    it('gives a migrated file exactly the schema of a new one', async () => {
      writeV1File()
      await openStore().close()
      const migrated = inspect(schemaOf)
      file = join(dir.path, 'fresh.db')
      await openStore().close()
      expect(inspect(schemaOf)).toEqual(migrated)
      expect(inspect(userVersion)).toBe(2)
    })

    it('leaves a version 1 file as it was when its migration fails, naming file and step', async () => {
      // A table in the way of the migration: it must fail and roll back whole.
      writeV1File('CREATE TABLE alert_current (x INTEGER);')
      const before = inspect(schemaOf)
      expect(() => openStore()).toThrowError(
        expect.objectContaining({
          code: ERROR_CODES.store,
          message: expect.stringMatching(
            new RegExp(`${file}.*schema migration from version 1 to 2 failed`),
          ),
        }),
      )
      expect(inspect(userVersion)).toBe(1)
      expect(inspect(schemaOf)).toEqual(before)
    })
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
