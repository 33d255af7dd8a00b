/** What every scenario of bench/run.ts is given, and the helpers they share. */
import { type LoadOutcome, type LoadPlan, runLoad } from '../lib/load-run.ts'
import { median, mergeSorted, percentileSorted, round, sleep } from '../lib/stats.ts'
import type { LoadWorker } from '../load/pool.ts'
import {
  type GatewayOptions,
  startTarget,
  type Target,
  type TargetName,
} from '../targets/targets.ts'

export interface BenchContext {
  /** Targets measured in this run, in their first-round order (mosquitto left out when missing). */
  targets: TargetName[]
  rounds: number
  /** Overload runs are the longest: 2 rounds unless --rounds says otherwise. */
  overloadRounds: number
  warmupMs: number
  /** Measured window of a throughput run. */
  durationMs: number
  quick: boolean
  /** Devices (MQTT.js connections) of the throughput scenarios, and messages they keep in flight. */
  devices: number
  inFlight: number
  connections: number
  /** Workers publishing as devices. */
  generators: LoadWorker[]
  subscriberWorker: LoadWorker
  /** Workers for probes and the flood (not the devices': those stay as loaded as elsewhere). */
  sideWorkers: [LoadWorker, LoadWorker]
  pool: LoadWorker[]
  emit(line: Record<string, unknown>): void
  progress(message: string): void
  /** Capacity per target as measured by `ingest` in this run (QoS 1), for `overload`. */
  peaks: Partial<Record<TargetName, { perSec: number; peakRssKiB: number }>>
  /**
   * The gateway's capacity with a QoS 1 subscriber on `sensors/#` (its `passthrough` figure in
   * this run), for overload's 2x-subscribed mode: a subscriber sets the pace of delivery.
   */
  subscribedPeak?: { perSec: number; peakRssKiB: number }
  /** `--profile`: the folder the profiled gateway writes its .cpuprofile into. */
  profileDir?: string
  /** Mosquitto's version, or null when it is not installed. */
  mosquitto: string | null
  /** alert-latency: the gateway with a notifications file (webhook figures); --no-notifications. */
  notifications: boolean
}

/** Round r's order of the targets: rotated by r, so each target takes each position in turn. */
export function rotate<T>(items: readonly T[], r: number): T[] {
  const k = r % Math.max(1, items.length)
  return [...items.slice(k), ...items.slice(0, k)]
}

/**
 * The targets of a scenario, started once and kept for its rounds. A target found dead before a
 * run (it crashed) is counted and started again, so one crash does not end the benchmark.
 */
export interface Crash {
  /** Exit code or signal. */
  status: number | string | null
  /** The end of what it printed (its error, for a crash). */
  output: string
}

export class TargetSet {
  private readonly live = new Map<TargetName, Target>()
  readonly crashes: Partial<Record<TargetName, Crash[]>> = {}

  constructor(
    private readonly names: readonly TargetName[],
    private readonly options: GatewayOptions = {},
    private readonly progress: (message: string) => void = () => {},
  ) {}

  readonly failures: Partial<Record<TargetName, string[]>> = {}

  crashCount(name: TargetName): number {
    return this.crashes[name]?.length ?? 0
  }

  failureCount(name: TargetName): number {
    return this.failures[name]?.length ?? 0
  }

  recordFailure(name: TargetName, err: unknown): void {
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? ''
    pushTo(this.failures, name, message)
    this.progress(`a run against ${name} failed with ${name} still running: ${message}`)
  }

  async start(): Promise<void> {
    for (const name of this.names) this.live.set(name, await startTarget(name, this.options))
  }

  /** The target, started again first if it died. */
  async get(name: TargetName): Promise<Target> {
    const current = this.live.get(name)
    if (current?.alive()) return current
    if (current) {
      const crash = { status: current.exitStatus(), output: current.output().trim().slice(-400) }
      pushTo(this.crashes, name, crash)
      this.progress(
        `${name} died (exit ${crash.status}); restarting it. Its last output:\n${crash.output}`,
      )
      await current.stop()
    }
    const fresh = await startTarget(name, this.options)
    this.live.set(name, fresh)
    return fresh
  }

