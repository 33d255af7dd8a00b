/**
 * `ingest` and `passthrough`: closed-loop devices (each keeps inFlight/devices publishes in flight)
 * against every target, interleaved round by round.
 *
 * ingest: the gateway stores every reading (SQLite, the PUBACK after the commit); its figure is
 * stored readings/s (gateway_readings_accepted_total over the window), and after each run the rows
 * in gateway.db are counted and must equal the PUBACKs the devices got (QoS 1). Mosquitto and
 * bare Aedes store nothing: their figure is pass-through, messages/s delivered to one subscriber
 * on `sensors/#` at the same QoS, the cheapest useful thing a broker does with a reading.
 *
 * passthrough: every target, the gateway with its whole pipeline on, delivers to one subscriber on
 * `sensors/#` (QoS 1 both ways); delivered/s and latency from the send time in the payload.
 */
import type { LoadOutcome } from '../lib/load-run.ts'
import { ratio } from '../lib/stats.ts'
import type { TargetName } from '../targets/targets.ts'
import {
  type BenchContext,
  int,
  medianOf,
  num,
  perSec,
  pushTo,
  readingsPerCommit,
  rotate,
  roundsLatency,
  runOn,
  sum,
  TargetSet,
} from './context.ts'

type Runs = Partial<Record<TargetName, LoadOutcome[]>>

/** The runs of one QoS, and the crashes and failed runs of each target during them. */
interface Interleaved {
  runs: Runs
  crashes: Partial<Record<TargetName, number>>
  failedRuns: Partial<Record<TargetName, number>>
}

function devicesPlan(ctx: BenchContext, qos: 0 | 1) {
  return {
    workers: ctx.generators,
    count: ctx.devices,
    qos,
    mode: 'closed' as const,
    window: Math.max(1, Math.round(ctx.inFlight / ctx.devices)),
  }
}

/** Runs one closed-loop load per round per target; `subscribe(name)` says who gets a subscriber. */
async function interleaved(
  ctx: BenchContext,
  label: string,
  qos: 0 | 1,
  subscribe: (name: TargetName) => boolean,
  set: TargetSet,
): Promise<Interleaved> {
  const result: Interleaved = { runs: {}, crashes: {}, failedRuns: {} }
  for (let r = 0; r < ctx.rounds; r++) {
    for (const name of rotate(ctx.targets, r)) {
      ctx.progress(`${label} QoS ${qos}, round ${r + 1}/${ctx.rounds}: ${name}`)
      const crashesBefore = set.crashCount(name)
      const failuresBefore = set.failureCount(name)
      const outcome = await runOn(set, name, {
        warmupMs: ctx.warmupMs,
        durationMs: ctx.durationMs,
        devices: devicesPlan(ctx, qos),
        ...(subscribe(name)
          ? { subscriber: { worker: ctx.subscriberWorker, topic: 'sensors/#', qos } }
          : {}),
      })
      if (outcome) pushTo(result.runs, name, outcome)
      result.crashes[name] = (result.crashes[name] ?? 0) + set.crashCount(name) - crashesBefore
      result.failedRuns[name] =
        (result.failedRuns[name] ?? 0) + set.failureCount(name) - failuresBefore
    }
  }
  return result
}

const delivered = (o: LoadOutcome) => perSec(o.subscriber?.receivedInWindow, o)
const stored = (o: LoadOutcome) => perSec(o.storedInWindow, o)
const acked = (o: LoadOutcome) => perSec(o.devices?.ackedInWindow, o)

function common(ctx: BenchContext, runs: LoadOutcome[]) {
  return {
    devices: ctx.devices,
    inFlight: ctx.inFlight,
    rounds: runs.length,
    durationSec: ctx.durationMs / 1_000,
    targetCpu: num(
      medianOf(runs, (o) => o.targetCpu),
      2,
    ),
    generatorCpu: num(
      medianOf(runs, (o) => o.generatorCpu),
      2,
    ),
    disconnects: sum(runs, (o) => o.devices?.disconnects),
  }
}

