/**
 * Pure ingest parser: one MQTT publish in, validated readings or one rejection out (DESIGN §3).
 *
 * Hot path (STYLE habit 10): no regex compiled per call, no throwing validators (the only
 * try/catch wraps TextDecoder and JSON.parse, which signal bad input by throwing), detail
 * strings built only on rejection, and at most ECHO_CHARS of untrusted text in any detail.
 *
 * Policy decisions:
 *
 * - Topics. Exactly `sensors/{deviceId}` or `sensors/{deviceId}/{metric}`; more or fewer levels,
 *   or an empty level, is `bad_topic`; a level outside IDENTIFIER_PATTERN is `bad_identifier`.
 *   A rejection is filed under the topic's device level when that is a valid identifier (even
 *   if the rest of the topic is bad), else under UNKNOWN_DEVICE_ID.
 *
 * - Payload checks run in this order: empty, too large (on the byte length, before decoding),
 *   not UTF-8 (a BOM is dropped), then JSON/number syntax, then values.
 *
 * - `sensors/{d}/{m}`: a bare decimal (`21.5`, `-3`, `+3`, `.5`, `5.`, `1e3`, surrounding
 *   whitespace ignored) or a JSON object with exactly the keys `value` (required, finite number),
 *   `ts` and `unit`; any other key is `bad_value`. Hex, `NaN`, `Infinity`, `1,5`, quoted numbers,
 *   booleans and `null` are `bad_value`; arrays belong on `sensors/{d}` (SenML). A payload that
 *   starts like JSON (`{`, `[`, `"`) but does not parse is `not_json`.
 *
 * - `sensors/{d}`: a JSON object whose every key but `ts` is a metric (identifier key, finite
 *   number value; anything else rejects the whole message: never a partial write), or a SenML
 *   pack. Top-level numbers, strings, booleans and null are `bad_value`.
 *
 * - Timestamps (`ts`): epoch milliseconds (rounded to an integer) or an ISO-8601 string with a
 *   calendar date. A string with a time of day must carry its offset (`Z` or `±hh:mm`): a
 *   device's local time is not something the gateway can guess, and reading it as the server's
 *   zone would make the result depend on where the gateway runs. A date alone means 00:00 UTC,
 *   as ECMAScript reads it. Dates that do not exist (2024-02-30) are `bad_timestamp`, not rolled
 *   over. `null` is `bad_timestamp`, not "absent". The accepted window is
 *   [minTimestampMs, receivedAtMs + maxFutureSkewMs]; outside it is `timestamp_out_of_range`.
 *
 * - Units: optional; a string of 1 to 32 characters without control characters.
 *
 * - SenML (RFC 8428), JSON representation:
 *   - Names. The metric is the record's name. When `bn` is present, drop one trailing separator
 *     (`:`, `/` or `.`) from it; if what remains is the topic's deviceId, or ends with a separator
 *     followed by the deviceId (`urn:dev:mac:dev1:`), then `bn` names the device and the metric
 *     is `n` alone. Otherwise the metric is the RFC's full name `bn + n` (so `bn: "room1."`,
 *     `n: "temp"` gives `room1.temp`). The metric must then be an identifier (`bad_identifier`);
 *     a record that resolves to no name is `bad_senml`. The topic names the device; a pack
 *     carries readings of that one device, so a `bn` naming another device fails the identifier
 *     check (its separators are not identifier characters) rather than being rerouted.
 *   - Values. Every record needs a numeric `v` (RFC 8428 §4.2: exactly one value field unless a
 *     sum is present); `bv` is added to it (§4.1). `vs`, `vb`, `vd` (string, boolean and data
 *     values) and `s`/`bs` (sums) are `bad_senml`: we store plain numbers only and never drop
 *     part of a pack silently.
 *   - Times. Seconds: resolved time = `bt + t`; below 2^28 it is relative to the receive time
 *     (§4.5.3, so an absent time means "now"), else absolute epoch seconds; converted to ms and
 *     rounded. `bu` applies to records without `u`. Base fields apply to their own record and all
 *     later ones.
 *   - Labels ending in `_` are must-understand and rejected; other unknown labels (`l`, `ut`,
 *     extensions) are ignored, both as the RFC requires. `bver` above 10 is rejected.
 */
