import { THRESHOLD_KIND, thresholdKind } from './kinds/threshold.ts'
import type { RuleKind } from './rule-handler.ts'

/** Kind name -> kind, as the loader looks them up. */
export type RuleKindRegistry = ReadonlyMap<string, RuleKind>

/**
 * The built-in kinds. A new kind is one module under `kinds/` and one entry here; neither the
 * loader nor the engine changes. Custom modules will be merged into a registry built from this.
 */
export const BUILT_IN_RULE_KINDS: RuleKindRegistry = new Map<string, RuleKind>([
  [THRESHOLD_KIND, thresholdKind],
])
