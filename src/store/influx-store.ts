import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { InfluxDB } from 'influx'
import type { IBackoffStrategy } from 'influx/lib/src/backoff/backoff.js'
import { Pool, RequestError } from 'influx/lib/src/pool.js'
import { type Alert, type AlertState, alertId, type Severity } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'
import {
  type AggregateSegment,
  ALERTS_RP,
  CQ_NAME,
  createContinuousQuery,
  DOWNSAMPLED_MEASUREMENT,
  DOWNSAMPLED_RP,
  mergeBuckets,
  type PartialBucket,
  planAggregate,
  RAW_RP,
  sameContinuousQuery,
} from './influx/downsampling.ts'
import {
  clampTimeMs,
  ident,
  msLiteral,
  parseGoDurationMs,
  str,
  timeRange,
} from './influx/influxql.ts'
import { createLateDownsampler } from './influx/late-downsampler.ts'
import {
  ALERT_MEASUREMENT,
  alertLines,
  READING_MEASUREMENT,
  readingLines,
  UNKNOWN_KIND,
} from './influx/line-protocol.ts'
import {
  type AggregateFunction,
  type AggregateQuery,
  type AlertQuery,
  assertBucketWidth,
  type Bucket,
  type LatestReading,
  type ReadingQuery,
  type ReadingStore,
  StoreQueryLimitError,
  StoreRejectedError,
} from './reading-store.ts'

export interface InfluxStoreOptions {
  /** `http://127.0.0.1:8086/sensors`: the last path segment names the database. */
  url: string
  /** Duration of the retention policy `raw` (the database's default), at least 1 h. */
  rawRetentionMs: number
  /** Duration of the retention policy `downsampled` (1-minute aggregates), at least 1 h. */
  downsampledRetentionMs: number
  log?: Logger
  /**
   * InfluxDB unreachable at open (no answer, a timeout, a 5xx): false (the default) rejects, as
   * an InfluxDB that answers and refuses the schema statements always does. true resolves with a
   * store whose schema (database, retention policies, continuous query) is created once InfluxDB
   * answers: tried in the background every schemaRetryMs and before every call, which fails as
   * transient (a plain error, never StoreRejectedError) until then.
   */
  allowUnreachable?: boolean
  /** While the schema waits for InfluxDB, how often it is tried in the background (default 1 s). */
  schemaRetryMs?: number
  /**
   * With allowUnreachable: how long the open waits for a first answer (default 5 s) before it
   * resolves with the schema pending, the attempt going on in the background.
   */
  openWaitMs?: number
}

export interface InfluxStore extends ReadingStore {
  readonly kind: 'influx'
  /** True once the database, retention policies and continuous query are made sure of. */
  schemaReady(): boolean
  /**
   * Resolves true once the schema is ready (at once when it was at open), false when the store
   * is closed first.
   */
  whenSchemaReady(): Promise<boolean>
}

/** latest() reads this recent window first (see latestReadings). */
const LATEST_RECENT_MS = 3_600_000
/** Past this many devices missing from the recent window, latest() reads every series. */
const MAX_LATEST_DEVICE_FILTER = 500
/** InfluxDB refuses retention policies shorter than an hour. */
const MIN_RETENTION_MS = 3_600_000
/** Lines per POST /write: InfluxDB's advice is batches of about 5,000 points. */
const LINES_PER_WRITE = 5_000
/**
 * A write that takes longer fails as transient and is retried by the writer. InfluxDB's own
 * coordinator gives up on a write after 10 s with a 500; this leaves it room to say so.
 */
const WRITE_TIMEOUT_MS = 15_000
const QUERY_TIMEOUT_MS = 30_000
/**
 * 4xx answers that say nothing about the points: credentials, a missing database, throttling.
 * Retrying can succeed once that is fixed, so they are transient, not a refusal to dead-letter
 * every point for (STYLE habit 7 retries 429 too).
 */
const TRANSIENT_CLIENT_STATUSES = new Set([401, 403, 404, 408, 429])
const DEFAULT_SCHEMA_RETRY_MS = 1_000
const DEFAULT_OPEN_WAIT_MS = 5_000
/**
 * What InfluxDB 1.8 answers to a write into a database or retention policy that does not exist
 * (404 and 500: both transient already): the schema is gone (InfluxDB restarted on an empty
 * volume, the database dropped), so it is created again before the next write.
 */
const SCHEMA_LOST = /database not found|retention policy not found/

/**
 * The pool of npm `influx` takes a host out of rotation for a backoff delay after a network
 * error, and with one host that turns every request in the delay into "No host available".
 * The store writer owns retries and backoff, so the host is never disabled (a delay of 0).
 */
const NEVER_DISABLE: IBackoffStrategy = {
  getDelay: () => 0,
  next: () => NEVER_DISABLE,
  reset: () => NEVER_DISABLE,
}

const ALERT_FIELDS = [
  'id',
  'kind',
  'severity',
  'state',
  'metric',
  'value',
  'threshold',
  'since',
  'message',
  'flapping',
] as const

interface InfluxSeries {
  name?: string
  tags?: Record<string, string>
  columns: string[]
  values?: unknown[][]
  partial?: boolean
}

