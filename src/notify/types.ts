import type { Alert, AlertAck, Severity } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'

/**
 * The notification contract (README "Notifications", DESIGN §10): what the notifications file
 * declares, what a channel is, what the outbox delivers, and how acknowledgements and silences
 * are asked. The modules of `src/notify/` know these types, not each other.
 */

/** The alert changes a route can notify on. */
export const NOTIFY_TRANSITIONS = ['firing', 'resolved', 'flapping'] as const
export type NotifyTransition = (typeof NOTIFY_TRANSITIONS)[number]
/** What a notification is about: a transition, or a reminder (`repeat`) of an alert still firing. */
export type NotificationKind = NotifyTransition | 'repeat'

/** The transition an alert object stands for: its flapping notice, or its state. */
export function transitionOf(alert: Alert): NotifyTransition {
  return alert.flapping ? 'flapping' : alert.state
}

/**
 * One message to one channel: one alert, or the alerts a route grouped in its window (a storm of
 * 200 devices crossing one threshold is one message). Built once, stored in the outbox, and sent
 * as it is on every attempt.
 */
export interface Notification {
  /** Stable across retries and restarts: receivers drop duplicates by it (`webhook-id`). */
  id: string
  /** Channel name (notifications file). */
  channel: string
  /** Route name (notifications file). */
  route: string
  kind: NotificationKind
  /** At least one; the alert objects as published on MQTT, newest transition of each. */
  alerts: readonly Alert[]
  /** Rendered from the route's template: says severity, device and rule (the email subject). */
  title: string
  /** Rendered body (plain text). */
  text: string
  /** Epoch ms the notification was built. */
  createdAt: number
}

/**
 * What one delivery attempt came to. Channels never throw: an error is a result. `permanent`:
 * the receiver refused for good (a 4xx other than 408/429): retrying cannot help, the
 * notification is dead-lettered at once. `retryAfterMs`: the receiver said when to come back
 * (`Retry-After` on 429/503).
 */
export type DeliveryResult =
  | { ok: true }
  | { ok: false; permanent: boolean; error: string; retryAfterMs?: number }

/** A configured channel: sends notifications to one receiver. */
export interface NotificationChannel {
  readonly name: string
  readonly kind: string
  /**
   * Sends `notification` once. `attempt` is 1 for the first try. `signal` aborts at the channel's
   * timeout (or at shutdown): the attempt then resolves as a retryable failure.
   */
  deliver(notification: Notification, attempt: number, signal: AbortSignal): Promise<DeliveryResult>
  /** Releases connections (SMTP pool, sockets). */
  close(): Promise<void>
}

/** Problems found in one channel's settings: [field, message], field relative to the channel. */
export type ChannelProblems = Array<[field: string, message: string]>

/**
 * A kind of channel (`webhook`, `slack`, `email`, or a custom module's default export): one
 * module, one entry in the registry. The loader validates every channel of the file with `parse`
 * (every problem named at once) before anything is created.
 */
export interface ChannelKind<Config = unknown> {
  readonly kind: string
  /** Fields holding secrets (SMTP password, webhook secret, Slack URL): never logged or served. */
  readonly secretFields: readonly string[]
  /** Validates a channel's own fields (not name/kind/timeout/concurrency); null when invalid. */
  parse(raw: Readonly<Record<string, unknown>>, problems: ChannelProblems): Config | null
  create(name: string, config: Config, deps: { log: Logger }): NotificationChannel
}

/** One channel of the notifications file, validated. */
export interface ChannelSettings {
  name: string
  kind: string
  /** One attempt's bound; past it the attempt is aborted and retried. */
  timeoutMs: number
  /** Deliveries of this channel in flight at once (each channel has its own queue). */
  concurrency: number
  /** The kind's own validated settings (ChannelKind.parse). */
  config: unknown
}

/** Which alerts a route (or a silence) takes; null means any. Globs as in rules (`greenhouse-*`). */
export interface AlertMatchers {
  severity: readonly Severity[] | null
  rule: readonly string[] | null
  device: readonly string[] | null
  metric: readonly string[] | null
  /** Device tags from the registry (DEVICES_FILE); every one must match (values are globs). */
  tags: Readonly<Record<string, string>> | null
}

export interface Route {
  name: string
  /** Channel names; each gets its own notification (and its own queue). */
  channels: readonly string[]
  match: AlertMatchers
  /** Transitions notified; a reminder (`repeat`) follows `repeatIntervalMs`. */
  on: readonly NotifyTransition[]
  /** An alert still firing, not acknowledged, is notified again this often; 0: never. */
  repeatIntervalMs: number
  /**
   * Alerts of this route that fire (or resolve) within this window of the first are sent as one
   * notification per channel and transition; 0: each alone, at once.
   */
  groupWindowMs: number
  /** Message templates: the rule message placeholders (`{deviceId}`, `{severity}`, ...) and `{count}`. */
  template: { title: string; text: string }
}

/** How long the outbox keeps trying before a notification is dead-lettered. */
export interface DeliveryPolicy {
  maxAttempts: number
  maxAgeMs: number
  retryBaseMs: number
  retryMaxMs: number
}

/** The notifications file, validated and frozen. No file: no channels, no routes. */
export interface NotificationsConfig {
  channels: readonly ChannelSettings[]
  routes: readonly Route[]
  delivery: DeliveryPolicy
}

/**
 * An acknowledgement of an alert: part of the alert object on MQTT and in the API. Defined with
 * the alert in the wire contract (src/contract/types.ts), which may not import notify/.
 */
export type { AlertAck }

/** A silence: matching alerts are recorded and published on MQTT, but not notified. */
export interface Silence {
  id: string
  matchers: Omit<AlertMatchers, 'metric'> & { metric?: readonly string[] | null }
  startsAt: number
  endsAt: number
  comment: string
  createdBy: string
  createdAt: number
}

/**
 * What the outbox asks before it notifies (src/notify/alert-controls.ts owns acks and silences).
 * Acknowledged alerts get no reminders until they resolve; silenced ones get nothing.
 */
export interface AlertControls {
  ackOf(alertId: string): AlertAck | undefined
  isSilenced(alert: Alert, tags: Readonly<Record<string, string>>, nowMs: number): boolean
}
