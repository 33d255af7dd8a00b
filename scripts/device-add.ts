/**
 * `npm run device:add -- dev-7 [dev-8 ...] [--tags site=lab] [--metrics temperature,humidity]`
 * `npm run device:add -- --fleet devices/fleet.yaml --secrets-out data/fleet-secrets.yaml`
 * `npm run app:add -- dashboard --roles read-alerts,read-readings`
 *
 * Adds devices or apps with a fresh random secret to the registry file (DEVICES_FILE, default
 * config/devices.yaml; `--file` names another). Only the secret's scrypt hash is stored; the
 * secret itself is printed once (or, with `--secrets-out`, written to that file, mode 0600, for
 * the simulator's `--credentials`). The file keeps its comments and layout; it is replaced
 * atomically, and checked with the gateway's own parser before it is.
 *
 * An id that already has a secret is refused (`--rotate` replaces the secret, so the old one stops
 * working at the gateway's next start). A device listed without a secret (tags only) gets one and
 * keeps its tags. Exit 0 on success, 1 with a message on stderr otherwise.
 */
import { chmod, readFile, rename, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { isMap, isSeq, parseDocument, parse as parseYaml, type YAMLMap, type YAMLSeq } from 'yaml'
import {
  checkFleetConfig,
  loadFleetFile,
  planDevices,
  resolveFleet,
} from '../devices/fleet-config.ts'
import { isIdentifier } from '../src/contract/identifiers.ts'
import { parseDeviceRegistry } from '../src/rules/device-registry.ts'
import { isRole, ROLES } from '../src/security/acl.ts'
import { generateSecret, hashSecret } from '../src/security/credentials.ts'

export type Kind = 'device' | 'app'

const USAGE = `Usage:
  npm run device:add -- ID [ID ...] [--tags k=v,k2=v2] [--metrics m1,m2] [--file FILE] [--rotate]
  npm run device:add -- --fleet devices/fleet.yaml [--secrets-out FILE] [--file FILE]
  npm run app:add -- ID --roles ${ROLES.join(',')} [--file FILE] [--rotate]

  --file FILE         registry file (default: $DEVICES_FILE or config/devices.yaml)
  --tags k=v,...      device tags (rules match them)
  --metrics a,b       the only metrics the device may publish (default: any)
  --roles r1,r2       app roles: ${ROLES.join(', ')}
  --fleet FILE        add every device of a simulator fleet file
  --secrets-out FILE  write "id: secret" lines to FILE (mode 0600) instead of printing them
  --rotate            replace the secret of an id that already has one`

class UsageError extends Error {}

export interface AddOptions {
  kind: Kind
  ids: string[]
  file: string
  tags: Record<string, string> | null
  metrics: string[] | null
  roles: string[] | null
  rotate: boolean
  secretsOut: string | null
  fleet: string | null
}

function list(text: string | undefined): string[] | null {
  if (text === undefined) return null
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): AddOptions {
  const [kindArg, ...rest] = argv
  if (kindArg !== 'device' && kindArg !== 'app') {
    throw new UsageError('first argument must be device or app (npm run device:add / app:add)')
  }
  const kind: Kind = kindArg
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        file: { type: 'string' },
        tags: { type: 'string' },
        metrics: { type: 'string' },
        roles: { type: 'string' },
        fleet: { type: 'string' },
        'secrets-out': { type: 'string' },
        rotate: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help === true) throw new UsageError('')
  const str = (name: string) => {
    const value = values[name]
    return typeof value === 'string' ? value : undefined
  }
  const options: AddOptions = {
    kind,
    ids: positionals,
    file: str('file') ?? env.DEVICES_FILE ?? 'config/devices.yaml',
    tags: null,
    metrics: list(str('metrics')),
    roles: list(str('roles')),
    rotate: values.rotate === true,
    secretsOut: str('secrets-out') ?? null,
    fleet: str('fleet') ?? null,
  }
  const tags = list(str('tags'))
  if (tags !== null) {
    options.tags = {}
    for (const pair of tags) {
      const eq = pair.indexOf('=')
      const name = pair.slice(0, eq)
      const value = pair.slice(eq + 1)
      if (eq <= 0 || value === '' || !isIdentifier(name)) {
        throw new UsageError(`--tags: expected name=value pairs, got "${pair}"`)
      }
      options.tags[name] = value
    }
  }
  if (kind === 'app') {
    if (options.tags || options.metrics || options.fleet) {
      throw new UsageError('--tags, --metrics and --fleet are for devices; apps take --roles')
    }
    const bad = options.roles?.find((r) => !isRole(r))
    if (bad !== undefined) {
      throw new UsageError(`--roles: "${bad}" is not a role (${ROLES.join(', ')})`)
    }
    if (options.roles?.length === 0) throw new UsageError(`--roles: name at least one role`)
  } else if (options.roles) throw new UsageError('--roles is for apps (npm run app:add)')
  if (options.metrics?.some((m) => !isIdentifier(m)) || options.metrics?.length === 0) {
    throw new UsageError('--metrics: expected metric names separated by commas')
  }
  if (options.ids.length === 0 && options.fleet === null) throw new UsageError('name an id')
  const badId = options.ids.find((id) => !isIdentifier(id))
  if (badId !== undefined) {
    throw new UsageError(`"${badId}" is not a valid id ([A-Za-z0-9_.-]{1,64})`)
  }
  return options
}

