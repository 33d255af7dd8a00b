/**
 * One timed load against one target: prepares the workers' jobs, starts them together, samples
 * the target (CPU, RSS, and for the gateway its /metrics) at the window's edges, drains, and
 * merges what came back. Every scenario of bench/run.ts is made of these.
 */

import { join } from 'node:path'
import Database from 'better-sqlite3'
import type {
  DevicesResult,
  FloodResult,
  Job,
  JobResult,
  ProbeResult,
  SubscriberResult,
  Timing,
} from '../load/jobs.ts'
import type { LoadWorker } from '../load/pool.ts'
import { HOST, metricValue, scrapeMetrics, type Target } from '../targets/targets.ts'
import { sampleProc, watchProc } from './proc.ts'
import { mergeSorted, sleep, wallNow } from './stats.ts'

export interface DevicesPlan {
  workers: LoadWorker[]
  count: number
  qos: 0 | 1
  mode: 'closed' | 'open'
  /** closed: in flight per device. */
  window?: number
  /** open: all devices together. */
  ratePerSec?: number
  metric?: string
}

export interface LoadPlan {
  target: Target
  warmupMs: number
  durationMs: number
  /**
   * After the window, how long at most to wait for what is still owed (PUBACKs, deliveries)
   * before counting it as missing; the workers' defaults (8 s, 5 s for a subscriber) otherwise.
   */
  drainMs?: number
  devices?: DevicesPlan
  subscriber?: { worker: LoadWorker; topic: string; qos: 0 | 1 }
  probes?: Array<{
    worker: LoadWorker
    mode: 'alert' | 'echo'
    qos: 0 | 1
    gapMs: number
    timeoutMs: number
    /** alert mode: also wait for each crossing's webhook at the worker's receiver. */
    webhook?: boolean
  }>
  flood?: { worker: LoadWorker; connections: number; qos: 0 | 1; maxOutstanding: number }
}

export interface LoadOutcome {
  runId: string
  timing: Timing
  windowSec: number
  devices?: Omit<DevicesResult, 'ackLatencyMs'> & { ackLatencyMs: Float64Array }
  subscriber?: SubscriberResult
  probes: Array<ProbeResult & { mode: 'alert' | 'echo' }>
  flood?: FloodResult
  /** Target CPU seconds per second of window (1 = one core busy). */
  targetCpu: number
  /** Load workers' CPU seconds per second of load (1 = one core busy). */
  generatorCpu: number
  rssStartKiB: number
  peakRssKiB: number
  /** Highest RSS in the first and in the second half of the window: growth = a leak or a queue. */
  rssFirstHalfKiB: number
  rssSecondHalfKiB: number
  alive: boolean
  /** gateway: readings made durable inside the window, from gateway_readings_accepted_total. */
  storedInWindow?: number
  /** gateway: store commits (batches of readings or alerts) inside the window. */
  commitsInWindow?: number
  /** gateway: rows of this run in gateway.db once the store settled (SQLite file count). */
  storedRows?: number
  /** gateway: QoS 0 readings dropped at the writer queue limit during the run. */
  qos0Dropped?: number
}

let runSeq = 0

/** After a failed run: every worker drops its job (disconnects), whatever state it is in. */
async function abandon(workers: LoadWorker[]): Promise<void> {
  await Promise.all(workers.map((w) => w.finish().catch(() => undefined)))
}

/** Devices, probe and flood ids of one run share a prefix, so its rows can be counted. */
export function nextRunId(): string {
  runSeq++
  return `b${String(runSeq).padStart(3, '0')}`
}

function split(count: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, i) => Math.floor(count / parts) + (i < count % parts ? 1 : 0),
  )
}

async function gatewayCounters(target: Target) {
  const text = await scrapeMetrics(target)
  return {
    accepted: metricValue(text, 'gateway_readings_accepted_total'),
    batches: metricValue(text, 'gateway_store_batches_total'),
    pending: metricValue(text, 'gateway_store_pending_readings'),
    dropped: metricValue(text, 'gateway_qos0_dropped_total'),
  }
}

