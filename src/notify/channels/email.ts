import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import nodemailer from 'nodemailer'
import type SMTPConnection from 'nodemailer/lib/smtp-connection'
import { describeValue } from '../../rules/describe-value.ts'
import type { ChannelKind, ChannelProblems, DeliveryResult, Notification } from '../types.ts'
import { isMapping, LOADER_FIELDS, unknownFields } from './fields.ts'
import { redact } from './http-result.ts'

/**
 * `kind: email`: a plain-text email per notification over SMTP (nodemailer, pooled), with
 * implicit TLS (`secure: true`, port 465) or STARTTLS (required with `requireTLS: true`;
 * otherwise used whenever the server offers it), AUTH with `auth.user`/`auth.pass`.
 */
export interface EmailConfig {
  host: string
  port: number
  secure: boolean
  requireTLS: boolean
  /** `pass` is a secret. */
  auth: { user: string; pass: string } | null
  from: string
  to: readonly string[]
  tls: { rejectUnauthorized: boolean; ca: string | null }
}

const FIELDS = ['host', 'port', 'secure', 'requireTLS', 'auth', 'from', 'to', 'tls']
/** `a@b.example` or `Name <a@b.example>`: what nodemailer's address parser takes as one address. */
const ADDRESS = /^(?:[^<>\r\n]*<[^\s@<>]+@[^\s@<>]+>|[^\s@<>]+@[^\s@<>]+)$/
const ADDRESS_TEXT = 'an email address (a@b.example or "Name <a@b.example>")'
/**
 * nodemailer's own bounds are minutes (a hung server would hold a pooled connection that long);
 * these bound a send that outlived its attempt's timeout.
 */
const CONNECTION_TIMEOUT_MS = 30_000
const GREETING_TIMEOUT_MS = 30_000
const SOCKET_TIMEOUT_MS = 60_000

function parseBoolean(
  value: unknown,
  field: string,
  fallback: boolean,
  problems: ChannelProblems,
): boolean {
  if (value === undefined) return fallback
  if (typeof value === 'boolean') return value
  problems.push([field, `must be true or false, got ${describeValue(value)}`])
  return fallback
}

function parseText(value: unknown, field: string, problems: ChannelProblems): string | null {
  if (typeof value === 'string' && value.trim() !== '') return value
  problems.push([field, `is required: non-empty text, got ${describeValue(value)}`])
  return null
}

function parseAddress(value: unknown, field: string, problems: ChannelProblems): string | null {
  if (typeof value === 'string' && ADDRESS.test(value.trim())) return value.trim()
  problems.push([field, `must be ${ADDRESS_TEXT}, got ${describeValue(value)}`])
  return null
}

function parseRecipients(value: unknown, problems: ChannelProblems): string[] | null {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || list.length === 0) {
    problems.push(['to', `is required: a list of email addresses, got ${describeValue(value)}`])
    return null
  }
  const before = problems.length
  const addresses = list.map((item, i) => parseAddress(item, `to[${i}]`, problems))
  return problems.length > before ? null : (addresses as string[])
}

function parseAuth(value: unknown, problems: ChannelProblems): EmailConfig['auth'] | undefined {
  if (value === undefined || value === null) return null
  if (!isMapping(value)) {
    problems.push(['auth', `must be a mapping { user, pass }, got ${describeValue(value)}`])
    return undefined
  }
  unknownFields(value, ['user', 'pass'], "an email channel's auth", problems, 'auth.')
  const user = parseText(value.user, 'auth.user', problems)
  let pass: string | null = null
  if (typeof value.pass === 'string' && value.pass !== '') pass = value.pass
  // The password is a secret: its type is named, never its value.
  else
    problems.push([
      'auth.pass',
      `is required with auth.user: the password as text, got ${typeof value.pass === 'string' ? 'an empty string' : describeValue(value.pass)}`,
    ])
  return user === null || pass === null ? undefined : { user, pass }
}

function parseTls(value: unknown, problems: ChannelProblems): EmailConfig['tls'] | undefined {
  if (value === undefined) return { rejectUnauthorized: true, ca: null }
  if (!isMapping(value)) {
    problems.push([
      'tls',
      `must be a mapping { rejectUnauthorized, caFile }, got ${describeValue(value)}`,
    ])
    return undefined
  }
  unknownFields(value, ['rejectUnauthorized', 'caFile'], "an email channel's tls", problems, 'tls.')
  const before = problems.length
  const rejectUnauthorized = parseBoolean(
    value.rejectUnauthorized,
    'tls.rejectUnauthorized',
    true,
    problems,
  )
  let ca: string | null = null
  if (value.caFile !== undefined) {
    if (typeof value.caFile !== 'string' || value.caFile === '') {
      problems.push([
        'tls.caFile',
        `must be the path of a PEM file, got ${describeValue(value.caFile)}`,
      ])
    } else {
      // Read now so a missing file is a start-up problem, not a failure of every delivery.
      const file = path.resolve(value.caFile)
      try {
        ca = readFileSync(file, 'utf8')
        if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
          problems.push(['tls.caFile', `${file} holds no PEM certificate`])
        }
      } catch (err) {
        problems.push(['tls.caFile', `cannot read ${file}: ${(err as Error).message}`])
      }
    }
  }
  return problems.length > before ? undefined : { rejectUnauthorized, ca }
}

function parsePort(value: unknown, secure: boolean, problems: ChannelProblems): number | null {
  // 465: SMTPS (implicit TLS); 587: submission with STARTTLS (RFC 8314).
  if (value === undefined) return secure ? 465 : 587
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535)
    return value
  problems.push(['port', `must be a TCP port from 1 to 65535, got ${describeValue(value)}`])
  return null
}