function baselineLine(
  ctx: BenchContext,
  bench: string,
  name: TargetName,
  qos: 0 | 1,
  runs: LoadOutcome[],
) {
  return {
    bench,
    target: name,
    qos,
    measure: `delivered to 1 subscriber on sensors/# (QoS ${qos})`,
    msgPerSec: int(medianOf(runs, delivered)),
    ackedPerSec: int(medianOf(runs, acked)),
    ...roundsLatency(
      runs.map((o) => o.subscriber?.latencyMs),
      'latency',
    ),
    published: sum(runs, (o) => o.devices?.acked),
    delivered: sum(runs, (o) => o.subscriber?.received),
    lost: sum(runs, (o) => Math.max(0, (o.devices?.acked ?? 0) - (o.subscriber?.received ?? 0))),
    ...common(ctx, runs),
    perRound: runs.map((o) => int(delivered(o))),
  }
}

/** The gateway's ingest line for one QoS; `storedEqualsAcked` is per run, all rounds. */
function gatewayIngestLine(ctx: BenchContext, qos: 0 | 1, runs: LoadOutcome[]) {
  const storedEqualsAcked = runs.every(
    (o) => o.storedRows === o.devices?.acked && o.devices?.unacked === 0,
  )
  return {
    bench: 'ingest',
    target: 'gateway',
    qos,
    measure:
      qos === 1
        ? 'stored readings/s (SQLite, PUBACK after the commit)'
        : 'stored readings/s (SQLite, QoS 0: no ack, best effort)',
    msgPerSec: int(medianOf(runs, stored)),
    storedPerSec: int(medianOf(runs, stored)),
    ...(qos === 1
      ? { ackedPerSec: int(medianOf(runs, acked)) }
      : { sentPerSec: int(medianOf(runs, acked)) }),
    ...(qos === 1
      ? { acked: sum(runs, (o) => o.devices?.acked) }
      : { sent: sum(runs, (o) => o.devices?.acked) }),
    stored: sum(runs, (o) => o.storedRows),
    ...(qos === 1
      ? { storedEqualsAcked, unacked: sum(runs, (o) => o.devices?.unacked) }
      : { qos0Dropped: sum(runs, (o) => o.qos0Dropped) }),
    ...(qos === 1
      ? roundsLatency(
          runs.map((o) => o.devices?.ackLatencyMs),
          'ack',
        )
      : {}),
    peakRssMiB: num(medianOf(runs, (o) => o.peakRssKiB) / 1024, 1),
    readingsPerCommit: readingsPerCommit(runs),
    ...common(ctx, runs),
    perRound: runs.map((o) => int(stored(o))),
  }
}