  async stop(): Promise<void> {
    await Promise.all([...this.live.values()].map((t) => t.stop()))
    this.live.clear()
  }
}

/** Appends to the list under `key`, creating it. */
export function pushTo<K extends string, V>(
  lists: Partial<Record<K, V[]>>,
  key: K,
  value: V,
): void {
  const list = lists[key]
  if (list) list.push(value)
  else lists[key] = [value]
}

/**
 * One load against a target of the set. A target that died under it is recorded as a crash and
 * restarted for the next run: the outcome (alive: false) is still returned when the run got to
 * its end, null when the run itself failed. A run that fails with the target still alive (it
 * reset a connection) is recorded as a failed run, and null is returned: one bad run does not end
 * the scenario.
 */
export async function runOn(
  set: TargetSet,
  name: TargetName,
  plan: Omit<LoadPlan, 'target'>,
): Promise<LoadOutcome | null> {
  const target = await set.get(name)
  let outcome: LoadOutcome | null = null
  let failure: unknown
  try {
    outcome = await runLoad({ ...plan, target })
  } catch (err) {
    failure = err
  }
  // A crash at the very end of the run (while its clients disconnect), or the one that made the
  // run fail, shows as an exit a moment later.
  for (let i = 0; i < 10 && target.alive(); i++) await sleep(100)
  if (!target.alive()) await set.get(name)
  else if (failure !== undefined) set.recordFailure(name, failure)
  if (outcome) outcome.alive = target.alive() && outcome.alive
  return outcome
}

export const perSec = (count: number | undefined, o: LoadOutcome) =>
  count === undefined ? Number.NaN : count / o.windowSec

export function medianOf(runs: readonly LoadOutcome[], pick: (o: LoadOutcome) => number): number {
  return median(runs.map(pick))
}

export function sum(runs: readonly LoadOutcome[], pick: (o: LoadOutcome) => number | undefined) {
  return runs.reduce((n, o) => n + (pick(o) ?? 0), 0)
}

/**
 * Latency of a measure over the rounds: `${prefix}P50Ms` and `${prefix}P99Ms` are the medians of
 * the rounds' own percentiles (one noisy round on a shared machine does not decide the figure),
 * `${prefix}P99PooledMs` the p99 of every round's samples together, `${prefix}MaxMs` the worst.
 */
export function roundsLatency(
  rounds: ReadonlyArray<ArrayLike<number> | undefined>,
  prefix: string,
): Record<string, number | null | Array<number | null>> {
  const perRound = rounds
    .filter((p): p is ArrayLike<number> => p !== undefined && p.length > 0)
    .map((p) => mergeSorted([p]))
  const pooled = mergeSorted(perRound)
  const at = (sorted: Float64Array, q: number) => round(percentileSorted(sorted, q), 3)
  const med = (q: number) =>
    perRound.length ? round(median(perRound.map((r) => at(r, q))), 3) : null
  return {
    [`${prefix}P50Ms`]: med(0.5),
    [`${prefix}P99Ms`]: med(0.99),
    [`${prefix}P99PerRound`]: perRound.map((r) => at(r, 0.99)),
    [`${prefix}P99PooledMs`]: pooled.length ? at(pooled, 0.99) : null,
    [`${prefix}MaxMs`]: pooled.length ? round(pooled[pooled.length - 1] as number, 3) : null,
    [`${prefix}Samples`]: pooled.length,
  }
}

export const int = (n: number) => (Number.isFinite(n) ? Math.round(n) : null)
export const num = (n: number, digits = 3) => (Number.isFinite(n) ? round(n, digits) : null)
export const mib = (kib: number) => (Number.isFinite(kib) ? round(kib / 1024, 1) : null)

/** The gateway's group commits: readings per store commit in the window (median of rounds). */
export const readingsPerCommit = (runs: LoadOutcome[]) =>
  num(
    medianOf(runs, (o) => (o.storedInWindow ?? Number.NaN) / (o.commitsInWindow ?? Number.NaN)),
    1,
  )
