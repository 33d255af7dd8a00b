import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import { CONFIG_KEYS, type GatewayConfig } from './schema.ts'

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const DEFAULT_CONFIG_FILE = path.join(PROJECT_ROOT, 'config/default.yaml')

type Env = Readonly<Record<string, string | undefined>>

/** One source of settings, in the order they are applied: later layers win. */
export interface ConfigLayer {
  /** Named in error messages: a file path or "environment". */
  source: string
  values: Record<string, unknown>
}

/**
 * Loads config/default.yaml, then the file named by CONFIG, then environment overrides;
 * validates every key once and throws one GatewayError listing every problem.
 */
export function loadConfig(env: Env = process.env): GatewayConfig {
  const layers = [readYamlLayer(DEFAULT_CONFIG_FILE)]
  const extra = env.CONFIG?.trim()
  if (extra) layers.push(readYamlLayer(path.resolve(extra)))
  return resolveConfig(layers, env)
}

export function resolveConfig(fileLayers: readonly ConfigLayer[], env: Env): GatewayConfig {
  const problems: string[] = []
  const known = new Set(CONFIG_KEYS.map((k) => k.path))
  const flat = new Map<string, { raw: unknown; source: string }>()
  for (const layer of fileLayers) {
    for (const [key, raw] of Object.entries(flatten(layer.values))) {
      if (!known.has(key)) problems.push(`${layer.source}: unknown key "${key}"`)
      else flat.set(key, { raw, source: layer.source })
    }
  }
  for (const key of CONFIG_KEYS) {
    const fromEnv = env[key.env]
    if (fromEnv !== undefined && fromEnv !== '')
      flat.set(key.path, { raw: fromEnv, source: 'environment' })
  }

  const config: Record<string, unknown> = {}
  for (const key of CONFIG_KEYS) {
    const given = flat.get(key.path)
    const result = key.parse(given ? given.raw : key.default)
    if (result.ok) setPath(config, key.path, result.value)
    else
      problems.push(
        `${key.env} (${key.path}, from ${given?.source ?? 'default'}): ${result.message}`,
      )
  }
  if (problems.length > 0) {
    throw new GatewayError(ERROR_CODES.config, `invalid configuration:\n  ${problems.join('\n  ')}`)
  }
  return deepFreeze(config) as unknown as GatewayConfig
}

function readYamlLayer(file: string): ConfigLayer {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new GatewayError(
      ERROR_CODES.config,
      `cannot read config file ${file}: ${(err as Error).message}`,
    )
  }
  let values: unknown
  try {
    values = parseYaml(text) ?? {}
  } catch (err) {
    throw new GatewayError(
      ERROR_CODES.config,
      `config file ${file} is not valid YAML: ${(err as Error).message}`,
    )
  }
  if (typeof values !== 'object' || values === null || Array.isArray(values)) {
    throw new GatewayError(ERROR_CODES.config, `config file ${file} must hold a mapping of keys`)
  }
  return { source: file, values: values as Record<string, unknown> }
}

function flatten(values: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(values)) {
    const full = prefix ? `${prefix}.${key}` : key
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      Object.assign(out, flatten(value as Record<string, unknown>, full))
    } else {
      out[full] = value
    }
  }
  return out
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.')
  let node = target
  for (const part of parts.slice(0, -1)) {
    node[part] ??= {}
    node = node[part] as Record<string, unknown>
  }
  node[parts[parts.length - 1] as string] = value
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
