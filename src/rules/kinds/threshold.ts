import type { AlertState } from '../../contract/types.ts'
import { formatNumber } from '../alert-message.ts'
import { describeValue } from '../describe-value.ts'
import type {
  AlertDetail,
  FieldError,
  RuleContext,
  RuleHandler,
  RuleKind,
  Trigger,
  Verdict,
} from '../rule-handler.ts'
import { isFiniteNumber, parseDuration, parseNumber, type RawRule } from './fields.ts'

/**
 * `threshold`: fires when a reading is past a fixed limit.
 *
 * Bounds: `above` and `below` are strict (a value equal to the threshold does not breach);
 * `inside: [lo, hi]` is the closed interval (the bounds breach) and `outside: [lo, hi]` its exact
 * complement (the bounds do not breach).
 *
 * Resolving: by default a firing alert resolves on the first value that does not breach. Two ways
 * to demand more, mutually exclusive:
 * - `hysteresis: h` resolves once the value would not breach the rule with its limits moved by h
 *   towards normal. So `above: 30, hysteresis: 1` resolves at 29 and below, holds in (29, 30].
 *   That way `hysteresis: 0` is exactly "no longer breaching", and the band that holds is h wide.
 * - `clear: c` names the resolve limit itself, on the normal side of the threshold: `above: 30,
 *   clear: 27` resolves at 27 and below (like hysteresis 3); `below: 10, clear: 12` at 12 and
 *   above; for ranges `clear` is a range: `outside: [20, 80], clear: [22, 78]` resolves within
 *   [22, 78], `inside: [20, 80], clear: [15, 85]` below 15 or above 85.
 *
 * `for`: the condition must hold on every reading for that long, measured on reading timestamps,
 * before the rule breaches; one non-breaching reading restarts the period. Resolution is immediate.
 */
export const THRESHOLD_KIND = 'threshold'

export type ThresholdCondition =
  | { op: 'above'; threshold: number }
  | { op: 'below'; threshold: number }
  | { op: 'outside'; lo: number; hi: number }
  | { op: 'inside'; lo: number; hi: number }

export interface ThresholdSpec {
  condition: ThresholdCondition
  /** How long (reading time) the condition must hold before firing; 0 fires on the first reading. */
  forMs: number
  hysteresis: number
  /** `clear` as the same kind of condition as `condition`: a firing alert holds while it breaches. */
  clear: ThresholdCondition | null
}

export interface ThresholdState {
  /** Timestamp of the first reading of the current unbroken breaching run; null when not in one. */
  breachSince: number | null
}

const CONDITION_FIELDS = ['above', 'below', 'outside', 'inside'] as const

/**
 * Whether `value` breaches `condition` with its limits moved by `shift` towards normal:
 * shift 0 is the firing test, shift = hysteresis the "still not resolved" test.
 */
export function breaches(condition: ThresholdCondition, value: number, shift: number): boolean {
  switch (condition.op) {
    case 'above':
      return value > condition.threshold - shift
    case 'below':
      return value < condition.threshold + shift
    case 'outside':
      return value < condition.lo + shift || value > condition.hi - shift
    case 'inside':
      return value >= condition.lo - shift && value <= condition.hi + shift
  }
}

/** The condition a firing alert must stop meeting to resolve. */
export function releaseCondition(spec: ThresholdSpec): ThresholdCondition {
  if (spec.clear !== null) return spec.clear
  const { condition: c, hysteresis: h } = spec
  switch (c.op) {
    case 'above':
      return { op: 'above', threshold: c.threshold - h }
    case 'below':
      return { op: 'below', threshold: c.threshold + h }
    case 'outside':
      return { op: 'outside', lo: c.lo + h, hi: c.hi - h }
    case 'inside':
      return { op: 'inside', lo: c.lo - h, hi: c.hi + h }
  }
}

/** The number an alert reports: the threshold, or for a range the bound nearest the value. */
export function thresholdOf(condition: ThresholdCondition, value: number): number {
  if (condition.op === 'above' || condition.op === 'below') return condition.threshold
  return Math.abs(value - condition.lo) <= Math.abs(value - condition.hi)
    ? condition.lo
    : condition.hi
}

function conditionText(condition: ThresholdCondition): string {
  switch (condition.op) {
    case 'above':
      return `> ${condition.threshold}`
    case 'below':
      return `< ${condition.threshold}`
    case 'outside':
    case 'inside':
      return `${condition.op} [${condition.lo}, ${condition.hi}]`
  }
}

export function createThresholdHandler(
  spec: ThresholdSpec,
  ctx: RuleContext,
): RuleHandler<ThresholdState> {
  const { condition, forMs } = spec
  const release = releaseCondition(spec)
  const text = conditionText(condition)

  return {
    ...ctx,
    kind: THRESHOLD_KIND,

    initialState() {
      return { breachSince: null }
    },

    evaluate(state, reading, firing): Verdict {
      const value = reading.value
      if (breaches(condition, value, 0)) {
        if (firing) return 'breach'
        if (state.breachSince === null) state.breachSince = reading.ts
        return reading.ts - state.breachSince >= forMs ? 'breach' : 'hold'
      }
      // Any non-breaching reading ends the run: a later breach starts `for` from scratch.
      state.breachSince = null
      if (firing && breaches(release, value, 0)) return 'hold'
      return 'clear'
    },

    describe(_state, trigger: Trigger, transition: AlertState): AlertDetail {
      const value = trigger.value
      const shown = `${trigger.deviceId} ${trigger.metric} ${formatNumber(value)}`
      return {
        value,
        threshold: thresholdOf(condition, value),
        message: transition === 'firing' ? `${shown} ${text}` : `${shown} no longer ${text}`,
      }
    },
  }
}

