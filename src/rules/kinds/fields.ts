import { toDurationMs } from '../../util/duration.ts'
import { describeValue } from '../describe-value.ts'
import type { FieldError } from '../rule-handler.ts'

/** Field parsers shared by the kinds: each reports into `errors` and returns null on a problem. */

export type RawRule = Readonly<Record<string, unknown>>

export const DURATION_TEXT = 'a duration like 30s, 5m, 1h or a number of milliseconds'

export function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

export function parseNumber(
  raw: RawRule,
  field: string,
  errors: FieldError[],
  options: { min?: number; exclusiveMin?: boolean; integer?: boolean; max?: number } = {},
): number | null {
  const value = raw[field]
  const { min, exclusiveMin = false, integer = false, max } = options
  const ok =
    isFiniteNumber(value) &&
    (!integer || Number.isInteger(value)) &&
    (min === undefined || (exclusiveMin ? value > min : value >= min)) &&
    (max === undefined || value <= max)
  if (ok) return value
  let expected = integer ? 'an integer' : 'a number'
  if (min !== undefined) expected += ` ${exclusiveMin ? '>' : '>='} ${min}`
  if (max !== undefined) expected += `${min === undefined ? '' : ' and'} <= ${max}`
  errors.push({ field, message: `must be ${expected}, got ${describeValue(value)}` })
  return null
}

/** A duration in ms; `positive` rejects 0. */
export function parseDuration(
  raw: RawRule,
  field: string,
  errors: FieldError[],
  options: { positive?: boolean } = {},
): number | null {
  const ms = toDurationMs(raw[field])
  if (ms === null || (options.positive && ms <= 0)) {
    const what = options.positive ? `${DURATION_TEXT}, above 0` : DURATION_TEXT
    errors.push({ field, message: `must be ${what}, got ${describeValue(raw[field])}` })
    return null
  }
  return ms
}

export function requireField(
  raw: RawRule,
  field: string,
  errors: FieldError[],
  hint = '',
): boolean {
  if (Object.hasOwn(raw, field)) return true
  errors.push({ field, message: `is required${hint}` })
  return false
}

const UNITS: ReadonlyArray<[string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
]

/** 60000 -> `1m`, 90000 -> `90s`, 1500 -> `1500ms`: the largest unit that divides it exactly. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of UNITS) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`
  return `${ms}ms`
}