async function fleetIds(file: string): Promise<string[]> {
  const loaded = await loadFleetFile(file, { optional: false })
  if (!loaded.ok) throw new UsageError(`--fleet ${loaded.problems.join('; ')}`)
  const config = resolveFleet(loaded.settings)
  const problems = checkFleetConfig(config)
  if (problems.length > 0) throw new UsageError(`--fleet ${file}: ${problems.join('; ')}`)
  return planDevices(config).map((spec) => spec.id)
}

function entryOf(seq: YAMLSeq | null, id: string): YAMLMap | undefined {
  for (const item of seq?.items ?? []) {
    if (isMap(item) && item.get('id') === id) return item as YAMLMap
  }
  return undefined
}

async function readIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

/** Writes next to the target and renames over it: a reader sees the old file or the new one. */
async function writeAtomically(file: string, text: string, mode: number): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`)
  await writeFile(temp, text, { mode })
  await chmod(temp, mode)
  await rename(temp, file)
}

export interface AddResult {
  /** id -> the new secret: shown once, never stored. */
  secrets: Map<string, string>
  file: string
}

/** Adds (or, with rotate, re-keys) the ids in the registry file. Throws UsageError on refusal. */
export async function addCredentials(options: AddOptions): Promise<AddResult> {
  const ids = [...options.ids, ...(options.fleet ? await fleetIds(options.fleet) : [])]
  const duplicated = ids.find((id, i) => ids.indexOf(id) !== i)
  if (duplicated !== undefined) throw new UsageError(`"${duplicated}" is named twice`)

  const existing = await readIfExists(options.file)
  const text = existing ?? ''
  const before = parseDeviceRegistry(text, options.file)
  if (!before.ok) {
    throw new UsageError(`the registry file is invalid; fix it first:\n${before.errors.join('\n')}`)
  }
  const registry = before.registry
  const doc = parseDocument(text)
  const listKey = options.kind === 'device' ? 'devices' : 'apps'
  let seq = doc.get(listKey, true)
  if (!isSeq(seq)) {
    doc.set(listKey, doc.createNode([]))
    seq = doc.get(listKey, true)
  }
  const items = seq as YAMLSeq

  const secrets = new Map<string, string>()
  for (const id of ids) {
    const otherKind = options.kind === 'device' ? registry.app(id) : registry.device(id)
    if (otherKind !== undefined) {
      throw new UsageError(
        `"${id}" is already ${options.kind === 'device' ? 'an app' : 'a device'}: device and app ids share one namespace`,
      )
    }
    const entry = entryOf(items, id)
    const hasSecret = entry?.has('secret') === true
    if (hasSecret && !options.rotate) {
      throw new UsageError(
        `${options.kind} "${id}" already has a secret in ${options.file}; --rotate replaces it`,
      )
    }
    if (options.kind === 'app' && entry === undefined && options.roles === null) {
      throw new UsageError(`app "${id}" needs --roles (${ROLES.join(', ')})`)
    }
    const secret = generateSecret()
    const hash = await hashSecret(secret)
    secrets.set(id, secret)
    const target = entry ?? (doc.createNode({ id }) as YAMLMap)
    if (options.tags) {
      const tags = doc.createNode(options.tags) as YAMLMap
      tags.flow = true
      target.set('tags', tags)
    }
    if (options.metrics) {
      const metrics = doc.createNode(options.metrics) as YAMLSeq
      metrics.flow = true
      target.set('metrics', metrics)
    }
    if (options.roles) {
      const roles = doc.createNode(options.roles) as YAMLSeq
      roles.flow = true
      target.set('roles', roles)
    }
    target.set('secret', hash)
    if (entry === undefined) items.add(target)
  }

  const next = doc.toString({ lineWidth: 0 })
  const after = parseDeviceRegistry(next, options.file)
  if (!after.ok)
    throw new UsageError(`refusing to write an invalid file:\n${after.errors.join('\n')}`)
  const mode = existing === null ? 0o600 : (await stat(options.file)).mode & 0o777
  await writeAtomically(options.file, next, mode)
  return { secrets, file: options.file }
}

async function writeSecrets(file: string, secrets: ReadonlyMap<string, string>): Promise<void> {
  const existing = await readIfExists(file)
  const merged: Record<string, string> = {}
  if (existing !== null) {
    const data: unknown = parseYaml(existing)
    if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
      for (const [id, secret] of Object.entries(data)) {
        if (typeof secret === 'string') merged[id] = secret
      }
    }
  }
  for (const [id, secret] of secrets) merged[id] = secret
  // Quoted: a secret must stay a text whatever characters it happens to have.
  const lines = Object.entries(merged).map(([id, secret]) => `${id}: ${JSON.stringify(secret)}`)
  const header = '# MQTT passwords by device id (npm run device:add --secrets-out). Keep private.\n'
  await writeAtomically(file, `${header}${lines.join('\n')}\n`, 0o600)
}

export async function main(argv: readonly string[], env = process.env): Promise<number> {
  let options: AddOptions
  try {
    options = parseOptions(argv, env)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    if (err.message !== '') process.stderr.write(`device-add: ${err.message}\n\n`)
    process.stderr.write(`${USAGE}\n`)
    return err.message === '' ? 0 : 1
  }
  let result: AddResult
  try {
    result = await addCredentials(options)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`device-add: ${err.message}\n`)
    return 1
  }
  const noun = options.kind === 'device' ? 'device' : 'app'
  const out: string[] = []
  if (options.secretsOut !== null) {
    await writeSecrets(options.secretsOut, result.secrets)
    out.push(
      `${result.secrets.size} ${noun}(s) added to ${result.file}: ${[...result.secrets.keys()].join(', ')}`,
      `Their secrets are in ${options.secretsOut} (mode 0600); only hashes are in ${result.file}.`,
    )
  } else {
    for (const [id, secret] of result.secrets) {
      out.push(`${noun} ${id} ${options.rotate ? 'has a new secret' : 'added'} in ${result.file}`)
      out.push(`  MQTT username: ${id}`)
      out.push(`  MQTT password: ${secret}`)
      if (options.kind === 'app') out.push(`  HTTP header:   Authorization: Bearer ${id}.${secret}`)
    }
    out.push('The secret is shown only this once: only its hash is stored.')
  }
  out.push('Restart the gateway to apply (npm start).')
  process.stdout.write(`${out.join('\n')}\n`)
  return 0
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (err: unknown) => {
      process.stderr.write(`device-add: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exitCode = 1
    },
  )
}
