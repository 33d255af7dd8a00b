/** Plain-data types of the wire contract (DESIGN §3). No classes, no buffers: events carry these. */

export const SEVERITIES = ['critical', 'major', 'minor', 'warning', 'info'] as const
export type Severity = (typeof SEVERITIES)[number]

export function isSeverity(value: unknown): value is Severity {
  return typeof value === 'string' && (SEVERITIES as readonly string[]).includes(value)
}

/** One measured value. Identity is (deviceId, metric, ts). */
export interface Reading {
  deviceId: string
  metric: string
  value: number
  /** Epoch milliseconds of the measurement (device clock, or receive time when absent). */
  ts: number
  unit?: string
}

export type AlertState = 'firing' | 'resolved'

/** Payload of `alerts/{severity}/{deviceId}/{ruleId}`; the retained message is the current state. */
export interface Alert {
  /** Stable id of the alert object: `{ruleId}:{deviceId}`, the same for every transition. */
  id: string
  ruleId: string
  /** The rule's kind (`threshold`, `rate`, `deadman`, or a custom kind's name). */
  kind: string
  deviceId: string
  metric: string
  severity: Severity
  state: AlertState
  /** The reading value that caused this transition. */
  value: number
  threshold: number
  /** Epoch ms at which the alert entered its current state. */
  since: number
  /** Epoch ms of this transition (the triggering reading's timestamp). */
  ts: number
  message: string
  /**
   * True while the alert changes state too often: the flapping notice is published once and
   * further transitions are held until the alert is stable again.
   */
  flapping: boolean
  /**
   * Set while the current firing is acknowledged (POST /api/alerts/{id}/ack); absent otherwise.
   * It ends with the firing: a resolve, and any later firing, start unacknowledged.
   */
  acknowledged?: AlertAck
}

/** An acknowledgement of an alert's current firing: who (app id, or `loopback`), when, why. */
export interface AlertAck {
  /** The identity of the token (app id), or `loopback` for an anonymous loopback caller. */
  by: string
  /** Epoch ms of the acknowledgement. */
  at: number
  comment?: string
}

export function alertId(ruleId: string, deviceId: string): string {
  return `${ruleId}:${deviceId}`
}

export const DEVICE_STATUS_STATES = ['online', 'offline', 'silent'] as const

/**
 * Payload of `devices/{deviceId}/status`. `silent` means connected (or last seen) but a deadman
 * rule found no readings for its period.
 */
export interface DeviceStatus {
  state: (typeof DEVICE_STATUS_STATES)[number]
  ts: number
}

/** Payload of `gateway/deadletter/{deviceId}`. */
export interface DeadLetter {
  topic: string
  reason: RejectReason
  detail: string
  /** UTF-8 text of the payload, truncated; base64 when the payload is not valid UTF-8. */
  payload: string
  payloadEncoding: 'utf8' | 'base64'
  ts: number
}

/** Stable reason codes of rejected publishes: counters and dead letters carry these. */
export const REJECT_REASONS = [
  'bad_topic',
  'bad_identifier',
  'empty_payload',
  'payload_too_large',
  'not_utf8',
  'not_json',
  'bad_value',
  'bad_timestamp',
  'timestamp_out_of_range',
  'no_metrics',
  'bad_senml',
  /** Valid on the wire, but the time-series store refused to keep it (its reason in `detail`). */
  'store_rejected',
  /** The device may not publish this metric (its `metrics` allow-list in the registry). */
  'not_authorized',
  /** Over the client's publish rate (PUBLISH_RATE, PUBLISH_BURST): accepted, not stored. */
  'rate_limited',
] as const
export type RejectReason = (typeof REJECT_REASONS)[number]
