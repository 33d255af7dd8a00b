import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { ERROR_CODES, GatewayError } from '../../errors.ts'

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

/** Bumped by adding a migration; a file written by a newer gateway is refused, not misread. */
const SCHEMA_VERSION = MIGRATIONS.length

/**
 * Opens the file the way every connection of the gateway uses it, creating it and bringing its
 * schema up to date (main thread, before the write and checkpoint threads open it).
 */
export function openDatabase(file: string): Database.Database {
  let db: Database.Database | undefined
  try {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true })
    db = new Database(file)
    db.pragma('journal_mode = WAL')
    configureConnection(db)
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

/**
 * Opens a file that openDatabase already created and migrated (from a worker thread). WAL mode is
 * stored in the file; the pragmas below are per connection.
 */
export function openConnection(file: string): Database.Database {
  const db = new Database(file, { fileMustExist: true })
  configureConnection(db)
  return db
}

/**
 * Per-connection pragmas of every connection to the file. With WAL, synchronous NORMAL syncs the
 * WAL at checkpoints rather than at every commit. The file can never be corrupted, and a commit
 * survives a crash of this process (it is in the OS page cache); only an OS crash or power loss can
 * roll back the last transactions. That is the trade-off SQLite recommends for WAL, and it keeps
 * group commits cheap: FULL would fsync every batch. Checkpoints truncate the WAL back to
 * journal_size_limit so a write burst does not leave it huge.
 */
export const JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
export const CONNECTION_PRAGMAS: readonly string[] = [
  'synchronous = NORMAL',
  `journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`,
]

function configureConnection(db: Database.Database): void {
  for (const pragma of CONNECTION_PRAGMAS) db.pragma(pragma)
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
