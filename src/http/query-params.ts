import { IDENTIFIER_PATTERN, isIdentifier } from '../contract/identifiers.ts'
import { type AlertState, SEVERITIES } from '../contract/types.ts'
import { SILENCE_STATES, type SilenceState } from '../notify/alert-controls.ts'
import { OUTBOX_STATES, type OutboxState } from '../notify/outbox.ts'
import {
  AGGREGATE_FUNCTIONS,
  type AggregateFunction,
  type AggregateQuery,
  type AlertQuery,
  type ReadingQuery,
} from '../store/reading-store.ts'
import { parseDurationMs } from '../util/duration.ts'

/**
 * Query-string parsing for the HTTP API (DESIGN §6). Pure: no clock (callers pass `nowMs`), no
 * throwing; every failure is a message that names the parameter, ready for a 400.
 *
 * Time ranges are half-open, `[from, to)`, like the store's: `to` is exclusive, so consecutive
 * windows never count a reading twice and `from=10:00&to=11:00&every=1m` gives exactly 60 buckets.
 * The keyword `now` as `to` (and the default `to`) means "up to and including now": it resolves to
 * `nowMs + 1`, so a reading stamped exactly now is returned.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string }

/** What Fastify's query-string parser hands over: a string per key, an array for repeated keys. */
export type RawQuery = unknown

export const DEFAULT_RANGE_MS = 3_600_000
export const DEFAULT_LIMIT = 1_000
export const MAX_LIMIT = 10_000
export const MIN_EVERY_MS = 1_000
/** The default `every` keeps a chart at about this many buckets. */
export const TARGET_BUCKETS = 500
export const MAX_BUCKETS = 10_000
/** ECMAScript's time range: beyond it a time has no ISO form. */
export const MAX_TIME_MS = 8_640_000_000_000_000

export const ALERT_STATE_FILTERS = ['firing', 'resolved', 'all'] as const
export type AlertStateFilter = (typeof ALERT_STATE_FILTERS)[number]

const READINGS_PARAMS = ['device', 'metric', 'from', 'to', 'limit', 'order'] as const
const AGGREGATE_PARAMS = ['device', 'metric', 'from', 'to', 'every', 'fn'] as const
const ALERTS_PARAMS = ['state', 'device', 'rule', 'severity', 'from', 'to', 'limit'] as const
const SILENCES_PARAMS = ['state'] as const
const ORDERS = ['asc', 'desc'] as const

/** Steps a human reads on a time axis; the default `every` is the first one giving <= 500 buckets. */
const NICE_STEPS_MS = [
  1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
  1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000, 172_800_000,
  604_800_000,
]
const DAY_MS = 86_400_000

const TIME_EXPECTED = 'expected ISO-8601 time, epoch ms or relative time like -1h'
const EVERY_EXPECTED = 'expected a duration of at least 1s like 30s, 5m or 1h'
const IDENTIFIER_EXPECTED = `expected an identifier matching ${IDENTIFIER_PATTERN.source}`
/** Echoed values are cut so a hostile query string cannot blow up the error body. */
const MAX_ECHO_CHARS = 64

export interface ReadingsParams extends ReadingQuery {}
export interface AggregateParams extends AggregateQuery {}
export interface AlertsParams extends AlertQuery {}

export function parseReadingsQuery(query: RawQuery, nowMs: number): Parsed<ReadingsParams> {
  const params = collect(query, READINGS_PARAMS)
  if (!params.ok) return params
  const get = params.value

  const device = required(get, 'device', parseIdentifier)
  if (!device.ok) return device
  const metric = optional(get, 'metric', parseIdentifier)
  if (!metric.ok) return metric
  const range = parseRange(get, nowMs)
  if (!range.ok) return range
  const limit = optional(get, 'limit', parseLimit)
  if (!limit.ok) return limit
  const order = optional(get, 'order', (name, raw) => parseOneOf(name, raw, ORDERS))
  if (!order.ok) return order

  const value: ReadingsParams = {
    deviceId: device.value,
    fromMs: range.value.fromMs,
    toMs: range.value.toMs,
    limit: limit.value ?? DEFAULT_LIMIT,
    order: order.value ?? 'asc',
  }
  if (metric.value !== undefined) value.metric = metric.value
  return { ok: true, value }
}

