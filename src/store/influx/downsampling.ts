import type { AggregateFunction, Bucket } from '../reading-store.ts'
import { ident } from './influxql.ts'
import { READING_MEASUREMENT } from './line-protocol.ts'

/**
 * The downsampling schema and the rule that decides where an aggregate reads from. Pure: the
 * store passes the clock in.
 *
 * Raw readings live in the retention policy `raw`; a continuous query writes one point per
 * device, metric and minute into `downsampled`.`reading_1m` with fields `mean`, `min`, `max`,
 * `count` (integer) and `last`. It runs every minute over the last CQ_RESAMPLE_FOR_MS, so a
 * reading that arrives up to a few minutes late is still counted. Readings that arrive later
 * than that (a spool flushed after an outage, a backfill) are downsampled by the store itself
 * right after it writes them (`lateReadingCutoffMs`).
 */

export const RAW_RP = 'raw'
export const DOWNSAMPLED_RP = 'downsampled'
/**
 * Alert history is kept forever, as the SQLite store keeps it: an alert that has been firing
 * for longer than the raw retention must still be restored at start-up.
 */
export const ALERTS_RP = 'alerts'
export const DOWNSAMPLED_MEASUREMENT = 'reading_1m'
export const CQ_NAME = 'reading_1m'

export const MINUTE_MS = 60_000
/** RESAMPLE FOR of the continuous query: each run recomputes this many past minutes. */
export const CQ_RESAMPLE_FOR_MS = 10 * MINUTE_MS
/**
 * A reading older than now minus this when written may fall outside every future run of the
 * continuous query (the next run covers [next minute - RESAMPLE FOR, next minute), and a run can
 * start a little late), so the store downsamples its minute itself. Two minutes of margin.
 */
export const LATE_READING_AGE_MS = CQ_RESAMPLE_FOR_MS - 2 * MINUTE_MS
/**
 * Ranges longer than this read the 1-minute aggregates even when raw readings still cover
 * them: a day of 5-second readings is 17,280 points per series, read raw in milliseconds;
 * beyond that the minutes are 12 times fewer points to read and to send. Shorter ranges are
 * read raw, exactly as stored.
 */
export const DOWNSAMPLED_MIN_RANGE_MS = 24 * 60 * MINUTE_MS

/** Readings written with a ts below this are downsampled by the store (see LATE_READING_AGE_MS). */
export function lateReadingCutoffMs(nowMs: number): number {
  return nowMs - LATE_READING_AGE_MS
}

/**
 * The SELECT of the continuous query, optionally restricted by `where` (the store's own
 * downsampling of late readings runs the same statement over their minutes).
 */
export function downsampleSelect(database: string, where?: string): string {
  const value = ident('value')
  const into = `${ident(database)}.${ident(DOWNSAMPLED_RP)}.${ident(DOWNSAMPLED_MEASUREMENT)}`
  const from = `${ident(database)}.${ident(RAW_RP)}.${ident(READING_MEASUREMENT)}`
  return (
    `SELECT mean(${value}) AS ${ident('mean')}, min(${value}) AS ${ident('min')}, ` +
    `max(${value}) AS ${ident('max')}, count(${value}) AS ${ident('count')}, ` +
    `last(${value}) AS ${ident('last')} INTO ${into} FROM ${from}` +
    (where === undefined ? '' : ` WHERE ${where}`) +
    ` GROUP BY time(1m), ${ident('device')}, ${ident('metric')}`
  )
}

export function createContinuousQuery(database: string): string {
  return (
    `CREATE CONTINUOUS QUERY ${ident(CQ_NAME)} ON ${ident(database)} ` +
    `RESAMPLE EVERY 1m FOR ${CQ_RESAMPLE_FOR_MS / MINUTE_MS}m ` +
    `BEGIN ${downsampleSelect(database)} END`
  )
}

/**
 * InfluxDB prints a stored continuous query back in its own form (identifiers quoted only where
 * needed). Comparing without quotes and runs of spaces tells whether the stored one is ours.
 */
