import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import {
  type Alert,
  type AlertState,
  alertId,
  type Reading,
  type Severity,
} from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'
import {
  type AggregateFunction,
  type AggregateQuery,
  type AlertQuery,
  assertBucketWidth,
  type Bucket,
  type LatestReading,
  type ReadingQuery,
  type ReadingStore,
} from './reading-store.ts'

export interface SqliteStoreOptions {
  /** Database file; its parent directory is created when missing. */
  file: string
  /** When set, readings older than now - retentionMs are deleted at open and periodically. */
  retentionMs?: number
  log?: Logger
}

/** The SQLite backend: the ReadingStore contract plus retention that callers and tests can drive. */
export interface SqliteStore extends ReadingStore {
  readonly kind: 'sqlite'
  /**
   * Deletes readings older than `nowMs - retentionMs` (0 and no work without a retention).
   * Runs in slices that yield to the event loop, so a large backlog never stalls the broker.
   * Resolves with the number of readings deleted; concurrent calls share one pass.
   */
  pruneExpired(nowMs?: number): Promise<number>
}

const HOUR_MS = 60 * 60_000
/** Rows deleted per statement and work per slice while pruning, so each slice stays short. */
const PRUNE_CHUNK_ROWS = 10_000
const PRUNE_SLICE_MS = 10

/**
 * The schema as ordered migrations: MIGRATIONS[i] takes a file from user_version i to i + 1.
 * A new file runs them all, an older file the ones it lacks, each in one transaction with its
 * version bump, so every file ends with the same schema whatever version it started from and a
 * failed upgrade leaves the file as it was. Files written by earlier gateways exist on users'
 * machines: a migration is never edited once released, a change is a new entry.
 */
const MIGRATIONS: readonly string[] = [
  // 0 -> 1: readings, latest, alert history.
  `
  -- Identity is (device, metric, ts) (DESIGN §3). WITHOUT ROWID stores rows in primary-key
  -- order: a range query on one series is one B-tree seek plus a sequential read, and the
  -- table is its own (device, metric, ts) index.
  CREATE TABLE IF NOT EXISTS readings (
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    unit TEXT,
    PRIMARY KEY (device, metric, ts)
  ) WITHOUT ROWID;

  -- The newest reading of each series, maintained in the same transaction as readings.
  -- latest() reads one row per series instead of scanning history, and the all-metrics
  -- range query uses it to seek the primary key once per metric. A query-time
  -- 'GROUP BY device, metric' with max(ts) would read every stored reading, and a correlated
  -- per-series max needs the list of series, which again means a scan: both grow with
  -- history, while this table grows with the number of series, and costs one upsert per
  -- series per batch.
  CREATE TABLE IF NOT EXISTS latest (
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    unit TEXT,
    PRIMARY KEY (device, metric)
  ) WITHOUT ROWID;

  -- Append-only history of alert transitions. id keeps insertion order for equal ts.
  -- value and threshold may be NULL (a NaN from a rule) so one odd alert cannot wedge a batch.
  CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    value REAL,
    threshold REAL,
    since INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    message TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS alerts_device_rule_ts ON alerts (device, rule, ts);
  CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
  `,
  // 1 -> 2: the alert's id, kind and flapping flag, and the current transition of every key.
  // Transitions written before version 2 came from threshold rules, never flagged flapping.
  // alert_id, not id: id is the history row's own key (insertion order).
  `
  ALTER TABLE alerts ADD COLUMN alert_id TEXT NOT NULL DEFAULT '';
  ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'threshold';
  ALTER TABLE alerts ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
  UPDATE alerts SET alert_id = rule || ':' || device;

  -- The latest transition (greatest ts, then latest written) of each (rule, device), kept in
  -- the same transaction as the history. Current-state queries (latestAlerts, state=firing)
  -- read one row per key and look the transition up by its rowid; a query-time "newest row
  -- per group" over alerts would read the whole history on every call.
  CREATE TABLE alert_current (
    rule TEXT NOT NULL,
    device TEXT NOT NULL,
    ts INTEGER NOT NULL,
    transition INTEGER NOT NULL,
    PRIMARY KEY (rule, device)
  ) WITHOUT ROWID;
  INSERT INTO alert_current (rule, device, ts, transition)
    SELECT k.rule, k.device, t.ts, t.id
    FROM (SELECT DISTINCT rule, device FROM alerts) AS k
    JOIN alerts AS t ON t.id = (
      SELECT id FROM alerts
      WHERE device = k.device AND rule = k.rule
      ORDER BY ts DESC, id DESC LIMIT 1
    );
  `,
]

