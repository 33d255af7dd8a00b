import { Webhook } from 'standardwebhooks'
import { describeValue } from '../../rules/describe-value.ts'
import type { ChannelKind, ChannelProblems, Notification } from '../types.ts'
import { isMapping, LOADER_FIELDS, parseHttpUrl, unknownFields } from './fields.ts'
import { postJson, unbuildable } from './http-result.ts'

/**
 * `kind: webhook`: a JSON POST of the notification (README "Notifications > Channels" documents
 * the body) to `url`, with the channel's own `headers`, signed per Standard Webhooks when a
 * `secret` is set (https://www.standardwebhooks.com: `webhook-id`, `webhook-timestamp`,
 * `webhook-signature`).
 */
export interface WebhookConfig {
  url: string
  headers: Readonly<Record<string, string>>
  /** `whsec_` + base64; null: the requests are not signed. */
  secret: string | null
}

const FIELDS = ['url', 'headers', 'secret'] as const
/** RFC 9110 §5.1 token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** Set by the channel itself (or by fetch); a configured value would be ignored or break it. */
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'host',
  'transfer-encoding',
  'connection',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
])
const SECRET_PREFIX = 'whsec_'
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
/** The Standard Webhooks spec's bounds on the key's length. */
const MIN_SECRET_BYTES = 24
const MAX_SECRET_BYTES = 64
const SECRET_TEXT = `whsec_ followed by ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} random bytes in base64 (e.g. whsec_$(openssl rand -base64 32))`

function parseHeaders(value: unknown, problems: ChannelProblems): Record<string, string> | null {
  if (value === undefined) return {}
  if (!isMapping(value)) {
    problems.push([
      'headers',
      `must be a mapping of header name to text, got ${describeValue(value)}`,
    ])
    return null
  }
  const headers: Record<string, string> = {}
  let ok = true
  for (const [name, text] of Object.entries(value)) {
    const field = `headers.${name}`
    if (!HEADER_NAME.test(name)) {
      problems.push([
        field,
        "is not a valid HTTP header name (letters, digits and !#$%&'*+.^_`|~-)",
      ])
      ok = false
    } else if (RESERVED_HEADERS.has(name.toLowerCase())) {
      problems.push([field, 'is set by the webhook channel itself and cannot be configured'])
      ok = false
    } else if (typeof text !== 'string') {
      problems.push([field, `must be text (quote numbers), got ${describeValue(text)}`])
      ok = false
    } else if (/[\r\n\0]/.test(text)) {
      // Header values are secrets (tokens): the value is never quoted back.
      problems.push([field, 'must not contain line breaks or NUL'])
      ok = false
    } else {
      headers[name] = text
    }
  }
  return ok ? headers : null
}

/** Checks the secret's format without ever quoting it. */
export function webhookSecretProblem(value: unknown): string | null {
  if (typeof value !== 'string') return `must be ${SECRET_TEXT}, got ${describeValue(value)}`
  if (!value.startsWith(SECRET_PREFIX)) {
    return `must be ${SECRET_TEXT}; the value given does not start with whsec_ (not quoted: it is a secret)`
  }
  const encoded = value.slice(SECRET_PREFIX.length)
  if (!BASE64.test(encoded) || encoded === '') {
    return `must be ${SECRET_TEXT}; what follows whsec_ is not base64 (not quoted: it is a secret)`
  }
  const bytes = Buffer.from(encoded, 'base64').length
  if (bytes < MIN_SECRET_BYTES || bytes > MAX_SECRET_BYTES) {
    return `must be ${SECRET_TEXT}; the value given decodes to ${bytes} bytes`
  }
  return null
}

/** The JSON body of a webhook (and of nothing else: README documents it). */
export function webhookBody(notification: Notification): string {
  const { id, kind, route, channel, title, text, createdAt, alerts } = notification
  return JSON.stringify({ id, kind, route, channel, title, text, createdAt, alerts })
}

export const webhookKind: ChannelKind<WebhookConfig> = {
  kind: 'webhook',
  secretFields: ['secret', 'headers'],
  parse(raw, problems) {
    const before = problems.length
    unknownFields(raw, [...FIELDS, ...LOADER_FIELDS], 'a webhook channel', problems)
    const url = parseHttpUrl(raw.url, 'url', problems, false)
    const headers = parseHeaders(raw.headers, problems)
    let secret: string | null = null
    if (raw.secret !== undefined && raw.secret !== null) {
      const problem = webhookSecretProblem(raw.secret)
      if (problem === null) secret = raw.secret as string
      else problems.push(['secret', problem])
    }
    if (problems.length > before || url === null || headers === null) return null
    return { url, headers, secret }
  },
  create(name, config) {
    const signer = config.secret === null ? null : new Webhook(config.secret)
    // Header values usually carry tokens: an error text never quotes them, nor the secret.
    const secrets = [
      ...Object.values(config.headers),
      ...(config.secret === null ? [] : [config.secret]),
    ]
    return {
      name,
      kind: 'webhook',
      async deliver(notification, _attempt, signal) {
        let body: string
        // The id stays across attempts: receivers drop duplicates by it, signed or not.
        const headers: Record<string, string> = { ...config.headers, 'webhook-id': notification.id }
        try {
          body = webhookBody(notification)
          if (signer !== null) {
            // Signed at each attempt with the time of that attempt, so a retry an hour later is
            // not refused as a replay (receivers allow 5 minutes of skew).
            const now = new Date()
            headers['webhook-timestamp'] = String(Math.floor(now.getTime() / 1000))
            headers['webhook-signature'] = signer.sign(notification.id, now, body)
          }
        } catch (err) {
          return unbuildable(err)
        }
        return postJson({ url: config.url, target: config.url, headers, body, signal, secrets })
      },
      async close() {
        // fetch's connection pool is the process's; nothing of ours stays open.
      },
    }
  },
}
