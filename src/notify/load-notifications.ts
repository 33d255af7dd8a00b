import { readFile } from 'node:fs/promises'
import { IDENTIFIER_PATTERN, isIdentifier } from '../contract/identifiers.ts'
import { isSeverity, SEVERITIES, type Severity } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import { templateProblems } from '../rules/alert-message.ts'
import { describeValue } from '../rules/describe-value.ts'
import { parseTags } from '../rules/device-registry.ts'
import { isDevicePattern } from '../rules/glob.ts'
import { DURATION_TEXT } from '../rules/kinds/fields.ts'
import { suggestion, unknownKeys } from '../rules/load-rules.ts'
import { type RulesWatcher, watchRulesFile } from '../rules/rules-watcher.ts'
import type { Logger } from '../telemetry/logger.ts'
import { toDurationMs } from '../util/duration.ts'
import { parseYamlText } from '../util/yaml-text.ts'
import {
  CHANNEL_MODULE_PATH,
  type ChannelKindRegistry,
  CUSTOM_CHANNEL_KIND,
  channelKindProblem,
  loadCustomChannelKind,
} from './channel-kinds.ts'
import { DEFAULT_TEXT, DEFAULT_TITLE, NOTIFICATION_PLACEHOLDERS } from './templates.ts'
import {
  type AlertMatchers,
  type ChannelKind,
  type ChannelProblems,
  type ChannelSettings,
  type DeliveryPolicy,
  NOTIFY_TRANSITIONS,
  type NotificationsConfig,
  type NotifyTransition,
  type Route,
} from './types.ts'

/**
 * The notifications file as loaded: the validated config, and the kinds its channels are created
 * with (the built-ins and the `kind: custom` modules it imported, by kind name), so whoever creates
 * the channels looks every `ChannelSettings.kind` up in one place.
 */
export interface LoadedNotifications extends NotificationsConfig {
  kinds: ChannelKindRegistry
}

/** Imports a `kind: custom` channel module; resolves its ChannelKind or rejects saying why. */
export type LoadCustomChannelKind = (modulePath: string, baseDir: string) => Promise<ChannelKind>

export interface NotificationsDeps {
  /** Kinds a channel's `kind:` may name (BUILT_IN_CHANNEL_KINDS). */
  kinds: ChannelKindRegistry
  /** Imports `kind: custom` modules; default: loadCustomChannelKind (channel-kinds.ts). */
  loadCustom?: LoadCustomChannelKind
  /** Custom module paths are relative to this; default: the working directory. */
  baseDir?: string
}

/** A custom channel module as imported: its kind, or why it cannot be used. */
export type CustomChannelModule = { ok: true; kind: ChannelKind } | { ok: false; message: string }
/** Custom channel modules by the `module` path as written in the file. */
export type CustomChannelModules = ReadonlyMap<string, CustomChannelModule>

export type ParseNotificationsResult =
  | { ok: true; config: LoadedNotifications }
  | { ok: false; errors: string[] }

export const DEFAULT_DELIVERY: DeliveryPolicy = Object.freeze({
  maxAttempts: 20,
  maxAgeMs: 24 * 3_600_000,
  retryBaseMs: 1_000,
  retryMaxMs: 5 * 60_000,
})
export const DEFAULT_CHANNEL_TIMEOUT_MS = 10_000
export const DEFAULT_CHANNEL_CONCURRENCY = 1
/** Transitions a route notifies when it has no `on:`. */
export const DEFAULT_ON: readonly NotifyTransition[] = Object.freeze([...NOTIFY_TRANSITIONS])
const MAX_CONCURRENCY = 64
const MAX_TIMEOUT_MS = 10 * 60_000
const MAX_ATTEMPTS = 1_000
/** A grouping window holds the first alert of a group back this long: past an hour it hides it. */
const MAX_GROUP_WINDOW_MS = 3_600_000

