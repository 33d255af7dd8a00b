import { deadmanKind } from './kinds/deadman.ts'
import { rateKind } from './kinds/rate.ts'
import { thresholdKind } from './kinds/threshold.ts'
import type { RuleKind } from './rule-handler.ts'

/** Kind name -> kind, as the loader looks them up. */
export type RuleKindRegistry = ReadonlyMap<string, RuleKind>

/**
 * `kind: custom` rules name a module (`handler: ./config/handlers/x.ts`) whose default export is a
 * RuleKind; it is not in the registry, the loader imports it.
 */
export const CUSTOM_KIND = 'custom'

/**
 * The built-in kinds. A new kind is one module under `kinds/` and one entry here; neither the
 * loader nor the engine changes.
 */
export const BUILT_IN_RULE_KINDS: RuleKindRegistry = new Map<string, RuleKind>(
  [thresholdKind, rateKind, deadmanKind].map((kind) => [kind.name, kind]),
)
