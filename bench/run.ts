/**
 * `npm run bench`: the gateway side by side with bare Aedes and Mosquitto, each scenario against
 * every target in the same run, interleaved (the target order rotates every round), medians of
 * the rounds, ratios in a summary line per scenario.
 *
 *   npm run bench [-- --scenario ingest,passthrough] [--quick] [--rounds N] [--duration S]
 *                 [--warmup S] [--connections N] [--devices N] [--in-flight N] [--generators N]
 *                 [--targets gateway,aedes,mosquitto] [--profile] [--profile-dir DIR]
 *                 [--no-notifications]
 *
 * Scenarios (bench/scenarios/): ingest, passthrough, alert-latency, overload, connections, store.
 * Prints JSON lines on stdout: a `setup` line (machine, versions, sizes), one line per target and
 * one `summary: true` line per scenario, then `targets` (each issue goal met or not) and `done`.
 * Progress goes to stderr. Load comes from child processes (bench/load/worker.ts): devices on
 * MQTT.js in `--generators` processes (default 1: on two cores the generator gets one), a
 * subscriber in another, probes and the flood in two more; targets are child processes too
 * (bench/targets/). Everything listens on 127.0.0.1, on ports the OS picks, and is stopped by PID.
 *
 * --quick: one round, 0.5 s warm-up and 1.5 s windows, 500 connections, 20,000 store points: a
 * smoke run, numbers meaningless. The default runs every scenario at the sizes of the issue
 * (100 devices, 1,000 in flight, 5,000 readings/s, 10,000 connections), 3 rounds (overload: 2,
 * its runs are the longest; --rounds sets both), 1 s warm-up and 3 s windows: about seven
 * minutes on two cores.
 * --no-notifications: alert-latency's gateway without its notifications file (no webhook
 * figures): the alert-to-MQTT latency as it was before notifications, to see what they cost.
 * --profile: afterwards, a gateway under the ingest QoS 1 load with `node --cpu-prof`; its top
 * functions (bench/top-functions.ts) in a `profile` line.
 */
import { availableParallelism, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { machine } from './lib/proc.ts'
import { round, wallNow } from './lib/stats.ts'
import { startPool } from './load/pool.ts'
import { alertLatency } from './scenarios/alert-latency.ts'
import { connections as connectionsScenario, fdLimit } from './scenarios/connections.ts'
import type { BenchContext } from './scenarios/context.ts'
import { overload } from './scenarios/overload.ts'
import { profile } from './scenarios/profile.ts'
import { store } from './scenarios/store.ts'
import { ingest, passthrough } from './scenarios/throughput.ts'
import {
  killTargets,
  MOSQUITTO_LIMITS,
  MOSQUITTO_MISSING,
  mosquittoVersion,
  REPO,
  type TargetName,
} from './targets/targets.ts'

const SCENARIOS = {
  ingest,
  passthrough,
  'alert-latency': alertLatency,
  overload,
  connections: connectionsScenario,
  store,
} as const
type ScenarioName = keyof typeof SCENARIOS

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: Object.keys(SCENARIOS).join(',') },
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    devices: { type: 'string', default: '100' },
    'in-flight': { type: 'string', default: '1000' },
    generators: { type: 'string', default: '1' },
    targets: { type: 'string', default: 'gateway,aedes,mosquitto' },
    profile: { type: 'boolean', default: false },
    'profile-dir': { type: 'string', default: join(REPO, '.tmp/bench-profiles') },
    'no-notifications': { type: 'boolean', default: false },
  },
})

function positive(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback
  const n = Number(text)
  if (!(Number.isFinite(n) && n > 0)) {
    process.stderr.write(`--${name} must be a positive number, got ${JSON.stringify(text)}\n`)
    process.exit(2)
  }
  return n
}

const quick = values.quick
const scenarios = values.scenario
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
for (const s of scenarios) {
  if (!(s in SCENARIOS)) {
    process.stderr.write(`unknown scenario ${s}; one of ${Object.keys(SCENARIOS).join(', ')}\n`)
    process.exit(2)
  }
}
const wanted = values.targets.split(',').map((t) => t.trim()) as TargetName[]
for (const t of wanted) {
  if (!['gateway', 'aedes', 'mosquitto'].includes(t)) {
    process.stderr.write(`unknown target ${t}; one of gateway, aedes, mosquitto\n`)
    process.exit(2)
  }
}