const TOP_LEVEL_FIELDS = ['channels', 'routes', 'delivery'] as const
/** Fields the loader reads on every channel; the kind's `parse` gets the others. */
export const COMMON_CHANNEL_FIELDS = ['name', 'kind', 'timeout', 'concurrency'] as const
const MODULE_FIELD = 'module'
const ROUTE_FIELDS = [
  'name',
  'channels',
  'match',
  'on',
  'repeat',
  'group',
  'title',
  'text',
] as const
const MATCH_FIELDS = ['severity', 'rule', 'device', 'metric', 'tags'] as const
const DELIVERY_FIELDS = ['maxAttempts', 'maxAge', 'retryBase', 'retryMax'] as const
const IDENTIFIER_TEXT = IDENTIFIER_PATTERN.source.replace(/^\^|\$$/g, '')
const REDACTED = '[redacted]'
const NO_MODULES: CustomChannelModules = new Map()

/** No file (NOTIFICATIONS_FILE empty): no channels, no routes, nothing is notified. */
export const NO_NOTIFICATIONS: LoadedNotifications = Object.freeze({
  channels: Object.freeze([]),
  routes: Object.freeze([]),
  delivery: DEFAULT_DELIVERY,
  kinds: new Map(),
})

type Raw = Readonly<Record<string, unknown>>
type Problems = Array<[field: string, message: string]>

function isMapping(value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function report(errors: string[], fileName: string, label: string, problems: Problems): void {
  for (const [field, message] of problems) {
    errors.push(`${fileName}: ${label}: field "${field}": ${message}`)
  }
}

/**
 * A duration field: ms, or null after naming the problem. `bounds.text` says the range in words
 * (`, above 0`), as the message shows it.
 */
function durationField(
  raw: Raw,
  field: string,
  shown: string,
  fallbackMs: number,
  bounds: { minMs: number; maxMs?: number; text: string },
  problems: Problems,
): number | null {
  if (!Object.hasOwn(raw, field)) return fallbackMs
  const ms = toDurationMs(raw[field])
  if (ms === null || ms < bounds.minMs || ms > (bounds.maxMs ?? Number.POSITIVE_INFINITY)) {
    problems.push([
      shown,
      `must be ${DURATION_TEXT}${bounds.text}, got ${describeValue(raw[field])}`,
    ])
    return null
  }
  return ms
}

function integerField(
  raw: Raw,
  field: string,
  shown: string,
  fallback: number,
  max: number,
  problems: Problems,
): number | null {
  if (!Object.hasOwn(raw, field)) return fallback
  const n = raw[field]
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max) {
    problems.push([shown, `must be an integer from 1 to ${max}, got ${describeValue(n)}`])
    return null
  }
  return n
}

// ---- secrets

/** Texts in a secret field: the value, or every value inside it (`headers`: tokens). */
function leafTexts(value: unknown, into: string[]): string[] {
  if (typeof value === 'string' || typeof value === 'number') {
    if (String(value) !== '') into.push(String(value))
  } else if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) leafTexts(inner, into)
  }
  return into
}

/** The value at a dotted field path (`auth.pass`), if it is there. */
function valueAt(raw: Raw, field: string): unknown {
  let value: unknown = raw
  for (const part of field.split('.')) {
    if (!isMapping(value)) return undefined
    value = value[part]
  }
  return value
}

/**
 * The texts a problem message could show of a channel's secrets: each secret as written, as quoted
 * (JSON escapes), and cut as describeValue cuts long values, so none of them reaches a log line,
 * whatever a kind's parse writes.
 */
function secretTexts(raw: Raw, kind: ChannelKind | null): string[] {
  if (kind === null || !Array.isArray(kind.secretFields)) return []
  const texts = new Set<string>()
  for (const field of kind.secretFields) {
    for (const text of leafTexts(valueAt(raw, field), [])) {
      for (const form of [text, JSON.stringify(text).slice(1, -1)]) {
        texts.add(form)
        if (form.length > 40) texts.add(form.slice(0, 40))
      }
    }
  }
  // Longest first: a secret's cut form is a prefix of the whole.
  return [...texts].sort((a, b) => b.length - a.length)
}

