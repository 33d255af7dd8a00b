import { createEventBus } from '../bus/event-bus.ts'
import { isIdentifier } from '../contract/identifiers.ts'
import type { Alert, Reading } from '../contract/types.ts'
import { createSilentLogger } from '../telemetry/logger.ts'
import { describeValue } from './describe-value.ts'
import type { DeviceRegistry } from './device-registry.ts'
import { handlerPathsOf, loadHandlerModules, validateRules } from './load-rules.ts'
import { createRuleEngine } from './rule-engine.ts'
import { BUILT_IN_RULE_KINDS, type RuleKindRegistry } from './rule-kinds.ts'

/**
 * Dry run: what would this rule have done on these readings? For trying a rule (e.g. from an
 * HTTP request) before putting it in the rules file.
 *
 * The rule is validated exactly as the loader does (messages name `request body`); readings are
 * validated, sorted by timestamp (stable) and fed to a fresh engine on a private bus whose clock is
 * reading time: before each reading the engine advances to its timestamp, so a deadman rule fires
 * where a gap in the readings exceeds `after`. Time stops at the last reading: a silence after it
 * is not reported (add a later reading to see one).
 */
export const DRY_RUN_SOURCE = 'request body'
export const MAX_DRY_RUN_READINGS = 10_000
/** Beyond this many bad readings, one summary line stands for the rest. */
const MAX_READING_ERRORS = 20
const READING_FIELDS = ['deviceId', 'metric', 'value', 'ts', 'unit'] as const
const ISO_TIMESTAMP =
  /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2}))?$/

export interface DryRunOptions {
  registry?: DeviceRegistry
  kinds?: RuleKindRegistry
  /**
   * Custom handler modules a dry run may import: only from this folder (default
   * `config/handlers`, relative to the working directory). A request must not make the gateway
   * import an arbitrary file.
   */
  handlersDir?: string
}

export type DryRunResult = { ok: true; transitions: Alert[] } | { ok: false; errors: string[] }

function isMapping(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function toEpochMs(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) ? Math.round(value) : null
  if (typeof value !== 'string' || !ISO_TIMESTAMP.test(value)) return null
  const ms = Date.parse(value)
  return Number.isFinite(ms) ? ms : null
}

function parseReadings(raw: unknown, errors: string[]): Reading[] | null {
  const at = `${DRY_RUN_SOURCE}: readings`
  if (!Array.isArray(raw)) {
    errors.push(`${at}: must be a list of readings, got ${describeValue(raw)}`)
    return null
  }
  if (raw.length > MAX_DRY_RUN_READINGS) {
    errors.push(`${at}: at most ${MAX_DRY_RUN_READINGS} readings, got ${raw.length}`)
    return null
  }
  const readings: Reading[] = []
  let bad = 0
  const report = (message: string) => {
    bad++
    if (bad <= MAX_READING_ERRORS) errors.push(message)
  }
  for (const [i, item] of raw.entries()) {
    const here = `${at}[${i}]`
    if (!isMapping(item)) {
      report(
        `${here}: must be a mapping { deviceId, metric, value, ts }, got ${describeValue(item)}`,
      )
      continue
    }
    const before = bad
    for (const key of Object.keys(item)) {
      if (!(READING_FIELDS as readonly string[]).includes(key)) {
        report(`${here}.${key}: unknown field; known: ${READING_FIELDS.join(', ')}`)
      }
    }
    for (const field of ['deviceId', 'metric'] as const) {
      if (!isIdentifier(item[field])) {
        report(`${here}.${field}: must be an identifier, got ${describeValue(item[field])}`)
      }
    }
    const value = item.value
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      report(`${here}.value: must be a finite number, got ${describeValue(value)}`)
    }
    const ts = toEpochMs(item.ts)
    if (ts === null) {
      report(
        `${here}.ts: must be epoch milliseconds or an ISO-8601 time with an offset, got ${describeValue(item.ts)}`,
      )
    }
    if (bad === before) {
      readings.push({
        deviceId: item.deviceId as string,
        metric: item.metric as string,
        value: value as number,
        ts: ts as number,
      })
    }
  }
  if (bad > MAX_READING_ERRORS) {
    errors.push(`${at}: ${bad - MAX_READING_ERRORS} more problems not shown`)
  }
  return bad === 0 ? readings : null
}

/** Runs one rule over readings in a private engine; see the module comment. Never throws. */
export async function dryRunRule(
  rawRule: unknown,
  rawReadings: unknown,
  options: DryRunOptions = {},
): Promise<DryRunResult> {
  const kinds = options.kinds ?? BUILT_IN_RULE_KINDS
  // The loader freezes rule objects in place; the caller's object stays its own.
  const data = { rules: [isMapping(rawRule) ? structuredClone(rawRule) : rawRule] }
  const handlers = await loadHandlerModules(handlerPathsOf(data), {
    kinds,
    allowedDir: options.handlersDir ?? 'config/handlers',
  })
  const errors: string[] = []
  const parsed = validateRules(data, DRY_RUN_SOURCE, kinds, handlers)
  if (!parsed.ok) errors.push(...parsed.errors)
  const readings = parseReadings(rawReadings, errors)
  if (!parsed.ok || readings === null) return { ok: false, errors }

  readings.sort((a, b) => a.ts - b.ts)
  const log = createSilentLogger()
  const bus = createEventBus(log)
  const transitions: Alert[] = []
  bus.on('dry-run', 'alert', (alert) => transitions.push(alert))
  let clock = readings[0]?.ts ?? 0
  const engine = createRuleEngine(
    {
      bus,
      log,
      now: () => clock,
      tickMs: 0,
      ...(options.registry ? { registry: options.registry } : {}),
    },
    parsed.rules,
  )
  engine.start()
  try {
    for (const reading of readings) {
      clock = reading.ts
      engine.advance(clock)
      bus.emit('reading', reading)
    }
  } finally {
    engine.stop()
  }
  return { ok: true, transitions }
}