function parseRange(field: string, value: unknown, errors: FieldError[]): [number, number] | null {
  if (!Array.isArray(value) || value.length !== 2) {
    errors.push({
      field,
      message: `must be a list [lo, hi] of two numbers, got ${describeValue(value)}`,
    })
    return null
  }
  const [lo, hi] = value as [unknown, unknown]
  let ok = true
  for (const [i, bound] of [lo, hi].entries()) {
    if (!isFiniteNumber(bound)) {
      errors.push({
        field: `${field}[${i}]`,
        message: `must be a number, got ${describeValue(bound)}`,
      })
      ok = false
    }
  }
  if (!ok) return null
  if ((lo as number) >= (hi as number)) {
    errors.push({ field, message: `lo must be less than hi, got [${lo}, ${hi}]` })
    return null
  }
  return [lo as number, hi as number]
}

function parseCondition(raw: RawRule, errors: FieldError[]): ThresholdCondition | null {
  const given = CONDITION_FIELDS.filter((field) => Object.hasOwn(raw, field))
  if (given.length === 0) {
    errors.push({
      field: CONDITION_FIELDS.join('|'),
      message: `one of ${CONDITION_FIELDS.join(', ')} is required`,
    })
    return null
  }
  if (given.length > 1) {
    errors.push({
      field: CONDITION_FIELDS.join('|'),
      message: `exactly one of ${CONDITION_FIELDS.join(', ')} is allowed, got ${given.join(' and ')}`,
    })
  }
  let condition: ThresholdCondition | null = null
  for (const op of given) {
    const value = raw[op]
    if (op === 'above' || op === 'below') {
      if (isFiniteNumber(value)) condition ??= { op, threshold: value }
      else errors.push({ field: op, message: `must be a number, got ${describeValue(value)}` })
    } else {
      const range = parseRange(op, value, errors)
      if (range) condition ??= { op, lo: range[0], hi: range[1] }
    }
  }
  return given.length === 1 ? condition : null
}

/**
 * `clear` must lie on the normal side of the threshold, or the alert could resolve while the
 * value still breaches (or never resolve).
 */
function parseClear(
  value: unknown,
  condition: ThresholdCondition,
  errors: FieldError[],
): ThresholdCondition | null {
  if (condition.op === 'above' || condition.op === 'below') {
    if (!isFiniteNumber(value)) {
      errors.push({ field: 'clear', message: `must be a number, got ${describeValue(value)}` })
      return null
    }
    const t = condition.threshold
    if (condition.op === 'above' ? value > t : value < t) {
      const side = condition.op === 'above' ? 'at or below' : 'at or above'
      errors.push({
        field: 'clear',
        message: `must be ${side} the threshold (${condition.op}: ${t}), on its normal side, got ${value}`,
      })
      return null
    }
    // The resolve test is "no longer breaches `clear`": above 30, clear 27 resolves at <= 27.
    return { op: condition.op, threshold: value }
  }
  const range = parseRange('clear', value, errors)
  if (range === null) return null
  const [lo, hi] = range
  const ok =
    condition.op === 'outside'
      ? lo >= condition.lo && hi <= condition.hi
      : lo <= condition.lo && hi >= condition.hi
  if (!ok) {
    errors.push({
      field: 'clear',
      message:
        condition.op === 'outside'
          ? `must lie within outside [${condition.lo}, ${condition.hi}] (its normal side), got [${lo}, ${hi}]`
          : `must contain inside [${condition.lo}, ${condition.hi}] (resolving happens outside it), got [${lo}, ${hi}]`,
    })
    return null
  }
  return { op: condition.op, lo, hi }
}

export function parseThreshold(
  raw: RawRule,
): { ok: true; spec: ThresholdSpec } | { ok: false; errors: FieldError[] } {
  const errors: FieldError[] = []
  const condition = parseCondition(raw, errors)

  const forMs = Object.hasOwn(raw, 'for') ? parseDuration(raw, 'for', errors) : 0

  let hysteresis: number | null = 0
  if (Object.hasOwn(raw, 'hysteresis')) {
    hysteresis = parseNumber(raw, 'hysteresis', errors, { min: 0 })
    // Resolving needs lo + h <= value <= hi - h: an empty band would keep the alert firing forever.
    if (
      hysteresis !== null &&
      condition?.op === 'outside' &&
      2 * hysteresis >= condition.hi - condition.lo
    ) {
      errors.push({
        field: 'hysteresis',
        message: `must be less than half the width of outside [${condition.lo}, ${condition.hi}], got ${hysteresis}`,
      })
    }
  }

  let clear: ThresholdCondition | null = null
  if (Object.hasOwn(raw, 'clear')) {
    if (Object.hasOwn(raw, 'hysteresis')) {
      errors.push({
        field: 'clear',
        message: 'cannot be combined with hysteresis: both set where the alert resolves; keep one',
      })
    } else if (condition !== null) {
      clear = parseClear(raw.clear, condition, errors)
    }
  }

  if (errors.length > 0 || condition === null || forMs === null || hysteresis === null) {
    return { ok: false, errors }
  }
  return { ok: true, spec: { condition, forMs, hysteresis, clear } }
}

export const thresholdKind: RuleKind = {
  name: THRESHOLD_KIND,
  fields: [...CONDITION_FIELDS, 'for', 'hysteresis', 'clear'],
  parse(raw, ctx) {
    const parsed = parseThreshold(raw)
    if (!parsed.ok) return parsed
    return { ok: true, handler: createThresholdHandler(parsed.spec, ctx) }
  },
}