/** Stored as the kind of an alert that arrived without one. */
const UNKNOWN_KIND = 'unknown'

/** Bumped by adding a migration; a file written by a newer gateway is refused, not misread. */
const SCHEMA_VERSION = MIGRATIONS.length

interface ReadingRow {
  device: string
  metric: string
  ts: number
  value: number
  unit: string | null
}

interface BucketRow {
  bucket: number
  value: number
  count: number
}

interface AlertRow {
  alert_id: string
  rule: string
  kind: string
  device: string
  metric: string
  severity: string
  state: string
  value: number | null
  threshold: number | null
  since: number
  ts: number
  message: string
  flapping: number
}

type ReadingParams = {
  device: string
  metric: string
  ts: number
  value: number
  unit: string | null
}

// Bucket start aligned to multiples of @every since the epoch; the double modulo keeps
// pre-1970 timestamps in the right bucket (SQLite's % truncates toward zero).
const BUCKET_EXPR = '(ts - ((ts % @every) + @every) % @every)'

const AGGREGATE_SELECT: Record<AggregateFunction, string> = {
  mean: 'avg(value)',
  min: 'min(value)',
  max: 'max(value)',
  count: 'count(*)',
  // With exactly one max() in an aggregate query, SQLite takes bare columns from the row
  // holding that max (https://sqlite.org/lang_select.html#bare_columns_in_an_aggregate_query):
  // `value` is the value at the greatest ts of the bucket.
  last: 'value, max(ts) AS lastTs',
}

const ALERT_COLUMNS =
  'alert_id, rule, kind, device, metric, severity, state, value, threshold, since, ts, message, flapping'
/** The same columns of `alerts` in a join with alert_current. */
const CURRENT_ALERT_COLUMNS = ALERT_COLUMNS.replace(/\w+/g, 'alerts.$&')
/** Filters of queryAlerts, in the order they appear in a statement's WHERE (cache key). */
const ALERT_FILTERS = [
  ['state', 'state = @state'],
  ['deviceId', 'device = @device'],
  ['ruleId', 'rule = @rule'],
  ['severity', 'severity = @severity'],
  ['fromMs', 'ts >= @from'],
  ['toMs', 'ts < @to'],
] as const satisfies ReadonlyArray<readonly [keyof AlertQuery, string]>
const ALERT_PARAM_NAMES: Record<(typeof ALERT_FILTERS)[number][0], string> = {
  state: 'state',
  deviceId: 'device',
  ruleId: 'rule',
  severity: 'severity',
  fromMs: 'from',
  toMs: 'to',
}