import { isIdentifier } from '../contract/identifiers.ts'
import { SENSOR_ROOT, UNKNOWN_DEVICE_ID } from '../contract/topics.ts'
import type { DeadLetter, Reading, RejectReason } from '../contract/types.ts'

export interface ParseOptions {
  /** Larger payloads are rejected before they are decoded. */
  maxPayloadBytes: number
  /** A ts further ahead of the receive time than this is rejected. */
  maxFutureSkewMs: number
  /** Older timestamps are rejected: the device clock is not set, or it sends seconds. */
  minTimestampMs: number
}

export const DEFAULT_PARSE_OPTIONS: ParseOptions = Object.freeze({
  maxPayloadBytes: 65_536,
  maxFutureSkewMs: 300_000,
  minTimestampMs: Date.UTC(2000, 0, 1),
})

export type ParseResult =
  | { ok: true; deviceId: string; readings: Reading[] }
  | { ok: false; deviceId: string; reason: RejectReason; detail: string }

type Rejection = Extract<ParseResult, { ok: false }>

/** Default bound on the dead letter's payload text (and on its base64 form). */
export const DEAD_LETTER_PAYLOAD_CHARS = 256
/** Bound on the dead letter's topic: MQTT topics may be 64 KiB long. */
export const DEAD_LETTER_TOPIC_CHARS = 256
/** Most characters of untrusted input echoed in a detail string. */
export const ECHO_CHARS = 48
export const MAX_UNIT_CHARS = 32

const TOPIC_PREFIX = `${SENSOR_ROOT}/`
const TOPIC_SHAPE = `expected ${SENSOR_ROOT}/{deviceId} or ${SENSOR_ROOT}/{deviceId}/{metric}`
const IDENTIFIER_RULE = 'must match [A-Za-z0-9_.-]{1,64}'

/** Bare decimal. Linear: the fraction is a group after \d+, so a long digit run cannot backtrack quadratically. */
const BARE_NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/
/** ISO-8601 calendar date, optionally with a time that then needs an offset. */
const ISO_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2}))?$/
const ISO_DATE_TIME_NO_OFFSET = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?$/
const MAX_ISO_CHARS = 40
const CONTROL_CHARS = /\p{Cc}/u
const CONTROL_CHARS_GLOBAL = /\p{Cc}/gu
/** RFC 8428 §4.5.3: SenML times below 2^28 s are relative to now. */
const SENML_RELATIVE_LIMIT_S = 2 ** 28
/** RFC 8428 §4.4: the version this parser understands. */
const SENML_VERSION = 10
/** |ms| bound of a JavaScript Date: toISOString() throws beyond it. */
const MAX_DATE_MS = 8.64e15

const CHAR_OPEN_BRACE = 0x7b
const CHAR_OPEN_BRACKET = 0x5b
const CHAR_QUOTE = 0x22
const CHAR_COLON = 0x3a
const CHAR_SLASH = 0x2f
const CHAR_DOT = 0x2e

