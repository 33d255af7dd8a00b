import { stringify } from 'yaml'
import { createEventBus, type EventBus } from '../../../src/bus/event-bus.ts'
import type { Alert, Reading } from '../../../src/contract/types.ts'
import { parseRules } from '../../../src/rules/load-rules.ts'
import { createRuleEngine, type RuleEngine } from '../../../src/rules/rule-engine.ts'
import type { RuleHandler } from '../../../src/rules/rule-handler.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'

/** Builds handlers through the real loader, from rule objects as they would be written in YAML. */
export function rulesFrom(...rules: Array<Record<string, unknown>>): RuleHandler[] {
  const result = parseRules(stringify({ rules }), 'test-rules.yaml')
  if (!result.ok) throw new Error(result.errors.join('\n'))
  return result.rules
}

export interface Harness {
  bus: EventBus
  engine: RuleEngine
  /** Every alert emitted on the bus, in order. */
  alerts: Alert[]
  send(deviceId: string, metric: string, value: number, ts: number): void
}

/** A started engine on a real bus with a silent logger, collecting alerts. */
export function startEngine(rules: RuleHandler[]): Harness {
  const log = createSilentLogger()
  const bus = createEventBus(log)
  const alerts: Alert[] = []
  bus.on('test', 'alert', (alert) => alerts.push(alert))
  const engine = createRuleEngine({ bus, log }, rules)
  engine.start()
  return {
    bus,
    engine,
    alerts,
    send(deviceId, metric, value, ts) {
      const reading: Reading = { deviceId, metric, value, ts }
      bus.emit('reading', reading)
    },
  }
}

/** [value, ts] pairs for one device and metric. */
export type Series = ReadonlyArray<readonly [value: number, ts: number]>

/** Feeds a series to one rule and returns the transitions as `state@ts` strings. */
export function transitionsOf(rule: Record<string, unknown>, series: Series): string[] {
  const h = startEngine(rulesFrom(rule))
  const match = rule.match as { metric: string }
  for (const [value, ts] of series) h.send('dev-1', match.metric, value, ts)
  return h.alerts.map((alert) => `${alert.state}@${alert.ts}`)
}
