import { type Alert, SEVERITIES, type Severity } from '../contract/types.ts'
import { formatNumber, MESSAGE_PLACEHOLDERS, renderMessage } from '../rules/alert-message.ts'
import type { NotificationKind, Route } from './types.ts'

/**
 * Placeholders of a route's `title` and `text`: the rule message ones (`{deviceId}`, `{severity}`,
 * ...), plus `{count}` (alerts in the notification), `{message}` (the alert's own message) and
 * `{transition}` (what the notification is about: firing, resolved, flapping, still firing).
 */
export const NOTIFICATION_PLACEHOLDERS = [
  ...MESSAGE_PLACEHOLDERS,
  'count',
  'message',
  'transition',
] as const
export type NotificationPlaceholder = (typeof NOTIFICATION_PLACEHOLDERS)[number]

type Values = Partial<Record<NotificationPlaceholder, string | number>>

/** The templates of a route that sets none: they say severity, rule, device and what happened. */
export const DEFAULT_TITLE = '[{severity}] {ruleId} on {deviceId}: {transition}'
export const DEFAULT_TEXT = '{message}'
/** What the defaults become when a notification carries several alerts. */
export const DEFAULT_GROUP_TITLE = '[{severity}] {ruleId}: {count} alerts {transition}'
export const DEFAULT_GROUP_LINE = '{deviceId}: {message}'

/** `{transition}` in words: a reminder is about an alert that is still firing. */
const TRANSITION_WORDS: Readonly<Record<NotificationKind, string>> = {
  firing: 'firing',
  resolved: 'resolved',
  flapping: 'flapping',
  repeat: 'still firing',
}

/** Distinct values a group title names before it says `+N more`. */
const GROUP_NAMES_SHOWN = 3

function valuesOf(alert: Alert, kind: NotificationKind, count: number): Values {
  return {
    deviceId: alert.deviceId,
    metric: alert.metric,
    value: alert.value,
    threshold: alert.threshold,
    ruleId: alert.ruleId,
    state: alert.state,
    severity: alert.severity,
    kind: alert.kind,
    message: alert.message,
    count,
    transition: TRANSITION_WORDS[kind],
  }
}

function mostSevere(alerts: readonly Alert[]): Severity {
  let best = SEVERITIES.length - 1
  for (const alert of alerts) best = Math.min(best, SEVERITIES.indexOf(alert.severity))
  return SEVERITIES[best] as Severity
}

/** One value for a group: the common one, else the first few distinct ones and how many more. */
function summary(alerts: readonly Alert[], pick: (alert: Alert) => string | number): string {
  const distinct = [...new Set(alerts.map((alert) => String(shown(pick(alert)))))]
  if (distinct.length <= GROUP_NAMES_SHOWN) return distinct.join(', ')
  return `${distinct.slice(0, GROUP_NAMES_SHOWN).join(', ')} +${distinct.length - GROUP_NAMES_SHOWN} more`
}

function shown(value: string | number): string {
  return typeof value === 'number' ? formatNumber(value) : value
}

/**
 * A group's title values: what all its alerts share, a short list where they differ, and the
 * highest severity (a storm with one critical alert is a critical notification).
 */
function groupValues(alerts: readonly Alert[], kind: NotificationKind): Values {
  return {
    deviceId: summary(alerts, (a) => a.deviceId),
    metric: summary(alerts, (a) => a.metric),
    value: summary(alerts, (a) => a.value),
    threshold: summary(alerts, (a) => a.threshold),
    ruleId: summary(alerts, (a) => a.ruleId),
    state: summary(alerts, (a) => a.state),
    severity: mostSevere(alerts),
    kind: summary(alerts, (a) => a.kind),
    message: summary(alerts, (a) => a.message),
    count: alerts.length,
    transition: TRANSITION_WORDS[kind],
  }
}

/** A title is one line: an email subject or a chat headline. */
function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim()
}

/**
 * Renders a route's templates for one notification. One alert: each template filled from it. Several
 * (a group): the title from the group's common values (`{count}` says how many), the text one block
 * per alert, each on its own line. The route's default templates become their group forms
 * (`[{severity}] {ruleId}: {count} alerts {transition}`, one `{deviceId}: {message}` line per
 * alert). Pure; `alerts` must hold at least one alert.
 */
export function renderNotification(
  route: Pick<Route, 'template'>,
  kind: NotificationKind,
  alerts: readonly Alert[],
): { title: string; text: string } {
  const [first] = alerts
  if (first === undefined) throw new RangeError('renderNotification needs at least one alert')
  const { title, text } = route.template
  if (alerts.length === 1) {
    const values = valuesOf(first, kind, 1)
    return {
      title: oneLine(renderMessage<NotificationPlaceholder>(title, values)),
      text: renderMessage<NotificationPlaceholder>(text, values),
    }
  }
  const titleTemplate = title === DEFAULT_TITLE ? DEFAULT_GROUP_TITLE : title
  const lineTemplate = text === DEFAULT_TEXT ? DEFAULT_GROUP_LINE : text
  return {
    title: oneLine(
      renderMessage<NotificationPlaceholder>(titleTemplate, groupValues(alerts, kind)),
    ),
    text: alerts
      .map((alert) =>
        renderMessage<NotificationPlaceholder>(lineTemplate, valuesOf(alert, kind, alerts.length)),
      )
      .join('\n'),
  }
}
