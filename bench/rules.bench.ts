/**
 * Rule engine benchmark: 1,000 rules of every kind over 1,000,000 readings, in-process.
 *
 *   node --import tsx bench/rules.bench.ts [--readings N]
 *
 * Prints one JSON line:
 *   {"bench":"rules","rules":1000,"readings":1000000,"readingsPerSec":..,"p99Us":..,"p50Us":..,
 *    "transitions":..,"rssMiB":..}
 *
 * Set-up: 1,000 devices x 20 metrics, rotating (reading i is device i % 1000, metric
 * floor(i / 1000) % 20), so each (device, metric) reports every 20 s of reading time; values are
 * slow sines with deterministic noise, so thresholds, rates and means cross now and then. Rules:
 * thresholds (plain, for, hysteresis, clear, cooldown, flapping), rates, deadman (a few with a
 * period shorter than the reporting interval, so they fire and resolve every cycle), the custom
 * mean-above module, metric globs, device globs, lists and tags. The engine's clock is reading
 * time and its deadlines are advanced every 1,000 readings (1 s), as its tick would.
 *
 * Timing: readings go through the real bus (`bus.emit('reading')`, as ingest does, one new
 * Reading object each). Each reading is timed on its own with process.hrtime.bigint() (about
 * 0.05 us per read, under 1 % of a reading here), so p50/p99 are true per-reading figures.
 * Deadline advances run between readings and count in readingsPerSec (total wall time) but not
 * in the percentiles. The same loop first runs with no rules at all (`baselineReadingsPerSec`):
 * what the bus and the loop cost by themselves on this machine, in this run.
 */
import { fileURLToPath } from 'node:url'
import { createEventBus } from '../src/bus/event-bus.ts'
import { createDeviceRegistry, type DeviceRegistry } from '../src/rules/device-registry.ts'
import { handlerPathsOf, loadHandlerModules, validateRules } from '../src/rules/load-rules.ts'
import { createRuleEngine } from '../src/rules/rule-engine.ts'
import { createSilentLogger } from '../src/telemetry/logger.ts'

const DEVICES = 1_000
const METRICS = 20
const RULES = 1_000
const ADVANCE_EVERY = 1_000
const T0 = Date.UTC(2026, 0, 1)

const arg = process.argv.indexOf('--readings')
const READINGS = arg > 0 ? Number(process.argv[arg + 1]) : 1_000_000

const HANDLER = fileURLToPath(new URL('../config/handlers/mean-above.ts', import.meta.url))
const deviceIds = Array.from({ length: DEVICES }, (_, i) => `dev-${String(i).padStart(3, '0')}`)
const metrics = Array.from({ length: METRICS }, (_, i) => `m${String(i).padStart(2, '0')}`)
const SITES = ['greenhouse', 'office', 'lab', 'warehouse']

/** Deterministic pseudo-random in [0, 1): the same rules and series every run. */
function lcg(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0
    return s / 2 ** 32
  }
}

function deviceMatch(r: () => number): Record<string, unknown> {
  const pick = r()
  if (pick < 0.3) return { device: '*' }
  if (pick < 0.5) return { device: `dev-${Math.floor(r() * 10)}*` }
  if (pick < 0.6) return { device: `dev-0${Math.floor(r() * 10)}?` }
  if (pick < 0.75) {
    return { device: [`dev-${Math.floor(r() * 10)}0*`, deviceIds[Math.floor(r() * DEVICES)]] }
  }
  if (pick < 0.85) return { device: deviceIds[Math.floor(r() * DEVICES)] }
  return { tags: { site: SITES[Math.floor(r() * SITES.length)] } }
}

