/**
 * `store`: bench/store-write.ts in the suite: the InfluxDB store against raw line protocol and
 * npm influx's writePoints, and the SQLite store against raw better-sqlite3 inserts, writers
 * interleaved round by round.
 */
import { ratio } from '../lib/stats.ts'
import { runStoreWrite } from '../store-write.ts'
import type { BenchContext } from './context.ts'

const BATCH = 5_000

export async function store(ctx: BenchContext): Promise<void> {
  const points = ctx.quick ? 20_000 : 100_000
  ctx.progress(`store: ${points} points x ${ctx.rounds} rounds per writer`)
  const result = await runStoreWrite({
    points,
    batch: BATCH,
    rounds: ctx.rounds,
    influx: true,
    sqlite: true,
  })
  for (const w of result.writers) {
    ctx.emit({ bench: 'store', ...w, batch: BATCH, rounds: ctx.rounds })
  }
  if (result.influxSkipped) {
    ctx.emit({
      bench: 'store',
      writer: 'gateway-store',
      backend: 'influx',
      skipped: result.influxSkipped,
    })
  }
  const perSec = (name: string) => result.writers.find((w) => w.writer === name)?.pointsPerSec
  const storeVsRaw = ratio(perSec('gateway-store'), perSec('raw-line-protocol'))
  ctx.emit({
    bench: 'store',
    summary: true,
    storeVsRaw,
    storeVsWritePoints: ratio(perSec('gateway-store'), perSec('influx-writePoints')),
    sqliteStoreVsRawInsert: ratio(perSec('sqlite-store'), perSec('sqlite-raw-insert')),
    sqliteStorePointsPerSec: perSec('sqlite-store') ?? null,
    influxStorePointsPerSec: perSec('gateway-store') ?? null,
    goal: 'InfluxDB store writes >= 0.9x raw line protocol',
    met: storeVsRaw === null ? null : storeVsRaw >= 0.9,
  })
}
