/**
 * Quoting for InfluxQL text (https://docs.influxdata.com/influxdb/v1.6/query_language/spec/).
 * Every identifier is double-quoted and every value single-quoted, so no device id, metric or
 * database name can change a statement's meaning, and names that are keywords (`count`, `last`)
 * stay names.
 */

/** InfluxQL's quoted strings and identifiers unescape `\\`, `\"`, `\'` and `\n`. */
function escapeQuoted(value: string): string {
  return value.replace(/[\\'"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))
}

/** A quoted identifier: `"name"`. */
export function ident(name: string): string {
  return `"${escapeQuoted(name)}"`
}

/** A string literal: `'value'`. */
export function str(value: string): string {
  return `'${escapeQuoted(value)}'`
}

/**
 * InfluxDB stores int64 nanoseconds since the epoch: times outside these bounds (in ms) cannot
 * exist in it, and a literal outside them is an error. Query bounds are clamped into them.
 */
export const MIN_TIME_MS = -9_223_372_036_854
export const MAX_TIME_MS = 9_223_372_036_854

export function clampTimeMs(ms: number): number {
  return Math.min(MAX_TIME_MS, Math.max(MIN_TIME_MS, Math.trunc(ms)))
}

/** A time literal in epoch ms: `1767225600000ms`. */
export function msLiteral(ms: number): string {
  return `${Math.trunc(ms)}ms`
}

/** `time >= from AND time < to`, the store's half-open range, clamped to InfluxDB's time range. */
export function timeRange(fromMs: number, toMs: number): string {
  return `time >= ${msLiteral(clampTimeMs(fromMs))} AND time < ${msLiteral(clampTimeMs(toMs))}`
}

/**
 * A Go duration as SHOW RETENTION POLICIES prints it (`720h0m0s`, `1h30m0s`, `0s`) in ms.
 * Returns null for anything else.
 */
export function parseGoDurationMs(text: string): number | null {
  if (text === '0s' || text === '0') return 0
  const unitMs: Record<string, number> = {
    h: 3_600_000,
    m: 60_000,
    s: 1_000,
    ms: 1,
    us: 0.001,
    µs: 0.001,
    ns: 0.000_001,
  }
  let total = 0
  let rest = text
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/.exec(rest)
    if (!m) return null
    total += Number(m[1]) * (unitMs[m[2] as string] as number)
    rest = rest.slice(m[0].length)
  }
  return Math.round(total)
}
