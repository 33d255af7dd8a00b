import type { Alert, Severity } from '../../contract/types.ts'
import type { ChannelKind, Notification } from '../types.ts'
import { LOADER_FIELDS, parseHttpUrl, unknownFields } from './fields.ts'
import { originOf, postJson, unbuildable } from './http-result.ts'

/**
 * `kind: slack`: a message to an incoming webhook `url` (Slack, Mattermost, Rocket.Chat). The
 * body keeps to what all three accept: `text` (the title) and one attachment (`color`,
 * `fallback`, `text`) coloured by the most severe alert, green when all resolved. No markdown
 * (Slack's `*bold*` is Mattermost's `**bold**`); `&`, `<`, `>` escaped as Slack asks, which
 * Mattermost's markdown renders back.
 */
export interface SlackConfig {
  /** The webhook URL is its own credential: a secret, never logged or quoted. */
  url: string
}

/** Attachment colours: red to blue by severity (Slack's own `danger` red for critical). */
export const SEVERITY_COLORS: Readonly<Record<Severity, string>> = {
  critical: '#d40e0d',
  major: '#e8590c',
  minor: '#f2c744',
  warning: '#f2c744',
  info: '#439fe0',
}
export const RESOLVED_COLOR = '#2eb886'
const SEVERITY_ORDER: readonly Severity[] = ['critical', 'major', 'minor', 'warning', 'info']

/** Slack's control characters (api.slack.com "Formatting text"): `<` would start a link. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function colorOf(alerts: readonly Alert[]): string {
  const active = alerts.filter((a) => a.state === 'firing' || a.flapping)
  if (active.length === 0) return RESOLVED_COLOR
  const worst = Math.min(...active.map((a) => SEVERITY_ORDER.indexOf(a.severity)))
  return SEVERITY_COLORS[SEVERITY_ORDER[worst] ?? 'info']
}

export interface SlackMessage {
  text: string
  attachments: Array<{ color: string; fallback: string; text: string }>
}

/**
 * Lines of a message shown at most: the route's template already puts a group's alerts one per
 * line, and a storm of 200 stays one readable message (Slack cuts messages past 40,000 chars).
 */
export const MAX_CHAT_LINES = 100

function capLines(text: string): string {
  const lines = text.split('\n')
  if (lines.length <= MAX_CHAT_LINES) return text
  const rest = lines.length - MAX_CHAT_LINES
  return [
    ...lines.slice(0, MAX_CHAT_LINES),
    `... and ${rest} more line${rest === 1 ? '' : 's'}`,
  ].join('\n')
}

/** The message: the title, and the rendered text (a group: each alert on a line) in an attachment. */
export function slackMessage(notification: Notification): SlackMessage {
  const body = capLines(notification.text)
  return {
    text: escapeSlack(notification.title),
    attachments: [
      {
        color: colorOf(notification.alerts),
        fallback: escapeSlack(notification.title),
        text: escapeSlack(body),
      },
    ],
  }
}

export const slackKind: ChannelKind<SlackConfig> = {
  kind: 'slack',
  secretFields: ['url'],
  parse(raw, problems) {
    const before = problems.length
    unknownFields(raw, ['url', ...LOADER_FIELDS], 'a slack channel', problems)
    const url = parseHttpUrl(raw.url, 'url', problems, true)
    if (problems.length > before || url === null) return null
    return { url }
  },
  create(name, config) {
    // The path and query are the token: error texts name the origin only.
    const target = `${originOf(config.url)} (url redacted)`
    const url = new URL(config.url)
    const secrets = [config.url, url.pathname + url.search, url.pathname].filter((s) => s !== '/')
    // Slack answers 200 `ok`, Mattermost and Rocket.Chat 200 with other bodies: any 2xx is delivered.
    return {
      name,
      kind: 'slack',
      async deliver(notification, _attempt, signal) {
        let body: string
        try {
          body = JSON.stringify(slackMessage(notification))
        } catch (err) {
          return unbuildable(err)
        }
        return postJson({ url: config.url, target, headers: {}, body, signal, secrets })
      },
      async close() {},
    }
  },
}
