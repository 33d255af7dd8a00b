/**
 * `overload`: more than a target can take, for a bounded time:
 *
 * - 2x: the devices (MQTT.js, QoS 1) publish open loop at twice the target's capacity (its
 *   closed-loop QoS 1 figure from `ingest` in this run, or measured here first), sending on
 *   whether or not PUBACKs come back.
 * - flood: raw TCP connections from another process write QoS 1 PUBLISHes back to back without
 *   waiting for PUBACKs (bench/load/jobs.ts FloodJob), while the devices run their normal closed
 *   loop beside them.
 * - 2x-subscribed (gateway only): with a QoS 1 subscriber on `sensors/#`, open loop at twice the
 *   gateway's capacity *with* that subscriber (its `passthrough` figure in this run, or measured
 *   here first): the gateway, like Aedes, delivers every QoS 1 message to a subscriber rather than
 *   dropping what it cannot take in time (Mosquitto drops), so the subscriber sets the pace and
 *   the capacity to compare with. The subscriber disconnects at the end while the broker still has
 *   messages queued for it. Mosquitto and bare Aedes have a subscriber in every run (their measure).
 *
 * Reported: throughput (gateway: stored readings/s; the others: delivered to the subscriber)
 * against the capacity, peak RSS of the target and whether it plateaus, whether it crashed (and
 * how: the end of its output), whether the devices' QoS 1 connections were dropped, and (gateway)
 * whether every acknowledged reading is in gateway.db, crash or not.
 */
import type { LoadOutcome, LoadPlan } from '../lib/load-run.ts'
import { ratio } from '../lib/stats.ts'
import type { TargetName } from '../targets/targets.ts'
import {
  type BenchContext,
  int,
  medianOf,
  mib,
  num,
  perSec,
  pushTo,
  rotate,
  runOn,
  TargetSet,
} from './context.ts'

const FLOOD_CONNECTIONS = 10
/** Unacknowledged QoS 1 publishes per flood connection at most (10x the devices' whole window). */
const FLOOD_MAX_OUTSTANDING = 10_000
const OVERLOAD_DRAIN_MS = 2_000
/**
 * The overload window, at least: whether memory plateaus can only be seen over time (in 3 s
 * windows the gateway's heap was still growing at 2x, and flat by the middle of a 12 s one).
 */
const MIN_OVERLOAD_WINDOW_MS = 10_000
const MODES = ['2x', 'flood', '2x-subscribed'] as const
type Mode = (typeof MODES)[number]

/**
 * Bounded: RSS in the second half of the overload window at most 10 % (or 16 MiB) above the first
 * half's peak: memory reached a plateau instead of growing with the backlog.
 */
const bounded = (o: LoadOutcome) =>
  o.rssSecondHalfKiB <= o.rssFirstHalfKiB + Math.max(16 * 1024, 0.1 * o.rssFirstHalfKiB)

const stored = (o: LoadOutcome) => perSec(o.storedInWindow, o)
const delivered = (o: LoadOutcome) => perSec(o.subscriber?.receivedInWindow, o)
const throughput = (o: LoadOutcome, gateway: boolean) => (gateway ? stored(o) : delivered(o))
const ackedTotal = (o: LoadOutcome) => (o.devices?.acked ?? 0) + (o.flood?.acked ?? 0)

/** The capacity a mode is offered twice of, and compared with. */
const peakOf = (ctx: BenchContext, name: TargetName, mode: Mode) =>
  mode === '2x-subscribed' ? ctx.subscribedPeak : ctx.peaks[name]

const key = (mode: Mode) => ({ '2x': '2x', flood: 'Flood', '2x-subscribed': '2xSubscribed' })[mode]

