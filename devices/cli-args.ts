import { parseArgs } from 'node:util'
import {
  type Checked,
  checkDuration,
  checkForm,
  checkInteger,
  checkName,
  checkQos,
  checkShare,
  type FleetSettings,
} from './fleet-config.ts'

export const DEFAULT_URL = 'mqtt://127.0.0.1:1883'

export const HELP = `Usage: tsx devices/simulator.ts [flags]   (or: npm run simulate -- [flags])

Runs a fleet of simulated sensors, each its own MQTT connection, publishing temperature,
humidity and CO2 readings on the gateway's sensors/ topics.

Flags (they override the fleet file, which overrides the defaults):
  --url URL          broker URL (default: $MQTT_URL or ${DEFAULT_URL})
  --devices N        number of devices, groups included (default 10)
  --interval DUR     publish interval of every device, e.g. 500ms, 2s (default 2s)
  --qos 0|1          QoS of every publish (default 1)
  --form FORM        payload form of every device, groups included:
                     metric   sensors/{id}/{metric}, bare number or {"value","ts","unit"}
                     object   sensors/{id}, {"ts", "temperature": .., ...}
                     senml    sensors/{id}, a SenML (RFC 8428) array
                     mixed    the three forms rotated over the devices (default)
  --malformed SHARE  share 0.0-1.0 of deliberately malformed messages, for demos (default 0)
  --fleet PATH       fleet file (default devices/fleet.yaml)
  --credentials PATH MQTT passwords by device id ("id: secret" lines), as written by
                     npm run device:add -- --fleet devices/fleet.yaml --secrets-out PATH;
                     each device logs in as its id with its own secret
  --duration DUR     stop after this long, e.g. 30s, 5m (default: run until interrupted)
  --count N          stop after this many readings in total
  --prefix NAME      device id prefix (default sim): ids are sim-001, sim-002, ...
  --seed N           seed of the signal generators (default 1): same seed, same series
  -h, --help         print this help

Environment: MQTT_URL (broker URL), LOG_LEVEL (default info).
SIGINT or SIGTERM disconnects every device cleanly and exits 0.`

export interface SimulatorArgs {
  help: boolean
  url: string
  /** The --fleet path, or null for the default file. */
  fleetPath: string | null
  /** The --credentials path (MQTT password per device id), when given. */
  credentialsPath?: string
  /** What the flags set, and nothing else, so the fleet file fills the rest. */
  settings: FleetSettings
}

export type ParsedArgs = { ok: true; args: SimulatorArgs } | { ok: false; message: string }

const URL_PROTOCOLS = ['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:']

function checkUrl(value: string): Checked<string> {
  try {
    const url = new URL(value)
    if (URL_PROTOCOLS.includes(url.protocol)) return { ok: true, value }
  } catch {
    // Reported below with the accepted forms.
  }
  return {
    ok: false,
    message: `must be a broker URL like mqtt://host:1883 (${URL_PROTOCOLS.join(' ')}), got "${value}"`,
  }
}

/** Parses the simulator's argv (without node and the script); never throws, never exits. */
export function parseSimulatorArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedArgs {
  let values: Record<string, string | boolean | undefined>
  try {
    ;({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        devices: { type: 'string' },
        interval: { type: 'string' },
        qos: { type: 'string' },
        form: { type: 'string' },
        malformed: { type: 'string' },
        fleet: { type: 'string' },
        credentials: { type: 'string' },
        duration: { type: 'string' },
        count: { type: 'string' },
        prefix: { type: 'string' },
        seed: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }))
  } catch (err) {
    const code = (err as { code?: string }).code
    const text = err instanceof Error ? err.message : String(err)
    const named = /'([^']+)'/.exec(text)?.[1]
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
      return { ok: false, message: `unknown flag ${named}` }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      return { ok: false, message: `unexpected argument ${named ?? ''}: every setting is a --flag` }
    }
    // e.g. "Option '--devices <value>' argument missing"
    return { ok: false, message: text }
  }

  const problems: string[] = []
  const settings: FleetSettings = {}
  const take = <T>(flag: string, check: (v: unknown) => Checked<T>, set: (v: T) => void) => {
    const raw = values[flag]
    if (typeof raw !== 'string') return
    const result = check(raw)
    if (result.ok) set(result.value)
    else problems.push(`--${flag} ${result.message}`)
  }
  take(
    'devices',
    (v) => checkInteger(v, 0),
    (v) => (settings.devices = v),
  )
  take('interval', checkDuration, (v) => (settings.intervalMs = v))
  take('qos', checkQos, (v) => (settings.qos = v))
  take('form', checkForm, (v) => (settings.form = v))
  take('malformed', checkShare, (v) => (settings.malformedShare = v))
  take('duration', checkDuration, (v) => (settings.durationMs = v))
  take(
    'count',
    (v) => checkInteger(v, 1),
    (v) => (settings.count = v),
  )
  take('prefix', checkName, (v) => (settings.prefix = v))
  take(
    'seed',
    (v) => checkInteger(v, 0),
    (v) => (settings.seed = v),
  )
  let url = DEFAULT_URL
  if (typeof values.url === 'string')
    take(
      'url',
      (v) => checkUrl(String(v)),
      (v) => (url = v),
    )
  else if (env.MQTT_URL) {
    const fromEnv = checkUrl(env.MQTT_URL)
    if (fromEnv.ok) url = fromEnv.value
    else problems.push(`MQTT_URL ${fromEnv.message}`)
  }
  let fleetPath: string | null = null
  take(
    'fleet',
    (v): Checked<string> =>
      v === '' ? { ok: false, message: 'must be a file path' } : { ok: true, value: String(v) },
    (v) => (fleetPath = v),
  )
  let credentialsPath: string | undefined
  take(
    'credentials',
    (v): Checked<string> =>
      v === '' ? { ok: false, message: 'must be a file path' } : { ok: true, value: String(v) },
    (v) => (credentialsPath = v),
  )
  if (problems.length > 0) return { ok: false, message: problems.join('\n') }
  const args: SimulatorArgs = { help: values.help === true, url, fleetPath, settings }
  if (credentialsPath !== undefined) args.credentialsPath = credentialsPath
  return { ok: true, args }
}

/**
 * The fleet file's settings under the flags'. A flag speaks for the whole fleet: `--form` and
 * `--interval` also replace what a group of the file sets, so `--form senml` means every device.
 */
export function layerSettings(file: FleetSettings, flags: FleetSettings): FleetSettings {
  const merged: FleetSettings = { ...file, ...flags }
  if (file.groups && (flags.form !== undefined || flags.intervalMs !== undefined)) {
    merged.groups = file.groups.map((group) => {
      const copy = { ...group }
      if (flags.form !== undefined) delete copy.form
      if (flags.intervalMs !== undefined) delete copy.intervalMs
      return copy
    })
  }
  return merged
}