function redact(text: string, secrets: readonly string[]): string {
  let out = text
  for (const secret of secrets) out = out.split(secret).join(REDACTED)
  return out
}

// ---- channels

function customKindOf(
  raw: Raw,
  modules: CustomChannelModules,
  problems: Problems,
): ChannelKind | null {
  if (!Object.hasOwn(raw, MODULE_FIELD)) {
    problems.push([
      MODULE_FIELD,
      `is required for kind "${CUSTOM_CHANNEL_KIND}": a module path like ./config/channels/x.ts`,
    ])
    return null
  }
  const file = raw[MODULE_FIELD]
  if (typeof file !== 'string' || !CHANNEL_MODULE_PATH.test(file)) {
    problems.push([
      MODULE_FIELD,
      `must be a module path ending in .ts, .mts, .js or .mjs, got ${describeValue(file)}`,
    ])
    return null
  }
  const loaded = modules.get(file)
  if (loaded === undefined) {
    problems.push([
      MODULE_FIELD,
      `module "${file}" is not loaded (custom channels need loadNotificationsFile, which imports them)`,
    ])
    return null
  }
  if (!loaded.ok) {
    problems.push([MODULE_FIELD, loaded.message])
    return null
  }
  return loaded.kind
}

/** The kind's own fields: the channel without the ones the loader reads. */
function kindFields(raw: Raw, custom: boolean): Record<string, unknown> {
  const own: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(raw)) {
    if ((COMMON_CHANNEL_FIELDS as readonly string[]).includes(key)) continue
    if (custom && key === MODULE_FIELD) continue
    own[key] = value
  }
  return own
}

function parseChannel(
  raw: Raw,
  label: string,
  fileName: string,
  kinds: ChannelKindRegistry,
  modules: CustomChannelModules,
  customKinds: Map<string, ChannelKind>,
  errors: string[],
): ChannelSettings | null {
  const problems: Problems = []
  const name = isIdentifier(raw.name) ? raw.name : null
  if (!Object.hasOwn(raw, 'name')) problems.push(['name', 'is required'])
  else if (name === null) {
    problems.push([
      'name',
      `must be an identifier (${IDENTIFIER_TEXT}), got ${describeValue(raw.name)}`,
    ])
  }

  const knownKinds = [...kinds.keys(), CUSTOM_CHANNEL_KIND]
  let kind: ChannelKind | null = null
  const custom = raw.kind === CUSTOM_CHANNEL_KIND
  if (!Object.hasOwn(raw, 'kind')) {
    problems.push(['kind', `is required; known kinds: ${knownKinds.join(', ')}`])
  } else if (typeof raw.kind !== 'string') {
    problems.push([
      'kind',
      `must be one of ${knownKinds.join(', ')}, got ${describeValue(raw.kind)}`,
    ])
  } else if (custom) {
    kind = customKindOf(raw, modules, problems)
    if (kind !== null) {
      // Two modules may not claim one kind name: channels are created by kind name.
      const other = customKinds.get(kind.kind)
      if (other !== undefined && other !== kind) {
        problems.push([
          MODULE_FIELD,
          `module "${String(raw[MODULE_FIELD])}" names its kind "${kind.kind}", as another module of this file does`,
        ])
        kind = null
      } else customKinds.set(kind.kind, kind)
    }
  } else {
    kind = kinds.get(raw.kind) ?? null
    if (kind === null) {
      problems.push([
        'kind',
        `unknown kind ${describeValue(raw.kind)}${suggestion(raw.kind, knownKinds)}; known kinds: ${knownKinds.join(', ')}`,
      ])
    }
  }
  if (!custom && Object.hasOwn(raw, MODULE_FIELD)) {
    problems.push([MODULE_FIELD, `is only for kind "${CUSTOM_CHANNEL_KIND}"`])
  }

  const timeoutMs = durationField(
    raw,
    'timeout',
    'timeout',
    DEFAULT_CHANNEL_TIMEOUT_MS,
    { minMs: 1, maxMs: MAX_TIMEOUT_MS, text: ', above 0 and at most 10m' },
    problems,
  )
  const concurrency = integerField(
    raw,
    'concurrency',
    'concurrency',
    DEFAULT_CHANNEL_CONCURRENCY,
    MAX_CONCURRENCY,
    problems,
  )

  let config: unknown = null
  let configOk = false
  if (kind !== null) {
    // Run the kind's checks even when common fields failed, so every problem shows at once.
    const kindProblems: ChannelProblems = []
    try {
      config = kind.parse(kindFields(raw, custom), kindProblems)
      configOk = config !== null && kindProblems.length === 0
      if (config === null && kindProblems.length === 0) {
        kindProblems.push(['kind', `kind "${kind.kind}" refused the channel without saying why`])
      }
    } catch (err) {
      kindProblems.push([
        'kind',
        `kind "${kind.kind}" threw while parsing: ${(err as Error)?.message ?? String(err)}`,
      ])
    }
    problems.push(...kindProblems)
  }

  // Secrets never reach a message: the watcher logs these, the start-up error prints them.
  const secrets = secretTexts(raw, kind)
  report(
    errors,
    fileName,
    label,
    problems.map(([field, message]) => [field, redact(message, secrets)]),
  )
  if (problems.length > 0 || !configOk || name === null || kind === null) return null
  if (timeoutMs === null || concurrency === null) return null
  return Object.freeze({ name, kind: kind.kind, timeoutMs, concurrency, config })
}