export async function overload(ctx: BenchContext): Promise<void> {
  const set = new TargetSet(ctx.targets, {}, ctx.progress)
  const runs: Record<Mode, Partial<Record<TargetName, LoadOutcome[]>>> = {
    '2x': {},
    flood: {},
    '2x-subscribed': {},
  }
  const failedRuns: Record<Mode, Partial<Record<TargetName, number>>> = {
    '2x': {},
    flood: {},
    '2x-subscribed': {},
  }
  const crashedRuns: Record<Mode, Partial<Record<TargetName, number>>> = {
    '2x': {},
    flood: {},
    '2x-subscribed': {},
  }
  // A longer warm-up than a throughput run: the backlog builds before the window shows whether
  // memory plateaus or keeps growing.
  const warmupMs = ctx.warmupMs * 2
  const durationMs = ctx.quick ? ctx.durationMs : Math.max(ctx.durationMs, MIN_OVERLOAD_WINDOW_MS)
  const closedLoop = {
    workers: ctx.generators,
    count: ctx.devices,
    qos: 1 as const,
    mode: 'closed' as const,
    window: Math.max(1, Math.round(ctx.inFlight / ctx.devices)),
  }
  const subscriber = {
    subscriber: { worker: ctx.subscriberWorker, topic: 'sensors/#', qos: 1 as const },
  }
  await set.start()
  try {
    // Capacity: from ingest if it ran, else one closed-loop QoS 1 run per target now.
    for (const name of ctx.targets) {
      if (Number.isFinite(ctx.peaks[name]?.perSec)) continue
      ctx.progress(`overload: measuring ${name}'s capacity (closed loop, QoS 1)`)
      const o = await runOn(set, name, {
        warmupMs: ctx.warmupMs,
        durationMs: ctx.durationMs,
        devices: closedLoop,
        ...(name === 'gateway' ? {} : subscriber),
      })
      if (o) {
        ctx.peaks[name] = { perSec: throughput(o, name === 'gateway'), peakRssKiB: o.peakRssKiB }
      }
    }
    if (ctx.targets.includes('gateway') && !Number.isFinite(ctx.subscribedPeak?.perSec)) {
      ctx.progress(
        `overload: measuring the gateway's capacity with a subscriber (closed loop, QoS 1)`,
      )
      const o = await runOn(set, 'gateway', {
        warmupMs: ctx.warmupMs,
        durationMs: ctx.durationMs,
        devices: closedLoop,
        ...subscriber,
      })
      if (o) ctx.subscribedPeak = { perSec: delivered(o), peakRssKiB: o.peakRssKiB }
    }

    for (let r = 0; r < ctx.overloadRounds; r++) {
      for (const name of rotate(ctx.targets, r)) {
        for (const mode of MODES) {
          if (mode === '2x-subscribed' && name !== 'gateway') continue
          const peak = peakOf(ctx, name, mode)?.perSec ?? Number.NaN
          ctx.progress(`overload ${mode}, round ${r + 1}/${ctx.overloadRounds}: ${name}`)
          const plan: Omit<LoadPlan, 'target'> = {
            warmupMs,
            durationMs,
            // The backlog of an overload is not waited out: what is still owed after it is
            // reported (unackedAtEnd, lost); acked readings are checked stored all the same.
            drainMs: OVERLOAD_DRAIN_MS,
            devices:
              mode === 'flood'
                ? closedLoop
                : {
                    ...closedLoop,
                    mode: 'open',
                    ratePerSec: Math.max(1_000, Math.round(2 * peak)),
                  },
            ...(mode === 'flood'
              ? {
                  flood: {
                    worker: ctx.sideWorkers[0],
                    connections: FLOOD_CONNECTIONS,
                    qos: 1,
                    maxOutstanding: FLOOD_MAX_OUTSTANDING,
                  },
                }
              : {}),
            ...(name !== 'gateway' || mode === '2x-subscribed' ? subscriber : {}),
          }
          const crashesBefore = set.crashCount(name)
          const o = await runOn(set, name, plan)
          if (o) pushTo(runs[mode], name, o)
          if (set.crashCount(name) > crashesBefore) {
            crashedRuns[mode][name] = (crashedRuns[mode][name] ?? 0) + 1
          } else if (!o) {
            failedRuns[mode][name] = (failedRuns[mode][name] ?? 0) + 1
          }
        }
      }
    }
  } finally {
    await set.stop()
  }

  const summary: Record<string, unknown> = {}
  for (const mode of MODES) {
    for (const name of ctx.targets) {
      if (mode === '2x-subscribed' && name !== 'gateway') continue
      const r = runs[mode][name] ?? []
      const gateway = name === 'gateway'
      const peak = peakOf(ctx, name, mode)
      const perSecNow = medianOf(r, (o) => throughput(o, gateway))
      const crashes = crashedRuns[mode][name] ?? 0
      const failed = failedRuns[mode][name] ?? 0
      const line = {
        bench: 'overload',
        target: name,
        mode,
        qos: 1,
        measure: gateway ? 'stored readings/s' : 'delivered to 1 subscriber on sensors/#',
        offeredPerSec: int(
          medianOf(r, (o) =>
            perSec((o.devices?.sentInWindow ?? 0) + (o.flood?.sentInWindow ?? 0), o),
          ),
        ),
        msgPerSec: int(perSecNow),
        peakPerSec: int(peak?.perSec ?? Number.NaN),
        vsPeak: ratio(perSecNow, peak?.perSec),
        ...(gateway && mode === '2x-subscribed'
          ? { deliveredPerSec: int(medianOf(r, delivered)) }
          : {}),
        devicesAckedPerSec: int(medianOf(r, (o) => perSec(o.devices?.ackedInWindow, o))),
        ...(mode === 'flood'
          ? {
              floodConnections: FLOOD_CONNECTIONS,
              floodMaxOutstanding: FLOOD_MAX_OUTSTANDING,
              floodSentPerSec: int(medianOf(r, (o) => perSec(o.flood?.sentInWindow, o))),
              floodAckedPerSec: int(medianOf(r, (o) => perSec(o.flood?.ackedInWindow, o))),
              floodDisconnects: r.reduce((n, o) => n + (o.flood?.disconnects ?? 0), 0),
            }
          : {}),
        rssStartMiB: mib(medianOf(r, (o) => o.rssStartKiB)),
        peakRssMiB: mib(Math.max(...r.map((o) => o.peakRssKiB))),
        peakLoadRssMiB: mib(peak?.peakRssKiB ?? Number.NaN),
        // Second half of the window against the first: a plateau is bounded, a ramp is not.
        rssGrowthMiB: mib(Math.max(...r.map((o) => o.rssSecondHalfKiB - o.rssFirstHalfKiB))),
        memoryBounded: r.length > 0 && r.every(bounded),
        crashed: crashes > 0,
        crashes,
        // Runs that failed with the target still up (it reset a connection): no sample.
        failedRuns: failed,
        runs: r.length + failed,
        qos1Disconnects: r.reduce((n, o) => n + (o.devices?.disconnects ?? 0), 0),
        unackedAtEnd: r.reduce((n, o) => n + (o.devices?.unacked ?? 0), 0),
        ...(gateway
          ? {
              acked: r.reduce((n, o) => n + ackedTotal(o), 0),
              stored: r.reduce((n, o) => n + (o.storedRows ?? 0), 0),
              // Every PUBACK stands for a stored reading (crash or not); a few stored ones may
              // have lost their PUBACK to the end of the run (the connection closed first).
              ackedAllStored: r.every((o) => (o.storedRows ?? 0) >= ackedTotal(o)),
            }
          : {
              lost: r.reduce(
                (n, o) => n + Math.max(0, ackedTotal(o) - (o.subscriber?.received ?? 0)),
                0,
              ),
            }),
        targetCpu: num(
          medianOf(r, (o) => o.targetCpu),
          2,
        ),
        warmupSec: warmupMs / 1_000,
        durationSec: durationMs / 1_000,
      }
      ctx.emit(line)
      summary[`${name}${key(mode)}VsPeak`] = line.vsPeak
      summary[`${name}${key(mode)}Crashed`] = line.crashed
      if (gateway) {
        summary[`gateway${key(mode)}PeakRssMiB`] = line.peakRssMiB
        summary[`gateway${key(mode)}MemoryBounded`] = line.memoryBounded
        summary[`gateway${key(mode)}Qos1Disconnects`] = line.qos1Disconnects
        summary[`gateway${key(mode)}AckedAllStored`] =
          'ackedAllStored' in line ? line.ackedAllStored : null
      }
    }
  }
  const gw = ctx.peaks.gateway
  const hasGateway = ctx.targets.includes('gateway')
  const peakRss = Math.max(
    ...MODES.map((m) => Number(summary[`gateway${key(m)}PeakRssMiB`] ?? Number.NaN)),
  )
  const all = (suffix: string, value: unknown) =>
    MODES.every((m) => summary[`gateway${key(m)}${suffix}`] === value)
  const memoryBounded = hasGateway ? all('MemoryBounded', true) : null
  const met = hasGateway
    ? Number(summary.gateway2xVsPeak) >= 0.8 &&
      Number(summary.gatewayFloodVsPeak) >= 0.8 &&
      Number(summary.gateway2xSubscribedVsPeak) >= 0.8 &&
      memoryBounded === true &&
      all('Crashed', false) &&
      all('Qos1Disconnects', 0) &&
      all('AckedAllStored', true)
    : null
  ctx.emit({
    bench: 'overload',
    summary: true,
    qos: 1,
    ...summary,
    gatewayMemoryBounded: memoryBounded,
    gatewayPeakRssVsFullLoad: gw ? ratio(peakRss, gw.peakRssKiB / 1024, 2) : null,
    ...(Object.keys(set.crashes).length ? { crashDetails: set.crashes } : {}),
    ...(Object.keys(set.failures).length ? { failureDetails: set.failures } : {}),
    goal: 'at 2x capacity (with and without a QoS 1 subscriber: each against its own capacity) and under a flood: stored >= 0.8x peak, memory bounded (RSS plateaus within the window), no crash, QoS 1 devices slowed (acks withheld) not disconnected, every acked reading stored',
    met,
  })
}