const emit = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`)
const progress = (message: string) => process.stderr.write(`bench: ${message}\n`)

const mosquitto = mosquittoVersion()
const targets = wanted.filter((t) => t !== 'mosquitto' || mosquitto !== null)
const generators = Math.round(positive('generators', values.generators, 1))
const started = wallNow()

const pool = await startPool(Math.max(4, generators + 3))
const stopPool = () => {
  for (const w of pool) w.stop()
}
const interrupted = (signal: NodeJS.Signals) => {
  progress(`${signal}: stopping the targets and load workers`)
  killTargets()
  stopPool()
  process.exit(130)
}
process.once('SIGINT', interrupted)
process.once('SIGTERM', interrupted)

const ctx: BenchContext = {
  targets,
  rounds: Math.round(positive('rounds', values.rounds, quick ? 1 : 3)),
  overloadRounds: Math.round(positive('rounds', values.rounds, quick ? 1 : 2)),
  warmupMs: positive('warmup', values.warmup, quick ? 0.5 : 1) * 1_000,
  durationMs: positive('duration', values.duration, quick ? 1.5 : 3) * 1_000,
  quick,
  devices: Math.round(positive('devices', values.devices, 100)),
  inFlight: Math.round(positive('in-flight', values['in-flight'], 1_000)),
  connections: Math.round(positive('connections', values.connections, quick ? 500 : 10_000)),
  generators: pool.slice(0, generators),
  subscriberWorker: pool[generators] as (typeof pool)[number],
  sideWorkers: [pool[generators + 1], pool[generators + 2]] as BenchContext['sideWorkers'],
  pool,
  emit,
  progress,
  peaks: {},
  mosquitto,
  notifications: !values['no-notifications'],
}

emit({
  bench: 'setup',
  node: process.version,
  nproc: availableParallelism(),
  cpuModel: machine().cpuModel,
  memoryGiB: round(totalmem() / 2 ** 30, 1),
  mosquitto,
  ...(mosquitto === null && wanted.includes('mosquitto') ? { note: MOSQUITTO_MISSING } : {}),
  mosquittoLimits: MOSQUITTO_LIMITS,
  fdLimit: fdLimit(),
  targets,
  scenarios,
  rounds: ctx.rounds,
  overloadRounds: ctx.overloadRounds,
  warmupSec: ctx.warmupMs / 1_000,
  durationSec: ctx.durationMs / 1_000,
  devices: ctx.devices,
  inFlight: ctx.inFlight,
  connections: ctx.connections,
  generators,
  notifications: ctx.notifications,
  quick,
})
if (mosquitto === null && wanted.includes('mosquitto')) progress(MOSQUITTO_MISSING)

const failed: string[] = []
const goals: Record<string, boolean | null> = {}
const recordingEmit = (line: Record<string, unknown>) => {
  if (line.summary === true && 'met' in line) goals[String(line.bench)] = line.met as boolean | null
  emit(line)
}
ctx.emit = recordingEmit
try {
  for (const name of scenarios as ScenarioName[]) {
    const t0 = wallNow()
    try {
      await SCENARIOS[name](ctx)
    } catch (err) {
      failed.push(name)
      const message = err instanceof Error ? err.message : String(err)
      progress(`${name} failed: ${err instanceof Error ? err.stack : message}`)
      emit({ bench: name, error: message })
    }
    progress(`${name} took ${round((wallNow() - t0) / 1_000, 1)} s`)
    if (name === 'ingest' && values.profile) {
      try {
        await profile(ctx, values['profile-dir'])
      } catch (err) {
        failed.push('profile')
        emit({ bench: 'profile', error: err instanceof Error ? err.message : String(err) })
      }
    }
  }
  if (values.profile && !scenarios.includes('ingest')) {
    try {
      await profile(ctx, values['profile-dir'])
    } catch (err) {
      failed.push('profile')
      emit({ bench: 'profile', error: err instanceof Error ? err.message : String(err) })
    }
  }
} finally {
  killTargets()
  stopPool()
}
emit({ bench: 'targets', summary: true, goals })
emit({ bench: 'done', elapsedSec: round((wallNow() - started) / 1_000, 1), failed })
process.exit(failed.length ? 1 : 0)