export function sameContinuousQuery(stored: string, wanted: string): boolean {
  const normal = (q: string) => q.replace(/"/g, '').replace(/\s+/g, ' ').trim()
  return normal(stored) === normal(wanted)
}

export interface AggregateSegment {
  source: 'raw' | 'downsampled'
  /** Inclusive, epoch ms. */
  fromMs: number
  /** Exclusive, epoch ms. */
  toMs: number
}

/**
 * Where the readings of [fromMs, toMs) are read from, in time order.
 *
 * All raw unless `everyMs` is a whole number of minutes (a bucket is then a union of whole
 * minutes) and either `fromMs` is older than the raw retention (raw readings are gone there) or
 * the range is longer than DOWNSAMPLED_MIN_RANGE_MS. Then the whole minutes of the range that
 * the continuous query has settled are read from `reading_1m`, and raw readings fill in the
 * part of the first minute after `fromMs` and everything from the newest settled minute to
 * `toMs` (minutes the continuous query may still recompute). Where raw readings have expired,
 * that partial first minute is missing: the answer never counts a reading before `fromMs`.
 */
export function planAggregate(
  query: { fromMs: number; toMs: number; everyMs: number },
  nowMs: number,
  rawRetentionMs: number,
): AggregateSegment[] {
  const { fromMs, toMs, everyMs } = query
  const allRaw: AggregateSegment[] = [{ source: 'raw', fromMs, toMs }]
  if (everyMs % MINUTE_MS !== 0) return allRaw
  const beyondRaw = fromMs < nowMs - rawRetentionMs
  const long = toMs - fromMs > DOWNSAMPLED_MIN_RANGE_MS
  if (!beyondRaw && !long) return allRaw

  const firstWholeMinute = Math.ceil(fromMs / MINUTE_MS) * MINUTE_MS
  const settledBefore = Math.floor(nowMs / MINUTE_MS) * MINUTE_MS - CQ_RESAMPLE_FOR_MS
  const downsampledTo = Math.min(Math.floor(toMs / MINUTE_MS) * MINUTE_MS, settledBefore)
  if (downsampledTo <= firstWholeMinute) return allRaw

  const segments: AggregateSegment[] = []
  if (fromMs < firstWholeMinute) segments.push({ source: 'raw', fromMs, toMs: firstWholeMinute })
  segments.push({ source: 'downsampled', fromMs: firstWholeMinute, toMs: downsampledTo })
  if (downsampledTo < toMs) segments.push({ source: 'raw', fromMs: downsampledTo, toMs })
  return segments
}

/** What one segment knows about one bucket: enough to combine with the other segments. */
export interface PartialBucket {
  ts: number
  count: number
  /** Sum of the values: a raw sum, or the sum of mean * count over 1-minute rows. */
  sum: number
  min: number
  max: number
  /** The value at the greatest ts the segment has in this bucket. */
  last: number
}

/**
 * Combines per-segment buckets (segments in time order) into the answer: counts and sums add
 * up (so the mean is weighted by count), min and max combine, and `last` comes from the latest
 * segment that has the bucket. Ascending by ts; a bucket no segment has is absent.
 */
export function mergeBuckets(
  segments: readonly (readonly PartialBucket[])[],
  fn: AggregateFunction,
): Bucket[] {
  const byTs = new Map<number, PartialBucket>()
  for (const buckets of segments) {
    for (const b of buckets) {
      if (b.count === 0) continue
      const seen = byTs.get(b.ts)
      if (seen === undefined) {
        byTs.set(b.ts, { ...b })
        continue
      }
      seen.count += b.count
      seen.sum += b.sum
      seen.min = Math.min(seen.min, b.min)
      seen.max = Math.max(seen.max, b.max)
      seen.last = b.last
    }
  }
  return [...byTs.values()]
    .sort((a, b) => a.ts - b.ts)
    .map((b) => ({ ts: b.ts, value: bucketValue(b, fn), count: b.count }))
}

function bucketValue(b: PartialBucket, fn: AggregateFunction): number {
  switch (fn) {
    case 'mean':
      return b.sum / b.count
    case 'min':
      return b.min
    case 'max':
      return b.max
    case 'count':
      return b.count
    case 'last':
      return b.last
  }
}