// One decoder for every call: decode() without {stream} keeps no state between calls.
const utf8 = new TextDecoder('utf-8', { fatal: true })
// A dead letter shows the payload as it came, byte order mark included.
const utf8Verbatim = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Parses one publish on a sensor topic. Never throws for any topic or payload. */
export function parsePublish(
  topic: string,
  payload: Buffer,
  receivedAtMs: number,
  options: ParseOptions = DEFAULT_PARSE_OPTIONS,
): ParseResult {
  // Topic: sensors/{deviceId}[/{metric}]
  if (!topic.startsWith(TOPIC_PREFIX)) {
    return reject(UNKNOWN_DEVICE_ID, 'bad_topic', `${TOPIC_SHAPE}, got ${quote(topic)}`)
  }
  const slash = topic.indexOf('/', TOPIC_PREFIX.length)
  const deviceLevel =
    slash === -1 ? topic.slice(TOPIC_PREFIX.length) : topic.slice(TOPIC_PREFIX.length, slash)
  const metric = slash === -1 ? undefined : topic.slice(slash + 1)
  const deviceOk = isIdentifier(deviceLevel)
  const deviceId = deviceOk ? deviceLevel : UNKNOWN_DEVICE_ID
  if (deviceLevel === '' || metric === '' || metric?.includes('/')) {
    return reject(deviceId, 'bad_topic', `${TOPIC_SHAPE}, got ${describeTopic(topic)}`)
  }
  if (!deviceOk) return reject(deviceId, 'bad_identifier', badIdentifier('deviceId', deviceLevel))
  if (metric !== undefined && !isIdentifier(metric)) {
    return reject(deviceId, 'bad_identifier', badIdentifier('metric', metric))
  }

  // Payload bytes
  const size = payload.length
  if (size === 0) return reject(deviceId, 'empty_payload', 'payload is empty (0 bytes)')
  if (size > options.maxPayloadBytes) {
    return reject(
      deviceId,
      'payload_too_large',
      `payload is ${size} bytes (limit ${options.maxPayloadBytes})`,
    )
  }
  let text: string
  try {
    text = utf8.decode(payload)
  } catch {
    return reject(deviceId, 'not_utf8', `payload of ${size} bytes is not valid UTF-8`)
  }

  return metric === undefined
    ? parseDevicePayload(deviceId, text, receivedAtMs, options)
    : parseMetricPayload(deviceId, metric, text, receivedAtMs, options)
}

/** `sensors/{d}/{m}`: bare number, or {"value","ts","unit"}. */
function parseMetricPayload(
  deviceId: string,
  metric: string,
  text: string,
  receivedAtMs: number,
  options: ParseOptions,
): ParseResult {
  const trimmed = text.trim()
  if (trimmed === '') return reject(deviceId, 'bad_value', 'payload is blank (whitespace only)')
  const first = trimmed.charCodeAt(0)
  if (first !== CHAR_OPEN_BRACE && first !== CHAR_OPEN_BRACKET && first !== CHAR_QUOTE) {
    if (!BARE_NUMBER.test(trimmed)) {
      return reject(
        deviceId,
        'bad_value',
        `expected a decimal number or a JSON object {"value":...}, got ${quote(trimmed)}`,
      )
    }
    const value = Number(trimmed)
    if (!Number.isFinite(value)) {
      return reject(deviceId, 'bad_value', `number ${quote(trimmed)} is out of range`)
    }
    return accept(deviceId, [reading(deviceId, metric, value, receivedAtMs, undefined)])
  }

  const parsed = parseJson(deviceId, trimmed)
  if (!parsed.ok) return parsed.rejection
  const doc = parsed.value
  if (!isPlainObject(doc)) {
    const hint = Array.isArray(doc) ? `; SenML packs go to ${SENSOR_ROOT}/{deviceId}` : ''
    return reject(
      deviceId,
      'bad_value',
      `expected a number or a JSON object {"value":...}, got ${describe(doc)}${hint}`,
    )
  }

  let hasValue = false
  let value = 0
  let tsRaw: unknown
  let unit: string | undefined
  for (const key of Object.keys(doc)) {
    const field = doc[key]
    if (key === 'value') {
      if (typeof field !== 'number' || !Number.isFinite(field)) {
        return reject(
          deviceId,
          'bad_value',
          `"value" must be a finite number, got ${describe(field)}`,
        )
      }
      hasValue = true
      value = field
    } else if (key === 'ts') {
      tsRaw = field
    } else if (key === 'unit') {
      const problem = unitProblem(field)
      if (problem !== undefined) return reject(deviceId, 'bad_value', `"unit" ${problem}`)
      unit = field as string
    } else {
      return reject(
        deviceId,
        'bad_value',
        `unknown key ${quote(key)}; allowed keys are "value", "ts" and "unit"`,
      )
    }
  }
  if (!hasValue) return reject(deviceId, 'bad_value', 'missing "value"')

  const ts = resolveTimestamp(tsRaw, receivedAtMs, options)
  if (typeof ts !== 'number') return reject(deviceId, ts.reason, ts.detail)
  return accept(deviceId, [reading(deviceId, metric, value, ts, unit)])
}

