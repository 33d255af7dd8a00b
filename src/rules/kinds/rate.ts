import type { AlertState } from '../../contract/types.ts'
import { formatNumber } from '../alert-message.ts'
import { describeValue } from '../describe-value.ts'
import type { FieldError, RuleContext, RuleHandler, RuleKind, Verdict } from '../rule-handler.ts'
import { formatDuration, parseDuration, parseNumber, type RawRule, requireField } from './fields.ts'

/**
 * `rate`: fires when a value changes by at least `delta` within `per`, judged on reading
 * timestamps (devices sample irregularly, and the gateway may receive in bursts).
 *
 * The change is `value(now) - value(now - per)`. The value at `now - per` is interpolated linearly
 * between the two stored readings around that time; when the history is shorter than `per` (a new
 * key, or a gap), the oldest stored reading stands in. That choice fires early on a fast rise
 * right after start-up: a change of `delta` in less than `per` is at least as steep as the rule
 * asks, so reporting it is what an operator wants.
 *
 * Breach when the change in the configured direction is >= delta (`rising`: value went up by
 * delta, `falling`: down by delta, `either`); clear on the first reading where it is below.
 * Alert value = the signed change, threshold = delta.
 *
 * History per key is a ring of (ts, value) pairs, at most RATE_RING_CAPACITY. It is bounded by
 * time too: points older than the last one at or before `now - per` are dropped. A new point is
 * stored only if it is at least per / MIN_POINTS_PER_WINDOW after the newest stored one, so a fast
 * sensor (10 Hz against `per: 1h`) still has the whole window in the ring, at that granularity,
 * instead of its last 64 readings. The ring starts with room for RATE_RING_INITIAL points and
 * doubles when full (a sensor reporting every 20 s against `per: 1m` never needs more than 4), so
 * 100,000 keys cost kilobytes each only where the sampling asks for it.
 */
export const RATE_KIND = 'rate'
export const RATE_RING_CAPACITY = 64
export const RATE_RING_INITIAL = 4
const MIN_POINTS_PER_WINDOW = 32

export const RATE_DIRECTIONS = ['rising', 'falling', 'either'] as const
export type RateDirection = (typeof RATE_DIRECTIONS)[number]

export interface RateSpec {
  delta: number
  perMs: number
  direction: RateDirection
}

export interface RateState {
  /**
   * Interleaved ring: [ts0, value0, ts1, value1, ...]; its length / 2 is the capacity. A plain
   * array of doubles: less than half the memory of a small Float64Array per key.
   */
  ring: number[]
  /** Index in `ring` of the oldest point's ts (even). */
  head: number
  count: number
  /** Change computed on the last evaluated reading (what describe reports). */
  change: number
}

/**
 * The change over `per` ending at (ts, value), updating the ring. Exported for tests. Capacities
 * are powers of two, so positions wrap with a mask instead of a division.
 */
export function observe(state: RateState, ts: number, value: number, perMs: number): number {
  let ring = state.ring
  let mask = ring.length - 1
  const target = ts - perMs
  let reference = value
  if (state.count > 0) {
    // Keep exactly one point at or before the target: it anchors the interpolation.
    while (state.count >= 2 && (ring[(state.head + 2) & mask] as number) <= target) {
      state.head = (state.head + 2) & mask
      state.count--
    }
    const first = state.head
    const t0 = ring[first] as number
    const v0 = ring[first + 1] as number
    if (t0 <= target) {
      const next = state.count >= 2 ? (first + 2) & mask : -1
      const t1 = next < 0 ? ts : (ring[next] as number)
      const v1 = next < 0 ? value : (ring[next + 1] as number)
      reference = t1 > t0 ? v0 + ((v1 - v0) * (target - t0)) / (t1 - t0) : v1
    } else {
      reference = v0
    }
  }

  const newest =
    state.count > 0 ? (ring[(state.head + 2 * (state.count - 1)) & mask] as number) : -Infinity
  if (ts - newest >= perMs / MIN_POINTS_PER_WINDOW && ts > newest) {
    if (state.count * 2 === ring.length) {
      if (state.count < RATE_RING_CAPACITY) {
        ring = grow(state)
        mask = ring.length - 1
      } else {
        // Safety net only: the spacing rule keeps a window within ~34 points.
        state.head = (state.head + 2) & mask
        state.count--
      }
    }
    const at = (state.head + 2 * state.count) & mask
    ring[at] = ts
    ring[at + 1] = value
    state.count++
  }
  return value - reference
}

