import { readFile } from 'node:fs/promises'
import { LineCounter, parseDocument } from 'yaml'
import { IDENTIFIER_PATTERN, isIdentifier } from '../contract/identifiers.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import { describeValue } from './describe-value.ts'

/**
 * The devices the gateway knows, with their tags (`config/devices.yaml`). Rules match tags
 * (`match: { tags: { site: greenhouse } }`); presence announces known devices.
 *
 * File shape:
 *
 *   devices:
 *     - id: greenhouse-sim-001
 *       tags: { site: greenhouse, zone: north }
 *
 * Unknown keys are errors, as in the rules file, except `secret` and `roles`: those are reserved
 * for per-device credentials (DESIGN §8) and accepted, unread, so a file written for that later
 * version still loads here.
 */
export interface DeviceRegistry {
  /** The device's tags; undefined for a device not in the registry. */
  tagsOf(deviceId: string): Readonly<Record<string, string>> | undefined
  /** Every registered id, in file order. */
  ids(): readonly string[]
}

export interface DeviceEntry {
  id: string
  tags: Readonly<Record<string, string>>
}

const ENTRY_FIELDS = ['id', 'tags'] as const
const RESERVED_FIELDS = ['secret', 'roles'] as const
const MAX_TAG_CHARS = 128
const IDENTIFIER_TEXT = IDENTIFIER_PATTERN.source.replace(/^\^|\$$/g, '')

export type ParseDevicesResult =
  | { ok: true; registry: DeviceRegistry }
  | { ok: false; errors: string[] }

function isMapping(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function createDeviceRegistry(entries: readonly DeviceEntry[]): DeviceRegistry {
  const byId = new Map<string, Readonly<Record<string, string>>>()
  for (const entry of entries) byId.set(entry.id, Object.freeze({ ...entry.tags }))
  const ids = Object.freeze([...byId.keys()])
  return {
    tagsOf: (deviceId) => byId.get(deviceId),
    ids: () => ids,
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
  // An empty file (or only comments) is an empty registry.
  if (data === null || data === undefined) return { ok: true, registry: EMPTY_REGISTRY }
  if (!isMapping(data)) {
    return {
      ok: false,
      errors: [`${fileName}: must be a mapping with a "devices" list, got ${describeValue(data)}`],
    }
  }
  const errors: string[] = []
  for (const key of Object.keys(data)) {
    if (key !== 'devices') {
      errors.push(`${fileName}: field "${key}": unknown top-level field; known: devices`)
    }
  }
  const list = data.devices ?? []
  if (!Array.isArray(list)) {
    errors.push(
      `${fileName}: field "devices": must be a list of devices, got ${describeValue(list)}`,
    )
    return { ok: false, errors }
  }

  const entries: DeviceEntry[] = []
  const firstIndexOf = new Map<string, number>()
  for (const [index, raw] of list.entries()) {
    if (!isMapping(raw)) {
      errors.push(`${fileName}: devices[${index}]: must be a mapping, got ${describeValue(raw)}`)
      continue
    }
    const problems: Array<[string, string]> = []
    let label = `devices[${index}]`
    const id = isIdentifier(raw.id) ? raw.id : null
    if (!Object.hasOwn(raw, 'id')) problems.push(['id', 'is required'])
    else if (id === null) {
      problems.push([
        'id',
        `must be a device id (${IDENTIFIER_TEXT}), got ${describeValue(raw.id)}`,
      ])
    } else {
      label = `device "${id}"`
      const first = firstIndexOf.get(id)
      if (first === undefined) firstIndexOf.set(id, index)
      else {
        label = `device "${id}" (devices[${index}])`
        problems.push(['id', `duplicate id, already used by devices[${first}]`])
      }
    }
    for (const key of Object.keys(raw)) {
      const known = (ENTRY_FIELDS as readonly string[]).includes(key)
      const reserved = (RESERVED_FIELDS as readonly string[]).includes(key)
      if (!known && !reserved) {
        problems.push([
          key,
          `unknown field; known: ${ENTRY_FIELDS.join(', ')} (${RESERVED_FIELDS.join(', ')} reserved for credentials)`,
        ])
      }
    }
    const tags = Object.hasOwn(raw, 'tags') ? parseTags(raw.tags, 'tags', problems) : {}
    for (const [field, message] of problems) {
      errors.push(`${fileName}: ${label}: field "${field}": ${message}`)
    }
    if (problems.length === 0 && id !== null && tags !== null) entries.push({ id, tags })
  }
  return errors.length > 0
    ? { ok: false, errors }
    : { ok: true, registry: createDeviceRegistry(entries) }
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
