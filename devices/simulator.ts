/**
 * The simulator's process entry: the only file here that reads argv, env and signals.
 * Everything it runs is in fleet.ts, which tests and the gateway's demo command use directly.
 */
import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { createLogger } from '../src/telemetry/logger.ts'
import { onShutdownSignals } from '../src/util/shutdown-signals.ts'
import { HELP, layerSettings, parseSimulatorArgs } from './cli-args.ts'
import { createFleet } from './fleet.ts'
import {
  checkFleetConfig,
  DEFAULT_FLEET_FILE,
  loadFleetFile,
  resolveFleet,
} from './fleet-config.ts'

/** How often a running simulator logs its counters. */
const PROGRESS_INTERVAL_MS = 10_000

/** One `simulator: ` line per problem, so each names its flag or key on its own. */
function prefixed(message: string): string {
  return message
    .split('\n')
    .map((line) => `simulator: ${line}\n`)
    .join('')
}

/** The --credentials file: `id: secret` lines (npm run device:add -- --secrets-out). */
async function loadPasswords(
  file: string,
): Promise<{ ok: true; passwords: Map<string, string> } | { ok: false; message: string }> {
  let data: unknown
  try {
    data = parseYaml(await readFile(file, 'utf8'))
  } catch (err) {
    return { ok: false, message: `${file}: ${(err as Error).message}` }
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return { ok: false, message: `${file}: must hold "device-id: secret" lines` }
  }
  const passwords = new Map<string, string>()
  for (const [id, secret] of Object.entries(data)) {
    // The message names the device, never the value: it may be a secret.
    if (typeof secret !== 'string') return { ok: false, message: `${file}: ${id}: must be a text` }
    passwords.set(id, secret)
  }
  return { ok: true, passwords }
}

async function main(argv: readonly string[]): Promise<number> {
  const parsed = parseSimulatorArgs(argv, process.env)
  if (!parsed.ok) {
    process.stderr.write(`${prefixed(parsed.message)}Run with --help for the flags.\n`)
    return 1
  }
  const { args } = parsed
  if (args.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }

  // The default file is optional; a file named with --fleet must exist.
  const file = await loadFleetFile(args.fleetPath ?? DEFAULT_FLEET_FILE, {
    optional: args.fleetPath === null,
  })
  if (!file.ok) {
    const flag = args.fleetPath === null ? '' : '--fleet '
    process.stderr.write(prefixed(file.problems.map((p) => `${flag}${p}`).join('\n')))
    return 1
  }
  // Flags override the file key by key; signal parameters only come from the file.
  const settings = layerSettings(file.settings, args.settings)
  const problems = checkFleetConfig(resolveFleet(settings))
  if (problems.length > 0) {
    process.stderr.write(prefixed(problems.join('\n')))
    return 1
  }

  const log = createLogger({
    level: process.env.LOG_LEVEL ?? 'info',
    pretty: process.stdout.isTTY === true,
  })
  let passwords: Map<string, string> | undefined
  if (args.credentialsPath !== undefined) {
    const loaded = await loadPasswords(args.credentialsPath)
    if (!loaded.ok) {
      process.stderr.write(prefixed(`--credentials ${loaded.message}`))
      return 1
    }
    passwords = loaded.passwords
  }
  const fleet = createFleet(
    { ...settings, url: args.url, ...(passwords ? { passwords } : {}) },
    log,
  )

  const interrupted = new Promise<NodeJS.Signals>((resolve) => {
    onShutdownSignals(resolve, (signal) => {
      log.warn({ signal }, 'second signal: exiting without a clean disconnect')
      process.exit(1)
    })
  })

  const progress = setInterval(
    () => log.info(fleet.stats(), 'simulator progress'),
    PROGRESS_INTERVAL_MS,
  )
  progress.unref()

  const starting = fleet.start()
  const outcome = await Promise.race([
    Promise.all([starting, fleet.finished()]).then(() => 'finished' as const),
    interrupted,
  ])
  if (outcome !== 'finished') log.info({ signal: outcome }, 'stopping simulated devices')
  clearInterval(progress)
  await fleet.stop()
  await starting
  log.info(fleet.stats(), 'simulator done')
  return 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(
      `simulator: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    )
    process.exitCode = 1
  },
)
