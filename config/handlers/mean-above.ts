import type { FieldError, RuleHandler, RuleKind, Verdict } from '../../src/rules/rule-handler.ts'

/**
 * Custom rule kind `mean-above`, referenced from config/rules.yaml as
 *
 *   kind: custom
 *   handler: ./config/handlers/mean-above.ts
 *   window: 5      # the last N readings (1-1000)
 *   limit: 28      # fires while their mean is above this (strict)
 *
 * It is written against the same RuleKind interface as the built-in kinds: the default export is
 * the kind, its parse() validates its own fields and returns a handler. Until `window` readings
 * have arrived the mean is not judged ('hold'). Alert value = the mean, threshold = limit.
 *
 * State is a fixed ring per key with a running sum, so a reading is O(1); the sum is recomputed
 * from the ring once per lap so float rounding cannot accumulate.
 */
interface MeanState {
  /** A plain array of doubles: far lighter than a small Float64Array per key. */
  values: number[]
  next: number
  count: number
  sum: number
  mean: number
}

const MAX_WINDOW = 1000

function mean(state: MeanState): number {
  return state.sum / state.count
}

const meanAbove: RuleKind = {
  name: 'mean-above',
  fields: ['window', 'limit'],
  parse(raw, ctx) {
    const errors: FieldError[] = []
    const { window, limit } = raw
    if (
      typeof window !== 'number' ||
      !Number.isInteger(window) ||
      window < 1 ||
      window > MAX_WINDOW
    ) {
      errors.push({
        field: 'window',
        message: `must be an integer from 1 to ${MAX_WINDOW}, got ${JSON.stringify(window) ?? 'nothing'}`,
      })
    }
    if (typeof limit !== 'number' || !Number.isFinite(limit)) {
      errors.push({
        field: 'limit',
        message: `must be a number, got ${JSON.stringify(limit) ?? 'nothing'}`,
      })
    }
    if (errors.length > 0) return { ok: false, errors }
    const size = window as number
    const threshold = limit as number

    const handler: RuleHandler<MeanState> = {
      ...ctx,
      kind: 'mean-above',
      initialState: () => ({
        values: new Array<number>(size).fill(0.5),
        next: 0,
        count: 0,
        sum: 0,
        mean: 0,
      }),
      evaluate(state, reading): Verdict {
        const old = state.values[state.next] as number
        state.values[state.next] = reading.value
        state.next = (state.next + 1) % size
        if (state.count < size) {
          state.count++
          state.sum += reading.value
        } else if (state.next === 0) {
          state.sum = state.values.reduce((a, b) => a + b, 0)
        } else {
          state.sum += reading.value - old
        }
        if (state.count < size) return 'hold'
        state.mean = mean(state)
        return state.mean > threshold ? 'breach' : 'clear'
      },
      describe(state, trigger, transition) {
        const shown = Number(state.mean.toPrecision(12))
        const head = `${trigger.deviceId} ${trigger.metric} mean of last ${size} = ${shown}`
        return {
          value: shown,
          threshold,
          message:
            transition === 'firing' ? `${head} > ${threshold}` : `${head}, back to <= ${threshold}`,
        }
      },
    }
    return { ok: true, handler: handler as RuleHandler }
  },
}

export default meanAbove