/** `sensors/{d}`: multi-metric object or SenML pack. */
function parseDevicePayload(
  deviceId: string,
  text: string,
  receivedAtMs: number,
  options: ParseOptions,
): ParseResult {
  const parsed = parseJson(deviceId, text)
  if (!parsed.ok) return parsed.rejection
  const doc = parsed.value
  if (Array.isArray(doc)) return parseSenml(deviceId, doc, receivedAtMs, options)
  if (!isPlainObject(doc)) {
    const hint =
      typeof doc === 'number' ? `; a bare number goes to ${SENSOR_ROOT}/{deviceId}/{metric}` : ''
    return reject(
      deviceId,
      'bad_value',
      `expected a JSON object of metrics or a SenML array, got ${describe(doc)}${hint}`,
    )
  }

  const ts = resolveTimestamp(doc.ts, receivedAtMs, options)
  if (typeof ts !== 'number') return reject(deviceId, ts.reason, ts.detail)

  const readings: Reading[] = []
  for (const key of Object.keys(doc)) {
    if (key === 'ts') continue
    if (!isIdentifier(key)) return reject(deviceId, 'bad_identifier', badIdentifier('metric', key))
    const field = doc[key]
    if (typeof field !== 'number' || !Number.isFinite(field)) {
      return reject(
        deviceId,
        'bad_value',
        `field ${quote(key)} must be a finite number, got ${describe(field)}`,
      )
    }
    readings.push(reading(deviceId, key, field, ts, undefined))
  }
  if (readings.length === 0) {
    return reject(deviceId, 'no_metrics', 'object has no metric fields (only "ts" or nothing)')
  }
  return accept(deviceId, readings)
}

