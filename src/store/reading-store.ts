import type { Alert, AlertState, Reading, Severity } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'

export const AGGREGATE_FUNCTIONS = ['mean', 'min', 'max', 'count', 'last'] as const
export type AggregateFunction = (typeof AGGREGATE_FUNCTIONS)[number]

export interface ReadingQuery {
  deviceId: string
  /** All metrics of the device when absent. */
  metric?: string
  /** Inclusive, epoch ms. */
  fromMs: number
  /** Exclusive, epoch ms. */
  toMs: number
  limit: number
  /** Newest first when 'desc'. */
  order: 'asc' | 'desc'
}

export interface AggregateQuery {
  deviceId: string
  metric: string
  fromMs: number
  toMs: number
  everyMs: number
  fn: AggregateFunction
}

/** One time bucket: `ts` is the bucket start, aligned to multiples of `everyMs` since the epoch. */
export interface Bucket {
  ts: number
  value: number
  /** Readings in the bucket; empty buckets are not returned. */
  count: number
}

export interface LatestReading extends Reading {}

export interface AlertQuery {
  /**
   * false or absent: the whole transition history. true: only the latest transition of each
   * (ruleId, deviceId), i.e. every alert's current state, as `latestAlerts()` returns it; the
   * other filters then apply to that latest transition (`state: 'firing'` means "firing now",
   * not "has fired").
   */
  current?: boolean
  /** Both states when absent. */
  state?: AlertState
  deviceId?: string
  ruleId?: string
  severity?: Severity
  /** Inclusive, epoch ms, on the transition's `ts`. */
  fromMs?: number
  /** Exclusive, epoch ms, on the transition's `ts`. */
  toMs?: number
  limit: number
}

/**
 * The one storage interface (DESIGN §5). SQLite and InfluxDB implement it and one contract
 * suite runs against both. Writes are idempotent: a reading with an existing
 * (deviceId, metric, ts) replaces the stored value.
 */
export interface ReadingStore {
  readonly kind: 'sqlite' | 'influx'
  writeReadings(readings: readonly Reading[]): Promise<void>
  /** Alert transitions, appended as history. */
  writeAlerts(alerts: readonly Alert[]): Promise<void>
  queryReadings(query: ReadingQuery): Promise<Reading[]>
  aggregate(query: AggregateQuery): Promise<Bucket[]>
  /** The newest reading per (device, metric), optionally for one device. */
  latest(deviceId?: string): Promise<LatestReading[]>
  /** Alert transitions (or current alerts with `current: true`), newest first (by `ts`). */
  queryAlerts(query: AlertQuery): Promise<Alert[]>
  /**
   * The latest transition of every (ruleId, deviceId) that has one, newest first: what the rule
   * engine restores at start-up and the gateway re-publishes retained. "Latest" is the greatest
   * `ts`; a transition written later with an older `ts` does not replace it. Cost grows with the
   * number of keys, not with the history.
   */
  latestAlerts(): Promise<Alert[]>
  close(): Promise<void>
}

/**
 * A write the store refused for good (InfluxDB answers 4xx: a field type conflict, a point
 * outside the retention policy). Retrying the same batch cannot succeed, so the writer splits it
 * to find the refused points and dead-letters them with `reason`; their neighbours are stored.
 * Any other error from a write is transient (network, 5xx, a locked file) and retried.
 */
export class StoreRejectedError extends Error {
  /** The store's own words, for the dead letter. */
  readonly reason: string

  constructor(reason: string, options?: { cause?: unknown }) {
    super(`store refused the write: ${reason}`, options)
    this.name = 'StoreRejectedError'
    this.reason = reason
  }
}

/** Both backends refuse the same malformed bucket width, with the same words. */
export function assertBucketWidth(everyMs: number): void {
  if (!(Number.isInteger(everyMs) && everyMs > 0)) {
    throw new GatewayError(ERROR_CODES.store, `everyMs must be a positive integer, got ${everyMs}`)
  }
}

/**
 * A query the store answered but cut short at a limit of its own (InfluxDB's `max-row-limit`):
 * the store is up, so this is no outage. The HTTP API answers it as such (500
 * `store_query_limit`, naming the limit), never as 503 `store_unavailable`.
 */
export class StoreQueryLimitError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'StoreQueryLimitError'
  }
}
