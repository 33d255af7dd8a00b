import type { AlertState, Reading } from '../../contract/types.ts'
import { toDurationMs } from '../../util/duration.ts'
import { describeValue } from '../describe-value.ts'
import type {
  AlertDetail,
  FieldError,
  RuleContext,
  RuleHandler,
  RuleKind,
  Verdict,
} from '../rule-handler.ts'

/**
 * `threshold`: fires when a reading is past a fixed limit.
 *
 * Bounds: `above` and `below` are strict (a value equal to the threshold does not breach);
 * `inside: [lo, hi]` is the closed interval (the bounds breach) and `outside: [lo, hi]` its exact
 * complement (the bounds do not breach).
 *
 * Hysteresis h: a firing alert resolves once the value would not breach the rule with its limits
 * moved by h towards normal. So `above: 30, hysteresis: 1` resolves at 29 and below, holds in
 * (29, 30], and the boundary 29 itself resolves. That way `hysteresis: 0` is exactly "no longer
 * breaching", and the band that holds is exactly h wide.
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
  /** Message template; null for the default message. */
  message: string | null
}

export interface ThresholdState {
  /** Timestamp of the first reading of the current unbroken breaching run; null when not in one. */
  breachSince: number | null
}

const CONDITION_FIELDS = ['above', 'below', 'outside', 'inside'] as const
export const MESSAGE_PLACEHOLDERS = [
  'deviceId',
  'metric',
  'value',
  'threshold',
  'ruleId',
  'state',
] as const
const PLACEHOLDER = /\{([^{}]*)\}/g

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

export function renderMessage(template: string, values: Record<string, string | number>): string {
  return template.replace(PLACEHOLDER, (whole, name: string) => {
    const value = values[name]
    return value === undefined ? whole : String(value)
  })
}

export function createThresholdHandler(
  spec: ThresholdSpec,
  ctx: RuleContext,
): RuleHandler<ThresholdState> {
  const { condition, forMs, hysteresis, message } = spec
  const text = conditionText(condition)

  return {
    ruleId: ctx.ruleId,
    kind: THRESHOLD_KIND,
    severity: ctx.severity,
    match: ctx.match,
    definition: ctx.definition,

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
      if (firing && breaches(condition, value, hysteresis)) return 'hold'
      return 'clear'
    },

    describe(_state, reading: Reading, transition: AlertState): AlertDetail {
      const threshold = thresholdOf(condition, reading.value)
      const rendered =
        message === null
          ? transition === 'firing'
            ? `${reading.deviceId} ${reading.metric} ${reading.value} ${text}`
            : `${reading.deviceId} ${reading.metric} ${reading.value} no longer ${text}`
          : renderMessage(message, {
              deviceId: reading.deviceId,
              metric: reading.metric,
              value: reading.value,
              threshold,
              ruleId: ctx.ruleId,
              state: transition,
            })
      return { value: reading.value, threshold, message: rendered }
    },
  }
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
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

function parseCondition(
  raw: Readonly<Record<string, unknown>>,
  errors: FieldError[],
): ThresholdCondition | null {
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

function parseMessage(value: unknown, errors: FieldError[]): string | null {
  if (typeof value !== 'string' || value.trim() === '') {
    errors.push({
      field: 'message',
      message: `must be a non-empty text, got ${describeValue(value)}`,
    })
    return null
  }
  const known: readonly string[] = MESSAGE_PLACEHOLDERS
  for (const [, name] of value.matchAll(PLACEHOLDER)) {
    if (!known.includes(name as string)) {
      errors.push({
        field: 'message',
        message: `unknown placeholder {${name}}; known: ${MESSAGE_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}`,
      })
    }
  }
  return value
}

export function parseThreshold(
  raw: Readonly<Record<string, unknown>>,
): { ok: true; spec: ThresholdSpec } | { ok: false; errors: FieldError[] } {
  const errors: FieldError[] = []
  const condition = parseCondition(raw, errors)

  let forMs = 0
  if (Object.hasOwn(raw, 'for')) {
    const ms = toDurationMs(raw.for)
    if (ms === null) {
      errors.push({
        field: 'for',
        message: `must be a duration like 30s, 5m, 1h or a number of milliseconds, got ${describeValue(raw.for)}`,
      })
    } else {
      forMs = ms
    }
  }

  let hysteresis = 0
  if (Object.hasOwn(raw, 'hysteresis')) {
    const value = raw.hysteresis
    if (!isFiniteNumber(value) || value < 0) {
      errors.push({
        field: 'hysteresis',
        message: `must be a number >= 0, got ${describeValue(value)}`,
      })
    } else {
      hysteresis = value
      // Resolving needs lo + h <= value <= hi - h: an empty band would keep the alert firing forever.
      if (condition?.op === 'outside' && 2 * value >= condition.hi - condition.lo) {
        errors.push({
          field: 'hysteresis',
          message: `must be less than half the width of outside [${condition.lo}, ${condition.hi}], got ${value}`,
        })
      }
    }
  }

  const message = Object.hasOwn(raw, 'message') ? parseMessage(raw.message, errors) : null

  if (errors.length > 0 || condition === null) return { ok: false, errors }
  return { ok: true, spec: { condition, forMs, hysteresis, message } }
}

export const thresholdKind: RuleKind = {
  fields: [...CONDITION_FIELDS, 'for', 'hysteresis', 'message'],
  parse(raw, ctx) {
    const parsed = parseThreshold(raw)
    if (!parsed.ok) return parsed
    return { ok: true, handler: createThresholdHandler(parsed.spec, ctx) }
  },
}
