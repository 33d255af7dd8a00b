import type { Alert, Reading } from '../contract/types.ts'
import type { Bucket } from '../store/reading-store.ts'

/**
 * JSON shapes of the API. Wherever an epoch-ms field appears its ISO-8601 twin sits beside it:
 * `ts` + `time` on points, `since` + `sinceTime` on alerts, `xMs` + `x` on ranges.
 */

export interface ReadingJson {
  deviceId: string
  metric: string
  value: number
  ts: number
  time: string
  unit?: string
}

export interface BucketJson {
  ts: number
  time: string
  value: number
  count: number
}

export interface AlertJson extends Alert {
  time: string
  sinceTime: string
}

export function isoTime(ms: number): string {
  return new Date(ms).toISOString()
}

export function readingJson(reading: Reading): ReadingJson {
  const json: ReadingJson = {
    deviceId: reading.deviceId,
    metric: reading.metric,
    value: reading.value,
    ts: reading.ts,
    time: isoTime(reading.ts),
  }
  if (reading.unit !== undefined) json.unit = reading.unit
  return json
}

export function bucketJson(bucket: Bucket): BucketJson {
  return { ts: bucket.ts, time: isoTime(bucket.ts), value: bucket.value, count: bucket.count }
}

export function alertJson(alert: Alert): AlertJson {
  return {
    id: alert.id,
    ruleId: alert.ruleId,
    kind: alert.kind,
    deviceId: alert.deviceId,
    metric: alert.metric,
    severity: alert.severity,
    state: alert.state,
    value: alert.value,
    threshold: alert.threshold,
    since: alert.since,
    sinceTime: isoTime(alert.since),
    ts: alert.ts,
    time: isoTime(alert.ts),
    message: alert.message,
    flapping: alert.flapping,
    ...(alert.acknowledged === undefined ? {} : { acknowledged: { ...alert.acknowledged } }),
  }
}
