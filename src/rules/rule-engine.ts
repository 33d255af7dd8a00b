import type { EventBus } from '../bus/event-bus.ts'
import type { Alert, AlertState, Reading } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'
import { compileDeviceMatcher, type IdMatcher } from './glob.ts'
import type { RuleHandler } from './rule-handler.ts'

export const RULE_ENGINE_OWNER = 'rule-engine'

/** Handler failures are logged on the first and then every this many, not per reading. */
const HANDLER_ERROR_LOG_EVERY = 1000

export interface RuleEngineDeps {
  bus: EventBus
  log: Logger
}

export interface RuleEngineStats {
  /** Readings received from the bus. */
  readings: number
  /** Handler evaluations (reading x matching rule). */
  evaluations: number
  /** Readings older than the last one seen for their key: not evaluated. */
  outOfOrder: number
  /** Evaluations whose handler threw. */
  handlerErrors: number
  /** Alerts emitted (firing + resolved). */
  transitions: number
}

export interface RuleEngine {
  /** Subscribes to 'reading' on the bus as owner `rule-engine`. Idempotent. */
  start(): void
  /** Unsubscribes; state is kept, so start() resumes where it stopped. */
  stop(): void
  /**
   * Replaces the rule set. Keys of a rule whose id, kind and definition are unchanged keep their
   * state; every other key is dropped. Returns the alerts that were firing on dropped keys, for
   * the caller to resolve (hot reload does that in a later issue). Throws on duplicate rule ids.
   */
  setRules(rules: readonly RuleHandler[]): Alert[]
  rules(): readonly RuleHandler[]
  /** The latest alert (firing, or resolved) of every key that has had one: for GET /api/alerts. */
  alerts(): Alert[]
  stats(): RuleEngineStats
}

/** Per (rule, device) state. The handler's part is opaque; the rest is the alert lifecycle. */
interface KeyState {
  state: unknown
  firing: boolean
  /** Timestamp of the newest reading evaluated for this key. */
  lastTs: number
  alert: Alert | null
}

interface RuleEntry {
  handler: RuleHandler
  matches: IdMatcher
  fingerprint: string
  /** deviceId -> key state: with the entry itself this is the (ruleId, deviceId) key, O(1). */
  keys: Map<string, KeyState>
  errorCount: number
}

function fingerprintOf(handler: RuleHandler): string {
  return `${handler.kind}\u0000${JSON.stringify(handler.definition)}`
}

/**
 * The rule engine: dispatches each reading to the rules of its metric, keeps per-key state and
 * owns the alert lifecycle. It emits 'alert' only on transitions (firing, resolved).
 *
 * Time is reading time: `since` and `ts` of an alert are the triggering reading's timestamp.
 * A reading older than the last one evaluated for its key is ignored for rule state (counted in
 * `stats().outOfOrder`): it describes the past, and evaluating it would rewind `for` periods and
 * could flip an alert on stale data. A reading with the same timestamp is evaluated.
 */
