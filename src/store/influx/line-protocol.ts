import { type Alert, alertId, type Reading } from '../../contract/types.ts'
import { StoreRejectedError } from '../reading-store.ts'

/**
 * InfluxDB 1.x line protocol, built by hand: one `measurement,tags fields time` line per point
 * (https://docs.influxdata.com/influxdb/v1.6/write_protocols/line_protocol_reference/).
 *
 * Tags are sorted by key (`device` < `metric`, `device` < `rule`), as InfluxDB recommends: it
 * sorts them itself otherwise. Times are epoch milliseconds: write with `precision=ms`.
 */

export const READING_MEASUREMENT = 'reading'
export const ALERT_MEASUREMENT = 'alert'
/** Stored as the kind of an alert that arrived without one (as the SQLite store does). */
export const UNKNOWN_KIND = 'unknown'

/** A character that needs escaping in a tag key, tag value or field key: `,` `=` and space. */
const TAG_SPECIAL = /[,= ]/g
const TAG_SPECIAL_TEST = /[,= ]/
/**
 * Characters a tag value cannot carry. Line protocol has no escape for a newline, and a backslash
 * is taken literally except before `,` `=` or space, so a value with a backslash in front of one
 * of those (or at its end, before the separator we add) would come back different.
 */
const TAG_UNSAFE = /[\\\n\r]/
const FIELD_STRING_SPECIAL = /["\\]/g
const FIELD_STRING_SPECIAL_TEST = /["\\]/

/** Escapes a tag key or value ([ , = space ] get a backslash). */
export function escapeTag(value: string): string {
  return TAG_SPECIAL_TEST.test(value) ? value.replace(TAG_SPECIAL, '\\$&') : value
}

/** Escapes a measurement name (`,` and space). */
export function escapeMeasurement(value: string): string {
  return /[, ]/.test(value) ? value.replace(/[, ]/g, '\\$&') : value
}

/** A string field value, quoted: `"` and `\` get a backslash; newlines are allowed as they are. */
export function quoteFieldString(value: string): string {
  return FIELD_STRING_SPECIAL_TEST.test(value)
    ? `"${value.replace(FIELD_STRING_SPECIAL, '\\$&')}"`
    : `"${value}"`
}

/**
 * A tag value the store can round-trip, escaped. Device ids, metrics and rule ids are validated
 * identifiers, so this only refuses what slipped past validation; the refusal is a
 * StoreRejectedError so the writer dead-letters that point alone.
 */
function tagValue(name: string, value: string): string {
  if (typeof value !== 'string' || value.length === 0 || TAG_UNSAFE.test(value)) {
    throw new StoreRejectedError(
      `tag ${name} ${JSON.stringify(value)} cannot be stored in InfluxDB (empty, or a backslash or line break)`,
    )
  }
  return escapeTag(value)
}

/** A float field value. InfluxDB has no NaN or infinity: such a value is refused for good. */
function floatValue(name: string, value: number): string {
  if (!Number.isFinite(value)) {
    throw new StoreRejectedError(`field ${name} ${value} is not a finite number`)
  }
  // String() gives the shortest text that reads back as the same double (1e+21 included);
  // without an `i` suffix InfluxDB stores it as a float, so every `value` has one type.
  return String(value)
}

function timestamp(ts: number): string {
  if (!Number.isSafeInteger(ts)) {
    throw new StoreRejectedError(`timestamp ${ts} is not an integer number of milliseconds`)
  }
  return String(ts)
}

/**
 * `reading,device=D,metric=M value=V[,unit="U"] TS`, one line per reading. The unit is a field
 * only when present.
 */
export function readingLines(readings: readonly Reading[]): string {
  let body = ''
  for (const r of readings) {
    body += `${READING_MEASUREMENT},device=${tagValue('device', r.deviceId)},metric=${tagValue('metric', r.metric)} value=${floatValue('value', r.value)}`
    if (r.unit !== undefined) body += `,unit=${quoteFieldString(r.unit)}`
    body += ` ${timestamp(r.ts)}\n`
  }
  return body
}

/**
 * `alert,device=D,rule=R id=..,kind=..,severity=..,state=..,metric=..,[value=..,][threshold=..,]
 * since=..,message=..,flapping=.. TS`. A NaN value or threshold (a rule may produce one) is left
 * out and reads back as NaN, as SQLite stores NULL for it. `since` is a float: epoch ms are exact
 * in a double, and a float never conflicts with itself.
 */
export function alertLines(alerts: readonly Alert[]): string {
  let body = ''
  for (const a of alerts) {
    // An alert built without id or kind (an engine or custom kind older than those fields) is
    // stored with what they mean, not refused, as in the SQLite store.
    const id = typeof a.id === 'string' ? a.id : alertId(a.ruleId, a.deviceId)
    const kind = typeof a.kind === 'string' ? a.kind : UNKNOWN_KIND
    body += `${ALERT_MEASUREMENT},device=${tagValue('device', a.deviceId)},rule=${tagValue('rule', a.ruleId)} id=${quoteFieldString(id)},kind=${quoteFieldString(kind)},severity=${quoteFieldString(a.severity)},state=${quoteFieldString(a.state)},metric=${quoteFieldString(a.metric)}`
    if (Number.isFinite(a.value)) body += `,value=${String(a.value)}`
    if (Number.isFinite(a.threshold)) body += `,threshold=${String(a.threshold)}`
    body += `,since=${floatValue('since', a.since)},message=${quoteFieldString(a.message)},flapping=${a.flapping ? 'true' : 'false'} ${timestamp(a.ts)}\n`
  }
  return body
}
