import type { AlertState, Reading, Severity } from '../contract/types.ts'

/**
 * What a handler concludes from one reading for one (rule, device) key. A plain string, so the
 * per-reading path allocates nothing; the engine asks for details (`describe`) only on a transition.
 * - `breach`: the alert condition holds now (the engine fires if not already firing);
 * - `clear`: the condition is over (the engine resolves if firing);
 * - `hold`: no change (inside a hysteresis band, or a `for` period still running).
 */
export type Verdict = 'breach' | 'clear' | 'hold'

/** What an alert transition reports; the engine adds key, severity, state and times. */
export interface AlertDetail {
  /** The value the alert is about: the reading's value for thresholds, a delta for a rate rule. */
  value: number
  threshold: number
  message: string
}

/** Which readings a rule looks at. Device patterns are ids or globs (`*`, `?`); metric is an id. */
export interface RuleMatch {
  devices: readonly string[]
  metric: string
}

/**
 * One rule instance built from the rules file. Built-in kinds and custom modules implement the
 * same interface; the engine knows nothing of their kind. State is per (rule, device) key and
 * owned by the engine: it creates it with `initialState()`, keeps it in its key table and hands
 * it back on every reading. The handler may update it in place (no allocation per reading) and
 * keeps nothing else between calls, so dropping a key's state forgets the key completely.
 *
 * The engine owns the alert lifecycle (firing/resolved transitions, `since`, out-of-order
 * readings); a handler only judges. Seams for later kinds: `deadman` will add an optional
 * time-driven method beside `evaluate`, `cooldown` and flapping belong to the engine's transition
 * step, not here.
 */
export interface RuleHandler<State = unknown> {
  readonly ruleId: string
  readonly kind: string
  readonly severity: Severity
  readonly match: RuleMatch
  /** The rule as written, for GET /api/rules and for telling a changed rule on reload. */
  readonly definition: Readonly<Record<string, unknown>>
  /** Fresh state for a key seen for the first time. */
  initialState(): State
  /**
   * Judges one reading, in reading-time order per key (the engine drops late readings first).
   * `firing` is whether the key's alert is firing now. Must not throw on any finite value.
   */
  evaluate(state: State, reading: Reading, firing: boolean): Verdict
  /** Called only when the engine makes a transition, with the reading that caused it. */
  describe(state: State, reading: Reading, transition: AlertState): AlertDetail
}

/** One problem in a rule, by field; the loader adds file and rule to make the message. */
export interface FieldError {
  /** Dotted path inside the rule, e.g. `above`, `match.device`, `outside[1]`. */
  field: string
  message: string
}

/** What a kind's parser gets beside its raw fields: the common fields, already validated. */
export interface RuleContext {
  ruleId: string
  severity: Severity
  match: RuleMatch
  /** The whole rule as written (common and kind fields). */
  definition: Readonly<Record<string, unknown>>
}

export type KindParseResult =
  | { ok: true; handler: RuleHandler }
  | { ok: false; errors: FieldError[] }

/**
 * A rule kind as the loader sees it: the fields it owns and a parser. Built-ins are registered in
 * `rule-kinds.ts`; a custom module will export one of these.
 */
export interface RuleKind {
  /**
   * Fields this kind reads beside the common ones (`id`, `kind`, `match`, `severity`). The loader
   * rejects any other field, so a typo cannot silently disable a rule.
   */
  readonly fields: readonly string[]
  /** Validates the kind's fields of `raw` and reports every problem, never throws. */
  parse(raw: Readonly<Record<string, unknown>>, ctx: RuleContext): KindParseResult
}
