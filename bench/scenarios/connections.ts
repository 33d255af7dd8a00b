/**
 * `connections`: N idle MQTT connections (raw CONNECT, clean session, keepalive 600 s, nothing
 * published or subscribed), spread over every load worker, 50 connecting at a time per worker.
 * Each round starts each target afresh, measures its RSS idle, connects, waits 2 s, measures again:
 * RSS per connection = (after - before) / connected. Connect time is per connection (TCP connect
 * to CONNACK) and for all of them.
 *
 * Limits: the gateway's MAX_CONNECTIONS is raised to N + 1000 for this run; each process needs a
 * file descriptor per connection (the npm script raises `ulimit -n` to the hard limit).
 */
import { execFileSync } from 'node:child_process'
import { sampleProc } from '../lib/proc.ts'
import {
  median,
  mergeSorted,
  percentileSorted,
  ratio,
  round,
  sleep,
  wallNow,
} from '../lib/stats.ts'
import type { IdleGo, IdleResult } from '../load/jobs.ts'
import { HOST, startTarget, type TargetName } from '../targets/targets.ts'
import { type BenchContext, num, pushTo, rotate } from './context.ts'

const CONCURRENCY_PER_WORKER = 50
const SETTLE_MS = 2_000

interface Round {
  requested: number
  connected: number
  failed: number
  firstError?: string
  stillOpen: number
  rssBeforeKiB: number
  rssAfterKiB: number
  connectSec: number
  connectMs: Float64Array
  alive: boolean
}

export function fdLimit(): number {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim())
  } catch {
    return Number.NaN
  }
}

export async function connections(ctx: BenchContext): Promise<void> {
  const n = ctx.connections
  const limit = fdLimit()
  if (Number.isFinite(limit) && n + 200 > limit) {
    ctx.progress(
      `connections: ${n} asked, but the file-descriptor limit is ${limit}: the targets cannot hold them all (ulimit -n)`,
    )
  }
  const rounds: Partial<Record<TargetName, Round[]>> = {}
  for (let r = 0; r < ctx.rounds; r++) {
    for (const name of rotate(ctx.targets, r)) {
      ctx.progress(`connections (${n}), round ${r + 1}/${ctx.rounds}: ${name}`)
      const target = await startTarget(name, {
        env: { MAX_CONNECTIONS: String(n + 1_000) },
      })
      try {
        await sleep(1_000)
        const before = sampleProc(target.pid)
        const workers = ctx.pool
        const shares = workers.map(
          (_, i) => Math.floor(n / workers.length) + (i < n % workers.length ? 1 : 0),
        )
        const active = workers.filter((_, i) => (shares[i] as number) > 0)
        await Promise.all(
          active.map((w, i) =>
            w.prepare({
              kind: 'idle',
              host: HOST,
              port: target.port,
              clientIdPrefix: `c${r}-${name}-w${i}-`,
              count: shares[workers.indexOf(w)] as number,
              concurrency: CONCURRENCY_PER_WORKER,
              keepaliveSec: 600,
            }),
          ),
        )
        const started = wallNow()
        const timing = { startAt: started, measureFrom: started, measureTo: started }
        const gos: IdleGo[] = await Promise.all(active.map((w) => w.goIdle(timing)))
        const connectSec = (wallNow() - started) / 1_000
        await sleep(SETTLE_MS)
        const after = sampleProc(target.pid)
        const finished = await Promise.all(active.map((w) => w.finish<IdleResult>()))
        const firstError = gos.find((g) => g.firstError)?.firstError
        pushTo(rounds, name, {
          requested: n,
          connected: gos.reduce((s, g) => s + g.connected, 0),
          failed: gos.reduce((s, g) => s + g.failed, 0),
          ...(firstError ? { firstError } : {}),
          stillOpen: finished.reduce((s, f) => s + f.stillOpen, 0),
          rssBeforeKiB: before?.rssKiB ?? Number.NaN,
          rssAfterKiB: after?.rssKiB ?? Number.NaN,
          connectSec,
          connectMs: mergeSorted(gos.map((g) => g.connectMs)),
          alive: target.alive(),
        })
      } finally {
        await target.stop()
      }
    }
  }

  const perConn: Partial<Record<TargetName, number>> = {}
  const rate: Partial<Record<TargetName, number>> = {}
  for (const name of ctx.targets) {
    const rs = rounds[name] ?? []
    const kibPerConn = median(rs.map((x) => (x.rssAfterKiB - x.rssBeforeKiB) / x.connected))
    const connectsPerSec = median(rs.map((x) => x.connected / x.connectSec))
    perConn[name] = kibPerConn
    rate[name] = connectsPerSec
    const pooled = mergeSorted(rs.map((x) => x.connectMs))
    const firstError = rs.find((x) => x.firstError)?.firstError
    ctx.emit({
      bench: 'connections',
      target: name,
      requested: n,
      connected: Math.min(...rs.map((x) => x.connected)),
      failed: rs.reduce((s, x) => s + x.failed, 0),
      ...(firstError ? { firstError } : {}),
      droppedWhileIdle: rs.reduce((s, x) => s + (x.connected - x.stillOpen), 0),
      rssPerConnKiB: num(kibPerConn, 2),
      rssBeforeMiB: num(median(rs.map((x) => x.rssBeforeKiB)) / 1024, 1),
      rssAfterMiB: num(median(rs.map((x) => x.rssAfterKiB)) / 1024, 1),
      connectSec: num(median(rs.map((x) => x.connectSec)), 2),
      connectsPerSec: num(connectsPerSec, 0),
      connectP50Ms: pooled.length ? round(percentileSorted(pooled, 0.5), 3) : null,
      connectP99Ms: pooled.length ? round(percentileSorted(pooled, 0.99), 3) : null,
      crashed: rs.some((x) => !x.alive),
      rounds: rs.length,
      concurrency: CONCURRENCY_PER_WORKER * ctx.pool.length,
      fdLimit: Number.isFinite(limit) ? limit : null,
    })
  }
  ctx.emit({
    bench: 'connections',
    summary: true,
    connections: n,
    gatewayRssPerConnKiB: num(perConn.gateway ?? Number.NaN, 2),
    mosquittoRssPerConnKiB: num(perConn.mosquitto ?? Number.NaN, 2),
    aedesRssPerConnKiB: num(perConn.aedes ?? Number.NaN, 2),
    rssPerConnGatewayVsMosquitto: ratio(perConn.gateway, perConn.mosquitto, 2),
    rssPerConnGatewayVsAedes: ratio(perConn.gateway, perConn.aedes, 2),
    connectRateGatewayVsMosquitto: ratio(rate.gateway, rate.mosquitto),
    connectRateGatewayVsAedes: ratio(rate.gateway, rate.aedes),
    goal: `${n} idle connections: RSS per connection vs Mosquitto (reported, no threshold)`,
  })
}
