import { stringify } from 'yaml'
import { createEventBus, type EventBus } from '../../../src/bus/event-bus.ts'
import type { Alert, Reading } from '../../../src/contract/types.ts'
import type { DeviceRegistry } from '../../../src/rules/device-registry.ts'
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
  /** The engine's clock: tests move it by hand (no interval tick runs). */
  clock: { now: number }
  send(deviceId: string, metric: string, value: number, ts: number): void
  /** Sets the clock to `ms` and advances the engine's deadlines to it. */
  at(ms: number): void
}

export interface HarnessOptions {
  registry?: DeviceRegistry
  /** Start the engine (default true). */
  start?: boolean
}

/** An engine on a real bus with a silent logger and a manual clock, collecting alerts. */
export function startEngine(rules: RuleHandler[], options: HarnessOptions = {}): Harness {
  const log = createSilentLogger()
  const bus = createEventBus(log)
  const alerts: Alert[] = []
  bus.on('test', 'alert', (alert) => alerts.push(alert))
  const clock = { now: 0 }
  const engine = createRuleEngine(
    {
      bus,
      log,
      now: () => clock.now,
      tickMs: 0,
      ...(options.registry ? { registry: options.registry } : {}),
    },
    rules,
  )
  if (options.start !== false) engine.start()
  return {
    bus,
    engine,
    alerts,
    clock,
    send(deviceId, metric, value, ts) {
      const reading: Reading = { deviceId, metric, value, ts }
      bus.emit('reading', reading)
    },
    at(ms) {
      clock.now = ms
      engine.advance(ms)
    },
  }
}

/** [value, ts] pairs for one device and metric. */
export type Series = ReadonlyArray<readonly [value: number, ts: number]>

/**
 * Feeds a series to one rule and returns the transitions as `state@ts` strings. The clock follows
 * reading time (advanced before each reading), as in a dry run, so deadman rules work too.
 */
export function transitionsOf(rule: Record<string, unknown>, series: Series): string[] {
  const h = startEngine(rulesFrom(rule))
  const match = rule.match as { metric: string }
  for (const [value, ts] of series) {
    h.at(ts)
    h.send('dev-1', match.metric, value, ts)
  }
  return h.alerts.map((alert) => `${alert.state}@${alert.ts}`)
}

/** `state@ts` plus ` flapping` when set: compact transition lists for lifecycle tables. */
export function brief(alerts: readonly Alert[]): string[] {
  return alerts.map((a) => `${a.state}@${a.ts}${a.flapping ? ' flapping' : ''}`)
}
