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
 */
import { parseArgs } from 'node:util'
import { InfluxDB, type IPoint } from 'influx'
import { startInfluxd } from '../scripts/influxd.ts'
import type { Reading } from '../src/contract/types.ts'
import { createInfluxStore } from '../src/store/influx-store.ts'

const { values } = parseArgs({
  options: {
    points: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '3' },
  },
})
const POINTS = Number(values.points)
const BATCH = Number(values.batch)
const ROUNDS = Number(values.rounds)
// Recent times: the store recomputes the 1-minute aggregates of readings that arrive more than
// a few minutes late, in the background; old benchmark times would load InfluxDB with that work
// while the other writers are timed.
const T0 = Date.now() - 60_000
const DAY_MS = 86_400_000

type Writer = {
  name: string
  write: (batch: Reading[]) => Promise<void>
  ns: number
  points: number
}

function readingsFor(round: number): Reading[] {
  const metrics = ['temperature', 'humidity', 'co2', 'pressure', 'battery']
  return Array.from({ length: POINTS }, (_, i) => ({
    deviceId: `dev-${String(i % 1000).padStart(4, '0')}`,
    metric: metrics[Math.floor(i / 1000) % metrics.length] as string,
    value: 20 + ((i * 7919) % 1000) / 100,
    // Each round writes new points (1 ms apart, after the last round's), so none overwrites.
    ts: T0 + round * POINTS + i,
  }))
}

function lineProtocol(batch: readonly Reading[]): string {
  let body = ''
  for (const r of batch)
    body += `reading,device=${r.deviceId},metric=${r.metric} value=${r.value} ${r.ts}\n`
  return body
}

const influxd = await startInfluxd()
try {
  const base = influxd.url
  const admin = new InfluxDB(`${base}/_internal`)
  for (const db of ['bench_raw', 'bench_points']) await admin.createDatabase(db)
  const store = await createInfluxStore({
    url: `${base}/bench_store`,
    rawRetentionMs: 3650 * DAY_MS,
    downsampledRetentionMs: 3650 * DAY_MS,
  })
  const pointsClient = new InfluxDB(`${base}/bench_points`)

  const writers: Writer[] = [
    { name: 'gateway-store', write: (batch) => store.writeReadings(batch), ns: 0, points: 0 },
    {
      name: 'raw-line-protocol',
      async write(batch) {
        const res = await fetch(`${base}/write?db=bench_raw&precision=ms`, {
          method: 'POST',
          body: lineProtocol(batch),
        })
        if (res.status !== 204) throw new Error(`raw write: HTTP ${res.status} ${await res.text()}`)
      },
      ns: 0,
      points: 0,
    },
    {
      name: 'influx-writePoints',
      write: (batch) =>
        pointsClient.writePoints(
          batch.map(
            (r): IPoint => ({
              measurement: 'reading',
              tags: { device: r.deviceId, metric: r.metric },
              fields: { value: r.value },
              timestamp: r.ts,
            }),
          ),
          { precision: 'ms' },
        ),
      ns: 0,
      points: 0,
    },
  ]

  for (let round = 0; round < ROUNDS; round++) {
    const readings = readingsFor(round)
    // Rotate who goes first, so no writer always meets a warmer or colder server.
    for (let k = 0; k < writers.length; k++) {
      const writer = writers[(round + k) % writers.length] as Writer
      const started = process.hrtime.bigint()
      for (let i = 0; i < readings.length; i += BATCH)
        await writer.write(readings.slice(i, i + BATCH))
      writer.ns += Number(process.hrtime.bigint() - started)
      writer.points += readings.length
    }
  }

  const perSec = (w: Writer) => Math.round(w.points / (w.ns / 1e9))
  for (const w of writers) {
    process.stdout.write(
      `${JSON.stringify({ bench: 'influx-write', writer: w.name, points: w.points, batch: BATCH, rounds: ROUNDS, pointsPerSec: perSec(w), usPerPoint: Number((w.ns / 1e3 / w.points).toFixed(3)) })}\n`,
    )
  }
  const [gatewayStore, raw, writePoints] = writers.map(perSec) as [number, number, number]
  process.stdout.write(
    `${JSON.stringify({ bench: 'influx-write', summary: true, storeVsRaw: Number((gatewayStore / raw).toFixed(3)), storeVsWritePoints: Number((gatewayStore / writePoints).toFixed(3)), influxd: 'Debian influxdb 1.6' })}\n`,
  )
  await store.close()
} finally {
  await influxd.stop()
}