interface InfluxStatementResult {
  statement_id?: number
  series?: InfluxSeries[]
  error?: string
  partial?: boolean
}

type Row = Record<string, unknown>

/**
 * The InfluxDB 1.x backend (DESIGN §5). Opening prepares the database: creates it when missing,
 * makes the retention policies `raw` (default), `downsampled` and `alerts` match the options
 * (created when missing, altered when their duration or default differ) and keeps the
 * downsampling continuous query (created when missing, dropped and created again when its text
 * differs: InfluxDB has no ALTER CONTINUOUS QUERY).
 *
 * Schema: `raw`.`reading` (tags device, metric; fields value float, unit string when present),
 * `downsampled`.`reading_1m` (tags device, metric; fields mean, min, max, count, last), and
 * `alerts`.`alert` (tags device, rule; fields id, kind, severity, state, metric, value,
 * threshold, since, message, flapping). Times are epoch ms.
 *
 * A point is keyed by series and time, so a reading with an existing (device, metric, ts)
 * replaces the stored value, and so does an alert transition with the same (rule, device, ts)
 * as an earlier one: of those, the one written last is kept. InfluxDB merges the fields of two
 * points with the same key, so a rewrite without a unit keeps the unit of the earlier write.
 *
 * Aggregates read raw readings, or the 1-minute aggregates for old or long ranges
 * (`planAggregate`); readings too late for the continuous query are downsampled by the store
 * (`createLateDownsampler`).
 */