/** Rows of readings whose device id starts with `${runId}-` (ids are `${runId}-...`). */
export function countStoredRows(dataDir: string, runId: string, crashed = false): number {
  // After a crash the WAL may need recovering, which a read-only connection cannot do.
  const db = new Database(join(dataDir, 'gateway.db'), { readonly: !crashed, fileMustExist: true })
  try {
    // '-' + 1 is '.': a range on the primary key instead of a LIKE scan.
    const row = db
      .prepare('SELECT count(*) AS n FROM readings WHERE device >= ? AND device < ?')
      .get(`${runId}-`, `${runId}.`) as { n: number }
    return row.n
  } finally {
    db.close()
  }
}

/**
 * Waits until the target is idle (under a tenth of a core over 200 ms, at most 10 s), so a
 * backlog it still works through does not take CPU from the next run, on another target.
 */
async function targetQuiet(pid: number): Promise<void> {
  const deadline = Date.now() + 10_000
  let last = sampleProc(pid)
  while (last && Date.now() < deadline) {
    await sleep(200)
    const now = sampleProc(pid)
    if (!now || now.cpuSec - last.cpuSec < 0.02) return
    last = now
  }
}

/** Waits until the gateway has nothing pending and its accepted counter stops moving. */
async function gatewaySettled(target: Target): Promise<void> {
  const deadline = Date.now() + 60_000
  let last = Number.NaN
  while (Date.now() < deadline && target.alive()) {
    const c = await gatewayCounters(target).catch(() => null)
    if (c && c.pending === 0 && c.accepted === last) return
    last = c?.accepted ?? Number.NaN
    await sleep(200)
  }
}

