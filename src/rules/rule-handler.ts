import type { AlertState, Reading, Severity } from '../contract/types.ts'

/**
 * What a handler concludes from one reading (or one passed deadline) for one key. A plain string,
 * so the per-reading path allocates nothing; the engine asks for details (`describe`) only on a
 * transition.
 * - `breach`: the alert condition holds now;
 * - `clear`: the condition is over;
 * - `hold`: no change (inside a hysteresis band, a `for` period still running, not enough data).
 */
export type Verdict = 'breach' | 'clear' | 'hold'

/** What an alert transition reports; the engine adds key, severity, state, times and flapping. */
export interface AlertDetail {
  /** The value the alert is about: the reading's value for thresholds, the change for a rate rule. */
  value: number
  threshold: number
  /** The kind's own message; a rule's `message` template replaces it. */
  message: string
}

/**
 * Which readings a rule looks at. Device patterns are ids or globs (`*`, `?`); the metric is an id
 * or a glob; `tags` (from the device registry) must all be present on the device.
 */
export interface RuleMatch {
  devices: readonly string[]
  metric: string
  tags?: Readonly<Record<string, string>>
}

/** `flapping: { transitions, window }` of a rule. */
export interface FlappingPolicy {
  /** More than this many transitions within `windowMs` make the alert flapping. */
  transitions: number
  windowMs: number
}

/** Common rule fields the engine applies, whatever the kind. */
export interface AlertLifecycle {
  /** After a resolve, no re-fire for this long (reading time). 0: none. */
  cooldownMs: number
  flapping: FlappingPolicy | null
  /** Message template (placeholders in `alert-message.ts`); null keeps the kind's message. */
  message: string | null
}

export const NO_LIFECYCLE: AlertLifecycle = Object.freeze({
  cooldownMs: 0,
  flapping: null,
  message: null,
})

/**
 * What a transition is about, as `describe` sees it: the reading that caused it, or for a
 * time-driven kind the deadline that passed without one. Built only on transitions.
 */
export interface Trigger {
  deviceId: string
  metric: string
  /** The reading's value; for a deadline, the last value seen (NaN if none). */
  value: number
  /** The reading's timestamp; for a deadline, the deadline itself (engine clock). */
  ts: number
  /**
   * Engine-clock ms between the previous reading of this key and this trigger: the length of the
   * silence a deadline reports or a reading ends. NaN when the key had no reading before.
   */
  silentMs: number
  cause: 'reading' | 'deadline'
}

/**
 * One rule instance built from the rules file. Built-in kinds and custom modules implement this
 * same interface; the engine knows nothing of their kind. State is per (rule, device, metric) and
 * owned by the engine: it creates it with `initialState()`, keeps it in its key table and hands it
 * back on every reading. The handler may update it in place (no allocation per reading) and keeps
 * nothing else between calls, so dropping a key's state forgets the key completely.
 *
 * The engine owns everything else: matching, out-of-order readings, the alert lifecycle (firing,
 * resolved, `since`, cooldown, flapping, message templates) and time. A handler only judges.
 *
 * A kind builds one with `{ ...ctx, kind: 'name', initialState, evaluate, describe }`: the
 * context carries the common fields (`ruleId`, `severity`, `match`, `definition`, `lifecycle`).
 */
export interface RuleHandler<State = unknown> {
  readonly ruleId: string
  /** The kind's name: Alert.kind. */
  readonly kind: string
  readonly severity: Severity
  readonly match: RuleMatch
  /** The rule as written, for GET /api/rules and for telling a changed rule on reload. */
  readonly definition: Readonly<Record<string, unknown>>
  /** Absent: no cooldown, no flapping detection, the kind's own messages. */
  readonly lifecycle?: AlertLifecycle
  /**
   * Time-driven kinds (deadman): when set with `expire`, the engine calls `expire` once for a key
   * that had no reading for this many ms of engine clock, and re-arms it on the next reading.
   */
  readonly silenceMs?: number
  /** Fresh state for a key seen for the first time (or after its rule changed). */
  initialState(): State
  /**
   * Judges one reading, in reading-time order per key (the engine drops late readings first).
   * `firing` is whether this key's condition is in breach as far as the engine knows: true after a
   * `breach` until a `clear`, and for a key restored as firing. Must not throw on any finite value.
   */
  evaluate(state: State, reading: Reading, firing: boolean): Verdict
  /** Time-driven kinds: the key has been silent for `silentMs` (>= `silenceMs`). */
  expire?(state: State, silentMs: number, firing: boolean): Verdict
  /** Called only when the engine publishes a transition, with what caused it. */
  describe(state: State, trigger: Trigger, transition: AlertState): AlertDetail
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
  lifecycle: AlertLifecycle
}

export type KindParseResult =
  | { ok: true; handler: RuleHandler }
  | { ok: false; errors: FieldError[] }

/**
 * A rule kind as the loader sees it: its name, the fields it owns and a parser. Built-ins are
 * registered in `rule-kinds.ts`; a custom handler module's default export is one of these.
 */
export interface RuleKind {
  /** Alert.kind of its rules; an identifier, not one of the built-in names. */
  readonly name: string
  /**
   * Fields this kind reads beside the common ones (`id`, `kind`, `match`, `severity`, `message`,
   * `cooldown`, `flapping`). The loader rejects any other field, so a typo cannot silently
   * disable a rule.
   */
  readonly fields: readonly string[]
  /** Validates the kind's fields of `raw` and reports every problem, never throws. */
  parse(raw: Readonly<Record<string, unknown>>, ctx: RuleContext): KindParseResult
}