function buildRules(): Array<Record<string, unknown>> {
  const r = lcg(42)
  const rules: Array<Record<string, unknown>> = []
  for (let i = 0; i < RULES; i++) {
    const metric = metrics[i % METRICS] as string
    const match = { ...deviceMatch(r), metric }
    const id = `r${i}`
    const kindPick = i % 20
    if (kindPick < 8) {
      const rule: Record<string, unknown> = { id, kind: 'threshold', match, above: 55 + r() * 10 }
      if (kindPick === 1) rule.for = '30s'
      if (kindPick === 2) rule.hysteresis = 2
      if (kindPick === 3) rule.clear = 50
      if (kindPick === 4) rule.cooldown = '5m'
      if (kindPick === 5) rule.flapping = { transitions: 3, window: '10m' }
      if (kindPick === 6) rule.match = { ...match, metric: `m${Math.floor(r() * 2)}*` }
      rules.push(rule)
    } else if (kindPick < 13) {
      rules.push({
        id,
        kind: 'rate',
        match: kindPick === 12 && i % 40 === 12 ? { ...match, metric: '*' } : match,
        delta: 2 + r() * 4,
        per: '1m',
        direction: ['rising', 'falling', 'either'][kindPick % 3],
      })
    } else if (kindPick < 16) {
      rules.push({
        id,
        kind: 'deadman',
        match,
        after: kindPick === 13 && i % 7 === 0 ? '15s' : '2m',
      })
    } else {
      rules.push({
        id,
        kind: 'custom',
        handler: HANDLER,
        match,
        window: 5,
        limit: 55 + r() * 5,
      })
    }
  }
  return rules
}

interface RunResult {
  elapsedNs: number
  /** Sorted ascending. */
  perReadingNs: Float64Array
  transitions: number
  engine: ReturnType<typeof createRuleEngine>
}

/** Feeds READINGS readings through a bus into an engine holding `rules`; times each one. */
function run(rules: Parameters<typeof createRuleEngine>[1], registry: DeviceRegistry): RunResult {
  const log = createSilentLogger()
  const bus = createEventBus(log)
  let transitions = 0
  bus.on('bench', 'alert', () => {
    transitions++
  })
  let clock = T0
  const engine = createRuleEngine({ bus, log, registry, now: () => clock, tickMs: 0 }, rules)
  engine.start()

  const noise = lcg(7)
  const phase = Array.from({ length: DEVICES * METRICS }, () => noise() * Math.PI * 2)
  const perReadingNs = new Float64Array(READINGS)
  const started = process.hrtime.bigint()
  for (let i = 0; i < READINGS; i++) {
    const d = i % DEVICES
    const m = Math.floor(i / DEVICES) % METRICS
    const ts = T0 + i
    clock = ts
    const slow = Math.sin(ts / 600_000 + (phase[d * METRICS + m] as number))
    const t0 = process.hrtime.bigint()
    bus.emit('reading', {
      deviceId: deviceIds[d] as string,
      metric: metrics[m] as string,
      value: 50 + 10 * slow + (noise() - 0.5),
      ts,
    })
    perReadingNs[i] = Number(process.hrtime.bigint() - t0)
    if ((i + 1) % ADVANCE_EVERY === 0) engine.advance(clock)
  }
  const elapsedNs = Number(process.hrtime.bigint() - started)
  engine.stop()
  return { elapsedNs, perReadingNs: perReadingNs.sort(), transitions, engine }
}

async function main(): Promise<void> {
  const data = { rules: buildRules() }
  const handlers = await loadHandlerModules(handlerPathsOf(data))
  const parsed = validateRules(data, 'bench', undefined, handlers)
  if (!parsed.ok) throw new Error(parsed.errors.slice(0, 5).join('\n'))
  const registry = createDeviceRegistry(
    deviceIds.map((id, i) => ({ id, tags: { site: SITES[i % SITES.length] as string } })),
  )

  const baseline = run([], registry)
  const result = run(parsed.rules, registry)
  // --verbose (with node --expose-gc for a live-heap figure): engine counters on stderr.
  if (process.argv.includes('--verbose')) {
    ;(globalThis as { gc?: () => void }).gc?.()
    const heapMiB = Math.round(process.memoryUsage().heapUsed / 2 ** 20)
    process.stderr.write(`${JSON.stringify({ ...result.engine.stats(), heapMiB })}\n`)
  }

  const at = (sorted: Float64Array, q: number) =>
    (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) / 1_000
  const round = (n: number, digits: number) => Number(n.toFixed(digits))
  const perSec = (r: RunResult) => Math.round(READINGS / (r.elapsedNs / 1e9))
  process.stdout.write(
    `${JSON.stringify({
      bench: 'rules',
      rules: parsed.rules.length,
      readings: READINGS,
      readingsPerSec: perSec(result),
      p99Us: round(at(result.perReadingNs, 0.99), 3),
      p50Us: round(at(result.perReadingNs, 0.5), 3),
      transitions: result.transitions,
      baselineReadingsPerSec: perSec(baseline),
      baselineP99Us: round(at(baseline.perReadingNs, 0.99), 3),
      rssMiB: round(process.memoryUsage().rss / 2 ** 20, 1),
    })}\n`,
  )
}

await main()
