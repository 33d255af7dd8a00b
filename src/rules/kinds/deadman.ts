import type { AlertState } from '../../contract/types.ts'
import type { FieldError, RuleContext, RuleHandler, RuleKind, Verdict } from '../rule-handler.ts'
import { formatDuration, parseDuration, type RawRule, requireField } from './fields.ts'

/**
 * `deadman`: fires when a matched device+metric sends nothing for `after`, measured on the
 * gateway's clock from the moment the engine last saw a reading for that key (device clocks say
 * nothing about silence). It fires once per silence; the next reading resolves it.
 *
 * The kind only judges; the engine arms, re-arms and expires deadlines (one timer wheel for all
 * keys) because it owns time. A key is armed by its first reading, or at start-up by the engine's
 * `restore`/`watch` for devices known from the store.
 *
 * Alert value and threshold are seconds: the silence so far (firing) or the whole silence the
 * reading ended (resolved), against `after`.
 */
export const DEADMAN_KIND = 'deadman'

export interface DeadmanSpec {
  afterMs: number
}

function seconds(ms: number): number {
  return Math.round(ms / 100) / 10
}

export function createDeadmanHandler(spec: DeadmanSpec, ctx: RuleContext): RuleHandler<null> {
  const { afterMs } = spec
  const after = formatDuration(afterMs)
  return {
    ...ctx,
    kind: DEADMAN_KIND,
    silenceMs: afterMs,

    initialState() {
      return null
    },

    // Any reading is a sign of life.
    evaluate(): Verdict {
      return 'clear'
    },

    expire(): Verdict {
      return 'breach'
    },

    describe(_state, trigger, transition: AlertState) {
      // Unknown for a key restored as firing: the engine never saw its last reading.
      const silent = Number.isFinite(trigger.silentMs) ? seconds(trigger.silentMs) : null
      const threshold = seconds(afterMs)
      const key = `${trigger.deviceId} ${trigger.metric}`
      return {
        value: silent ?? threshold,
        threshold,
        message:
          transition === 'firing'
            ? `${key}: no reading for ${silent ?? threshold} s (after ${after})`
            : silent === null
              ? `${key}: reporting again`
              : `${key}: reporting again after ${silent} s of silence`,
      }
    },
  }
}

export function parseDeadman(
  raw: RawRule,
): { ok: true; spec: DeadmanSpec } | { ok: false; errors: FieldError[] } {
  const errors: FieldError[] = []
  const afterMs = requireField(raw, 'after', errors, ' (how long a silence fires, e.g. after: 2m)')
    ? parseDuration(raw, 'after', errors, { positive: true })
    : null
  if (afterMs === null) return { ok: false, errors }
  return { ok: true, spec: { afterMs } }
}

export const deadmanKind: RuleKind = {
  name: DEADMAN_KIND,
  fields: ['after'],
  parse(raw, ctx) {
    const parsed = parseDeadman(raw)
    if (!parsed.ok) return parsed
    return { ok: true, handler: createDeadmanHandler(parsed.spec, ctx) }
  },
}