// ---- routes

/** `critical`, `major+` (major and above), or a list of them: the severities taken, in order. */
function parseSeverities(value: unknown, problems: Problems): readonly Severity[] | null {
  const expected = `must be a severity (${SEVERITIES.join(', ')}), one with + for it and above (major+), or a list of them`
  const items = Array.isArray(value) ? value : [value]
  if (items.length === 0) {
    problems.push(['match.severity', `${expected}, got an empty list`])
    return null
  }
  const taken = new Set<Severity>()
  let ok = true
  for (const [i, item] of items.entries()) {
    const field = Array.isArray(value) ? `match.severity[${i}]` : 'match.severity'
    const atLeast = typeof item === 'string' && item.endsWith('+')
    const name = atLeast ? item.slice(0, -1) : item
    if (!isSeverity(name)) {
      const hint = typeof name === 'string' ? suggestion(name, SEVERITIES) : ''
      problems.push([field, `${expected}, got ${describeValue(item)}${hint}`])
      ok = false
      continue
    }
    const rank = SEVERITIES.indexOf(name)
    for (const [j, severity] of SEVERITIES.entries()) {
      if (atLeast ? j <= rank : j === rank) taken.add(severity)
    }
  }
  return ok ? Object.freeze(SEVERITIES.filter((s) => taken.has(s))) : null
}

/** A glob or a list of globs over ids (rule, device, metric ids share one alphabet). */
function parseGlobs(value: unknown, field: string, what: string, problems: Problems) {
  const expected = `must be a ${what} id, a glob (* and ?) or a list of them`
  if (isDevicePattern(value)) return Object.freeze([value])
  if (!Array.isArray(value)) {
    problems.push([field, `${expected}, got ${describeValue(value)}`])
    return null
  }
  if (value.length === 0) {
    problems.push([field, `${expected}, got an empty list`])
    return null
  }
  let ok = true
  for (const [i, item] of value.entries()) {
    if (!isDevicePattern(item)) {
      problems.push([`${field}[${i}]`, `${expected}, got ${describeValue(item)}`])
      ok = false
    }
  }
  return ok ? Object.freeze([...(value as string[])]) : null
}