export async function createInfluxStore(options: InfluxStoreOptions): Promise<InfluxStore> {
  const { rawRetentionMs, downsampledRetentionMs } = options
  const schemaRetryMs = options.schemaRetryMs ?? DEFAULT_SCHEMA_RETRY_MS
  const openWaitMs = options.openWaitMs ?? DEFAULT_OPEN_WAIT_MS
  const log = options.log?.child({ module: 'influx-store' })
  for (const [name, value] of [
    ['rawRetentionMs', rawRetentionMs],
    ['downsampledRetentionMs', downsampledRetentionMs],
  ] as const) {
    if (!(Number.isSafeInteger(value) && value >= MIN_RETENTION_MS)) {
      throw new GatewayError(
        ERROR_CODES.store,
        `${name} must be a whole number of ms of at least ${MIN_RETENTION_MS} (InfluxDB's shortest retention), got ${value}`,
      )
    }
  }

  const target = parseStoreUrl(options.url)
  const { database, safeUrl } = target
  // One agent for queries and writes: keep-alive connections, all closed by close().
  const agent =
    target.protocol === 'https'
      ? new HttpsAgent({ keepAlive: true })
      : new HttpAgent({ keepAlive: true })
  const hostOptions = { agent }
  const influx = new InfluxDB({
    host: target.host,
    port: target.port,
    path: target.path,
    protocol: target.protocol,
    database,
    ...(target.username !== undefined
      ? { username: target.username, password: target.password ?? '' }
      : {}),
    pool: { maxRetries: 0, requestTimeout: QUERY_TIMEOUT_MS, backoff: NEVER_DISABLE },
    options: hostOptions,
  })
  // Writes POST our own line protocol through a pool of npm influx too. Against fetch, one
  // request of 5,000 lines in flight at a time on loopback, both did about 250k points/s (the
  // pool 1-2% ahead, within the noise); the pool shares the agent and the host handling.
  const writePool = new Pool({
    maxRetries: 0,
    requestTimeout: WRITE_TIMEOUT_MS,
    backoff: NEVER_DISABLE,
  })
  writePool.addHost(`${target.protocol}://${target.hostForUrl}:${target.port}${target.path}`, {
    ...hostOptions,
  })
  const writeAuth =
    target.username !== undefined ? `${target.username}:${target.password ?? ''}` : undefined

  let closed = false

  function assertOpen(): void {
    if (closed) throw new GatewayError(ERROR_CODES.store, `InfluxDB store ${safeUrl} is closed`)
  }

  /** Runs statements (one request), returning each statement's series; any error throws. */
  async function query(statements: readonly string[]): Promise<InfluxSeries[][]> {
    return (await queryAllowingPartial(statements)).map(({ series, partial }, i) => {
      // A server with max-row-limit cuts answers short and says so; a silently short answer
      // would be wrong, so it is an error (reads that can page use queryAllowingPartial).
      if (partial) {
        throw new StoreQueryLimitError(
          `InfluxDB cut the answer at its max-row-limit; narrow the query or raise the limit: ${statements[i]}`,
        )
      }
      return series
    })
  }

  /**
   * Runs statements (one request); `partial` says InfluxDB cut a statement's rows at its
   * max-row-limit (the rows it did return are the first ones, in the query's order).
   */
  async function queryAllowingPartial(
    statements: readonly string[],
  ): Promise<Array<{ series: InfluxSeries[]; partial: boolean }>> {
    let response: { results?: InfluxStatementResult[]; error?: string }
    try {
      response = await influx.queryRaw(statements.join(';\n'), {
        precision: 'ms',
        method: 'POST',
      })
    } catch (err) {
      throw new GatewayError(
        ERROR_CODES.store,
        `InfluxDB query failed (${safeUrl}): ${errorText(err)}`,
        { cause: err },
      )
    }
    if (response.error !== undefined) {
      throw new GatewayError(ERROR_CODES.store, `InfluxDB query failed: ${response.error}`)
    }
    const results = response.results ?? []
    return statements.map((statement, i) => {
      const result = results[i]
      if (result === undefined) {
        throw new GatewayError(ERROR_CODES.store, `InfluxDB gave no result for: ${statement}`)
      }
      if (result.error !== undefined) {
        throw new GatewayError(
          ERROR_CODES.store,
          `InfluxDB refused the query: ${result.error} (${statement})`,
        )
      }
      const series = result.series ?? []
      return { series, partial: result.partial === true || series.some((s) => s.partial === true) }
    })
  }

  /**
   * Reads up to `limit` rows of a statement that merges into one series (no GROUP BY), in pages:
   * InfluxDB 1.x answers at most max-row-limit rows per query (Debian's config sets 10,000) and
   * marks the answer partial, so the next page starts at OFFSET rows-so-far. The row limit is a
   * query limit, not an outage: it never fails the read.
   */
  async function selectPaged(statement: string, limit: number): Promise<Row[]> {
    const rows: Row[] = []
    while (rows.length < limit) {
      const [page] = await queryAllowingPartial([
        `${statement} LIMIT ${limit - rows.length}${rows.length > 0 ? ` OFFSET ${rows.length}` : ''}`,
      ])
      const pageRows = rowsOf(page?.series ?? [])
      for (const row of pageRows) rows.push(row)
      // Complete (fewer rows than asked are all there is), or a server that returned nothing.
      if (!page?.partial || pageRows.length === 0) break
    }
    return rows
  }

  /**
   * Every series of one GROUP BY statement, as a chunked response: InfluxDB applies
   * max-row-limit only to answers that are not chunked, and a series too long for one chunk
   * comes in several (`partial` on all but the last), joined here. (SLIMIT/SOFFSET paging was
   * tried: on influxd 1.6.7 SOFFSET skipped series in another order than the answer's.)
   */
  async function selectAllSeries(statement: string): Promise<InfluxSeries[]> {
    let text: string
    try {
      text = await writePool.text({
        method: 'POST',
        path: '/query',
        query: { db: database, q: statement, epoch: 'ms', chunked: 'true', chunk_size: '10000' },
        ...(writeAuth !== undefined ? { auth: writeAuth } : {}),
      })
    } catch (err) {
      throw new GatewayError(
        ERROR_CODES.store,
        `InfluxDB query failed (${safeUrl}): ${errorText(err)}`,
        { cause: err },
      )
    }
    const merged = new Map<string, InfluxSeries>()
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue
      const chunk = JSON.parse(line) as { results?: InfluxStatementResult[]; error?: string }
      const error = chunk.error ?? chunk.results?.find((r) => r.error !== undefined)?.error
      if (error !== undefined) {
        throw new GatewayError(
          ERROR_CODES.store,
          `InfluxDB refused the query: ${error} (${statement})`,
        )
      }
      for (const result of chunk.results ?? []) {
        for (const s of result.series ?? []) {
          const key = `${s.name ?? ''}\u0000${JSON.stringify(s.tags ?? {})}`
          const seen = merged.get(key)
          if (seen === undefined) merged.set(key, { ...s, values: [...(s.values ?? [])] })
          else for (const v of s.values ?? []) seen.values?.push(v)
        }
      }
    }
    return [...merged.values()]
  }

  async function queryOne(statement: string): Promise<InfluxSeries[]> {
    const [series] = await query([statement])
    return series ?? []
  }

  async function write(retentionPolicy: string, body: string): Promise<void> {
    try {
      await writePool.discard({
        method: 'POST',
        path: '/write',
        query: { db: database, rp: retentionPolicy, precision: 'ms' },
        body,
        ...(writeAuth !== undefined ? { auth: writeAuth } : {}),
      })
    } catch (err) {
      if (err instanceof RequestError && SCHEMA_LOST.test(influxErrorMessage(err))) schemaLost()
      throw classifyWriteError(err, safeUrl)
    }
  }

  /**
   * Sends a body of lines in chunks of LINES_PER_WRITE, one request at a time. The whole body is
   * built first, so a point line protocol cannot carry refuses the batch before anything is sent.
   */
  async function writeLines(retentionPolicy: string, body: string, lines: number): Promise<void> {
    if (lines <= LINES_PER_WRITE) return write(retentionPolicy, body)
    let start = 0
    while (start < body.length) {
      let end = start
      for (let n = 0; n < LINES_PER_WRITE; n++) {
        const newline = body.indexOf('\n', end)
        if (newline === -1) {
          end = body.length
          break
        }
        end = newline + 1
      }
      await write(retentionPolicy, body.slice(start, end))
      start = end
    }
  }

  async function prepare(): Promise<void> {
    await query([`CREATE DATABASE ${ident(database)}`])
    const [rpSeries] = await query([`SHOW RETENTION POLICIES ON ${ident(database)}`])
    const existing = new Map<string, { durationMs: number | null; isDefault: boolean }>()
    for (const row of rowsOf(rpSeries ?? [])) {
      existing.set(String(row.name), {
        durationMs: parseGoDurationMs(String(row.duration)),
        isDefault: row.default === true,
      })
    }
    const wanted = [
      { name: RAW_RP, durationMs: rawRetentionMs, isDefault: true },
      { name: DOWNSAMPLED_RP, durationMs: downsampledRetentionMs, isDefault: false },
      // 0 is InfluxDB's "infinite".
      { name: ALERTS_RP, durationMs: 0, isDefault: false },
    ]
    for (const rp of wanted) {
      const duration = rp.durationMs === 0 ? 'INF' : `${rp.durationMs}ms`
      const found = existing.get(rp.name)
      const onDb = `${ident(rp.name)} ON ${ident(database)}`
      if (found === undefined) {
        await query([
          `CREATE RETENTION POLICY ${onDb} DURATION ${duration} REPLICATION 1${rp.isDefault ? ' DEFAULT' : ''}`,
        ])
        log?.info(
          { database, retentionPolicy: rp.name, durationMs: rp.durationMs },
          'retention policy created',
        )
      } else if (found.durationMs !== rp.durationMs || (rp.isDefault && !found.isDefault)) {
        await query([
          `ALTER RETENTION POLICY ${onDb} DURATION ${duration}${rp.isDefault ? ' DEFAULT' : ''}`,
        ])
        log?.info(
          {
            database,
            retentionPolicy: rp.name,
            durationMs: rp.durationMs,
            previousDurationMs: found.durationMs,
          },
          'retention policy altered',
        )
      }
    }

    const wantedCq = createContinuousQuery(database)
    const [cqSeries] = await query(['SHOW CONTINUOUS QUERIES'])
    const ours = (cqSeries ?? []).find((s) => s.name === database)
    const stored = rowsOf(ours ? [ours] : []).find((row) => row.name === CQ_NAME)
    if (stored !== undefined && sameContinuousQuery(String(stored.query), wantedCq)) return
    if (stored !== undefined) {
      await query([`DROP CONTINUOUS QUERY ${ident(CQ_NAME)} ON ${ident(database)}`])
      log?.info({ database, previous: stored.query }, 'continuous query differs: recreating it')
    }
    await query([wantedCq])
    log?.info({ database, continuousQuery: CQ_NAME }, 'continuous query created')
  }

  // The schema's modes: ready, or pending (InfluxDB unreachable at open, or the schema lost
  // under a running store) with one attempt at most in flight, shared by every caller, and a
  // background retry while nothing else tries.
  let schemaIsReady = false
  let preparing: Promise<void> | undefined
  let schemaTimer: NodeJS.Timeout | undefined
  let announceReady: (ready: boolean) => void = () => {}
  const schemaReadyOnce = new Promise<boolean>((resolve) => {
    announceReady = resolve
  })

  function attemptSchema(): Promise<void> {
    preparing ??= prepare().then(
      () => {
        preparing = undefined
        schemaIsReady = true
        clearTimeout(schemaTimer)
        schemaTimer = undefined
        announceReady(true)
      },
      (err: unknown) => {
        preparing = undefined
        throw err
      },
    )
    return preparing
  }

  /** Before a call while the schema is pending: one more attempt; failing, a transient error. */
  async function ensureSchema(): Promise<void> {
    try {
      await attemptSchema()
    } catch (err) {
      throw new GatewayError(
        ERROR_CODES.store,
        `InfluxDB ${safeUrl} is not ready (database and retention policies not created yet): ${errorText(err)}`,
        { cause: err },
      )
    }
  }

  function retrySchemaLater(): void {
    if (closed || schemaIsReady || schemaTimer !== undefined) return
    schemaTimer = setTimeout(() => {
      schemaTimer = undefined
      if (closed || schemaIsReady) return
      attemptSchema().catch((err: unknown) => {
        log?.debug({ err: errorText(err) }, 'InfluxDB schema not created yet; trying again')
        retrySchemaLater()
      })
    }, schemaRetryMs)
    // A store waiting for its server must not keep the process alive on its own.
    schemaTimer.unref()
  }

  function schemaLost(): void {
    if (!schemaIsReady || closed) return
    schemaIsReady = false
    log?.warn(
      { url: safeUrl, database },
      'InfluxDB has lost the database or a retention policy: creating them again before the next write',
    )
    retrySchemaLater()
  }

  const allowUnreachable = options.allowUnreachable === true
  const first = attemptSchema()
  let outcome: unknown = 'ready'
  if (allowUnreachable) {
    // A host that drops packets neither answers nor refuses: its request would wait out
    // QUERY_TIMEOUT_MS. Past openWaitMs the start goes on and the attempt in the background.
    let waitTimer: NodeJS.Timeout | undefined
    outcome = await Promise.race([
      first.then(
        () => 'ready',
        (err: unknown) => err,
      ),
      new Promise((resolve) => {
        waitTimer = setTimeout(resolve, openWaitMs, 'no answer yet')
      }),
    ])
    clearTimeout(waitTimer)
  } else {
    outcome = await first.then(
      () => 'ready',
      (err: unknown) => err,
    )
  }
  if (outcome !== 'ready') {
    if (!(allowUnreachable && (outcome === 'no answer yet' || isUnreachable(outcome)))) {
      agent.destroy()
      throw new GatewayError(
        ERROR_CODES.store,
        `cannot open InfluxDB store ${safeUrl}: ${errorText(outcome)}`,
        { cause: outcome },
      )
    }
    retrySchemaLater()
  }

  async function currentAlerts(
    filter: Pick<AlertQuery, 'deviceId' | 'ruleId'> = {},
  ): Promise<Alert[]> {
    const where: string[] = []
    if (filter.deviceId !== undefined) where.push(`${ident('device')} = ${str(filter.deviceId)}`)
    if (filter.ruleId !== undefined) where.push(`${ident('rule')} = ${str(filter.ruleId)}`)
    // One series per (rule, device): its newest point is its current transition. InfluxDB reads
    // one point per series from the end, so the cost follows the keys, not the history.
    const series = await selectAllSeries(
      `SELECT ${ALERT_FIELDS.map(ident).join(', ')} FROM ${ident(ALERTS_RP)}.${ident(ALERT_MEASUREMENT)}` +
        (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') +
        ` GROUP BY ${ident('device')}, ${ident('rule')} ORDER BY time DESC LIMIT 1`,
    )
    return newestFirst(rowsOf(series).map(toAlert))
  }

  /**
   * The newest point of each (device, metric) series. Reading one point per series from its end
   * still opens every shard of the series: with 1-day shards over a 30-day retention, 5,000
   * series took 3-4 s here. So the last LATEST_RECENT_MS are read first (one shard: about
   * 0.1 s), SHOW SERIES (the index) says which series that missed, and only those devices' series
   * are read over all time. Exact either way; fast while devices report.
   */
  async function latestReadings(deviceId?: string): Promise<LatestReading[]> {
    const raw = `${ident(RAW_RP)}.${ident(READING_MEASUREMENT)}`
    const ofDevice = deviceId === undefined ? [] : [`${ident('device')} = ${str(deviceId)}`]
    const newest = (where: string[]) =>
      `SELECT ${ident('value')}, ${ident('unit')} FROM ${raw}` +
      (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') +
      ` GROUP BY ${ident('device')}, ${ident('metric')} ORDER BY time DESC LIMIT 1`
    // Two chunked requests: max-row-limit would cut a plain answer (it counts all statements).
    const [recent, index] = await Promise.all([
      selectAllSeries(
        newest([...ofDevice, `time >= ${msLiteral(clampTimeMs(Date.now() - LATEST_RECENT_MS))}`]),
      ),
      selectAllSeries(
        `SHOW SERIES FROM ${ident(READING_MEASUREMENT)}` +
          (ofDevice.length > 0 ? ` WHERE ${ofDevice.join(' AND ')}` : ''),
      ),
    ])
    const found = new Map<string, LatestReading>()
    const keep = (series: readonly InfluxSeries[]) => {
      for (const s of series) {
        const row = rowsOf([s])[0]
        if (row === undefined) continue
        const reading = toReading(s.tags?.device ?? '', s.tags?.metric ?? '', row)
        const key = `${reading.deviceId}\u0000${reading.metric}`
        const seen = found.get(key)
        if (seen === undefined || reading.ts > seen.ts) found.set(key, reading)
      }
    }
    keep(recent)
    const missingDevices = new Set<string>()
    for (const row of rowsOf(index)) {
      const tags = parseSeriesKey(String(row.key))
      const device = tags.get('device')
      const metric = tags.get('metric')
      if (device === undefined || metric === undefined) continue
      if (!found.has(`${device}\u0000${metric}`)) missingDevices.add(device)
    }
    if (missingDevices.size > 0) {
      const devices =
        deviceId !== undefined
          ? ofDevice
          : missingDevices.size <= MAX_LATEST_DEVICE_FILTER
            ? [`(${[...missingDevices].map((d) => `${ident('device')} = ${str(d)}`).join(' OR ')})`]
            : []
      keep(await selectAllSeries(newest(devices)))
    }
    return [...found.values()].sort(
      (a, b) => compare(a.deviceId, b.deviceId) || compare(a.metric, b.metric),
    )
  }

  const downsampler = createLateDownsampler({
    database,
    downsampledRetentionMs,
    run: async (statement) => {
      await query([statement])
    },
    log,
  })

  log?.info(
    { url: safeUrl, database, rawRetentionMs, downsampledRetentionMs, schemaReady: schemaIsReady },
    schemaIsReady ? 'InfluxDB store open' : 'InfluxDB store open, waiting for InfluxDB to answer',
  )

  return {
    kind: 'influx',

    schemaReady: () => schemaIsReady,
    whenSchemaReady: () => schemaReadyOnce,

    async writeReadings(readings) {
      assertOpen()
      if (readings.length === 0) return
      // Never a write into a missing database or policy: its 4xx would read as a refusal.
      if (!schemaIsReady) await ensureSchema()
      await writeLines(RAW_RP, readingLines(readings), readings.length)
      // Written: readings too late for the continuous query get their minutes recomputed soon.
      downsampler.add(readings, Date.now())
    },

    async writeAlerts(alerts) {
      assertOpen()
      if (alerts.length === 0) return
      if (!schemaIsReady) await ensureSchema()
      await writeLines(ALERTS_RP, alertLines(alerts), alerts.length)
    },

    async queryReadings(q: ReadingQuery) {
      assertOpen()
      if (!schemaIsReady) await ensureSchema()
      const fromMs = clampTimeMs(q.fromMs)
      const toMs = clampTimeMs(q.toMs)
      const limit = Math.floor(q.limit)
      if (fromMs >= toMs || !(limit > 0)) return []
      const where = [`${ident('device')} = ${str(q.deviceId)}`, timeRange(fromMs, toMs)]
      if (q.metric !== undefined) where.push(`${ident('metric')} = ${str(q.metric)}`)
      // Without GROUP BY, InfluxDB merges the device's series in time order and LIMIT applies
      // to the merged rows: the same rows as SQLite's ORDER BY ts LIMIT.
      const rows = await selectPaged(
        `SELECT ${ident('value')}, ${ident('unit')}, ${ident('metric')}::tag FROM ${ident(RAW_RP)}.${ident(READING_MEASUREMENT)}` +
          ` WHERE ${where.join(' AND ')} ORDER BY time ${q.order === 'desc' ? 'DESC' : 'ASC'}`,
        limit,
      )
      return rows.map((row) => toReading(q.deviceId, String(row.metric ?? q.metric), row))
    },

    async aggregate(q: AggregateQuery) {
      assertOpen()
      if (!schemaIsReady) await ensureSchema()
      assertBucketWidth(q.everyMs)
      const fromMs = clampTimeMs(q.fromMs)
      const toMs = clampTimeMs(q.toMs)
      if (fromMs >= toMs) return []
      const series = `${ident('device')} = ${str(q.deviceId)} AND ${ident('metric')} = ${str(q.metric)}`
      const groupBy = ` GROUP BY time(${q.everyMs}ms) fill(none)`
      const segments = planAggregate(
        { fromMs, toMs, everyMs: q.everyMs },
        Date.now(),
        rawRetentionMs,
      )

      const only = segments[0]
      if (segments.length === 1 && only?.source === 'raw') {
        // InfluxDB's GROUP BY time() aligns buckets to multiples of the interval since the
        // epoch, as the SQLite store does, and fill(none) leaves empty buckets out.
        const rows = rowsOf(
          await queryOne(
            `SELECT ${RAW_SELECT[q.fn]} FROM ${ident(RAW_RP)}.${ident(READING_MEASUREMENT)}` +
              ` WHERE ${series} AND ${timeRange(fromMs, toMs)}${groupBy}`,
          ),
        )
        return rows.map(
          (row): Bucket => ({
            ts: Number(row.time),
            value: Number(q.fn === 'count' ? row.count : row.value),
            count: Number(row.count),
          }),
        )
      }

      for (const segment of segments) {
        if (segment.source !== 'downsampled') continue
        // Late readings of this range must be in the 1-minute aggregates before they are read.
        try {
          await downsampler.flush(segment)
        } catch (err) {
          throw new GatewayError(
            ERROR_CODES.store,
            `downsampling late readings before a read failed: ${errorText(err)}`,
            { cause: err },
          )
        }
      }
      const results = await query(segments.map((s) => segmentStatement(s, series, groupBy)))
      return mergeBuckets(
        results.map((result) => rowsOf(result).map(toPartialBucket)),
        q.fn,
      )
    },

    async latest(deviceId?: string) {
      assertOpen()
      if (!schemaIsReady) await ensureSchema()
      return latestReadings(deviceId)
    },

    async queryAlerts(q: AlertQuery) {
      assertOpen()
      if (!schemaIsReady) await ensureSchema()
      const limit = Math.floor(q.limit)
      if (!(limit > 0)) return []
      if (q.current === true) {
        // The newest transition of each key, then the other filters on it (JS: the number of
        // keys is small, and a WHERE on fields would pick the newest *matching* transition).
        return (await currentAlerts(q))
          .filter(
            (a) =>
              (q.state === undefined || a.state === q.state) &&
              (q.severity === undefined || a.severity === q.severity) &&
              (q.fromMs === undefined || a.ts >= q.fromMs) &&
              (q.toMs === undefined || a.ts < q.toMs),
          )
          .slice(0, limit)
      }
      const where: string[] = []
      if (q.state !== undefined) where.push(`${ident('state')} = ${str(q.state)}`)
      if (q.deviceId !== undefined) where.push(`${ident('device')} = ${str(q.deviceId)}`)
      if (q.ruleId !== undefined) where.push(`${ident('rule')} = ${str(q.ruleId)}`)
      if (q.severity !== undefined) where.push(`${ident('severity')} = ${str(q.severity)}`)
      if (q.fromMs !== undefined || q.toMs !== undefined) {
        where.push(
          timeRange(q.fromMs ?? Number.NEGATIVE_INFINITY, q.toMs ?? Number.POSITIVE_INFINITY),
        )
      }
      const rows = await selectPaged(
        `SELECT ${ALERT_FIELDS.map(ident).join(', ')}, ${ident('device')}::tag, ${ident('rule')}::tag` +
          ` FROM ${ident(ALERTS_RP)}.${ident(ALERT_MEASUREMENT)}` +
          (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') +
          ' ORDER BY time DESC',
        limit,
      )
      return rows.map(toAlert)
    },

    async latestAlerts() {
      assertOpen()
      if (!schemaIsReady) await ensureSchema()
      return currentAlerts()
    },

    async close() {
      if (closed) return
      closed = true
      clearTimeout(schemaTimer)
      announceReady(false)
      try {
        await downsampler.close()
      } finally {
        agent.destroy()
      }
      log?.info({ url: safeUrl }, 'InfluxDB store closed')
    },
  }
}

/**
 * A series key of SHOW SERIES (`reading,device=a\ b,metric=t`) as its tags. Tag values never
 * hold a backslash (the line-protocol writer refuses them), so `\,` `\=` and `\ ` are the only
 * escapes.
 */
function parseSeriesKey(key: string): Map<string, string> {
  const tags = new Map<string, string>()
  const unescapeTag = (text: string) => text.replace(/\\([,= ])/g, '$1')
  for (const pair of key.split(/(?<!\\),/).slice(1)) {
    const [name, value] = pair.split(/(?<!\\)=/, 2)
    if (name !== undefined && value !== undefined) tags.set(unescapeTag(name), unescapeTag(value))
  }
  return tags
}

/** The bucket value and count of one raw aggregate, by function. */
const RAW_SELECT: Record<AggregateFunction, string> = {
  mean: `mean(${ident('value')}) AS ${ident('value')}, count(${ident('value')}) AS ${ident('count')}`,
  min: `min(${ident('value')}) AS ${ident('value')}, count(${ident('value')}) AS ${ident('count')}`,
  max: `max(${ident('value')}) AS ${ident('value')}, count(${ident('value')}) AS ${ident('count')}`,
  count: `count(${ident('value')}) AS ${ident('count')}`,
  // last() selects the value at the greatest time of the bucket.
  last: `last(${ident('value')}) AS ${ident('value')}, count(${ident('value')}) AS ${ident('count')}`,
}

/** Everything mergeBuckets needs of one segment, bucketed by the query's interval. */
function segmentStatement(segment: AggregateSegment, series: string, groupBy: string): string {
  const range = timeRange(segment.fromMs, segment.toMs)
  const [sum, count, min, max, last] = ['sum', 'count', 'min', 'max', 'last'].map(ident)
  if (segment.source === 'raw') {
    const value = ident('value')
    return (
      `SELECT sum(${value}) AS ${sum}, count(${value}) AS ${count}, min(${value}) AS ${min}, ` +
      `max(${value}) AS ${max}, last(${value}) AS ${last} FROM ${ident(RAW_RP)}.${ident(READING_MEASUREMENT)}` +
      ` WHERE ${series} AND ${range}${groupBy}`
    )
  }
  // A minute's mean times its count is its sum: summing those and the counts gives the mean of
  // the bucket weighted by count. InfluxQL has no arithmetic inside an aggregate, hence the
  // subquery.
  const weighted = ident('weighted')
  return (
    `SELECT sum(${weighted}) AS ${sum}, sum(${count}) AS ${count}, min(${min}) AS ${min}, ` +
    `max(${max}) AS ${max}, last(${last}) AS ${last} FROM (` +
    `SELECT ${ident('mean')} * ${count} AS ${weighted}, ${count}, ${min}, ${max}, ${last}` +
    ` FROM ${ident(DOWNSAMPLED_RP)}.${ident(DOWNSAMPLED_MEASUREMENT)} WHERE ${series} AND ${range})` +
    ` WHERE ${range}${groupBy}`
  )
}

function toPartialBucket(row: Row): PartialBucket {
  return {
    ts: Number(row.time),
    count: Number(row.count ?? 0),
    sum: Number(row.sum),
    min: Number(row.min),
    max: Number(row.max),
    last: Number(row.last),
  }
}

/** The rows of series as objects keyed by column name. */
function rowsOf(series: readonly InfluxSeries[]): Row[] {
  const rows: Row[] = []
  for (const s of series) {
    for (const values of s.values ?? []) {
      const row: Row = {}
      for (let i = 0; i < s.columns.length; i++) row[s.columns[i] as string] = values[i]
      if (s.tags !== undefined) for (const [k, v] of Object.entries(s.tags)) row[k] ??= v
      rows.push(row)
    }
  }
  return rows
}

function toReading(deviceId: string, metric: string, row: Row): LatestReading {
  const reading: LatestReading = {
    deviceId,
    metric,
    value: Number(row.value),
    ts: Number(row.time),
  }
  if (typeof row.unit === 'string') reading.unit = row.unit
  return reading
}

function toAlert(row: Row): Alert {
  const ruleId = String(row.rule)
  const deviceId = String(row.device)
  return {
    id: typeof row.id === 'string' ? row.id : alertId(ruleId, deviceId),
    ruleId,
    kind: typeof row.kind === 'string' ? row.kind : UNKNOWN_KIND,
    deviceId,
    metric: String(row.metric),
    severity: row.severity as Severity,
    state: row.state as AlertState,
    value: typeof row.value === 'number' ? row.value : Number.NaN,
    threshold: typeof row.threshold === 'number' ? row.threshold : Number.NaN,
    since: Number(row.since),
    ts: Number(row.time),
    message: String(row.message ?? ''),
    flapping: row.flapping === true,
  }
}

function newestFirst(alerts: Alert[]): Alert[] {
  return alerts.sort((a, b) => b.ts - a.ts)
}

/** Binary string order, as SQLite's ORDER BY on TEXT. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * A 4xx is InfluxDB refusing these points for good (a field type conflict, points beyond the
 * retention policy, a malformed line, a body too large): StoreRejectedError with InfluxDB's own
 * words, so the writer splits the batch and dead-letters only the refused points. Everything
 * else (a network error, a timeout, a 5xx, and the 4xx of TRANSIENT_CLIENT_STATUSES) is a plain
 * Error, which the writer retries.
 */
function classifyWriteError(err: unknown, safeUrl: string): Error {
  if (err instanceof RequestError) {
    const status = err.res?.statusCode ?? 0
    const message = influxErrorMessage(err)
    if (status >= 400 && status < 500 && !TRANSIENT_CLIENT_STATUSES.has(status)) {
      return new StoreRejectedError(message, { cause: err })
    }
    return new Error(`InfluxDB write to ${safeUrl} failed with HTTP ${status}: ${message}`, {
      cause: err,
    })
  }
  return new Error(`InfluxDB write to ${safeUrl} failed: ${errorText(err)}`, { cause: err })
}

/**
 * npm influx 5.12's RequestError message is `A 400 Bad Request error occurred: <body>`, and
 * InfluxDB's body is `{"error":"..."}`: the store keeps InfluxDB's words only.
 */
function influxErrorMessage(err: RequestError): string {
  const marker = 'error occurred: '
  const at = err.message.indexOf(marker)
  const body = at === -1 ? err.message : err.message.slice(at + marker.length)
  try {
    const parsed = JSON.parse(body) as { error?: unknown }
    if (typeof parsed.error === 'string') return parsed.error
  } catch {
    // Not JSON (a proxy's page): the body as it is.
  }
  return body.trim() || err.message
}

/**
 * No answer from InfluxDB (a refused connection, a timeout) or a 5xx: waiting can help. An answer
 * that refuses (a 4xx such as 401, a statement InfluxDB refuses) is a configuration to fix.
 */
function isUnreachable(err: unknown): boolean {
  let cause = err
  while (cause instanceof Error) {
    if (cause instanceof RequestError) return (cause.res?.statusCode ?? 0) >= 500
    // Our own errors without a cause are InfluxDB's answers (a statement it refused).
    if (cause.cause === undefined) return !(cause instanceof GatewayError)
    cause = cause.cause
  }
  return false
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code
    return code !== undefined && !err.message.includes(code)
      ? `${code} ${err.message}`
      : err.message
  }
  return String(err)
}

interface StoreUrl {
  protocol: 'http' | 'https'
  host: string
  /** The host as it goes into a URL (IPv6 in brackets). */
  hostForUrl: string
  port: number
  /** Path before the database segment ('' or '/prefix'), for InfluxDB behind a proxy. */
  path: string
  database: string
  username?: string
  password?: string
  /** The URL without credentials, for messages and logs. */
  safeUrl: string
}

function parseStoreUrl(raw: string): StoreUrl {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new GatewayError(ERROR_CODES.store, `InfluxDB URL ${JSON.stringify(raw)} is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new GatewayError(
      ERROR_CODES.store,
      `InfluxDB URL must be http or https, got ${url.protocol}`,
    )
  }
  const segments = url.pathname.split('/').filter((s) => s.length > 0)
  const last = segments.pop()
  const database = last === undefined ? '' : decodeURIComponent(last)
  if (database.length === 0) {
    throw new GatewayError(
      ERROR_CODES.store,
      `InfluxDB URL must name the database as its path (http://127.0.0.1:8086/sensors), got ${url.origin}${url.pathname}`,
    )
  }
  const protocol = url.protocol === 'https:' ? 'https' : 'http'
  const parsed: StoreUrl = {
    protocol,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    hostForUrl: url.hostname,
    port: url.port === '' ? (protocol === 'https' ? 443 : 80) : Number(url.port),
    path: segments.length > 0 ? `/${segments.join('/')}` : '',
    database,
    safeUrl: `${url.origin}${url.pathname}`,
  }
  if (url.username !== '') parsed.username = decodeURIComponent(url.username)
  if (url.password !== '') parsed.password = decodeURIComponent(url.password)
  return parsed
}
