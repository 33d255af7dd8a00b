import { readFile, realpath, stat } from 'node:fs/promises'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { IDENTIFIER_PATTERN, isIdentifier } from '../contract/identifiers.ts'
import { isSeverity, SEVERITIES, type Severity } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import { toDurationMs } from '../util/duration.ts'
import { parseYamlText } from '../util/yaml-text.ts'
import { templateProblems } from './alert-message.ts'
import { describeValue } from './describe-value.ts'
import { parseTags } from './device-registry.ts'
import { isDevicePattern } from './glob.ts'
import { DURATION_TEXT } from './kinds/fields.ts'
import type {
  AlertLifecycle,
  FlappingPolicy,
  KindParseResult,
  RuleContext,
  RuleHandler,
  RuleKind,
  RuleMatch,
} from './rule-handler.ts'
import { BUILT_IN_RULE_KINDS, CUSTOM_KIND, type RuleKindRegistry } from './rule-kinds.ts'

export type ParseRulesResult = { ok: true; rules: RuleHandler[] } | { ok: false; errors: string[] }

/** A custom handler module as imported: its kind, or why it cannot be used. */
export type HandlerModule = { ok: true; kind: RuleKind } | { ok: false; message: string }
/** Handler modules by the `handler` path as written in the rules. */
export type HandlerModules = ReadonlyMap<string, HandlerModule>

/** Fields every rule has whatever its kind; the kind declares the rest. */
export const COMMON_RULE_FIELDS = [
  'id',
  'kind',
  'match',
  'severity',
  'message',
  'cooldown',
  'flapping',
] as const
const MATCH_FIELDS = ['device', 'metric', 'tags'] as const
const FLAPPING_FIELDS = ['transitions', 'window'] as const
const TOP_LEVEL_FIELDS = ['rules'] as const
export const DEFAULT_SEVERITY: Severity = 'warning'
const DEFAULT_DEVICES: readonly string[] = Object.freeze(['*'])
const IDENTIFIER_TEXT = IDENTIFIER_PATTERN.source.replace(/^\^|\$$/g, '')
const HANDLER_PATH = /\.(?:ts|mts|js|mjs)$/
const NO_HANDLERS: HandlerModules = new Map()

type Raw = Readonly<Record<string, unknown>>
type Problems = Array<[field: string, message: string]>

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
export function suggestion(name: string, known: readonly string[]): string {
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

/** One problem per key of `value` not in `known`, as `{prefix}.{key}`, with a likely fix. */
export function unknownKeys(
  value: Raw,
  known: readonly string[],
  prefix: string,
  problems: Problems,
) {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      problems.push([
        `${prefix}.${key}`,
        `unknown field${suggestion(key, known)}; known: ${known.join(', ')}`,
      ])
    }
  }
}

