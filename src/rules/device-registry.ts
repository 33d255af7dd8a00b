import { readFile } from 'node:fs/promises'
import { IDENTIFIER_PATTERN, isIdentifier } from '../contract/identifiers.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import { isRole, ROLES, type Role } from '../security/acl.ts'
import { parseSecretHash, type SecretHash } from '../security/credentials.ts'
import { parseYamlText } from '../util/yaml-text.ts'
import { describeValue } from './describe-value.ts'

/**
 * The devices and apps the gateway knows (`config/devices.yaml`): device tags, which rules match
 * (`match: { tags: { site: greenhouse } }`) and presence announces, and the credentials of
 * devices and apps (DESIGN §8, src/security/).
 *
 * File shape:
 *
 *   devices:
 *     - id: greenhouse-sim-001
 *       tags: { site: greenhouse, zone: north }
 *       secret: scrypt$16384$8$1$<salt>$<hash>   # optional: written by npm run device:add
 *       metrics: [temperature, humidity]         # optional: the only metrics it may publish
 *   apps:
 *     - id: dashboard
 *       secret: scrypt$16384$8$1$<salt>$<hash>   # required: written by npm run app:add
 *       roles: [read-alerts, read-readings]      # read-alerts | write-alerts | read-readings | admin
 *
 * Ids are one namespace (an id is the MQTT username and reserves that MQTT client id), so a device
 * and an app cannot share one. Unknown keys are errors, as in the rules file. Secrets are hashes
 * only: a plain secret is refused, and no message ever repeats a secret's text.
 */
export interface DeviceRegistry {
  /** The device's tags; undefined for a device not in the registry. */
  tagsOf(deviceId: string): Readonly<Record<string, string>> | undefined
  /** Every registered device id, in file order. */
  ids(): readonly string[]
  /** The device's entry; undefined when it is not registered. */
  device(deviceId: string): DeviceEntry | undefined
  /** The app's entry; undefined when there is no such app. */
  app(appId: string): AppEntry | undefined
  /** Every app id, in file order. */
  appIds(): readonly string[]
  /** True once a device or an app has a secret: from then on every MQTT client authenticates. */
  hasCredentials(): boolean
}

export interface DeviceEntry {
  id: string
  tags: Readonly<Record<string, string>>
  /** Hash of the device's MQTT password; absent: it has none (client certificate, or anonymous). */
  secret?: SecretHash
  /** The only metrics it may publish; absent: any. */
  metrics?: readonly string[]
}

export interface AppEntry {
  id: string
  secret: SecretHash
  roles: readonly Role[]
}

const ENTRY_FIELDS = ['id', 'tags', 'secret', 'metrics'] as const
const APP_FIELDS = ['id', 'secret', 'roles'] as const
const MAX_TAG_CHARS = 128
const IDENTIFIER_TEXT = IDENTIFIER_PATTERN.source.replace(/^\^|\$$/g, '')

export type ParseDevicesResult =
  | { ok: true; registry: DeviceRegistry }
  | { ok: false; errors: string[] }