export function createSqliteStore(options: SqliteStoreOptions): SqliteStore {
  const { file, retentionMs } = options
  const log = options.log?.child({ module: 'sqlite-store' })
  if (retentionMs !== undefined && !(retentionMs > 0)) {
    throw new GatewayError(ERROR_CODES.store, `retentionMs must be > 0, got ${retentionMs}`)
  }

  const db = openDatabase(file)

  const insertReading = db.prepare<ReadingParams>(
    `INSERT INTO readings (device, metric, ts, value, unit) VALUES (@device, @metric, @ts, @value, @unit)
     ON CONFLICT (device, metric, ts) DO UPDATE SET value = excluded.value, unit = excluded.unit`,
  )
  // `>=` so a rewrite of the newest reading (same identity, new value) updates latest too.
  const upsertLatest = db.prepare<ReadingParams>(
    `INSERT INTO latest (device, metric, ts, value, unit) VALUES (@device, @metric, @ts, @value, @unit)
     ON CONFLICT (device, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value, unit = excluded.unit
     WHERE excluded.ts >= latest.ts`,
  )
  // A transition already stored (same rule, device, ts, state and flapping flag) is not added
  // again: the spool may replay a batch the store had committed just before a crash (README,
  // Guarantees). The (device, rule, ts) index makes the check one lookup.
  const insertAlert = db.prepare<Record<string, unknown>>(
    `INSERT INTO alerts (${ALERT_COLUMNS})
     SELECT @alertId, @rule, @kind, @device, @metric, @severity, @state, @value, @threshold,
            @since, @ts, @message, @flapping
     WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE device = @device AND rule = @rule AND ts = @ts
                       AND state = @state AND flapping = @flapping)`,
  )
  // `>=` so of two transitions with the same ts the one written later is current, as in the
  // history's order (ts DESC, id DESC); an older ts arriving late never becomes current.
  const upsertCurrentAlert = db.prepare<Record<string, unknown>>(
    `INSERT INTO alert_current (rule, device, ts, transition) VALUES (@rule, @device, @ts, @transition)
     ON CONFLICT (rule, device) DO UPDATE SET ts = excluded.ts, transition = excluded.transition
     WHERE excluded.ts >= alert_current.ts`,
  )
  // CROSS JOIN keeps alert_current as the outer loop (SQLite never reorders it): one row per
  // key, then one rowid lookup each, whatever indexes the history has.
  const currentAlerts = 'alert_current AS c CROSS JOIN alerts ON alerts.id = c.transition'
  const latestAlertsStatement = db.prepare<[], AlertRow>(
    `SELECT ${CURRENT_ALERT_COLUMNS} FROM ${currentAlerts}
     ORDER BY alerts.ts DESC, alerts.id DESC`,
  )

  const rangeSelect = 'SELECT device, metric, ts, value, unit FROM readings'
  const readingsOfMetric = {
    asc: db.prepare<Record<string, unknown>, ReadingRow>(
      `${rangeSelect} WHERE device = @device AND metric = @metric AND ts >= @from AND ts < @to
       ORDER BY ts ASC LIMIT @limit`,
    ),
    desc: db.prepare<Record<string, unknown>, ReadingRow>(
      `${rangeSelect} WHERE device = @device AND metric = @metric AND ts >= @from AND ts < @to
       ORDER BY ts DESC LIMIT @limit`,
    ),
  }
  // `metric IN (metrics of this device)` turns the query into one primary-key range seek per
  // metric; `device = ?` alone would read the device's whole history to filter on ts.
  const deviceMetrics = 'metric IN (SELECT metric FROM latest WHERE device = @device)'
  const readingsOfDevice = {
    asc: db.prepare<Record<string, unknown>, ReadingRow>(
      `${rangeSelect} WHERE device = @device AND ${deviceMetrics} AND ts >= @from AND ts < @to
       ORDER BY ts ASC, metric ASC LIMIT @limit`,
    ),
    desc: db.prepare<Record<string, unknown>, ReadingRow>(
      `${rangeSelect} WHERE device = @device AND ${deviceMetrics} AND ts >= @from AND ts < @to
       ORDER BY ts DESC, metric DESC LIMIT @limit`,
    ),
  }
  const aggregates = Object.fromEntries(
    Object.entries(AGGREGATE_SELECT).map(([fn, select]) => [
      fn,
      db.prepare<Record<string, unknown>, BucketRow>(
        `SELECT ${BUCKET_EXPR} AS bucket, ${select}${fn === 'last' ? '' : ' AS value'}, count(*) AS count
         FROM readings WHERE device = @device AND metric = @metric AND ts >= @from AND ts < @to
         GROUP BY bucket ORDER BY bucket ASC`,
      ),
    ]),
  ) as Record<AggregateFunction, Database.Statement<[Record<string, unknown>], BucketRow>>
  const latestAll = db.prepare<[], ReadingRow>(
    'SELECT device, metric, ts, value, unit FROM latest ORDER BY device, metric',
  )
  const latestOfDevice = db.prepare<[string], ReadingRow>(
    'SELECT device, metric, ts, value, unit FROM latest WHERE device = ? ORDER BY metric',
  )
  const allSeries = db.prepare<[], { device: string; metric: string }>(
    'SELECT device, metric FROM latest',
  )
  // DELETE ... LIMIT needs SQLITE_ENABLE_UPDATE_DELETE_LIMIT, which better-sqlite3 builds with.
  const deleteExpiredChunk = db.prepare<Record<string, unknown>>(
    `DELETE FROM readings WHERE device = @device AND metric = @metric AND ts < @cutoff
     ORDER BY ts LIMIT ${PRUNE_CHUNK_ROWS}`,
  )
  const deleteExpiredLatest = db.prepare<Record<string, unknown>>(
    'DELETE FROM latest WHERE device = @device AND metric = @metric AND ts < @cutoff',
  )
  // queryAlerts has 128 filter combinations; each shape is prepared on first use, then reused,
  // so every shape gets its own plan (a catch-all `? IS NULL OR ...` would defeat the indexes).
  const alertStatements = new Map<string, Database.Statement<[Record<string, unknown>], AlertRow>>()

  function alertStatement(
    query: AlertQuery,
  ): Database.Statement<[Record<string, unknown>], AlertRow> {
    const current = query.current === true
    // In the join, rule and device filter alert_current (a seek on its key), the rest the
    // transition.
    const filters = ALERT_FILTERS.filter(([key]) => query[key] !== undefined).map(([key, sql]) =>
      !current ? sql : key === 'deviceId' || key === 'ruleId' ? `c.${sql}` : `alerts.${sql}`,
    )
    const where = filters.length > 0 ? `WHERE ${filters.join(' AND ')}` : ''
    const cacheKey = `${current ? 'current' : 'history'} ${where}`
    let statement = alertStatements.get(cacheKey)
    if (statement === undefined) {
      const sql = current
        ? `SELECT ${CURRENT_ALERT_COLUMNS} FROM ${currentAlerts}
           ${where} ORDER BY alerts.ts DESC, alerts.id DESC LIMIT @limit`
        : `SELECT ${ALERT_COLUMNS} FROM alerts ${where} ORDER BY ts DESC, id DESC LIMIT @limit`
      statement = db.prepare<Record<string, unknown>, AlertRow>(sql)
      alertStatements.set(cacheKey, statement)
    }
    return statement
  }

  const writeReadingsTx = db.transaction((readings: readonly Reading[]) => {
    // latest gets one upsert per series per batch, not one per reading: under load a batch
    // holds many readings of few series, so maintaining latest costs little.
    const newest = new Map<string, ReadingParams>()
    for (const r of readings) {
      const params: ReadingParams = {
        device: r.deviceId,
        metric: r.metric,
        ts: r.ts,
        value: r.value,
        unit: r.unit ?? null,
      }
      insertReading.run(params)
      const key = `${r.deviceId}\u0000${r.metric}`
      const seen = newest.get(key)
      if (seen === undefined || r.ts >= seen.ts) newest.set(key, params)
    }
    for (const params of newest.values()) upsertLatest.run(params)
  })

  const writeAlertsTx = db.transaction((alerts: readonly Alert[]) => {
    for (const a of alerts) {
      const { changes, lastInsertRowid } = insertAlert.run({
        // The fields added in schema 2 are typed as required, but a batch that fails is retried
        // forever and holds up the writer: an alert built without them (an engine or custom kind
        // from before they existed) is stored with what they mean, not refused.
        alertId: typeof a.id === 'string' ? a.id : alertId(a.ruleId, a.deviceId),
        rule: a.ruleId,
        kind: typeof a.kind === 'string' ? a.kind : UNKNOWN_KIND,
        device: a.deviceId,
        metric: a.metric,
        severity: a.severity,
        state: a.state,
        value: a.value,
        threshold: a.threshold,
        since: a.since,
        ts: a.ts,
        message: a.message,
        flapping: a.flapping ? 1 : 0,
      })
      if (changes === 0) continue
      upsertCurrentAlert.run({
        rule: a.ruleId,
        device: a.deviceId,
        ts: a.ts,
        transition: lastInsertRowid,
      })
    }
  })

  const pruneSeriesTx = db.transaction((device: string, metric: string, cutoff: number) => {
    const deleted = deleteExpiredChunk.run({ device, metric, cutoff }).changes
    // Deleting latest in the same transaction as the last expired readings keeps the two
    // tables consistent: a series is in latest exactly when it has readings.
    if (deleted < PRUNE_CHUNK_ROWS) deleteExpiredLatest.run({ device, metric, cutoff })
    return deleted
  })

  let closed = false
  let pruning: Promise<number> | undefined
  let pruneTimer: NodeJS.Timeout | undefined

  function assertOpen(): void {
    if (closed) throw new GatewayError(ERROR_CODES.store, `SQLite store ${file} is closed`)
  }

  async function prunePass(nowMs: number, ttlMs: number): Promise<number> {
    const cutoff = nowMs - ttlMs
    const series = allSeries.all()
    let deleted = 0
    let sliceStart = performance.now()
    for (const { device, metric } of series) {
      for (;;) {
        if (closed) return deleted
        const n = pruneSeriesTx(device, metric, cutoff)
        deleted += n
        if (performance.now() - sliceStart >= PRUNE_SLICE_MS) {
          // better-sqlite3 is synchronous: give the broker and the writer a turn.
          await new Promise((resolve) => setImmediate(resolve))
          sliceStart = performance.now()
        }
        if (n < PRUNE_CHUNK_ROWS) break
      }
    }
    if (deleted > 0) log?.info({ deleted, cutoff, retentionMs: ttlMs }, 'expired readings deleted')
    return deleted
  }

  function pruneExpired(nowMs: number = Date.now()): Promise<number> {
    if (retentionMs === undefined || closed) return Promise.resolve(0)
    if (pruning) return pruning
    const pass = prunePass(nowMs, retentionMs).finally(() => {
      pruning = undefined
    })
    pruning = pass
    return pass
  }

  function runScheduledPrune(): void {
    pruneExpired().catch((err: unknown) => {
      log?.warn({ err }, 'retention pass failed; retrying at the next interval')
    })
  }

  if (retentionMs !== undefined) {
    // At most hourly, and more often for short retentions so data never outlives its
    // retention by much more than the retention itself.
    const intervalMs = Math.max(1000, Math.min(HOUR_MS, retentionMs))
    pruneTimer = setInterval(runScheduledPrune, intervalMs)
    // Retention must never keep the process alive on its own.
    pruneTimer.unref()
    runScheduledPrune()
  }

  log?.info({ file, retentionMs }, 'SQLite store open')

  return {
    kind: 'sqlite',

    async writeReadings(readings) {
      assertOpen()
      if (readings.length === 0) return
      writeReadingsTx(readings)
    },

    async writeAlerts(alerts) {
      assertOpen()
      if (alerts.length === 0) return
      writeAlertsTx(alerts)
    },

    async queryReadings(query: ReadingQuery) {
      assertOpen()
      const statements = query.metric === undefined ? readingsOfDevice : readingsOfMetric
      const rows = statements[query.order].all({
        device: query.deviceId,
        metric: query.metric ?? null,
        from: query.fromMs,
        to: query.toMs,
        limit: query.limit,
      })
      return rows.map(toReading)
    },

    async aggregate(query: AggregateQuery) {
      assertOpen()
      assertBucketWidth(query.everyMs)
      const statement = aggregates[query.fn]
      const rows = statement.all({
        device: query.deviceId,
        metric: query.metric,
        from: query.fromMs,
        to: query.toMs,
        every: query.everyMs,
      })
      return rows.map((row): Bucket => ({ ts: row.bucket, value: row.value, count: row.count }))
    },

    async latest(deviceId?: string) {
      assertOpen()
      const rows = deviceId === undefined ? latestAll.all() : latestOfDevice.all(deviceId)
      return rows.map((row): LatestReading => toReading(row))
    },

    async queryAlerts(query: AlertQuery) {
      assertOpen()
      const params: Record<string, unknown> = { limit: query.limit }
      for (const [key] of ALERT_FILTERS) {
        if (query[key] !== undefined) params[ALERT_PARAM_NAMES[key]] = query[key]
      }
      return alertStatement(query).all(params).map(toAlert)
    },

    async latestAlerts() {
      assertOpen()
      return latestAlertsStatement.all().map(toAlert)
    },

    pruneExpired,

    async close() {
      if (closed) return
      closed = true
      if (pruneTimer) clearInterval(pruneTimer)
      try {
        // Recommended before closing a long-lived connection: refreshes planner statistics.
        db.pragma('optimize')
      } finally {
        db.close()
      }
      log?.info({ file }, 'SQLite store closed')
    },
  }
}