export function parseAggregateQuery(query: RawQuery, nowMs: number): Parsed<AggregateParams> {
  const params = collect(query, AGGREGATE_PARAMS)
  if (!params.ok) return params
  const get = params.value

  const device = required(get, 'device', parseIdentifier)
  if (!device.ok) return device
  const metric = required(get, 'metric', parseIdentifier)
  if (!metric.ok) return metric
  const range = parseRange(get, nowMs)
  if (!range.ok) return range
  const { fromMs, toMs } = range.value
  const fn = optional(get, 'fn', (name, raw) => parseOneOf(name, raw, AGGREGATE_FUNCTIONS))
  if (!fn.ok) return fn

  let everyMs = defaultEveryMs(toMs - fromMs)
  const every = get('every')
  if (every !== undefined) {
    const parsed = parseEvery('every', every)
    if (!parsed.ok) return parsed
    everyMs = parsed.value
    const buckets = bucketCount(fromMs, toMs, everyMs)
    if (buckets > MAX_BUCKETS) {
      return fail(
        'every',
        `${every} over the requested range makes ${buckets} buckets, more than the ${MAX_BUCKETS} allowed; use a larger "every" or a shorter range`,
      )
    }
  }

  return {
    ok: true,
    value: {
      deviceId: device.value,
      metric: metric.value,
      fromMs,
      toMs,
      everyMs,
      fn: (fn.value ?? 'mean') satisfies AggregateFunction,
    },
  }
}

/**
 * `state=firing` and `state=resolved` ask for alerts whose *current* state (their latest
 * transition) is that one: "what is firing now", not "what has ever fired". `state=all`, or no
 * `state`, is the whole transition history. The other filters apply to the transitions chosen.
 *
 * Alerts are unbounded in time unless `from`/`to` are given: an alert that fired yesterday and is
 * still firing must not disappear behind a default window.
 */
export function parseAlertsQuery(query: RawQuery, nowMs: number): Parsed<AlertsParams> {
  const params = collect(query, ALERTS_PARAMS)
  if (!params.ok) return params
  const get = params.value

  const state = optional(get, 'state', (name, raw) => parseOneOf(name, raw, ALERT_STATE_FILTERS))
  if (!state.ok) return state
  const device = optional(get, 'device', parseIdentifier)
  if (!device.ok) return device
  const rule = optional(get, 'rule', parseIdentifier)
  if (!rule.ok) return rule
  const severity = optional(get, 'severity', (name, raw) => parseOneOf(name, raw, SEVERITIES))
  if (!severity.ok) return severity
  const from = optional(get, 'from', (name, raw) => parseTime(name, raw, nowMs))
  if (!from.ok) return from
  const to = optional(get, 'to', (name, raw) => parseTime(name, raw, nowMs))
  if (!to.ok) return to
  if (from.value !== undefined && to.value !== undefined) {
    const order = checkOrder(from.value, to.value)
    if (!order.ok) return order
  }
  const limit = optional(get, 'limit', parseLimit)
  if (!limit.ok) return limit

  const value: AlertsParams = { limit: limit.value ?? DEFAULT_LIMIT }
  if (state.value !== undefined && state.value !== 'all') {
    value.current = true
    value.state = state.value satisfies AlertState
  }
  if (device.value !== undefined) value.deviceId = device.value
  if (rule.value !== undefined) value.ruleId = rule.value
  if (severity.value !== undefined) value.severity = severity.value
  if (from.value !== undefined) value.fromMs = from.value
  if (to.value !== undefined) value.toMs = to.value
  return { ok: true, value }
}

/** `GET /api/silences`: `state` (active, pending, expired) or none (every one kept). */
export function parseSilencesQuery(query: RawQuery): Parsed<{ state?: SilenceState }> {
  const params = collect(query, SILENCES_PARAMS)
  if (!params.ok) return params
  const state = optional(params.value, 'state', (name, raw) =>
    parseOneOf(name, raw, SILENCE_STATES),
  )
  if (!state.ok) return state
  return { ok: true, value: state.value === undefined ? {} : { state: state.value } }
}

/** For routes that take no parameters: anything given is a mistake worth a 400. */
export function parseNoQuery(query: RawQuery): Parsed<null> {
  const params = collect(query, [])
  return params.ok ? { ok: true, value: null } : params
}

/** States `GET /api/notifications` lists (the outbox's). */
export const NOTIFICATION_STATES = OUTBOX_STATES
const NOTIFICATIONS_PARAMS = ['state', 'channel', 'limit'] as const