export function createRuleEngine(
  deps: RuleEngineDeps,
  initialRules: readonly RuleHandler[],
): RuleEngine {
  const { bus } = deps
  const log = deps.log.child({ module: 'rule-engine' })
  /** metric -> rules on that metric, so a reading costs nothing for rules of other metrics. */
  let byMetric = new Map<string, RuleEntry[]>()
  let entries: RuleEntry[] = []
  let started = false
  const stats: RuleEngineStats = {
    readings: 0,
    evaluations: 0,
    outOfOrder: 0,
    handlerErrors: 0,
    transitions: 0,
  }

  function transition(entry: RuleEntry, key: KeyState, reading: Reading, state: AlertState): void {
    const { handler } = entry
    const detail = handler.describe(key.state, reading, state)
    const alert: Alert = Object.freeze({
      ruleId: handler.ruleId,
      deviceId: reading.deviceId,
      metric: reading.metric,
      severity: handler.severity,
      state,
      value: detail.value,
      threshold: detail.threshold,
      since: reading.ts,
      ts: reading.ts,
      message: detail.message,
    })
    key.firing = state === 'firing'
    key.alert = alert
    stats.transitions++
    log.info(
      {
        ruleId: alert.ruleId,
        deviceId: alert.deviceId,
        severity: alert.severity,
        value: alert.value,
      },
      `alert ${state}: ${alert.message}`,
    )
    // The bus isolates listeners: one that throws is logged and cannot reach this loop.
    bus.emit('alert', alert)
  }

  function evaluate(entry: RuleEntry, reading: Reading): void {
    let key = entry.keys.get(reading.deviceId)
    if (key === undefined) {
      key = { state: entry.handler.initialState(), firing: false, lastTs: -Infinity, alert: null }
      entry.keys.set(reading.deviceId, key)
    }
    if (reading.ts < key.lastTs) {
      stats.outOfOrder++
      return
    }
    key.lastTs = reading.ts
    stats.evaluations++
    const verdict = entry.handler.evaluate(key.state, reading, key.firing)
    if (verdict === 'breach') {
      if (!key.firing) transition(entry, key, reading, 'firing')
    } else if (verdict === 'clear') {
      if (key.firing) transition(entry, key, reading, 'resolved')
    }
  }

  function onReading(reading: Reading): void {
    stats.readings++
    const candidates = byMetric.get(reading.metric)
    if (candidates === undefined) return
    for (const entry of candidates) {
      if (!entry.matches(reading.deviceId)) continue
      // One failing rule (a custom handler, later) must not keep the others from this reading.
      try {
        evaluate(entry, reading)
      } catch (err) {
        stats.handlerErrors++
        entry.errorCount++
        if (entry.errorCount === 1 || entry.errorCount % HANDLER_ERROR_LOG_EVERY === 0) {
          log.error(
            {
              err,
              ruleId: entry.handler.ruleId,
              deviceId: reading.deviceId,
              failures: entry.errorCount,
            },
            `rule ${entry.handler.ruleId} failed`,
          )
        }
      }
    }
  }

  function setRules(rules: readonly RuleHandler[]): Alert[] {
    const previous = new Map(entries.map((entry) => [entry.handler.ruleId, entry]))
    const seen = new Set<string>()
    const next: RuleEntry[] = []
    for (const handler of rules) {
      if (seen.has(handler.ruleId)) {
        throw new GatewayError(ERROR_CODES.rules, `duplicate rule id "${handler.ruleId}"`)
      }
      seen.add(handler.ruleId)
      const fingerprint = fingerprintOf(handler)
      const old = previous.get(handler.ruleId)
      const kept = old !== undefined && old.fingerprint === fingerprint
      if (kept) previous.delete(handler.ruleId)
      next.push({
        handler,
        matches: compileDeviceMatcher(handler.match.devices),
        fingerprint,
        keys: kept ? old.keys : new Map(),
        errorCount: 0,
      })
    }

    const index = new Map<string, RuleEntry[]>()
    for (const entry of next) {
      const list = index.get(entry.handler.match.metric)
      if (list) list.push(entry)
      else index.set(entry.handler.match.metric, [entry])
    }
    entries = next
    byMetric = index

    const dropped: Alert[] = []
    for (const entry of previous.values()) {
      for (const key of entry.keys.values()) if (key.firing && key.alert) dropped.push(key.alert)
    }
    return dropped
  }

  setRules(initialRules)

  return {
    start() {
      if (started) return
      started = true
      bus.on(RULE_ENGINE_OWNER, 'reading', onReading)
    },
    stop() {
      if (!started) return
      started = false
      bus.removeOwner(RULE_ENGINE_OWNER)
    },
    setRules,
    rules() {
      return entries.map((entry) => entry.handler)
    },
    alerts() {
      const out: Alert[] = []
      for (const entry of entries) {
        for (const key of entry.keys.values()) if (key.alert) out.push(key.alert)
      }
      return out
    },
    stats() {
      return { ...stats }
    },
  }
}