export async function runLoad(plan: LoadPlan): Promise<LoadOutcome> {
  const { target } = plan
  const runId = nextRunId()
  const isGateway = target.name === 'gateway'
  const url = target.url

  // Prepare: the subscriber first, so it sees the first message; then everything else.
  const used: LoadWorker[] = []
  const prepared: Array<{ worker: LoadWorker; job: Job }> = []
  if (plan.subscriber) {
    const { worker, topic, qos } = plan.subscriber
    const job: Job = { kind: 'subscriber', url, clientId: `${runId}-sub`, topic, qos }
    await worker.prepare(job)
    prepared.push({ worker, job })
  }
  const others: Array<{ worker: LoadWorker; job: Job }> = []
  for (const [i, probe] of (plan.probes ?? []).entries()) {
    others.push({
      worker: probe.worker,
      job: {
        kind: 'probe',
        url,
        deviceId: `${runId}-p${i}`,
        qos: probe.qos,
        mode: probe.mode,
        gapMs: probe.gapMs,
        timeoutMs: probe.timeoutMs,
        ...(probe.webhook ? { webhook: true } : {}),
      },
    })
  }
  if (plan.devices) {
    const d = plan.devices
    const counts = split(d.count, d.workers.length)
    let next = 0
    for (const [w, worker] of d.workers.entries()) {
      const n = counts[w] as number
      if (n === 0) continue
      const deviceIds = Array.from(
        { length: n },
        () => `${runId}-d${String(next++).padStart(4, '0')}`,
      )
      others.push({
        worker,
        job: {
          kind: 'devices',
          url,
          deviceIds,
          metric: d.metric ?? 'temperature',
          qos: d.qos,
          mode: d.mode,
          ...(d.window === undefined ? {} : { window: d.window }),
          ...(d.ratePerSec === undefined ? {} : { ratePerSec: (d.ratePerSec * n) / d.count }),
        },
      })
    }
  }
  if (plan.flood) {
    const { worker, connections, qos, maxOutstanding } = plan.flood
    others.push({
      worker,
      job: {
        kind: 'flood',
        host: HOST,
        port: target.port,
        deviceIds: Array.from({ length: connections }, (_, i) => `${runId}-f${i}`),
        metric: 'temperature',
        qos,
        maxOutstanding,
      },
    })
  }
  try {
    await Promise.all(others.map(({ worker, job }) => worker.prepare(job)))
  } catch (err) {
    await abandon([...prepared, ...others].map((p) => p.worker))
    throw err
  }
  prepared.push(...others)
  for (const p of prepared) used.push(p.worker)

  const before = isGateway ? await gatewayCounters(target).catch(() => null) : null
  const startAt = wallNow() + 200
  const timing: Timing = {
    startAt,
    measureFrom: startAt + plan.warmupMs,
    measureTo: startAt + plan.warmupMs + plan.durationMs,
  }
  const rssStartKiB = sampleProc(target.pid)?.rssKiB ?? Number.NaN
  const watch = watchProc(target.pid)

  // Edges of the window: target CPU time, and the gateway's durable count.
  const edge = async (at: number) => {
    await sleep(Math.max(0, at - wallNow()))
    const proc = sampleProc(target.pid)
    const counters = isGateway ? await gatewayCounters(target).catch(() => null) : null
    return { cpuSec: proc?.cpuSec ?? Number.NaN, counters }
  }
  const edges = Promise.all([edge(timing.measureFrom), edge(timing.measureTo)])
  const load = others.filter(({ job }) => job.kind !== 'subscriber')
  let results: JobResult[]
  try {
    await Promise.all(prepared.map(({ worker }) => worker.go(timing)))
    results = await Promise.all(load.map(({ worker }) => worker.finish(undefined, plan.drainMs)))
  } catch (err) {
    watch.stop()
    await edges.catch(() => {})
    await abandon(prepared.map((p) => p.worker))
    throw err
  }
  const [from, to] = await edges

  // Everything acknowledged to a publisher should reach the subscriber (Mosquitto may drop).
  const expected = results.reduce(
    (n, r) => n + (r.kind === 'devices' || r.kind === 'flood' ? r.acked : 0),
    0,
  )
  const subscriber = plan.subscriber
    ? await plan.subscriber.worker.finish<SubscriberResult>(expected, plan.drainMs)
    : undefined
  const { peakRssKiB, samples } = watch.stop()
  const middle = (timing.measureFrom + timing.measureTo) / 2
  const maxRss = (from: number, to: number) =>
    Math.max(0, ...samples.filter((x) => x.at >= from && x.at < to).map((x) => x.rssKiB))
  const windowSec = plan.durationMs / 1_000

  const deviceResults = results.filter((r): r is DevicesResult => r.kind === 'devices')
  let devices: LoadOutcome['devices']
  if (deviceResults.length) {
    const sumOf = (pick: (r: DevicesResult) => number) =>
      deviceResults.reduce((n, r) => n + pick(r), 0)
    devices = {
      kind: 'devices',
      sent: sumOf((r) => r.sent),
      acked: sumOf((r) => r.acked),
      sentInWindow: sumOf((r) => r.sentInWindow),
      ackedInWindow: sumOf((r) => r.ackedInWindow),
      unacked: sumOf((r) => r.unacked),
      disconnects: sumOf((r) => r.disconnects),
      errors: sumOf((r) => r.errors),
      cpuSec: sumOf((r) => r.cpuSec),
      ackLatencyMs: mergeSorted(deviceResults.map((r) => r.ackLatencyMs)),
    }
  }
  const probeResults = results
    .filter((r): r is ProbeResult => r.kind === 'probe')
    .map((r, i) => ({ ...r, mode: plan.probes?.[i]?.mode ?? 'echo' }))
  const flood = results.find((r): r is FloodResult => r.kind === 'flood')

  const loadSec = (timing.measureTo - timing.startAt) / 1_000
  const generatorCpuSec = results.reduce((n, r) => n + r.cpuSec, 0) + (subscriber?.cpuSec ?? 0)
  const outcome: LoadOutcome = {
    runId,
    timing,
    windowSec,
    ...(devices ? { devices } : {}),
    ...(subscriber ? { subscriber } : {}),
    probes: probeResults,
    ...(flood ? { flood } : {}),
    targetCpu: (to.cpuSec - from.cpuSec) / windowSec,
    generatorCpu: generatorCpuSec / loadSec,
    rssStartKiB,
    peakRssKiB,
    rssFirstHalfKiB: maxRss(timing.measureFrom, middle),
    rssSecondHalfKiB: maxRss(middle, timing.measureTo),
    alive: target.alive(),
  }
  if (isGateway && target.dataDir) {
    if (from.counters && to.counters) {
      outcome.storedInWindow = to.counters.accepted - from.counters.accepted
      outcome.commitsInWindow = to.counters.batches - from.counters.batches
    }
    if (target.alive()) {
      await gatewaySettled(target)
      const after = await gatewayCounters(target).catch(() => null)
      if (after && before) outcome.qos0Dropped = after.dropped - before.dropped
    }
    // Also after a crash: what was acknowledged must be in the file all the same.
    outcome.storedRows = countStoredRows(target.dataDir, runId, !target.alive())
  }
  if (target.alive()) await targetQuiet(target.pid)
  return outcome
}
