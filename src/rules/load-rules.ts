import { readFile } from 'node:fs/promises'
import { LineCounter, parseDocument } from 'yaml'
import { IDENTIFIER_PATTERN, isIdentifier } from '../contract/identifiers.ts'
import { isSeverity, SEVERITIES, type Severity } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import { describeValue } from './describe-value.ts'
import { isDevicePattern } from './glob.ts'
import type { RuleContext, RuleHandler, RuleKind, RuleMatch } from './rule-handler.ts'
import { BUILT_IN_RULE_KINDS, type RuleKindRegistry } from './rule-kinds.ts'

export type ParseRulesResult = { ok: true; rules: RuleHandler[] } | { ok: false; errors: string[] }

/** Fields every rule has whatever its kind; the kind declares the rest. */
export const COMMON_RULE_FIELDS = ['id', 'kind', 'match', 'severity'] as const
const MATCH_FIELDS = ['device', 'metric'] as const
const TOP_LEVEL_FIELDS = ['rules'] as const
export const DEFAULT_SEVERITY: Severity = 'warning'
const DEFAULT_DEVICES: readonly string[] = Object.freeze(['*'])
const IDENTIFIER_TEXT = IDENTIFIER_PATTERN.source.replace(/^\^|\$$/g, '')

type Raw = Readonly<Record<string, unknown>>

function isMapping(value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner)
    Object.freeze(value)
  }
  return value
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + cost,
      )
    }
    previous = current
  }
  return previous[b.length] as number
}

/** ` (did you mean "above"?)` when a known name is a likely typo of `name`, else empty. */
function suggestion(name: string, known: readonly string[]): string {
  let best: string | null = null
  let bestDistance = 3
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best === null ? '' : ` (did you mean "${best}"?)`
}

function parseDevices(value: unknown, problems: Array<[string, string]>): readonly string[] | null {
  const expected = `must be a device id, a glob (* and ?) or a list of them`
  if (typeof value === 'string') {
    if (isDevicePattern(value)) return [value]
    problems.push(['match.device', `${expected}, got ${describeValue(value)}`])
    return null
  }
  if (Array.isArray(value)) {
    if (value.length === 0) {
      problems.push(['match.device', `${expected}, got an empty list`])
      return null
    }
    let ok = true
    for (const [i, item] of value.entries()) {
      if (!isDevicePattern(item)) {
        problems.push([`match.device[${i}]`, `${expected}, got ${describeValue(item)}`])
        ok = false
      }
    }
    return ok ? Object.freeze([...(value as string[])]) : null
  }
  problems.push(['match.device', `${expected}, got ${describeValue(value)}`])
  return null
}

function parseMatch(value: unknown, problems: Array<[string, string]>): RuleMatch | null {
  if (!isMapping(value)) {
    problems.push([
      'match',
      `must be a mapping with "metric" (and optionally "device"), got ${describeValue(value)}`,
    ])
    return null
  }
  for (const key of Object.keys(value)) {
    if (!(MATCH_FIELDS as readonly string[]).includes(key)) {
      problems.push([
        `match.${key}`,
        `unknown field${suggestion(key, MATCH_FIELDS)}; known: ${MATCH_FIELDS.join(', ')}`,
      ])
    }
  }
  const devices = Object.hasOwn(value, 'device')
    ? parseDevices(value.device, problems)
    : DEFAULT_DEVICES
  let metric: string | null = null
  if (!Object.hasOwn(value, 'metric')) {
    problems.push(['match.metric', 'is required'])
  } else if (isIdentifier(value.metric)) {
    metric = value.metric
  } else {
    problems.push([
      'match.metric',
      `must be a metric id (${IDENTIFIER_TEXT}), got ${describeValue(value.metric)}`,
    ])
  }
  return devices === null || metric === null ? null : { devices, metric }
}