/** RFC 8428 SenML JSON pack; see the policy at the top of the file. */
function parseSenml(
  deviceId: string,
  pack: unknown[],
  receivedAtMs: number,
  options: ParseOptions,
): ParseResult {
  if (pack.length === 0) return reject(deviceId, 'no_metrics', 'SenML pack is empty')

  // Base fields: they apply to the record that carries them and every later record.
  let baseName = ''
  let baseNamesDevice = false
  let baseTimeS = 0
  let baseUnit: string | undefined
  let baseValue = 0

  const readings: Reading[] = []
  for (let i = 0; i < pack.length; i++) {
    const record = pack[i]
    if (!isPlainObject(record)) {
      return senml(deviceId, i, `must be an object, got ${describe(record)}`)
    }
    let name: string | undefined
    let unit: string | undefined
    let value: number | undefined
    let timeS = 0
    for (const label of Object.keys(record)) {
      const field = record[label]
      switch (label) {
        case 'bn':
          if (typeof field !== 'string') return senmlType(deviceId, i, label, 'a string', field)
          baseName = field
          baseNamesDevice = namesDevice(field, deviceId)
          break
        case 'bt':
          if (!isFiniteNumber(field)) return senmlType(deviceId, i, label, 'a number', field)
          baseTimeS = field
          break
        case 'bu': {
          const problem = unitProblem(field)
          if (problem !== undefined) return senml(deviceId, i, `"bu" ${problem}`)
          baseUnit = field as string
          break
        }
        case 'bv':
          if (!isFiniteNumber(field)) return senmlType(deviceId, i, label, 'a number', field)
          baseValue = field
          break
        case 'bver':
          if (!isFiniteNumber(field)) return senmlType(deviceId, i, label, 'a number', field)
          if (field > SENML_VERSION) {
            return senml(
              deviceId,
              i,
              `"bver" ${field} is newer than the supported ${SENML_VERSION}`,
            )
          }
          break
        case 'n':
          if (typeof field !== 'string') return senmlType(deviceId, i, label, 'a string', field)
          name = field
          break
        case 'u': {
          const problem = unitProblem(field)
          if (problem !== undefined) return senml(deviceId, i, `"u" ${problem}`)
          unit = field as string
          break
        }
        case 'v':
          if (!isFiniteNumber(field)) return senmlType(deviceId, i, label, 'a number', field)
          value = field
          break
        case 't':
          if (!isFiniteNumber(field)) return senmlType(deviceId, i, label, 'a number', field)
          timeS = field
          break
        case 'vs':
        case 'vb':
        case 'vd':
          return senml(
            deviceId,
            i,
            `"${label}" is not supported: only numeric values ("v") are stored`,
          )
        case 's':
        case 'bs':
          return senml(
            deviceId,
            i,
            `"${label}" (sum) is not supported: only values ("v") are stored`,
          )
        default:
          // RFC 8428 §4.4: labels ending in '_' must be understood; others must be ignored.
          if (label.endsWith('_')) {
            return senml(deviceId, i, `must-understand label ${quote(label)} is not supported`)
          }
      }
    }

    const metric = baseNamesDevice ? (name ?? '') : baseName + (name ?? '')
    if (metric === '') {
      return senml(deviceId, i, 'has no name: "n" is missing and "bn" only names the device')
    }
    if (!isIdentifier(metric)) {
      return reject(deviceId, 'bad_identifier', `record ${i}: ${badIdentifier('metric', metric)}`)
    }
    if (value === undefined) return senml(deviceId, i, 'has no value: "v" is missing')
    const resolved = baseValue + value
    if (!Number.isFinite(resolved)) return senml(deviceId, i, '"bv" + "v" is out of range')

    const timeSum = baseTimeS + timeS
    const ms =
      timeSum < SENML_RELATIVE_LIMIT_S
        ? receivedAtMs + Math.round(timeSum * 1000)
        : Math.round(timeSum * 1000)
    const range = rangeProblem(ms, receivedAtMs, options, `${timeSum} s`, 'epoch seconds expected')
    if (range !== undefined) {
      return reject(deviceId, 'timestamp_out_of_range', `record ${i}: resolved time ${range}`)
    }
    readings.push(reading(deviceId, metric, resolved, ms, unit ?? baseUnit))
  }
  return accept(deviceId, readings)
}

/** Does this SenML base name designate the topic's device? See the policy at the top. */
function namesDevice(baseName: string, deviceId: string): boolean {
  let end = baseName.length
  if (end > 0 && isSeparator(baseName.charCodeAt(end - 1))) end--
  if (end === deviceId.length) return baseName.startsWith(deviceId)
  const start = end - deviceId.length
  return (
    start > 0 && isSeparator(baseName.charCodeAt(start - 1)) && baseName.startsWith(deviceId, start)
  )
}

function isSeparator(code: number): boolean {
  return code === CHAR_COLON || code === CHAR_SLASH || code === CHAR_DOT
}

