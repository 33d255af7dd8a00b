import type { Alert, AlertState, Reading } from '../contract/types.ts'

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
  /** 'all' when absent. */
  state?: AlertState
  deviceId?: string
  ruleId?: string
  fromMs?: number
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
  /** Alert transitions, newest first. */
  queryAlerts(query: AlertQuery): Promise<Alert[]>
  close(): Promise<void>
}