/** `GET /api/notifications`: `state` (default pending), `channel`, `limit`. */
export function parseNotificationsQuery(
  query: RawQuery,
): Parsed<{ state: OutboxState; limit: number; channel?: string }> {
  const params = collect(query, NOTIFICATIONS_PARAMS)
  if (!params.ok) return params
  const get = params.value
  const state = optional(get, 'state', (name, raw) => parseOneOf(name, raw, OUTBOX_STATES))
  if (!state.ok) return state
  const channel = optional(get, 'channel', parseIdentifier)
  if (!channel.ok) return channel
  const limit = optional(get, 'limit', parseLimit)
  if (!limit.ok) return limit
  return {
    ok: true,
    value: {
      state: state.value ?? 'pending',
      limit: limit.value ?? DEFAULT_LIMIT,
      ...(channel.value === undefined ? {} : { channel: channel.value }),
    },
  }
}

/**
 * One time parameter. `nowMs` anchors `now` and relative forms. As `to`, `now` means
 * `nowMs + 1` (see the module comment); every other form is taken as given.
 */
export function parseTime(name: string, raw: string, nowMs: number): Parsed<number> {
  if (raw === 'now') return { ok: true, value: name === 'to' ? nowMs + 1 : nowMs }

  if (raw.startsWith('-')) {
    const rest = raw.slice(1)
    const durationMs = rest === rest.trim() ? parseDurationMs(rest) : null
    if (durationMs === null) return expectedGot(name, TIME_EXPECTED, raw)
    const ms = nowMs - durationMs
    if (ms < -MAX_TIME_MS)
      return fail(name, `${echo(raw)} reaches before the earliest representable time`)
    return { ok: true, value: ms }
  }

  if (/^\d+$/.test(raw)) {
    const ms = Number(raw)
    if (ms > MAX_TIME_MS) {
      return fail(name, `epoch ms ${echo(raw)} is out of range (at most ${MAX_TIME_MS})`)
    }
    return { ok: true, value: ms }
  }

  const iso = parseIsoTime(raw)
  if (iso === 'invalid') return fail(name, `${echo(raw)} is not a valid date and time`)
  if (iso === null) return expectedGot(name, TIME_EXPECTED, raw)
  return { ok: true, value: iso }
}

/**
 * The bucket width a range gets when the client names none: the smallest "nice" step that keeps
 * the range at about TARGET_BUCKETS buckets (alignment to the epoch may add one).
 */
export function defaultEveryMs(rangeMs: number): number {
  const wanted = rangeMs / TARGET_BUCKETS
  for (const step of NICE_STEPS_MS) if (step >= wanted) return step
  return Math.ceil(wanted / DAY_MS) * DAY_MS
}

/** Buckets touched by `[fromMs, toMs)` when bucket starts are multiples of `everyMs` (the store's alignment). */
export function bucketCount(fromMs: number, toMs: number, everyMs: number): number {
  if (toMs <= fromMs) return 0
  return Math.floor((toMs - 1) / everyMs) - Math.floor(fromMs / everyMs) + 1
}

type Getter = (name: string) => string | undefined
type FieldParser<T> = (name: string, raw: string) => Parsed<T>

/** Rejects unknown and repeated parameters, so a typo never silently widens a query. */
function collect(query: RawQuery, allowed: readonly string[]): Parsed<Getter> {
  const values = new Map<string, string>()
  const unknown: string[] = []
  const entries = query !== null && typeof query === 'object' ? Object.entries(query) : []
  for (const [name, value] of entries) {
    if (!allowed.includes(name)) {
      unknown.push(name)
      continue
    }
    if (Array.isArray(value)) {
      return fail(name, `given ${value.length} times, expected at most once`)
    }
    if (typeof value !== 'string') return fail(name, 'expected a single text value')
    values.set(name, value)
  }
  if (unknown.length > 0) {
    const names = unknown.map((name) => echo(name)).join(', ')
    const allowedText =
      allowed.length > 0 ? `allowed: ${allowed.join(', ')}` : 'this route takes none'
    return {
      ok: false,
      message: `unknown query parameter${unknown.length > 1 ? 's' : ''} ${names} (${allowedText})`,
    }
  }
  return { ok: true, value: (name) => values.get(name) }
}

function required<T>(get: Getter, name: string, parse: FieldParser<T>): Parsed<T> {
  const raw = get(name)
  if (raw === undefined) return fail(name, 'is required')
  return parse(name, raw)
}

