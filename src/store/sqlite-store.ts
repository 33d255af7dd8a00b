import type Database from 'better-sqlite3'
import type { Alert, AlertState, Reading, Severity } from '../contract/types.ts'
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
import { openDatabase } from './sqlite/schema.ts'
import { startWriteWorker } from './sqlite/write-worker.ts'
import { ALERT_COLUMNS, PRUNE_CHUNK_ROWS } from './sqlite/writes.ts'

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
  // Every write happens on the write thread, on its own connection; this one only reads (WAL:
  // readers see each commit as soon as it is made and never wait for the writer).
  const writes = startWriteWorker(file, log)

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
    for (const { device, metric } of series) {
      for (;;) {
        if (closed) return deleted
        // One chunk per request: readings queued meanwhile are written between two chunks.
        const n = await writes.pruneSeries(device, metric, cutoff)
        deleted += n
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
      await writes.readings(readings)
    },

    async writeAlerts(alerts) {
      assertOpen()
      await writes.alerts(alerts)
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
      // Writes already asked for are committed before the threads stop.
      await writes.close()
      await pruning?.catch(() => undefined)
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