function openDatabase(file: string): Database.Database {
  let db: Database.Database | undefined
  try {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true })
    db = new Database(file)
    db.pragma('journal_mode = WAL')
    // With WAL, NORMAL syncs the WAL at checkpoints rather than at every commit. The file can
    // never be corrupted, and a commit survives a crash of this process (it is in the OS page
    // cache); only an OS crash or power loss can roll back the last transactions. That is the
    // trade-off SQLite recommends for WAL, and it keeps group commits cheap: FULL would fsync
    // every batch.
    db.pragma('synchronous = NORMAL')
    // Checkpoints truncate the WAL back to this size so a write burst does not leave it huge.
    db.pragma('journal_size_limit = 67108864')
    const version = db.pragma('user_version', { simple: true }) as number
    if (version > SCHEMA_VERSION) {
      throw new Error(
        `schema version ${version} is newer than this gateway supports (${SCHEMA_VERSION})`,
      )
    }
    migrate(db, version)
    return db
  } catch (err) {
    db?.close()
    const message = err instanceof Error ? err.message : String(err)
    throw new GatewayError(ERROR_CODES.store, `cannot open SQLite store ${file}: ${message}`, {
      cause: err,
    })
  }
}

/** Runs the migrations a file at `version` lacks, one transaction per version step. */
function migrate(db: Database.Database, version: number): void {
  for (let from = version; from < SCHEMA_VERSION; from++) {
    const step = db.transaction(() => {
      db.exec(MIGRATIONS[from] as string)
      db.pragma(`user_version = ${from + 1}`)
    })
    try {
      step()
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err)
      throw new Error(`schema migration from version ${from} to ${from + 1} failed: ${message}`, {
        cause: err,
      })
    }
  }
}

function toReading(row: ReadingRow): Reading {
  const reading: Reading = {
    deviceId: row.device,
    metric: row.metric,
    value: row.value,
    ts: row.ts,
  }
  if (row.unit !== null) reading.unit = row.unit
  return reading
}

function toAlert(row: AlertRow): Alert {
  return {
    id: row.alert_id,
    ruleId: row.rule,
    kind: row.kind,
    deviceId: row.device,
    metric: row.metric,
    severity: row.severity as Severity,
    state: row.state as AlertState,
    value: row.value ?? Number.NaN,
    threshold: row.threshold ?? Number.NaN,
    since: row.since,
    ts: row.ts,
    message: row.message,
    flapping: row.flapping !== 0,
  }
}
