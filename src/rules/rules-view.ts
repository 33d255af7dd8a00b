import type { RulesView } from '../http/routes/rules.ts'
import type { DeviceRegistry } from './device-registry.ts'
import { dryRunRule } from './dry-run.ts'
import type { RuleEngine } from './rule-engine.ts'

/** What the HTTP API shows of the rules: the engine's rules with firing counts, and dry runs. */
export function createRulesView(
  engine: RuleEngine,
  options: { registry?: DeviceRegistry } = {},
): RulesView {
  return {
    list() {
      const firing = engine.firingCounts()
      return engine.rules().map((rule) => ({
        id: rule.ruleId,
        kind: rule.kind,
        severity: rule.severity,
        match: rule.match,
        definition: rule.definition,
        firing: firing.get(rule.ruleId) ?? 0,
      }))
    },
    dryRun: (rule, readings) => dryRunRule(rule, readings, { registry: options.registry }),
  }
}