function optional<T>(get: Getter, name: string, parse: FieldParser<T>): Parsed<T | undefined> {
  const raw = get(name)
  if (raw === undefined) return { ok: true, value: undefined }
  return parse(name, raw)
}

function parseRange(get: Getter, nowMs: number): Parsed<{ fromMs: number; toMs: number }> {
  const from = optional(get, 'from', (name, raw) => parseTime(name, raw, nowMs))
  if (!from.ok) return from
  const to = optional(get, 'to', (name, raw) => parseTime(name, raw, nowMs))
  if (!to.ok) return to
  const fromMs = from.value ?? nowMs - DEFAULT_RANGE_MS
  const toMs = to.value ?? nowMs + 1
  const order = checkOrder(fromMs, toMs)
  if (!order.ok) return order
  return { ok: true, value: { fromMs, toMs } }
}

function checkOrder(fromMs: number, toMs: number): Parsed<null> {
  if (fromMs < toMs) return { ok: true, value: null }
  return fail(
    'from',
    `must be before "to" (to is exclusive), got from ${isoOrMs(fromMs)} and to ${isoOrMs(toMs)}`,
  )
}

function parseIdentifier(name: string, raw: string): Parsed<string> {
  return isIdentifier(raw) ? { ok: true, value: raw } : expectedGot(name, IDENTIFIER_EXPECTED, raw)
}

function parseLimit(name: string, raw: string): Parsed<number> {
  const value = /^\d{1,6}$/.test(raw) ? Number(raw) : Number.NaN
  if (value >= 1 && value <= MAX_LIMIT) return { ok: true, value }
  return expectedGot(name, `expected an integer from 1 to ${MAX_LIMIT}`, raw)
}

function parseEvery(name: string, raw: string): Parsed<number> {
  const ms = parseDurationMs(raw)
  if (ms === null || raw !== raw.trim() || ms < MIN_EVERY_MS) {
    return expectedGot(name, EVERY_EXPECTED, raw)
  }
  return { ok: true, value: ms }
}

function parseOneOf<T extends string>(name: string, raw: string, options: readonly T[]): Parsed<T> {
  if ((options as readonly string[]).includes(raw)) return { ok: true, value: raw as T }
  return expectedGot(name, `expected one of ${options.join(', ')}`, raw)
}

const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?$/

/**
 * ISO-8601 / RFC 3339 by hand, because `Date.parse` rolls 2026-02-30 over into March and reads a
 * time without an offset as server-local. Here a missing offset means UTC: the gateway's zone
 * must never change what a query returns. Returns null when the shape is not ISO-8601 at all,
 * 'invalid' when it is but a field is out of range.
 */
function parseIsoTime(raw: string): number | null | 'invalid' {
  const m = ISO_TIME.exec(raw)
  if (!m) return null
  const year = Number(m[1])
  const month = Number(m[2])
  const day = Number(m[3])
  const hour = Number(m[4] ?? 0)
  const minute = Number(m[5] ?? 0)
  const second = Number(m[6] ?? 0)
  const ms = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3))
  const offset = m[8] ?? 'Z'
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return 'invalid'
  if (hour > 23 || minute > 59 || second > 59) return 'invalid'
  let offsetMs = 0
  if (offset !== 'Z') {
    const offsetHours = Number(offset.slice(1, 3))
    const offsetMinutes = Number(offset.slice(4, 6))
    if (offsetHours > 23 || offsetMinutes > 59) return 'invalid'
    offsetMs = (offset.startsWith('-') ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000
  }
  const date = new Date(0)
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0-99 to 1900-1999.
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second, ms)
  return date.getTime() - offsetMs
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28
  return [4, 6, 9, 11].includes(month) ? 30 : 31
}

function isoOrMs(ms: number): string {
  return Math.abs(ms) <= MAX_TIME_MS ? new Date(ms).toISOString() : String(ms)
}

function echo(raw: string): string {
  const cut = raw.length > MAX_ECHO_CHARS ? `${raw.slice(0, MAX_ECHO_CHARS)}...` : raw
  return JSON.stringify(cut)
}

function expectedGot(name: string, expected: string, raw: string): { ok: false; message: string } {
  return fail(name, `${expected}, got ${echo(raw)}`)
}

function fail(name: string, detail: string): { ok: false; message: string } {
  return { ok: false, message: `query parameter "${name}": ${detail}` }
}