export async function ingest(ctx: BenchContext): Promise<void> {
  const set = new TargetSet(ctx.targets, {}, ctx.progress)
  const byQos: Record<0 | 1, Runs> = { 0: {}, 1: {} }
  const events: Partial<Record<0 | 1, Interleaved>> = {}
  await set.start()
  try {
    for (const qos of [1, 0] as const) {
      const result = await interleaved(ctx, 'ingest', qos, (name) => name !== 'gateway', set)
      byQos[qos] = result.runs
      events[qos] = result
    }
  } finally {
    await set.stop()
  }
  const figures: Record<0 | 1, Partial<Record<TargetName, number>>> = { 0: {}, 1: {} }
  for (const qos of [1, 0] as const) {
    for (const name of ctx.targets) {
      const runs = byQos[qos][name] ?? []
      const line =
        name === 'gateway'
          ? gatewayIngestLine(ctx, qos, runs)
          : baselineLine(ctx, 'ingest', name, qos, runs)
      figures[qos][name] = line.msgPerSec ?? Number.NaN
      ctx.emit({
        ...line,
        crashes: events[qos]?.crashes[name] ?? 0,
        failedRuns: events[qos]?.failedRuns[name] ?? 0,
      })
    }
  }
  for (const name of ctx.targets) {
    const runs = byQos[1][name] ?? []
    ctx.peaks[name] = {
      perSec: figures[1][name] ?? Number.NaN,
      peakRssKiB: medianOf(runs, (o) => o.peakRssKiB),
    }
  }
  const gw = byQos[1].gateway ?? []
  const vsMosquitto = ratio(figures[1].gateway, figures[1].mosquitto)
  ctx.emit({
    bench: 'ingest',
    summary: true,
    qos: 1,
    gatewayVsMosquitto: vsMosquitto,
    gatewayVsAedes: ratio(figures[1].gateway, figures[1].aedes),
    qos0GatewayVsMosquitto: ratio(figures[0].gateway, figures[0].mosquitto),
    qos0GatewayVsAedes: ratio(figures[0].gateway, figures[0].aedes),
    storedEqualsAcked: gw.every(
      (o) => o.storedRows === o.devices?.acked && o.devices?.unacked === 0,
    ),
    goal: 'stored readings/s (QoS 1) >= 1.0x Mosquitto QoS 1 pass-through delivered msg/s',
    met: vsMosquitto === null ? null : vsMosquitto >= 1,
    ...(Object.keys(set.crashes).length ? { crashes: set.crashes } : {}),
    ...(Object.keys(set.failures).length ? { failures: set.failures } : {}),
  })
}

export async function passthrough(ctx: BenchContext): Promise<void> {
  const set = new TargetSet(ctx.targets, {}, ctx.progress)
  let runs: Runs = {}
  await set.start()
  try {
    runs = (await interleaved(ctx, 'passthrough', 1, () => true, set)).runs
  } finally {
    await set.stop()
  }
  const figures: Partial<Record<TargetName, { perSec: number; p99: number | null }>> = {}
  for (const name of ctx.targets) {
    const r = runs[name] ?? []
    const line = {
      ...baselineLine(ctx, 'passthrough', name, 1, r),
      ...(name === 'gateway'
        ? {
            measure: 'delivered to 1 subscriber on sensors/# (QoS 1), full pipeline on',
            storedPerSec: int(medianOf(r, stored)),
            readingsPerCommit: readingsPerCommit(r),
          }
        : {}),
    }
    const p99 = (line as Record<string, unknown>).latencyP99Ms
    figures[name] = {
      perSec: line.msgPerSec ?? Number.NaN,
      p99: typeof p99 === 'number' ? p99 : null,
    }
    ctx.emit({ ...line, crashes: set.crashCount(name), failedRuns: set.failureCount(name) })
    if (name === 'gateway') {
      ctx.subscribedPeak = {
        perSec: line.msgPerSec ?? Number.NaN,
        peakRssKiB: medianOf(r, (o) => o.peakRssKiB),
      }
    }
  }
  const vsAedes = ratio(figures.gateway?.perSec, figures.aedes?.perSec)
  ctx.emit({
    bench: 'passthrough',
    summary: true,
    qos: 1,
    gatewayVsAedes: vsAedes,
    gatewayVsMosquitto: ratio(figures.gateway?.perSec, figures.mosquitto?.perSec),
    p99GatewayVsAedes: ratio(figures.gateway?.p99 ?? undefined, figures.aedes?.p99 ?? undefined),
    p99GatewayVsMosquitto: ratio(
      figures.gateway?.p99 ?? undefined,
      figures.mosquitto?.p99 ?? undefined,
    ),
    goal: 'gateway delivered msg/s (full pipeline) >= 0.95x bare Aedes',
    ...(Object.keys(set.crashes).length ? { crashes: set.crashes } : {}),
    ...(Object.keys(set.failures).length ? { failures: set.failures } : {}),
    met: vsAedes === null ? null : vsAedes >= 0.95,
  })
}