function parseMatch(value: unknown, problems: Problems): AlertMatchers | null {
  const any: AlertMatchers = { severity: null, rule: null, device: null, metric: null, tags: null }
  if (value === undefined || value === null) return Object.freeze(any)
  if (!isMapping(value)) {
    problems.push([
      'match',
      `must be a mapping of ${MATCH_FIELDS.join(', ')} (leave it out to take every alert), got ${describeValue(value)}`,
    ])
    return null
  }
  const before = problems.length
  unknownKeys(value, MATCH_FIELDS, 'match', problems)
  const has = (key: string) => Object.hasOwn(value, key)
  const match: AlertMatchers = {
    severity: has('severity') ? parseSeverities(value.severity, problems) : null,
    rule: has('rule') ? parseGlobs(value.rule, 'match.rule', 'rule', problems) : null,
    device: has('device') ? parseGlobs(value.device, 'match.device', 'device', problems) : null,
    metric: has('metric') ? parseGlobs(value.metric, 'match.metric', 'metric', problems) : null,
    tags: null,
  }
  if (has('tags')) {
    // Tag values are globs over the tag's text (`site: north-*`).
    const tags = parseTags(value.tags, 'match.tags', problems)
    if (tags !== null && Object.keys(tags).length === 0) {
      problems.push(['match.tags', 'must name at least one tag (leave it out to match any tags)'])
    } else if (tags !== null) match.tags = Object.freeze(tags)
  }
  return problems.length > before ? null : Object.freeze(match)
}

function parseOn(raw: Raw, problems: Problems): readonly NotifyTransition[] | null {
  if (!Object.hasOwn(raw, 'on')) return DEFAULT_ON
  const expected = `must be one of ${NOTIFY_TRANSITIONS.join(', ')} or a list of them (reminders: "repeat")`
  const items = Array.isArray(raw.on) ? raw.on : [raw.on]
  if (items.length === 0) {
    problems.push(['on', `${expected}, got an empty list (a route that notifies nothing)`])
    return null
  }
  const on = new Set<NotifyTransition>()
  let ok = true
  for (const [i, item] of items.entries()) {
    if ((NOTIFY_TRANSITIONS as readonly unknown[]).includes(item)) on.add(item as NotifyTransition)
    else {
      const hint = typeof item === 'string' ? suggestion(item, NOTIFY_TRANSITIONS) : ''
      problems.push([
        Array.isArray(raw.on) ? `on[${i}]` : 'on',
        `${expected}, got ${describeValue(item)}${hint}`,
      ])
      ok = false
    }
  }
  return ok ? Object.freeze(NOTIFY_TRANSITIONS.filter((t) => on.has(t))) : null
}

function parseRouteChannels(
  raw: Raw,
  channelNames: ReadonlySet<string>,
  problems: Problems,
): readonly string[] | null {
  const expected = 'must be a list of channel names of this file'
  if (!Object.hasOwn(raw, 'channels')) {
    problems.push(['channels', `is required: ${expected}`])
    return null
  }
  const items = typeof raw.channels === 'string' ? [raw.channels] : raw.channels
  if (!Array.isArray(items) || items.length === 0) {
    problems.push(['channels', `${expected}, got ${describeValue(raw.channels)}`])
    return null
  }
  const known = [...channelNames]
  const seen = new Set<string>()
  let ok = true
  for (const [i, item] of items.entries()) {
    const field = Array.isArray(raw.channels) ? `channels[${i}]` : 'channels'
    if (typeof item !== 'string' || !channelNames.has(item)) {
      const hint = typeof item === 'string' ? suggestion(item, known) : ''
      problems.push([
        field,
        `unknown channel ${describeValue(item)}${hint}; channels of this file: ${known.length > 0 ? known.join(', ') : 'none'}`,
      ])
      ok = false
    } else if (seen.has(item)) {
      problems.push([field, `channel "${item}" is named twice`])
      ok = false
    } else seen.add(item)
  }
  return ok ? Object.freeze([...seen]) : null
}

