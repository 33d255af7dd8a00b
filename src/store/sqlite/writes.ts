import type Database from 'better-sqlite3'
import { type Alert, alertId, type Reading } from '../../contract/types.ts'

/**
 * Readings as columns, the shape a batch crosses to the write thread in. Structured clone copies
 * every string of a message one by one, and under load a batch holds many readings of few series:
 * each distinct string travels once, in `names`, and the readings refer to it by index. The
 * numbers travel in typed arrays whose buffers are transferred, not copied.
 */
export interface ReadingColumns {
  /** Every distinct device id, metric and unit of the batch. */
  names: string[]
  device: Uint32Array
  metric: Uint32Array
  /** Index in names, or -1 where the reading has no unit. */
  unit: Int32Array
  ts: Float64Array
  value: Float64Array
}

/** Rows deleted per statement while pruning, so each transaction stays short. */
export const PRUNE_CHUNK_ROWS = 10_000

/** Stored as the kind of an alert that arrived without one. */
const UNKNOWN_KIND = 'unknown'

export const ALERT_COLUMNS =
  'alert_id, rule, kind, device, metric, severity, state, value, threshold, since, ts, message, flapping'

/** Every write the SQLite store makes, each one transaction; run by the write thread. */
export interface SqliteWrites {
  readings(batch: ReadingColumns): void
  alerts(alerts: readonly Alert[]): void
  /** Deletes up to PRUNE_CHUNK_ROWS readings of one series older than cutoff; the count. */
  pruneSeries(device: string, metric: string, cutoff: number): number
}

export function toColumns(readings: readonly Reading[]): ReadingColumns {
  const n = readings.length
  const names: string[] = []
  const indexOf = new Map<string, number>()
  const name = (text: string): number => {
    let index = indexOf.get(text)
    if (index === undefined) {
      index = names.push(text) - 1
      indexOf.set(text, index)
    }
    return index
  }
  const columns: ReadingColumns = {
    names,
    device: new Uint32Array(n),
    metric: new Uint32Array(n),
    unit: new Int32Array(n),
    ts: new Float64Array(n),
    value: new Float64Array(n),
  }
  for (let i = 0; i < n; i++) {
    const r = readings[i] as Reading
    columns.device[i] = name(r.deviceId)
    columns.metric[i] = name(r.metric)
    columns.unit[i] = r.unit === undefined ? -1 : name(r.unit)
    columns.ts[i] = r.ts
    columns.value[i] = r.value
  }
  return columns
}

/** The buffers of a batch's columns, handed over to the thread rather than copied. */
export function columnBuffers(columns: ReadingColumns): ArrayBuffer[] {
  const { device, metric, unit, ts, value } = columns
  return [device, metric, unit, ts, value].map((column) => column.buffer as ArrayBuffer)
}

export function prepareWrites(db: Database.Database): SqliteWrites {
  // Positional parameters: binding from an object costs a property lookup per column per row.
  const insertReading = db.prepare<[string, string, number, number, string | null]>(
    `INSERT INTO readings (device, metric, ts, value, unit) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (device, metric, ts) DO UPDATE SET value = excluded.value, unit = excluded.unit`,
  )
  // `>=` so a rewrite of the newest reading (same identity, new value) updates latest too.
  const upsertLatest = db.prepare<[string, string, number, number, string | null]>(
    `INSERT INTO latest (device, metric, ts, value, unit) VALUES (?, ?, ?, ?, ?)
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
  // DELETE ... LIMIT needs SQLITE_ENABLE_UPDATE_DELETE_LIMIT, which better-sqlite3 builds with.
  const deleteExpiredChunk = db.prepare<Record<string, unknown>>(
    `DELETE FROM readings WHERE device = @device AND metric = @metric AND ts < @cutoff
     ORDER BY ts LIMIT ${PRUNE_CHUNK_ROWS}`,
  )
  const deleteExpiredLatest = db.prepare<Record<string, unknown>>(
    'DELETE FROM latest WHERE device = @device AND metric = @metric AND ts < @cutoff',
  )

  const readingsTx = db.transaction((batch: ReadingColumns) => {
    const { names, device, metric, unit, ts, value } = batch
    // latest gets one upsert per series per batch, not one per reading: under load a batch
    // holds many readings of few series, so maintaining latest costs little. Key: the names'
    // indexes, unique per batch.
    const newest = new Map<number, number>()
    for (let i = 0; i < ts.length; i++) {
      const d = device[i]!
      const m = metric[i]!
      const u = unit[i]!
      insertReading.run(names[d]!, names[m]!, ts[i]!, value[i]!, u < 0 ? null : names[u]!)
      const key = d * names.length + m
      const seen = newest.get(key)
      if (seen === undefined || ts[i]! >= ts[seen]!) newest.set(key, i)
    }
    for (const i of newest.values()) {
      const u = unit[i]!
      upsertLatest.run(
        names[device[i]!]!,
        names[metric[i]!]!,
        ts[i]!,
        value[i]!,
        u < 0 ? null : names[u]!,
      )
    }
  })

  const alertsTx = db.transaction((alerts: readonly Alert[]) => {
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

  return {
    readings: (batch) => {
      if (batch.ts.length > 0) readingsTx(batch)
    },
    alerts: (alerts) => {
      if (alerts.length > 0) alertsTx(alerts)
    },
    pruneSeries: (device, metric, cutoff) => pruneSeriesTx(device, metric, cutoff),
  }
}
