/**
 * InfluxDB write throughput: the gateway's InfluxDB store against the two ways any client writes,
 * in the same run, against the same real influxd (Debian's InfluxDB 1.x, started on a free port).
 *
 *   node --import tsx bench/influx-write.bench.ts [--points N] [--batch N] [--rounds N]
 *
 * Prints one JSON line per writer and one summary line with the ratios:
 *   {"bench":"influx-write","writer":"gateway-store",...,"pointsPerSec":..}
 *   {"bench":"influx-write","summary":true,"storeVsRaw":..,"storeVsWritePoints":..}
 *
 * Writers: `gateway-store` (createInfluxStore().writeReadings, what the store writer calls),
 * `raw-line-protocol` (a pre-built line-protocol body POSTed with fetch: the floor any client
 * pays), `influx-writePoints` (npm influx's writePoints with point objects). Each writes the same
 * readings (1,000 devices x 5 metrics) in batches, sequentially (one request in flight, as the
 * store writer does), into its own database; the writers take turns round by round so machine
 * noise hits them alike. Points/s counts points acknowledged by InfluxDB (HTTP 204).
 * The writers live in bench/store-write.ts, shared with the `store` scenario of `npm run bench`
 * (which adds the SQLite store against raw better-sqlite3 inserts).
 */
import { parseArgs } from 'node:util'
import { NOT_INSTALLED_MESSAGE } from '../scripts/influxd.ts'
import { runStoreWrite } from './store-write.ts'

const { values } = parseArgs({
  options: {
    points: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '3' },
  },
})
const BATCH = Number(values.batch)
const ROUNDS = Number(values.rounds)

const result = await runStoreWrite({
  points: Number(values.points),
  batch: BATCH,
  rounds: ROUNDS,
  influx: true,
  sqlite: false,
})
if (result.influxSkipped) throw new Error(NOT_INSTALLED_MESSAGE)
for (const w of result.writers) {
  process.stdout.write(
    `${JSON.stringify({ bench: 'influx-write', writer: w.writer, points: w.points, batch: BATCH, rounds: ROUNDS, pointsPerSec: w.pointsPerSec, usPerPoint: w.usPerPoint })}\n`,
  )
}
const perSec = (name: string) => result.writers.find((w) => w.writer === name)?.pointsPerSec ?? 0
const gatewayStore = perSec('gateway-store')
process.stdout.write(
  `${JSON.stringify({ bench: 'influx-write', summary: true, storeVsRaw: Number((gatewayStore / perSec('raw-line-protocol')).toFixed(3)), storeVsWritePoints: Number((gatewayStore / perSec('influx-writePoints')).toFixed(3)), influxd: 'Debian influxdb 1.6' })}\n`,
)