function parseTemplate(raw: Raw, field: 'title' | 'text', fallback: string, problems: Problems) {
  if (!Object.hasOwn(raw, field)) return fallback
  const found = templateProblems(raw[field], describeValue, NOTIFICATION_PLACEHOLDERS)
  for (const problem of found) problems.push([field, problem])
  return found.length === 0 ? (raw[field] as string) : null
}

function parseRoute(
  raw: Raw,
  label: string,
  fileName: string,
  channelNames: ReadonlySet<string>,
  errors: string[],
): Route | null {
  const problems: Problems = []
  const name = isIdentifier(raw.name) ? raw.name : null
  if (!Object.hasOwn(raw, 'name')) problems.push(['name', 'is required'])
  else if (name === null) {
    problems.push([
      'name',
      `must be an identifier (${IDENTIFIER_TEXT}), got ${describeValue(raw.name)}`,
    ])
  }
  for (const key of Object.keys(raw)) {
    if (!(ROUTE_FIELDS as readonly string[]).includes(key)) {
      problems.push([
        key,
        `unknown field${suggestion(key, ROUTE_FIELDS)}; known fields of a route: ${ROUTE_FIELDS.join(', ')}`,
      ])
    }
  }
  const channels = parseRouteChannels(raw, channelNames, problems)
  const match = parseMatch(raw.match, problems)
  const on = parseOn(raw, problems)
  const repeatIntervalMs = durationField(
    raw,
    'repeat',
    'repeat',
    0,
    { minMs: 0, text: ' (0: no reminders)' },
    problems,
  )
  const groupWindowMs = durationField(
    raw,
    'group',
    'group',
    0,
    { minMs: 0, maxMs: MAX_GROUP_WINDOW_MS, text: ', at most 1h (0: each alert alone, at once)' },
    problems,
  )
  const title = parseTemplate(raw, 'title', DEFAULT_TITLE, problems)
  const text = parseTemplate(raw, 'text', DEFAULT_TEXT, problems)
  report(errors, fileName, label, problems)
  if (problems.length > 0 || name === null || channels === null || match === null) return null
  if (on === null || repeatIntervalMs === null || groupWindowMs === null) return null
  if (title === null || text === null) return null
  return Object.freeze({
    name,
    channels,
    match,
    on,
    repeatIntervalMs,
    groupWindowMs,
    template: Object.freeze({ title, text }),
  })
}

function parseDelivery(value: unknown, fileName: string, errors: string[]): DeliveryPolicy | null {
  if (value === undefined || value === null) return DEFAULT_DELIVERY
  const problems: Problems = []
  if (!isMapping(value)) {
    errors.push(
      `${fileName}: field "delivery": must be a mapping of ${DELIVERY_FIELDS.join(', ')}, got ${describeValue(value)}`,
    )
    return null
  }
  unknownKeys(value, DELIVERY_FIELDS, 'delivery', problems)
  const d = DEFAULT_DELIVERY
  const maxAttempts = integerField(
    value,
    'maxAttempts',
    'delivery.maxAttempts',
    d.maxAttempts,
    MAX_ATTEMPTS,
    problems,
  )
  const positive = { minMs: 1, text: ', above 0' }
  const maxAgeMs = durationField(value, 'maxAge', 'delivery.maxAge', d.maxAgeMs, positive, problems)
  const retryBaseMs = durationField(
    value,
    'retryBase',
    'delivery.retryBase',
    d.retryBaseMs,
    positive,
    problems,
  )
  const retryMaxMs = durationField(
    value,
    'retryMax',
    'delivery.retryMax',
    d.retryMaxMs,
    positive,
    problems,
  )
  if (retryBaseMs !== null && retryMaxMs !== null && retryMaxMs < retryBaseMs) {
    problems.push([
      'delivery.retryMax',
      `must be at least delivery.retryBase (${retryBaseMs} ms), got ${retryMaxMs} ms`,
    ])
  }
  for (const [field, message] of problems) errors.push(`${fileName}: field "${field}": ${message}`)
  if (problems.length > 0 || maxAttempts === null || maxAgeMs === null) return null
  if (retryBaseMs === null || retryMaxMs === null) return null
  return Object.freeze({ maxAttempts, maxAgeMs, retryBaseMs, retryMaxMs })
}