/** Message-ID from the notification id: the same on every attempt, so mail clients fold duplicates. */
export function messageIdOf(notificationId: string): string {
  const local = /^[A-Za-z0-9._-]{1,128}$/.test(notificationId)
    ? notificationId
    : createHash('sha256').update(notificationId).digest('hex').slice(0, 32)
  return `<${local}@sensor-gateway>`
}

/** The subject: the title on one line (it says severity, device and rule). */
export function emailSubject(notification: Notification): string {
  return notification.title.replace(/\s+/g, ' ').trim()
}

/**
 * The plain-text body: the rendered text (the route's template; a group has each alert on a line)
 * and a signature line with the id receivers may dedupe by.
 */
export function emailBody(notification: Notification): string {
  return [
    notification.text,
    '',
    '--',
    `Notification ${notification.id} (${notification.kind}, route ${notification.route}, channel ${notification.channel}) from sensor-gateway`,
    '',
  ].join('\n')
}

/**
 * An SMTP failure as a DeliveryResult: a 4xx reply is temporary (greylisting, mailbox busy), a
 * 5xx reply permanent (RFC 5321 §4.2.1); no reply at all (refused, reset, TLS, timeout) retryable.
 */
export function smtpFailure(
  err: unknown,
  target: string,
  secrets: readonly string[],
): DeliveryResult {
  const e = err as SMTPConnection.SMTPError
  const code = typeof e?.responseCode === 'number' ? e.responseCode : undefined
  const message = e instanceof Error ? e.message : String(err)
  const error =
    code === undefined
      ? `cannot send through ${target}: ${e?.code === undefined ? '' : `${e.code} `}${message}`
      : `SMTP ${code}${e.command === undefined ? '' : ` on ${e.command}`} from ${target}: ${e.response ?? message}`
  const permanent = code !== undefined && code >= 500 && code < 600
  return { ok: false, permanent, error: redact(error.replace(/\s+/g, ' ').trim(), secrets) }
}

export const emailKind: ChannelKind<EmailConfig> = {
  kind: 'email',
  secretFields: ['auth.pass'],
  parse(raw, problems) {
    const before = problems.length
    unknownFields(raw, [...FIELDS, ...LOADER_FIELDS], 'an email channel', problems)
    const host = parseText(raw.host, 'host', problems)
    const secure = parseBoolean(raw.secure, 'secure', false, problems)
    const requireTLS = parseBoolean(raw.requireTLS, 'requireTLS', false, problems)
    if (secure && requireTLS) {
      problems.push([
        'requireTLS',
        'is for STARTTLS; with secure: true the connection is TLS from the start: set one of them',
      ])
    }
    const port = parsePort(raw.port, secure, problems)
    const auth = parseAuth(raw.auth, problems)
    const from = parseAddress(raw.from, 'from', problems)
    const to = parseRecipients(raw.to, problems)
    const tls = parseTls(raw.tls, problems)
    if (problems.length > before) return null
    if (
      host === null ||
      port === null ||
      auth === undefined ||
      from === null ||
      to === null ||
      tls === undefined
    ) {
      return null
    }
    return { host, port, secure, requireTLS, auth, from, to, tls }
  },
  create(name, config, deps) {
    const log = deps.log.child({ module: 'notify', channel: name, kind: 'email' })
    const target = `${config.host}:${config.port}`
    const secrets: string[] = []
    if (config.auth !== null) {
      const { user, pass } = config.auth
      // AUTH PLAIN and LOGIN send these base64-encoded: a server echoing them stays unquoted too.
      secrets.push(
        pass,
        Buffer.from(pass).toString('base64'),
        Buffer.from(`\0${user}\0${pass}`).toString('base64'),
      )
    }
    const transport = nodemailer.createTransport({
      pool: true,
      host: config.host,
      port: config.port,
      secure: config.secure,
      requireTLS: config.requireTLS,
      ...(config.auth === null ? {} : { auth: { user: config.auth.user, pass: config.auth.pass } }),
      tls: {
        rejectUnauthorized: config.tls.rejectUnauthorized,
        ...(config.tls.ca === null ? {} : { ca: config.tls.ca }),
      },
      connectionTimeout: CONNECTION_TIMEOUT_MS,
      greetingTimeout: GREETING_TIMEOUT_MS,
      socketTimeout: SOCKET_TIMEOUT_MS,
      logger: false,
    })
    return {
      name,
      kind: 'email',
      async deliver(notification, _attempt, signal) {
        if (signal.aborted) {
          return { ok: false, permanent: false, error: `aborted before sending through ${target}` }
        }
        const send = transport.sendMail({
          from: config.from,
          to: [...config.to],
          subject: emailSubject(notification),
          text: emailBody(notification),
          messageId: messageIdOf(notification.id),
          headers: { 'X-Notification-Id': notification.id },
        })
        let onAbort = (): void => {}
        const aborted = new Promise<DeliveryResult>((resolve) => {
          onAbort = () =>
            resolve({
              ok: false,
              permanent: false,
              error: `no answer from ${target} before the attempt was aborted`,
            })
          signal.addEventListener('abort', onAbort, { once: true })
        })
        // nodemailer takes no signal: an aborted send may still complete later (a duplicate
        // with the same Message-ID, which at-least-once allows); its own timeouts end it.
        const sent = send.then(
          (info): DeliveryResult => {
            if (info.rejected.length > 0) {
              log.warn(
                { notificationId: notification.id, rejected: info.rejected },
                'some recipients refused the email',
              )
            }
            return { ok: true }
          },
          (err: unknown) => smtpFailure(err, target, secrets),
        )
        try {
          return await Promise.race([sent, aborted])
        } finally {
          signal.removeEventListener('abort', onAbort)
        }
      },
      async close() {
        transport.close()
      },
    }
  },
}
