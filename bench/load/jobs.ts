/**
 * What the orchestrator (bench/run.ts) asks a load worker (bench/load/worker.ts) to do, and what
 * comes back. Every job has three steps: `prepare` (connect; nothing timed), `go` (the load, from
 * `startAt` until `measureTo`, counted only inside [measureFrom, measureTo)), `finish` (drain,
 * disconnect, report). Times are wall-clock epoch milliseconds with sub-millisecond resolution
 * (performance.timeOrigin + performance.now()), the same clock in every process.
 */

export interface Timing {
  startAt: number
  measureFrom: number
  measureTo: number
}

/** Devices on MQTT.js, one connection each, publishing `{"value":..,"ts":..}` readings. */
export interface DevicesJob {
  kind: 'devices'
  url: string
  deviceIds: string[]
  /** Topic `sensors/{deviceId}/{metric}`. */
  metric: string
  qos: 0 | 1
  /**
   * closed: each device keeps `window` publishes in flight and sends the next as one completes
   * (PUBACK for QoS 1; the socket taking it, back-pressure included, for QoS 0). open: this
   * worker's devices together send `ratePerSec`, whatever comes back.
   */
  mode: 'closed' | 'open'
  window?: number
  ratePerSec?: number
}

/** One MQTT.js subscriber counting deliveries and measuring latency from the payload's send time. */
export interface SubscriberJob {
  kind: 'subscriber'
  url: string
  clientId: string
  topic: string
  qos: 0 | 1
}

/**
 * A probe device and a subscriber in one process: publishes a reading, waits for what it causes
 * (an alert transition, or the reading itself coming back through the broker), repeats.
 */
export interface ProbeJob {
  kind: 'probe'
  url: string
  deviceId: string
  qos: 0 | 1
  /** alert: 35 then 20 on `temperature`, waiting for firing / resolved on alerts/#. echo: 20.x on `temperature`, waiting for the same reading on sensors/{deviceId}/temperature. */
  mode: 'alert' | 'echo'
  gapMs: number
  timeoutMs: number
  /**
   * alert mode: each crossing also waits for its notification at this worker's webhook receiver
   * (`webhook-start`), timed from the same publish: alert-to-webhook next to alert-to-MQTT, one
   * process, one clock.
   */
  webhook?: boolean
}

/**
 * Raw TCP connections writing QoS 1 (or 0) PUBLISHes back to back, as fast as TCP takes them,
 * without waiting for PUBACKs. The only cap is `maxOutstanding` unacknowledged QoS 1 publishes per
 * connection (MQTT's 16-bit packet ids allow 65,535; a client within the protocol cannot have
 * more), which also bounds what is left in socket buffers when the flood stops.
 */
export interface FloodJob {
  kind: 'flood'
  host: string
  port: number
  deviceIds: string[]
  metric: string
  qos: 0 | 1
  maxOutstanding: number
}

/** Idle MQTT connections (raw CONNECT, clean session), opened `concurrency` at a time. */
export interface IdleJob {
  kind: 'idle'
  host: string
  port: number
  clientIdPrefix: string
  count: number
  concurrency: number
  keepaliveSec: number
}

export type Job = DevicesJob | SubscriberJob | ProbeJob | FloodJob | IdleJob

export interface DevicesResult {
  kind: 'devices'
  sent: number
  /** PUBACKs (QoS 1) or writes taken by the socket (QoS 0). */
  acked: number
  sentInWindow: number
  ackedInWindow: number
  /** Publishes still without an answer when the worker gave up waiting. */
  unacked: number
  /** Connections that closed without being asked to (the broker dropped them). */
  disconnects: number
  errors: number
  /** Publish to PUBACK, ms, for acks inside the window (QoS 1 only), sampled. */
  ackLatencyMs: Float64Array
  cpuSec: number
}

export interface SubscriberResult {
  kind: 'subscriber'
  received: number
  receivedInWindow: number
  /** Send time (payload) to receive time, ms, for messages received inside the window, sampled. */
  latencyMs: Float64Array
  disconnects: number
  cpuSec: number
}

export interface ProbeResult {
  kind: 'probe'
  probes: number
  timeouts: number
  latencyMs: Float64Array
  /** With `webhook`: publish to the notification's arrival (verified), crossings in the window. */
  webhookLatencyMs?: Float64Array
  /** With `webhook`: crossings answered on MQTT whose notification did not come within the timeout. */
  webhookTimeouts?: number
  cpuSec: number
}

/** What a worker's webhook receiver got until `webhook-stop`. */
export interface WebhookReceiverResult {
  /** Requests whose Standard Webhooks signature verified. */
  verified: number
  /** Requests refused (401): a signature that did not verify. */
  refused: number
}

export interface FloodResult {
  kind: 'flood'
  sent: number
  acked: number
  sentInWindow: number
  ackedInWindow: number
  disconnects: number
  cpuSec: number
}

export interface IdleGo {
  connected: number
  failed: number
  firstError?: string
  elapsedMs: number
  connectMs: Float64Array
}

export interface IdleResult {
  kind: 'idle'
  /** Connections still open when asked to close (the others were dropped by the broker). */
  stillOpen: number
  cpuSec: number
}

export type JobResult = DevicesResult | SubscriberResult | ProbeResult | FloodResult | IdleResult

export type Request =
  | { op: 'prepare'; id: number; job: Job }
  | { op: 'go'; id: number; timing: Timing }
  | { op: 'finish'; id: number; expected?: number; drainMs?: number }
  /** Starts the worker's webhook receiver (127.0.0.1, OS-chosen port), apart from its jobs: replies { url }. */
  | { op: 'webhook-start'; id: number; secret: string }
  /** Stops it: replies a WebhookReceiverResult. */
  | { op: 'webhook-stop'; id: number }

export type Reply =
  | { op: 'hello' }
  | { op: 'reply'; id: number; data?: unknown }
  | { op: 'error'; id: number; message: string }