/** Entries of a top-level list; `key:` with every entry commented out is an empty list. */
function listOf(data: Raw, key: string, what: string, fileName: string, errors: string[]) {
  const list = data[key] === undefined || data[key] === null ? [] : data[key]
  if (Array.isArray(list)) return list as unknown[]
  errors.push(`${fileName}: field "${key}": must be a list of ${what}, got ${describeValue(list)}`)
  return []
}

/** `channels[i]`, or `channel "name"` once the name is usable (and its index when it repeats). */
function labelled(
  raw: Raw,
  index: number,
  what: 'channel' | 'route',
  firstIndexOf: Map<string, number>,
  fileName: string,
  errors: string[],
): { label: string; duplicate: boolean } {
  const list = `${what}s`
  if (!isIdentifier(raw.name)) return { label: `${list}[${index}]`, duplicate: false }
  const first = firstIndexOf.get(raw.name)
  if (first === undefined) {
    firstIndexOf.set(raw.name, index)
    return { label: `${what} "${raw.name}"`, duplicate: false }
  }
  const label = `${what} "${raw.name}" (${list}[${index}])`
  errors.push(
    `${fileName}: ${label}: field "name": duplicate name, already used by ${list}[${first}]`,
  )
  return { label, duplicate: true }
}

/**
 * Validates a notifications file already read into plain data. Never throws. Reports every
 * problem, each naming the file, the channel or route (`channel "name"`, or `channels[i]` when the
 * name is unusable) and the field; secrets of a channel (its kind's `secretFields`) never appear.
 * Custom kinds come from `modules`, which loadNotificationsFile fills.
 */
export function validateNotifications(
  data: unknown,
  fileName: string,
  kinds: ChannelKindRegistry,
  modules: CustomChannelModules = NO_MODULES,
): ParseNotificationsResult {
  // An empty file (or only comments) declares nothing.
  if (data === null || data === undefined) {
    return { ok: true, config: Object.freeze({ ...NO_NOTIFICATIONS, kinds }) }
  }
  const shape = `must be a mapping of ${TOP_LEVEL_FIELDS.join(', ')}`
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

  const channels: ChannelSettings[] = []
  const customKinds = new Map<string, ChannelKind>()
  // Every well-formed name counts as declared, so a route naming a channel with other problems
  // is not reported a second time as naming an unknown channel.
  const channelNames = new Set<string>()
  const channelIndex = new Map<string, number>()
  for (const [index, raw] of listOf(data, 'channels', 'channels', fileName, errors).entries()) {
    if (!isMapping(raw)) {
      errors.push(`${fileName}: channels[${index}]: must be a mapping, got ${describeValue(raw)}`)
      continue
    }
    const { label, duplicate } = labelled(raw, index, 'channel', channelIndex, fileName, errors)
    if (isIdentifier(raw.name)) channelNames.add(raw.name)
    const channel = parseChannel(raw, label, fileName, kinds, modules, customKinds, errors)
    if (channel !== null && !duplicate) channels.push(channel)
  }

  const routes: Route[] = []
  const routeIndex = new Map<string, number>()
  for (const [index, raw] of listOf(data, 'routes', 'routes', fileName, errors).entries()) {
    if (!isMapping(raw)) {
      errors.push(`${fileName}: routes[${index}]: must be a mapping, got ${describeValue(raw)}`)
      continue
    }
    const { label, duplicate } = labelled(raw, index, 'route', routeIndex, fileName, errors)
    const route = parseRoute(raw, label, fileName, channelNames, errors)
    if (route !== null && !duplicate) routes.push(route)
  }

  const delivery = parseDelivery(data.delivery, fileName, errors)
  if (errors.length > 0 || delivery === null) return { ok: false, errors }
  return {
    ok: true,
    config: Object.freeze({
      channels: Object.freeze(channels),
      routes: Object.freeze(routes),
      delivery,
      kinds: new Map([...kinds, ...customKinds]),
    }),
  }
}

