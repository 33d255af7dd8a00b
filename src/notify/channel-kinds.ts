import { realpath, stat } from 'node:fs/promises'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { IDENTIFIER_PATTERN, isIdentifier } from '../contract/identifiers.ts'
import { describeValue } from '../rules/describe-value.ts'
import { emailKind } from './channels/email.ts'
import { slackKind } from './channels/slack.ts'
import { webhookKind } from './channels/webhook.ts'
import type { ChannelKind } from './types.ts'

/** Kind name -> kind, as the notifications loader looks them up. */
export type ChannelKindRegistry = ReadonlyMap<string, ChannelKind>

/**
 * `kind: custom` channels name a module (`module: ./config/channels/x.ts`) whose default export is
 * a ChannelKind; it is not in the registry, the loader imports it (as custom rule handlers).
 */
export const CUSTOM_CHANNEL_KIND = 'custom'

/**
 * The built-in kinds. A new kind is one module under `channels/` and one entry here; neither the
 * loader nor the outbox changes.
 */
export const BUILT_IN_CHANNEL_KINDS: ChannelKindRegistry = new Map<string, ChannelKind>(
  ([webhookKind, slackKind, emailKind] as ChannelKind[]).map((kind) => [kind.kind, kind]),
)

/** What `module:` may name: a TypeScript or JavaScript module (tsx runs the .ts ones). */
export const CHANNEL_MODULE_PATH = /\.(?:ts|mts|js|mjs)$/
const IDENTIFIER_TEXT = IDENTIFIER_PATTERN.source.replace(/^\^|\$$/g, '')

/** Why a default export is not a ChannelKind; null when it is one. */
export function channelKindProblem(
  value: unknown,
  builtIns: ChannelKindRegistry = BUILT_IN_CHANNEL_KINDS,
): string | null {
  const shape = 'must be a channel kind { kind, secretFields, parse, create }'
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `${shape}, got ${describeValue(value)}`
  }
  const v = value as Record<string, unknown>
  if (!isIdentifier(v.kind)) {
    return `${shape}: "kind" must be an identifier (${IDENTIFIER_TEXT}), got ${describeValue(v.kind)}`
  }
  if (builtIns.has(v.kind) || v.kind === CUSTOM_CHANNEL_KIND) {
    return `${shape}: kind "${v.kind}" is taken by a built-in kind`
  }
  if (!Array.isArray(v.secretFields) || !v.secretFields.every((f) => typeof f === 'string')) {
    return `${shape}: "secretFields" must be a list of field names (may be empty), got ${describeValue(v.secretFields)}`
  }
  for (const method of ['parse', 'create'] as const) {
    if (typeof v[method] !== 'function') {
      return `${shape}: "${method}" must be a function, got ${describeValue(v[method])}`
    }
  }
  return null
}

/**
 * Imports a custom channel module (`module:` of a `kind: custom` channel, relative to `baseDir`)
 * and resolves its default export once it is a ChannelKind; rejects with an Error saying why not,
 * the reason alone (no such file, the import failed, not a channel kind): the notifications loader
 * (its default `loadCustom`) says which module, on the channel's `module` field. Node caches
 * modules by URL: an edited module takes effect on restart.
 */
export async function loadCustomChannelKind(
  modulePath: string,
  baseDir: string,
  builtIns: ChannelKindRegistry = BUILT_IN_CHANNEL_KINDS,
): Promise<ChannelKind> {
  if (!CHANNEL_MODULE_PATH.test(modulePath)) {
    throw new Error(
      `must be a module path ending in .ts, .mts, .js or .mjs, got ${describeValue(modulePath)}`,
    )
  }
  const absolute = path.resolve(baseDir, modulePath)
  let real: string
  try {
    if (!(await stat(absolute)).isFile()) throw new Error('not a file')
    real = await realpath(absolute)
  } catch {
    throw new Error(`no such file ${absolute} (paths are relative to ${baseDir})`)
  }
  let exported: unknown
  try {
    const mod = (await import(pathToFileURL(real).href)) as { default?: unknown }
    exported = mod.default
  } catch (err) {
    throw new Error(`import failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }
  const problem = channelKindProblem(exported, builtIns)
  if (problem !== null) throw new Error(`default export ${problem}`)
  return exported as ChannelKind
}