/** A ring of `length` doubles (0.5 makes the elements kind double from the start). */
export function newRing(length: number): number[] {
  return new Array<number>(length).fill(0.5)
}

/** Doubles the ring, oldest point first; returns the new ring. */
function grow(state: RateState): number[] {
  const old = state.ring
  const mask = old.length - 1
  const bigger = newRing(Math.min(old.length * 2, RATE_RING_CAPACITY * 2))
  for (let i = 0; i < state.count; i++) {
    const from = (state.head + 2 * i) & mask
    bigger[2 * i] = old[from] as number
    bigger[2 * i + 1] = old[from + 1] as number
  }
  state.ring = bigger
  state.head = 0
  return bigger
}

function breaching(direction: RateDirection, change: number, delta: number): boolean {
  if (direction === 'rising') return change >= delta
  if (direction === 'falling') return -change >= delta
  return Math.abs(change) >= delta
}

export function createRateHandler(spec: RateSpec, ctx: RuleContext): RuleHandler<RateState> {
  const { delta, perMs, direction } = spec
  const per = formatDuration(perMs)
  return {
    ...ctx,
    kind: RATE_KIND,

    initialState() {
      return { ring: newRing(RATE_RING_INITIAL * 2), head: 0, count: 0, change: 0 }
    },

    evaluate(state, reading): Verdict {
      state.change = observe(state, reading.ts, reading.value, perMs)
      return breaching(direction, state.change, delta) ? 'breach' : 'clear'
    },

    describe(state, trigger, transition: AlertState) {
      // 12 significant digits: 26.1 - 21 reports 5.1, not 5.100000000000001.
      const change = Number(state.change.toPrecision(12))
      const moved = change >= 0 ? `rose ${formatNumber(change)}` : `fell ${formatNumber(-change)}`
      const head = `${trigger.deviceId} ${trigger.metric} ${moved} in ${per}`
      return {
        value: change,
        threshold: delta,
        message:
          transition === 'firing' ? `${head} (>= ${delta})` : `${head}, under ${delta} again`,
      }
    },
  }
}

export function parseRate(
  raw: RawRule,
): { ok: true; spec: RateSpec } | { ok: false; errors: FieldError[] } {
  const errors: FieldError[] = []
  const delta = requireField(raw, 'delta', errors, ' (the change that fires, e.g. delta: 5)')
    ? parseNumber(raw, 'delta', errors, { min: 0, exclusiveMin: true })
    : null
  const perMs = requireField(raw, 'per', errors, ' (the window, e.g. per: 1m)')
    ? parseDuration(raw, 'per', errors, { positive: true })
    : null
  let direction: RateDirection = 'either'
  if (Object.hasOwn(raw, 'direction')) {
    const value = raw.direction
    if ((RATE_DIRECTIONS as readonly unknown[]).includes(value)) direction = value as RateDirection
    else {
      errors.push({
        field: 'direction',
        message: `must be one of ${RATE_DIRECTIONS.join(', ')}, got ${describeValue(value)}`,
      })
    }
  }
  if (errors.length > 0 || delta === null || perMs === null) return { ok: false, errors }
  return { ok: true, spec: { delta, perMs, direction } }
}

export const rateKind: RuleKind = {
  name: RATE_KIND,
  fields: ['delta', 'per', 'direction'],
  parse(raw, ctx) {
    const parsed = parseRate(raw)
    if (!parsed.ok) return parsed
    return { ok: true, handler: createRateHandler(parsed.spec, ctx) }
  },
}