/**
 * Parses and validates a notifications file's text. Pure: no I/O, never throws. A `kind: custom`
 * channel needs its module in `modules` (loadNotificationsFile imports them first).
 */
export function parseNotifications(
  text: string,
  fileName: string,
  kinds: ChannelKindRegistry,
  modules: CustomChannelModules = NO_MODULES,
): ParseNotificationsResult {
  const yaml = parseYamlText(text, fileName)
  if (!yaml.ok) return yaml
  return validateNotifications(yaml.data, fileName, kinds, modules)
}

/** The distinct `module` paths of the `kind: custom` channels in `data`, in order. */
export function customModulePathsOf(data: unknown): string[] {
  const paths = new Set<string>()
  if (isMapping(data) && Array.isArray(data.channels)) {
    for (const channel of data.channels) {
      if (!isMapping(channel) || channel.kind !== CUSTOM_CHANNEL_KIND) continue
      const file = channel[MODULE_FIELD]
      if (typeof file === 'string' && CHANNEL_MODULE_PATH.test(file)) paths.add(file)
    }
  }
  return [...paths]
}

/** Imports each custom module once; never throws: a failure is the message its channel reports. */
async function loadCustomModules(
  paths: readonly string[],
  deps: NotificationsDeps,
): Promise<CustomChannelModules> {
  const modules = new Map<string, CustomChannelModule>()
  const baseDir = deps.baseDir ?? process.cwd()
  const load: LoadCustomChannelKind =
    deps.loadCustom ?? ((file, dir) => loadCustomChannelKind(file, dir, deps.kinds))
  for (const file of paths) {
    let kind: unknown
    try {
      kind = await load(file, baseDir)
    } catch (err) {
      modules.set(file, {
        ok: false,
        message: `cannot load channel module "${file}": ${(err as Error)?.message ?? String(err)}`,
      })
      continue
    }
    // The default loader checks this too; another one may not.
    const problem = channelKindProblem(kind, deps.kinds)
    modules.set(
      file,
      problem === null
        ? { ok: true, kind: kind as ChannelKind }
        : { ok: false, message: `channel module "${file}": default export ${problem}` },
    )
  }
  return modules
}

/**
 * Reads and validates a notifications file, importing its custom channel modules first; throws a
 * GatewayError (GW_ERR_NOTIFICATIONS) listing every problem. An empty `file` (NOTIFICATIONS_FILE
 * unset) is no notifications: no channels, no routes.
 */
export async function loadNotificationsFile(
  file: string,
  deps: NotificationsDeps,
): Promise<LoadedNotifications> {
  if (file === '') return NO_NOTIFICATIONS
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new GatewayError(
      ERROR_CODES.notifications,
      `${file}: cannot read notifications file: ${(err as Error).message}`,
      { cause: err },
    )
  }
  const yaml = parseYamlText(text, file)
  if (!yaml.ok) throw new GatewayError(ERROR_CODES.notifications, yaml.errors.join('\n'))
  const modules = await loadCustomModules(customModulePathsOf(yaml.data), deps)
  const result = validateNotifications(yaml.data, file, deps.kinds, modules)
  if (!result.ok) throw new GatewayError(ERROR_CODES.notifications, result.errors.join('\n'))
  return result.config
}

/**
 * Applies edits of the notifications file without a restart, with the rules file's watcher: an
 * invalid file is logged with every problem (secrets redacted) and the config in force is kept.
 */
export function watchNotificationsFile(
  deps: NotificationsDeps & { log: Logger; apply: (config: LoadedNotifications) => void },
  options: { file: string; debounceMs?: number },
): RulesWatcher {
  return watchRulesFile(
    { log: deps.log, load: () => loadNotificationsFile(options.file, deps), apply: deps.apply },
    { ...options, subject: 'notifications' },
  )
}