function isMapping(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function createDeviceRegistry(
  entries: readonly DeviceEntry[],
  apps: readonly AppEntry[] = [],
): DeviceRegistry {
  const byId = new Map<string, DeviceEntry>()
  for (const entry of entries) {
    const copy: DeviceEntry = { id: entry.id, tags: Object.freeze({ ...entry.tags }) }
    if (entry.secret) copy.secret = entry.secret
    if (entry.metrics) copy.metrics = Object.freeze([...entry.metrics])
    byId.set(entry.id, Object.freeze(copy))
  }
  const appsById = new Map<string, AppEntry>()
  for (const app of apps) {
    appsById.set(app.id, Object.freeze({ ...app, roles: Object.freeze([...app.roles]) }))
  }
  const ids = Object.freeze([...byId.keys()])
  const appIds = Object.freeze([...appsById.keys()])
  const withCredentials = appIds.length > 0 || entries.some((entry) => entry.secret !== undefined)
  return {
    tagsOf: (deviceId) => byId.get(deviceId)?.tags,
    ids: () => ids,
    device: (deviceId) => byId.get(deviceId),
    app: (appId) => appsById.get(appId),
    appIds: () => appIds,
    hasCredentials: () => withCredentials,
  }
}

export const EMPTY_REGISTRY: DeviceRegistry = createDeviceRegistry([])

/**
 * A tag value as text. YAML reads `floor: 2` as a number and `indoor: true` as a boolean; both are
 * taken as their text, in the registry and in rules alike, so the two always compare equal.
 */
export function tagText(value: unknown): string | null {
  if (typeof value === 'string') {
    return value.length > 0 && value.length <= MAX_TAG_CHARS ? value : null
  }
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  if (typeof value === 'boolean') return String(value)
  return null
}

/**
 * Validates a tag mapping; problems are [field, message] under `field`. Shared with the rules
 * loader (`match.tags`), so both accept exactly the same tags.
 */
export function parseTags(
  value: unknown,
  field: string,
  problems: Array<[string, string]>,
): Record<string, string> | null {
  if (!isMapping(value)) {
    problems.push([field, `must be a mapping of tag name to value, got ${describeValue(value)}`])
    return null
  }
  const tags: Record<string, string> = {}
  let ok = true
  for (const [name, raw] of Object.entries(value)) {
    if (!isIdentifier(name)) {
      problems.push([
        `${field}.${name}`,
        `tag name must be an identifier (${IDENTIFIER_TEXT}), got ${describeValue(name)}`,
      ])
      ok = false
      continue
    }
    const text = tagText(raw)
    if (text === null) {
      problems.push([
        `${field}.${name}`,
        `must be a text of 1-${MAX_TAG_CHARS} characters, a number or a boolean, got ${describeValue(raw)}`,
      ])
      ok = false
    } else tags[name] = text
  }
  return ok ? tags : null
}

/** Parses and validates a registry file. Pure, never throws; reports every problem. */
export function parseDeviceRegistry(text: string, fileName: string): ParseDevicesResult {
  const yaml = parseYamlText(text, fileName)
  if (!yaml.ok) return yaml
  const data = yaml.data
  // An empty file (or only comments) is an empty registry.
  if (data === null || data === undefined) return { ok: true, registry: EMPTY_REGISTRY }
  if (!isMapping(data)) {
    return {
      ok: false,
      errors: [
        `${fileName}: must be a mapping with "devices" and "apps" lists, got ${describeValue(data)}`,
      ],
    }
  }
  const errors: string[] = []
  for (const key of Object.keys(data)) {
    if (key !== 'devices' && key !== 'apps') {
      errors.push(`${fileName}: field "${key}": unknown top-level field; known: devices, apps`)
    }
  }
  const devices = data.devices ?? []
  const apps = data.apps ?? []
  if (!Array.isArray(devices)) {
    errors.push(
      `${fileName}: field "devices": must be a list of devices, got ${describeValue(devices)}`,
    )
  }
  if (!Array.isArray(apps)) {
    errors.push(`${fileName}: field "apps": must be a list of apps, got ${describeValue(apps)}`)
  }
  if (!Array.isArray(devices) || !Array.isArray(apps)) return { ok: false, errors }

  // One namespace for device and app ids: the MQTT username says which entry it is.
  const firstUse = new Map<string, string>()
  const claimId = (
    raw: Readonly<Record<string, unknown>>,
    list: 'devices' | 'apps',
    index: number,
    problems: Array<[string, string]>,
  ): { id: string | null; label: string } => {
    const noun = list === 'devices' ? 'device' : 'app'
    let label = `${list}[${index}]`
    const id = isIdentifier(raw.id) ? raw.id : null
    if (!Object.hasOwn(raw, 'id')) problems.push(['id', 'is required'])
    else if (id === null) {
      problems.push([
        'id',
        `must be ${noun === 'app' ? 'an' : 'a'} ${noun} id (${IDENTIFIER_TEXT}), got ${describeValue(raw.id)}`,
      ])
    } else {
      label = `${noun} "${id}"`
      const first = firstUse.get(id)
      if (first === undefined) firstUse.set(id, `${list}[${index}]`)
      else {
        label = `${noun} "${id}" (${list}[${index}])`
        problems.push(['id', `duplicate id, already used by ${first}`])
      }
    }
    return { id, label }
  }
  const unknownFields = (
    raw: Readonly<Record<string, unknown>>,
    known: readonly string[],
    problems: Array<[string, string]>,
    hint: Readonly<Record<string, string>> = {},
  ) => {
    for (const key of Object.keys(raw)) {
      if (known.includes(key)) continue
      problems.push([key, hint[key] ?? `unknown field; known: ${known.join(', ')}`])
    }
  }
  const secretOf = (value: unknown, problems: Array<[string, string]>): SecretHash | null => {
    const parsed = parseSecretHash(value)
    if (parsed.ok) return parsed.hash
    problems.push(['secret', parsed.message])
    return null
  }

  const entries: DeviceEntry[] = []
  for (const [index, raw] of devices.entries()) {
    if (!isMapping(raw)) {
      errors.push(`${fileName}: devices[${index}]: must be a mapping, got ${describeValue(raw)}`)
      continue
    }
    const problems: Array<[string, string]> = []
    const { id, label } = claimId(raw, 'devices', index, problems)
    unknownFields(raw, ENTRY_FIELDS, problems, {
      roles:
        'devices have no roles (they publish their own readings); apps with roles go under "apps"',
    })
    const tags = Object.hasOwn(raw, 'tags') ? parseTags(raw.tags, 'tags', problems) : {}
    const secret = Object.hasOwn(raw, 'secret') ? secretOf(raw.secret, problems) : undefined
    const metrics = Object.hasOwn(raw, 'metrics') ? parseMetrics(raw.metrics, problems) : undefined
    for (const [field, message] of problems) {
      errors.push(`${fileName}: ${label}: field "${field}": ${message}`)
    }
    if (problems.length === 0 && id !== null && tags !== null) {
      const entry: DeviceEntry = { id, tags }
      if (secret) entry.secret = secret
      if (metrics) entry.metrics = metrics
      entries.push(entry)
    }
  }

  const appEntries: AppEntry[] = []
  for (const [index, raw] of apps.entries()) {
    if (!isMapping(raw)) {
      errors.push(`${fileName}: apps[${index}]: must be a mapping, got ${describeValue(raw)}`)
      continue
    }
    const problems: Array<[string, string]> = []
    const { id, label } = claimId(raw, 'apps', index, problems)
    unknownFields(raw, APP_FIELDS, problems)
    let secret: SecretHash | null = null
    if (!Object.hasOwn(raw, 'secret')) {
      problems.push(['secret', 'is required (npm run app:add writes it)'])
    } else secret = secretOf(raw.secret, problems)
    const roles = parseRoles(raw.roles, problems)
    for (const [field, message] of problems) {
      errors.push(`${fileName}: ${label}: field "${field}": ${message}`)
    }
    if (problems.length === 0 && id !== null && secret !== null && roles !== null) {
      appEntries.push({ id, secret, roles })
    }
  }
  return errors.length > 0
    ? { ok: false, errors }
    : { ok: true, registry: createDeviceRegistry(entries, appEntries) }
}

function parseMetrics(value: unknown, problems: Array<[string, string]>): string[] | null {
  if (!Array.isArray(value) || value.length === 0) {
    problems.push([
      'metrics',
      `must be a non-empty list of metric names (leave it out to allow any), got ${describeValue(value)}`,
    ])
    return null
  }
  const bad = value.find((metric) => !isIdentifier(metric))
  if (bad !== undefined) {
    problems.push([
      'metrics',
      `must hold metric names (${IDENTIFIER_TEXT}), got ${describeValue(bad)}`,
    ])
    return null
  }
  return [...new Set(value as string[])]
}

function parseRoles(value: unknown, problems: Array<[string, string]>): Role[] | null {
  if (value === undefined) {
    problems.push(['roles', `is required: a list of ${ROLES.join(', ')}`])
    return null
  }
  if (!Array.isArray(value) || value.length === 0) {
    problems.push([
      'roles',
      `must be a non-empty list of ${ROLES.join(', ')}, got ${describeValue(value)}`,
    ])
    return null
  }
  const bad = value.find((role) => !isRole(role))
  if (bad !== undefined) {
    problems.push(['roles', `must be one of ${ROLES.join(', ')}, got ${describeValue(bad)}`])
    return null
  }
  return [...new Set(value as Role[])]
}

/**
 * Reads the registry file. A missing file is an empty registry (the file is optional); an
 * unreadable or invalid one throws a GatewayError (GW_ERR_CONFIG) listing every problem.
 */
export async function loadDeviceRegistry(path: string): Promise<DeviceRegistry> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_REGISTRY
    throw new GatewayError(
      ERROR_CODES.config,
      `${path}: cannot read device registry: ${(err as Error).message}`,
      { cause: err },
    )
  }
  const result = parseDeviceRegistry(text, path)
  if (!result.ok) throw new GatewayError(ERROR_CODES.config, result.errors.join('\n'))
  return result.registry
}