/** Validates one rule; returns its handler, or null after adding every problem to `errors`. */
function parseRule(
  raw: Raw,
  label: string,
  fileName: string,
  kinds: RuleKindRegistry,
  errors: string[],
): RuleHandler | null {
  const problems: Array<[field: string, message: string]> = []

  const id = isIdentifier(raw.id) ? raw.id : null
  if (!Object.hasOwn(raw, 'id')) problems.push(['id', 'is required'])
  else if (id === null) {
    problems.push([
      'id',
      `must be an identifier (${IDENTIFIER_TEXT}), got ${describeValue(raw.id)}`,
    ])
  }

  let kind: RuleKind | null = null
  const knownKinds = [...kinds.keys()]
  if (!Object.hasOwn(raw, 'kind')) {
    problems.push(['kind', `is required; known kinds: ${knownKinds.join(', ')}`])
  } else if (typeof raw.kind !== 'string') {
    problems.push([
      'kind',
      `must be one of ${knownKinds.join(', ')}, got ${describeValue(raw.kind)}`,
    ])
  } else {
    kind = kinds.get(raw.kind) ?? null
    if (kind === null) {
      problems.push([
        'kind',
        `unknown kind ${describeValue(raw.kind)}${suggestion(raw.kind, knownKinds)}; known kinds: ${knownKinds.join(', ')}`,
      ])
    }
  }

  let match: RuleMatch | null = null
  if (Object.hasOwn(raw, 'match')) match = parseMatch(raw.match, problems)
  else problems.push(['match', 'is required (a mapping with "metric" and optionally "device")'])

  let severity: Severity = DEFAULT_SEVERITY
  if (Object.hasOwn(raw, 'severity')) {
    if (isSeverity(raw.severity)) severity = raw.severity
    else {
      problems.push([
        'severity',
        `must be one of ${SEVERITIES.join(', ')}, got ${describeValue(raw.severity)}`,
      ])
    }
  }

  // With an unknown kind its fields are unknown too: the kind error above says what to fix.
  if (kind !== null) {
    const known = [...COMMON_RULE_FIELDS, ...kind.fields]
    for (const key of Object.keys(raw)) {
      if (!known.includes(key)) {
        problems.push([
          key,
          `unknown field${suggestion(key, known)}; known fields of kind "${raw.kind}": ${known.join(', ')}`,
        ])
      }
    }
  }

  let handler: RuleHandler | null = null
  if (kind !== null) {
    // Run the kind's checks even when common fields failed, so every problem shows at once.
    const ctx: RuleContext = {
      ruleId: id ?? label,
      severity,
      match: match ?? { devices: DEFAULT_DEVICES, metric: '' },
      definition: raw,
    }
    const parsed = kind.parse(raw, ctx)
    if (parsed.ok) handler = parsed.handler
    else for (const { field, message } of parsed.errors) problems.push([field, message])
  }

  for (const [field, message] of problems) {
    errors.push(`${fileName}: ${label}: field "${field}": ${message}`)
  }
  return problems.length === 0 ? handler : null
}

/**
 * Parses and validates a rules file. Pure: no I/O, never throws. Reports every problem, each
 * naming the file, the rule (`rule "id"`, or `rules[i]` when the id is unusable) and the field.
 */
export function parseRules(
  text: string,
  fileName: string,
  kinds: RuleKindRegistry = BUILT_IN_RULE_KINDS,
): ParseRulesResult {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false })
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((err) => {
        const { line, col } = lineCounter.linePos(err.pos[0])
        return `${fileName}:${line}:${col}: ${err.message}`
      }),
    }
  }

  const data: unknown = doc.toJS()
  const shape = 'must be a mapping with a "rules" list'
  if (!isMapping(data)) {
    return { ok: false, errors: [`${fileName}: ${shape}, got ${describeValue(data)}`] }
  }
  const errors: string[] = []
  for (const key of Object.keys(data)) {
    if (!(TOP_LEVEL_FIELDS as readonly string[]).includes(key)) {
      errors.push(
        `${fileName}: field "${key}": unknown top-level field${suggestion(key, TOP_LEVEL_FIELDS)}; known: ${TOP_LEVEL_FIELDS.join(', ')}`,
      )
    }
  }
  // `rules:` with every entry commented out is an empty rule set, not a mistake.
  const list = data.rules === null ? [] : data.rules
  if (!Array.isArray(list)) {
    errors.push(`${fileName}: field "rules": must be a list of rules, got ${describeValue(list)}`)
    return { ok: false, errors }
  }

  const rules: RuleHandler[] = []
  const firstIndexOf = new Map<string, number>()
  for (const [index, raw] of list.entries()) {
    if (!isMapping(raw)) {
      errors.push(`${fileName}: rules[${index}]: must be a mapping, got ${describeValue(raw)}`)
      continue
    }
    deepFreeze(raw)
    let label = isIdentifier(raw.id) ? `rule "${raw.id}"` : `rules[${index}]`
    if (isIdentifier(raw.id)) {
      const first = firstIndexOf.get(raw.id)
      if (first === undefined) firstIndexOf.set(raw.id, index)
      else {
        label = `rule "${raw.id}" (rules[${index}])`
        errors.push(
          `${fileName}: ${label}: field "id": duplicate id, already used by rules[${first}]`,
        )
      }
    }
    const handler = parseRule(raw, label, fileName, kinds, errors)
    if (handler) rules.push(handler)
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, rules }
}

/** Reads and validates a rules file; throws a GatewayError (GW_ERR_RULES) listing every problem. */
export async function loadRulesFile(
  path: string,
  kinds: RuleKindRegistry = BUILT_IN_RULE_KINDS,
): Promise<RuleHandler[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new GatewayError(
      ERROR_CODES.rules,
      `${path}: cannot read rules file: ${(err as Error).message}`,
      { cause: err },
    )
  }
  const result = parseRules(text, path, kinds)
  if (!result.ok) throw new GatewayError(ERROR_CODES.rules, result.errors.join('\n'))
  return result.rules
}
