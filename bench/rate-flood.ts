/**
 * What one client far over PUBLISH_RATE costs everyone else (README Limits; issue 14, point 4):
 * the pass-through of well-behaved devices (closed loop, QoS 1, each well under its rate) to one
 * subscriber, measured without a flooder and beside one raw TCP connection that writes PUBLISHes
 * back to back (bench/load/jobs.ts FloodJob) at QoS 0 or QoS 1, far over its rate. The three
 * modes alternate round by round against one gateway (a child process, stopped by PID).
 *
 *   node --import tsx bench/rate-flood.ts [--rounds 2] [--duration 8] [--warmup 1]
 *        [--devices 20] [--in-flight 400] [--rate 2000]
 *
 * BENCH_GATEWAY_DIR=/path/to/other/checkout runs that checkout's gateway (before/after).
 * RATE_DISCONNECT_AFTER is set out of reach so that the flooder stays connected for the whole
 * window: what is measured is the over-limit path itself, not how soon it is cut off.
 *
 * Prints one JSON line per run ({"bench":"rate-flood","mode",...,"passthroughPerSec"}) and a
 * summary line with the median pass-through of each mode and its ratio to no flood.
 */
import { parseArgs } from 'node:util'
import { type LoadOutcome, runLoad } from './lib/load-run.ts'
import { machine } from './lib/proc.ts'
import { median, round } from './lib/stats.ts'
import { startPool } from './load/pool.ts'
import { killTargets, metricValue, scrapeMetrics, startGateway } from './targets/targets.ts'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '1' },
    devices: { type: 'string', default: '20' },
    'in-flight': { type: 'string', default: '400' },
    rate: { type: 'string', default: '2000' },
  },
})
const rounds = Number(values.rounds)
const durationMs = Number(values.duration) * 1_000
const warmupMs = Number(values.warmup) * 1_000
const devices = Number(values.devices)
const inFlight = Number(values['in-flight'])
const ratePerSec = Number(values.rate)
const MODES = ['none', 'qos0', 'qos1'] as const
type Mode = (typeof MODES)[number]
/** The QoS 1 flooder's window: far more than its rate refills while the window lasts. */
const FLOOD_MAX_OUTSTANDING = 10_000
/** The devices' own metric: the subscriber receives theirs only, never the flood's. */
const METRIC = 'passthrough'

const emit = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`)

process.once('SIGINT', () => {
  killTargets()
  process.exit(130)
})

// Devices, subscriber, flooder: each in a worker process of its own.
const pool = await startPool(3)
const [deviceWorker, subscriberWorker, floodWorker] = pool as [
  (typeof pool)[0],
  (typeof pool)[0],
  (typeof pool)[0],
]
const gateway = await startGateway({
  env: {
    PUBLISH_RATE: String(ratePerSec),
    PUBLISH_BURST: String(ratePerSec),
    RATE_DISCONNECT_AFTER: '100000000',
  },
})
const perMode: Record<Mode, number[]> = { none: [], qos0: [], qos1: [] }
try {
  for (let r = 0; r < rounds; r++) {
    for (const mode of MODES) {
      const before = await scrapeMetrics(gateway)
      const outcome: LoadOutcome = await runLoad({
        target: gateway,
        warmupMs,
        durationMs,
        drainMs: 2_000,
        devices: {
          workers: [deviceWorker],
          count: devices,
          qos: 1,
          mode: 'closed',
          window: Math.max(1, Math.round(inFlight / devices)),
          metric: METRIC,
        },
        subscriber: { worker: subscriberWorker, topic: `sensors/+/${METRIC}`, qos: 1 },
        ...(mode === 'none'
          ? {}
          : {
              flood: {
                worker: floodWorker,
                connections: 1,
                qos: mode === 'qos0' ? 0 : 1,
                maxOutstanding: FLOOD_MAX_OUTSTANDING,
              },
            }),
      })
      const after = await scrapeMetrics(gateway)
      const delta = (name: string) => {
        const d = metricValue(after, name) - metricValue(before, name)
        return Number.isNaN(d) ? null : d
      }
      const passthroughPerSec = Math.round(
        (outcome.subscriber?.receivedInWindow ?? 0) / outcome.windowSec,
      )
      perMode[mode].push(passthroughPerSec)
      emit({
        bench: 'rate-flood',
        round: r,
        mode,
        passthroughPerSec,
        devicesAckedPerSec: Math.round((outcome.devices?.ackedInWindow ?? 0) / outcome.windowSec),
        floodSentPerSec: outcome.flood
          ? Math.round(outcome.flood.sentInWindow / outcome.windowSec)
          : 0,
        floodAckedPerSec: outcome.flood
          ? Math.round(outcome.flood.ackedInWindow / outcome.windowSec)
          : 0,
        floodDisconnects: outcome.flood?.disconnects ?? 0,
        gatewayCpu: round(outcome.targetCpu, 2),
        generatorCpu: round(outcome.generatorCpu, 2),
        peakRssMiB: Math.round(outcome.peakRssKiB / 1024),
        deadLettersRateLimited: delta('gateway_publishes_rejected_total{reason="rate_limited"}'),
        rateLimited: delta('gateway_publishes_rate_limited_total'),
        alive: outcome.alive,
      })
    }
  }
  const med = (mode: Mode) => Math.round(median(perMode[mode]))
  emit({
    bench: 'rate-flood',
    summary: true,
    gatewayDir: process.env.BENCH_GATEWAY_DIR || 'this checkout',
    ratePerSec,
    devices,
    inFlight,
    durationSec: durationMs / 1_000,
    rounds,
    ...machine(),
    passthroughPerSec: { none: med('none'), qos0Flood: med('qos0'), qos1Flood: med('qos1') },
    vsNoFlood: {
      qos0Flood: round(med('qos0') / med('none'), 3),
      qos1Flood: round(med('qos1') / med('none'), 3),
    },
  })
} finally {
  await gateway.stop()
  for (const worker of pool) worker.stop()
}