/** Resolves a non-SenML `ts` to epoch ms, or a rejection. */
function resolveTimestamp(
  raw: unknown,
  receivedAtMs: number,
  options: ParseOptions,
): number | { reason: RejectReason; detail: string } {
  if (raw === undefined) return receivedAtMs
  let ms: number
  let shown: string
  let hint: string
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw)) return { reason: 'bad_timestamp', detail: 'ts is not finite' }
    ms = Math.round(raw)
    shown = String(raw)
    hint = 'epoch milliseconds expected'
  } else if (typeof raw === 'string') {
    ms = parseIsoTimestamp(raw)
    if (Number.isNaN(ms)) {
      const why = ISO_DATE_TIME_NO_OFFSET.test(raw)
        ? 'ISO-8601 ts needs an offset (Z or ±hh:mm)'
        : 'ts is not a valid ISO-8601 date or date-time'
      return { reason: 'bad_timestamp', detail: `${why}, got ${quote(raw)}` }
    }
    shown = quote(raw)
    hint = 'is the device clock set?'
  } else {
    return {
      reason: 'bad_timestamp',
      detail: `ts must be epoch milliseconds or an ISO-8601 string, got ${describe(raw)}`,
    }
  }
  const range = rangeProblem(ms, receivedAtMs, options, shown, hint)
  return range === undefined ? ms : { reason: 'timestamp_out_of_range', detail: `ts ${range}` }
}

