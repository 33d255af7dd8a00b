import type { Reading, Severity } from '../contract/types.ts'

/**
 * What a handler concludes from one reading for one (rule, device) key.
 * - `breach`: the alert condition holds now (the engine fires if not already firing);
 * - `clear`: the condition is over (the engine resolves if firing);
 * - `hold`: no change (inside a hysteresis band, or a `for` period still running).
 */
export type Verdict =
  | { kind: 'hold' }
  | { kind: 'breach'; value: number; threshold: number; message: string }
  | { kind: 'clear'; value: number; threshold: number; message: string }

/** Which readings a rule looks at. Device patterns are ids or globs (`*`, `?`). */
export interface RuleMatch {
  devices: readonly string[]
  metric: string
}

/**
 * One rule instance built from the rules file. Built-in kinds and custom modules implement the
 * same interface; the engine knows nothing of their kind. State is per (rule, device) key and
 * owned by the engine, so a handler is a pure function over (state, reading).
 */
export interface RuleHandler<State = unknown> {
  readonly ruleId: string
  readonly kind: string
  readonly severity: Severity
  readonly match: RuleMatch
  /** The rule as written, for GET /api/rules. */
  readonly definition: Readonly<Record<string, unknown>>
  /** Fresh state for a key seen for the first time. */
  initialState(): State
  /** Decides from one reading; `firing` is whether the key's alert is firing now. */
  evaluate(state: State, reading: Reading, firing: boolean): Verdict
}