function parseDevices(value: unknown, problems: Problems): readonly string[] | null {
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

function parseMatch(value: unknown, problems: Problems): RuleMatch | null {
  if (!isMapping(value)) {
    problems.push([
      'match',
      `must be a mapping with "metric" (and optionally "device", "tags"), got ${describeValue(value)}`,
    ])
    return null
  }
  unknownKeys(value, MATCH_FIELDS, 'match', problems)
  const devices = Object.hasOwn(value, 'device')
    ? parseDevices(value.device, problems)
    : DEFAULT_DEVICES
  let metric: string | null = null
  if (!Object.hasOwn(value, 'metric')) {
    problems.push(['match.metric', 'is required'])
  } else if (isIdentifier(value.metric) || isDevicePattern(value.metric)) {
    // Metric ids share the device alphabet, so a metric glob is a device pattern.
    metric = value.metric
  } else {
    problems.push([
      'match.metric',
      `must be a metric id (${IDENTIFIER_TEXT}) or a glob (* and ?), got ${describeValue(value.metric)}`,
    ])
  }
  let tags: Readonly<Record<string, string>> | undefined
  let tagsOk = true
  if (Object.hasOwn(value, 'tags')) {
    const parsed = parseTags(value.tags, 'match.tags', problems)
    if (parsed !== null && Object.keys(parsed).length === 0) {
      problems.push(['match.tags', 'must name at least one tag (leave it out to match any tags)'])
      tagsOk = false
    } else if (parsed === null) tagsOk = false
    else tags = Object.freeze(parsed)
  }
  if (devices === null || metric === null || !tagsOk) return null
  return tags === undefined ? { devices, metric } : { devices, metric, tags }
}

/** `cooldown`, `flapping` and `message`: the engine's part of every rule. */
function parseLifecycle(raw: Raw, problems: Problems): AlertLifecycle | null {
  const before = problems.length
  let cooldownMs = 0
  if (Object.hasOwn(raw, 'cooldown')) {
    const ms = toDurationMs(raw.cooldown)
    if (ms === null) {
      problems.push(['cooldown', `must be ${DURATION_TEXT}, got ${describeValue(raw.cooldown)}`])
    } else cooldownMs = ms
  }

  let flapping: FlappingPolicy | null = null
  if (Object.hasOwn(raw, 'flapping')) {
    const value = raw.flapping
    if (!isMapping(value)) {
      problems.push([
        'flapping',
        `must be a mapping { transitions: N, window: 10m }, got ${describeValue(value)}`,
      ])
    } else {
      unknownKeys(value, FLAPPING_FIELDS, 'flapping', problems)
      const n = value.transitions
      const transitionsOk = typeof n === 'number' && Number.isInteger(n) && n >= 1
      if (!Object.hasOwn(value, 'transitions')) {
        problems.push(['flapping.transitions', 'is required (e.g. transitions: 4)'])
      } else if (!transitionsOk) {
        problems.push(['flapping.transitions', `must be an integer >= 1, got ${describeValue(n)}`])
      }
      const windowMs = toDurationMs(value.window)
      if (!Object.hasOwn(value, 'window')) {
        problems.push(['flapping.window', 'is required (e.g. window: 10m)'])
      } else if (windowMs === null || windowMs <= 0) {
        problems.push([
          'flapping.window',
          `must be ${DURATION_TEXT}, above 0, got ${describeValue(value.window)}`,
        ])
      }
      if (transitionsOk && windowMs !== null && windowMs > 0) {
        flapping = Object.freeze({ transitions: n as number, windowMs })
      }
    }
  }

  let message: string | null = null
  if (Object.hasOwn(raw, 'message')) {
    const found = templateProblems(raw.message, describeValue)
    for (const problem of found) problems.push(['message', problem])
    if (found.length === 0) message = raw.message as string
  }
  return problems.length > before ? null : Object.freeze({ cooldownMs, flapping, message })
}

/** A RuleKind-shaped default export, or why not. */
function ruleKindProblem(value: unknown, builtIns: RuleKindRegistry): string | null {
  const shape = 'must be a rule kind { name, fields, parse }'
  if (!isMapping(value)) return `${shape}, got ${describeValue(value)}`
  if (!isIdentifier(value.name)) {
    return `${shape}: "name" must be an identifier (${IDENTIFIER_TEXT}), got ${describeValue(value.name)}`
  }
  if (builtIns.has(value.name) || value.name === CUSTOM_KIND) {
    return `${shape}: name "${value.name}" is taken by a built-in kind`
  }
  if (!Array.isArray(value.fields) || !value.fields.every((f) => typeof f === 'string')) {
    return `${shape}: "fields" must be a list of field names, got ${describeValue(value.fields)}`
  }
  if (typeof value.parse !== 'function') {
    return `${shape}: "parse" must be a function, got ${describeValue(value.parse)}`
  }
  return null
}

/** The kind of a `kind: custom` rule, from the preloaded modules; null after reporting why not. */
function customKind(raw: Raw, handlers: HandlerModules, problems: Problems): RuleKind | null {
  if (!Object.hasOwn(raw, 'handler')) {
    problems.push([
      'handler',
      'is required for kind "custom": a module path like ./config/handlers/x.ts',
    ])
    return null
  }
  const file = raw.handler
  if (typeof file !== 'string' || !HANDLER_PATH.test(file)) {
    problems.push([
      'handler',
      `must be a module path ending in .ts, .mts, .js or .mjs, got ${describeValue(file)}`,
    ])
    return null
  }
  const loaded = handlers.get(file)
  if (loaded === undefined) {
    problems.push([
      'handler',
      `module "${file}" is not loaded (rules with custom handlers need loadRulesFile or dryRunRule, which import them)`,
    ])
    return null
  }
  if (!loaded.ok) {
    problems.push(['handler', loaded.message])
    return null
  }
  return loaded.kind
}

/** A kind's parse, guarded: a custom module must not take the loader down, nor return junk. */
function runKindParse(
  kind: RuleKind,
  custom: boolean,
  raw: Raw,
  ctx: RuleContext,
): KindParseResult {
  let result: KindParseResult
  try {
    result = kind.parse(raw, ctx)
  } catch (err) {
    return {
      ok: false,
      errors: [
        {
          field: 'handler',
          message: `kind "${kind.name}" threw while parsing: ${(err as Error).message}`,
        },
      ],
    }
  }
  if (custom && result.ok) {
    const h = result.handler as Partial<RuleHandler> | undefined
    const ok =
      typeof h?.initialState === 'function' &&
      typeof h.evaluate === 'function' &&
      typeof h.describe === 'function' &&
      h.ruleId === ctx.ruleId
    if (!ok) {
      return {
        ok: false,
        errors: [
          {
            field: 'handler',
            message: `kind "${kind.name}" returned no usable handler (needs { ...ctx, initialState, evaluate, describe })`,
          },
        ],
      }
    }
  }
  return result
}

/** Validates one rule; returns its handler, or null after adding every problem to `errors`. */
function parseRule(
  raw: Raw,
  label: string,
  fileName: string,
  kinds: RuleKindRegistry,
  handlers: HandlerModules,
  errors: string[],
): RuleHandler | null {
  const problems: Problems = []

  const id = isIdentifier(raw.id) ? raw.id : null
  if (!Object.hasOwn(raw, 'id')) problems.push(['id', 'is required'])
  else if (id === null) {
    problems.push([
      'id',
      `must be an identifier (${IDENTIFIER_TEXT}), got ${describeValue(raw.id)}`,
    ])
  }

  let kind: RuleKind | null = null
  let custom = false
  const knownKinds = [...kinds.keys(), CUSTOM_KIND]
  if (!Object.hasOwn(raw, 'kind')) {
    problems.push(['kind', `is required; known kinds: ${knownKinds.join(', ')}`])
  } else if (typeof raw.kind !== 'string') {
    problems.push([
      'kind',
      `must be one of ${knownKinds.join(', ')}, got ${describeValue(raw.kind)}`,
    ])
  } else if (raw.kind === CUSTOM_KIND) {
    custom = true
    kind = customKind(raw, handlers, problems)
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

  const lifecycle = parseLifecycle(raw, problems)

  // With an unknown kind (or an unusable handler module) its fields are unknown too: the error
  // above says what to fix.
  if (kind !== null) {
    const known: string[] = [...COMMON_RULE_FIELDS, ...(custom ? ['handler'] : []), ...kind.fields]
    const which = custom ? `custom kind "${kind.name}"` : `kind "${kind.name}"`
    for (const key of Object.keys(raw)) {
      if (!known.includes(key)) {
        problems.push([
          key,
          `unknown field${suggestion(key, known)}; known fields of ${which}: ${known.join(', ')}`,
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
      lifecycle: lifecycle ?? { cooldownMs: 0, flapping: null, message: null },
    }
    const parsed = runKindParse(kind, custom, raw, ctx)
    if (parsed.ok) handler = parsed.handler
    else for (const { field, message } of parsed.errors) problems.push([field, message])
  }

  for (const [field, message] of problems) {
    errors.push(`${fileName}: ${label}: field "${field}": ${message}`)
  }
  return problems.length === 0 ? handler : null
}

/**
 * Validates rules already read into plain data (`{ rules: [...] }`), as from YAML or a request
 * body. Never throws. Reports every problem, each naming the file, the rule (`rule "id"`, or
 * `rules[i]` when the id is unusable) and the field. Custom kinds come from `handlers`, which
 * `loadHandlerModules` fills. Rule objects are frozen in place (they become `definition`).
 */
export function validateRules(
  data: unknown,
  fileName: string,
  kinds: RuleKindRegistry = BUILT_IN_RULE_KINDS,
  handlers: HandlerModules = NO_HANDLERS,
): ParseRulesResult {
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
    const handler = parseRule(raw, label, fileName, kinds, handlers, errors)
    if (handler) rules.push(handler)
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, rules }
}

/**
 * Parses and validates a rules file's text. Pure: no I/O, never throws. A `kind: custom` rule
 * needs its module in `handlers` (loadRulesFile imports them first).
 */
export function parseRules(
  text: string,
  fileName: string,
  kinds: RuleKindRegistry = BUILT_IN_RULE_KINDS,
  handlers: HandlerModules = NO_HANDLERS,
): ParseRulesResult {
  const yaml = parseYamlText(text, fileName)
  if (!yaml.ok) return yaml
  return validateRules(yaml.data, fileName, kinds, handlers)
}

/** The distinct `handler` paths of the `kind: custom` rules in `data`, in order. */
export function handlerPathsOf(data: unknown): string[] {
  const paths = new Set<string>()
  if (isMapping(data) && Array.isArray(data.rules)) {
    for (const rule of data.rules) {
      if (isMapping(rule) && rule.kind === CUSTOM_KIND && typeof rule.handler === 'string') {
        if (HANDLER_PATH.test(rule.handler)) paths.add(rule.handler)
      }
    }
  }
  return [...paths]
}

export interface LoadHandlerOptions {
  /** Built-in kinds: a module may not take one of their names. */
  kinds?: RuleKindRegistry
  /** Paths are resolved against this; default: the process working directory. */
  baseDir?: string
  /** When set, only modules inside this folder are imported (dry runs from HTTP requests). */
  allowedDir?: string
}

function isInside(file: string, dir: string): boolean {
  const relative = path.relative(dir, file)
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative)
}

/**
 * Imports custom handler modules, each once, and checks each default export is a RuleKind. Never
 * throws: a module that is missing, fails to load or exports something else becomes a message the
 * loader reports on the rule's `handler` field. Node caches modules by URL, so an edited module
 * takes effect on restart (an edited rules file reloads).
 */
export async function loadHandlerModules(
  paths: Iterable<string>,
  options: LoadHandlerOptions = {},
): Promise<Map<string, HandlerModule>> {
  const kinds = options.kinds ?? BUILT_IN_RULE_KINDS
  const baseDir = options.baseDir ?? process.cwd()
  const modules = new Map<string, HandlerModule>()
  for (const file of paths) {
    if (modules.has(file)) continue
    const absolute = path.resolve(baseDir, file)
    let real: string
    try {
      if (!(await stat(absolute)).isFile()) throw new Error('not a file')
      real = await realpath(absolute)
    } catch {
      modules.set(file, {
        ok: false,
        message: `cannot load handler module "${file}": no such file ${absolute} (paths are relative to the working directory ${baseDir})`,
      })
      continue
    }
    if (options.allowedDir !== undefined) {
      const allowed = await realpath(path.resolve(baseDir, options.allowedDir)).catch(() => null)
      if (allowed === null || !isInside(real, allowed)) {
        modules.set(file, {
          ok: false,
          message: `handler module "${file}" must be inside ${options.allowedDir}`,
        })
        continue
      }
    }
    let exported: unknown
    try {
      const mod = (await import(pathToFileURL(real).href)) as { default?: unknown }
      exported = mod.default
    } catch (err) {
      modules.set(file, {
        ok: false,
        message: `cannot load handler module "${file}": ${(err as Error).message}`,
      })
      continue
    }
    const problem = ruleKindProblem(exported, kinds)
    modules.set(
      file,
      problem === null
        ? { ok: true, kind: exported as RuleKind }
        : { ok: false, message: `handler module "${file}": default export ${problem}` },
    )
  }
  return modules
}

/**
 * Reads and validates a rules file, importing its custom handler modules first; throws a
 * GatewayError (GW_ERR_RULES) listing every problem.
 */
export async function loadRulesFile(
  file: string,
  kinds: RuleKindRegistry = BUILT_IN_RULE_KINDS,
): Promise<RuleHandler[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new GatewayError(
      ERROR_CODES.rules,
      `${file}: cannot read rules file: ${(err as Error).message}`,
      { cause: err },
    )
  }
  const yaml = parseYamlText(text, file)
  if (!yaml.ok) throw new GatewayError(ERROR_CODES.rules, yaml.errors.join('\n'))
  const handlers = await loadHandlerModules(handlerPathsOf(yaml.data), { kinds })
  const result = validateRules(yaml.data, file, kinds, handlers)
  if (!result.ok) throw new GatewayError(ERROR_CODES.rules, result.errors.join('\n'))
  return result.rules
}
