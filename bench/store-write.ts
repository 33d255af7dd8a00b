/**
 * Store write throughput: the gateway's stores against the floor of their backend, in the same
 * run, writers taking turns round by round so machine noise hits them alike.
 *
 * InfluxDB (a real influxd, Debian's InfluxDB 1.x, started on free ports by scripts/influxd.ts):
 * - `gateway-store`: createInfluxStore().writeReadings, what the store writer calls;
 * - `raw-line-protocol`: a pre-built line-protocol body POSTed with fetch, the floor any client pays;
 * - `influx-writePoints`: npm influx's writePoints with point objects.
 * SQLite (a file in a temp folder, WAL, synchronous=NORMAL as the store opens it):
 * - `sqlite-store`: createSqliteStore().writeReadings (one transaction per batch, upserts keyed by
 *   device, metric and ts, plus the `latest` table);
 * - `sqlite-raw-insert`: one prepared plain INSERT per reading into a table of the same shape, one
 *   transaction per batch: the floor of better-sqlite3.
 *
 * Each writer writes the same readings (1,000 devices x 5 metrics) in batches, sequentially (one
 * write in flight, as the store writer does), into its own database. Points/s counts points the
 * backend acknowledged (InfluxDB: HTTP 204; SQLite: the commit returned).
 * Used by bench/influx-write.bench.ts (`npm run bench:influx`) and the `store` scenario of
 * bench/run.ts (`npm run bench`).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { InfluxDB, type IPoint } from 'influx'
import { startInfluxd } from '../scripts/influxd.ts'
import type { Reading } from '../src/contract/types.ts'
import { createInfluxStore } from '../src/store/influx-store.ts'
import { createSqliteStore } from '../src/store/sqlite-store.ts'

const DAY_MS = 86_400_000

export interface StoreWriteOptions {
  points: number
  batch: number
  rounds: number
  influx: boolean
  sqlite: boolean
}

export interface WriterResult {
  writer: string
  backend: 'influx' | 'sqlite'
  points: number
  pointsPerSec: number
  usPerPoint: number
}

export interface StoreWriteResult {
  writers: WriterResult[]
  /** Why InfluxDB was not measured (not installed), when it was asked for. */
  influxSkipped?: string
}

interface Writer {
  name: string
  backend: 'influx' | 'sqlite'
  write: (batch: Reading[]) => Promise<void>
  ns: number
  points: number
}

export function lineProtocol(batch: readonly Reading[]): string {
  let body = ''
  for (const r of batch)
    body += `reading,device=${r.deviceId},metric=${r.metric} value=${r.value} ${r.ts}\n`
  return body
}

async function influxWriters(): Promise<{ writers: Writer[]; close: () => Promise<void> }> {
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
      {
        name: 'gateway-store',
        backend: 'influx',
        write: (batch) => store.writeReadings(batch),
        ns: 0,
        points: 0,
      },
      {
        name: 'raw-line-protocol',
        backend: 'influx',
        async write(batch) {
          const res = await fetch(`${base}/write?db=bench_raw&precision=ms`, {
            method: 'POST',
            body: lineProtocol(batch),
          })
          if (res.status !== 204)
            throw new Error(`raw write: HTTP ${res.status} ${await res.text()}`)
        },
        ns: 0,
        points: 0,
      },
      {
        name: 'influx-writePoints',
        backend: 'influx',
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
    return {
      writers,
      async close() {
        await store.close()
        await influxd.stop()
      },
    }
  } catch (err) {
    await influxd.stop()
    throw err
  }
}

async function sqliteWriters(): Promise<{ writers: Writer[]; close: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-sqlite-'))
  const store = createSqliteStore({ file: join(dir, 'store.db') })
  const raw = new Database(join(dir, 'raw.db'))
  raw.pragma('journal_mode = WAL')
  raw.pragma('synchronous = NORMAL')
  raw.exec(`CREATE TABLE readings (
    device TEXT NOT NULL, metric TEXT NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, unit TEXT,
    PRIMARY KEY (device, metric, ts)
  ) WITHOUT ROWID`)
  const insert = raw.prepare('INSERT INTO readings (device, metric, ts, value) VALUES (?, ?, ?, ?)')
  const insertAll = raw.transaction((batch: readonly Reading[]) => {
    for (const r of batch) insert.run(r.deviceId, r.metric, r.ts, r.value)
  })
  return {
    writers: [
      {
        name: 'sqlite-store',
        backend: 'sqlite',
        write: (batch) => store.writeReadings(batch),
        ns: 0,
        points: 0,
      },
      {
        name: 'sqlite-raw-insert',
        backend: 'sqlite',
        async write(batch) {
          insertAll(batch)
        },
        ns: 0,
        points: 0,
      },
    ],
    async close() {
      await store.close()
      raw.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

export async function runStoreWrite(options: StoreWriteOptions): Promise<StoreWriteResult> {
  const { points, batch, rounds } = options
  // Recent times: the InfluxDB store recomputes the 1-minute aggregates of readings that arrive
  // more than a few minutes late, in the background; old times would load InfluxDB with that
  // work while the other writers are timed.
  const t0 = Date.now() - 60_000
  const readingsFor = (round: number): Reading[] => {
    const metrics = ['temperature', 'humidity', 'co2', 'pressure', 'battery']
    return Array.from({ length: points }, (_, i) => ({
      deviceId: `dev-${String(i % 1000).padStart(4, '0')}`,
      metric: metrics[Math.floor(i / 1000) % metrics.length] as string,
      value: 20 + ((i * 7919) % 1000) / 100,
      // Each round writes new points (1 ms apart, after the last round's), so none overwrites.
      ts: t0 + round * points + i,
    }))
  }

  const groups: Array<{ writers: Writer[]; close: () => Promise<void> }> = []
  let influxSkipped: string | undefined
  try {
    if (options.influx) {
      try {
        groups.push(await influxWriters())
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        if (!/not installed/.test(message)) throw err
        influxSkipped = message
      }
    }
    if (options.sqlite) groups.push(await sqliteWriters())
    const writers = groups.flatMap((g) => g.writers)
    for (let round = 0; round < rounds; round++) {
      const readings = readingsFor(round)
      // Rotate who goes first, so no writer always meets a warmer or colder backend.
      for (let k = 0; k < writers.length; k++) {
        const writer = writers[(round + k) % writers.length] as Writer
        const started = process.hrtime.bigint()
        for (let i = 0; i < readings.length; i += batch)
          await writer.write(readings.slice(i, i + batch))
        writer.ns += Number(process.hrtime.bigint() - started)
        writer.points += readings.length
      }
    }
    return {
      writers: writers.map((w) => ({
        writer: w.name,
        backend: w.backend,
        points: w.points,
        pointsPerSec: Math.round(w.points / (w.ns / 1e9)),
        usPerPoint: Number((w.ns / 1e3 / w.points).toFixed(3)),
      })),
      ...(influxSkipped ? { influxSkipped } : {}),
    }
  } finally {
    for (const g of groups) await g.close()
  }
}