/** Epoch ms of an ISO-8601 string, NaN when it is not one we accept. */
function parseIsoTimestamp(text: string): number {
  if (text.length > MAX_ISO_CHARS) return Number.NaN
  const match = ISO_TIMESTAMP.exec(text)
  if (match === null) return Number.NaN
  // Date.parse rolls 2024-02-30 over to March 1st: check the calendar ourselves.
  const year = Number(match[1])
  const month = Number(match[2])
  const day = Number(match[3])
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return Number.NaN
  return Date.parse(text)
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/** Why ms is outside [minTimestampMs, receivedAtMs + maxFutureSkewMs], or undefined. */
function rangeProblem(
  ms: number,
  receivedAtMs: number,
  options: ParseOptions,
  shown: string,
  hint: string,
): string | undefined {
  if (!(ms >= options.minTimestampMs)) {
    return `${shown} is before ${isoOf(options.minTimestampMs)}; ${hint}`
  }
  const aheadMs = ms - receivedAtMs
  if (aheadMs > options.maxFutureSkewMs) {
    return `${shown} is ${aheadMs} ms ahead of the gateway clock (limit ${options.maxFutureSkewMs})`
  }
  return undefined
}

function isoOf(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= MAX_DATE_MS
    ? new Date(ms).toISOString()
    : String(ms)
}

/** Why a unit is unacceptable, or undefined. */
function unitProblem(unit: unknown): string | undefined {
  if (typeof unit !== 'string') return `must be a string, got ${describe(unit)}`
  if (unit.length === 0 || unit.length > MAX_UNIT_CHARS) {
    return `must be 1 to ${MAX_UNIT_CHARS} characters, got ${unit.length}`
  }
  if (CONTROL_CHARS.test(unit)) return `must not contain control characters, got ${quote(unit)}`
  return undefined
}

function parseJson(
  deviceId: string,
  text: string,
): { ok: true; value: unknown } | { ok: false; rejection: Rejection } {
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch (err) {
    // V8's message quotes a slice of the input: clip it like any other untrusted text.
    const message = err instanceof Error ? clip(err.message) : 'syntax error'
    return { ok: false, rejection: reject(deviceId, 'not_json', `payload is not JSON: ${message}`) }
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

/** Names a JSON value's type for a detail string, without echoing it. */
function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  switch (typeof value) {
    case 'object':
      return 'an object'
    case 'string':
      return 'a string'
    case 'boolean':
      return `boolean ${value}`
    case 'number':
      return Number.isFinite(value) ? `number ${value}` : 'a non-finite number'
    case 'undefined':
      return 'nothing'
    default:
      return typeof value
  }
}

function describeTopic(topic: string): string {
  let levels = 1
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === CHAR_SLASH) levels++
  return `${quote(topic)} (${levels} levels)`
}

function badIdentifier(what: 'deviceId' | 'metric', value: string): string {
  const length = value.length > ECHO_CHARS ? ` (${value.length} chars)` : ''
  return `${what} ${quote(value)}${length} ${IDENTIFIER_RULE}`
}

/** Untrusted text as a JSON string literal, at most ECHO_CHARS characters of it. */
function quote(text: string): string {
  return JSON.stringify(text.length > ECHO_CHARS ? `${truncate(text, ECHO_CHARS)}…` : text)
}

/** Untrusted text clipped to ECHO_CHARS, control characters replaced. */
function clip(text: string): string {
  const short = text.length > ECHO_CHARS ? `${truncate(text, ECHO_CHARS)}…` : text
  return short.replace(CONTROL_CHARS_GLOBAL, '?')
}

/** First maxChars UTF-16 units, never ending in half a surrogate pair. */
function truncate(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text
  const last = text.charCodeAt(maxChars - 1)
  const end = last >= 0xd800 && last <= 0xdbff ? maxChars - 1 : maxChars
  return text.slice(0, end)
}

function senml(deviceId: string, index: number, problem: string): Rejection {
  return reject(deviceId, 'bad_senml', `record ${index} ${problem}`)
}

function senmlType(
  deviceId: string,
  index: number,
  label: string,
  expected: string,
  got: unknown,
): Rejection {
  return senml(deviceId, index, `"${label}" must be ${expected}, got ${describe(got)}`)
}

function reading(
  deviceId: string,
  metric: string,
  value: number,
  ts: number,
  unit: string | undefined,
): Reading {
  return unit === undefined
    ? { deviceId, metric, value, ts }
    : { deviceId, metric, value, ts, unit }
}

function accept(deviceId: string, readings: Reading[]): ParseResult {
  return { ok: true, deviceId, readings }
}

function reject(deviceId: string, reason: RejectReason, detail: string): Rejection {
  return { ok: false, deviceId, reason, detail }
}

/**
 * Builds the `gateway/deadletter/{deviceId}` payload. The payload is the UTF-8 text of its first
 * bytes, at most maxPayloadChars characters; when those bytes are not UTF-8 (or the rejection
 * was `not_utf8`) it is the base64 of as many leading bytes as fit in maxPayloadChars characters.
 * Either way it is a faithful prefix, never marked: compare with the reason and detail. Only a
 * bounded prefix of a large payload is decoded. The topic is bounded too.
 */
export function toDeadLetter(
  topic: string,
  payload: Buffer,
  rejection: { reason: RejectReason; detail: string },
  ts: number,
  maxPayloadChars: number = DEAD_LETTER_PAYLOAD_CHARS,
): DeadLetter {
  const bound = Math.max(0, Math.floor(maxPayloadChars))
  const base = {
    topic: truncate(topic, DEAD_LETTER_TOPIC_CHARS),
    reason: rejection.reason,
    detail: rejection.detail,
  }
  if (rejection.reason !== 'not_utf8') {
    // A UTF-16 unit takes at most 3 UTF-8 bytes, so 3 * bound bytes hold bound characters.
    const end = utf8Boundary(payload, Math.min(payload.length, 3 * bound))
    let text: string | undefined
    try {
      text = utf8Verbatim.decode(payload.subarray(0, end))
    } catch {
      text = undefined
    }
    if (text !== undefined) {
      return { ...base, payload: truncate(text, bound), payloadEncoding: 'utf8', ts }
    }
  }
  const bytes = Math.floor(bound / 4) * 3
  return {
    ...base,
    payload: payload.subarray(0, Math.min(payload.length, bytes)).toString('base64'),
    payloadEncoding: 'base64',
    ts,
  }
}

/** Largest index <= end that does not split a UTF-8 sequence. */
function utf8Boundary(bytes: Buffer, end: number): number {
  if (end >= bytes.length) return bytes.length
  let i = end
  // Continuation bytes are 0b10xxxxxx; a sequence has at most 3 of them.
  while (i > 0 && end - i < 3 && ((bytes[i] as number) & 0xc0) === 0x80) i--
  return i
}
