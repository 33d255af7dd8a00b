import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net'
import { InfluxDB } from 'influx'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningInfluxd, startInfluxd } from '../../../scripts/influxd.ts'
import type { Alert, Reading } from '../../../src/contract/types.ts'
import { ERROR_CODES } from '../../../src/errors.ts'
import {
  CQ_RESAMPLE_FOR_MS,
  DOWNSAMPLED_MIN_RANGE_MS,
  mergeBuckets,
  planAggregate,
} from '../../../src/store/influx/downsampling.ts'
import { alertLines, readingLines } from '../../../src/store/influx/line-protocol.ts'
import { createInfluxStore, type InfluxStore } from '../../../src/store/influx-store.ts'
import { type AggregateFunction, StoreRejectedError } from '../../../src/store/reading-store.ts'
import { describeReadingStoreContract } from '../../contract/reading-store.contract.ts'
import { startTestGateway } from '../../helpers/gateway.ts'
import { captureLogs } from '../../helpers/log-capture.ts'

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
/**
 * The contract's readings are stamped around 2026-01-01: a retention of a century keeps them
 * inside the raw policy whatever the machine's clock says.
 */
const CENTURY = 36_500 * DAY

// One real influxd per file (no skipping: a machine without InfluxDB fails with the message
// that says what to install).
let influxd: RunningInfluxd
let admin: InfluxDB
beforeAll(async () => {
  influxd = await startInfluxd()
  admin = new InfluxDB(influxd.url)
})
afterAll(async () => {
  await influxd?.stop()
})

/** A database name no other test uses. */
function freshDatabase(): string {
  return `test_${randomBytes(6).toString('hex')}`
}

describeReadingStoreContract('influx', async () => {
  const database = freshDatabase()
  const store = await createInfluxStore({
    url: `${influxd.url}/${database}`,
    rawRetentionMs: CENTURY,
    downsampledRetentionMs: CENTURY,
  })
  return {
    store,
    cleanup: async () => {
      await store.close()
      await admin.dropDatabase(database)
    },
  }
})

describe('InfluxDB store', () => {
  const opened: InfluxStore[] = []
  const databases: string[] = []

  async function openStore(
    options: { database?: string; rawRetentionMs?: number; downsampledRetentionMs?: number } = {},
    log?: ReturnType<typeof captureLogs>['log'],
  ): Promise<{ store: InfluxStore; database: string; client: InfluxDB }> {
    const database = options.database ?? freshDatabase()
    if (!databases.includes(database)) databases.push(database)
    const store = await createInfluxStore({
      url: `${influxd.url}/${database}`,
      rawRetentionMs: options.rawRetentionMs ?? HOUR,
      downsampledRetentionMs: options.downsampledRetentionMs ?? 30 * DAY,
      ...(log ? { log } : {}),
    })
    opened.push(store)
    return { store, database, client: new InfluxDB(`${influxd.url}/${database}`) }
  }

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close()
    for (const database of databases.splice(0)) await admin.dropDatabase(database)
  })

  function reading(deviceId: string, ts: number, value: number, metric = 'temperature'): Reading {
    return { deviceId, metric, ts, value }
  }

  describe('schema', () => {
    it('creates the retention policies and the downsampling continuous query', async () => {
      const { database, client } = await openStore({
        rawRetentionMs: 2 * DAY,
        downsampledRetentionMs: 400 * DAY,
      })
      const policies = await client.showRetentionPolicies()
      expect(policies.find((p) => p.name === 'raw')).toMatchObject({
        duration: '48h0m0s',
        default: true,
      })
      expect(policies.find((p) => p.name === 'downsampled')).toMatchObject({
        duration: '9600h0m0s',
        default: false,
      })
      // Alert history never expires, as in SQLite.
      expect(policies.find((p) => p.name === 'alerts')).toMatchObject({ duration: '0s' })

      const queries = await client.showContinousQueries()
      expect(queries.map((q) => q.name)).toEqual(['reading_1m'])
      const text = queries[0]?.query ?? ''
      expect(text).toContain('RESAMPLE EVERY 1m FOR 10m')
      for (const part of [
        'mean(value) AS mean',
        'min(value) AS min',
        'max(value) AS max',
        'count(value) AS count',
        'last(value) AS last',
        `INTO ${database}.downsampled.reading_1m FROM ${database}.raw.reading`,
        'GROUP BY time(1m), device, metric',
      ]) {
        expect(text).toContain(part)
      }
    })

    it('re-opens idempotently: keeps what matches, alters a changed retention, keeps the data', async () => {
      const first = captureLogs()
      const { store, database, client } = await openStore({}, first.log)
      const messages = (lines: typeof first.lines) => lines.map((l) => l.msg)
      expect(messages(first.lines)).toEqual(
        expect.arrayContaining(['retention policy created', 'continuous query created']),
      )
      const now = Date.now()
      await store.writeReadings([reading('dev-1', now - 1000, 1)])
      await store.close()

      const second = captureLogs()
      const { store: again } = await openStore({ database }, second.log)
      expect(messages(second.lines)).toEqual(['InfluxDB store open'])
      expect(await again.latest()).toEqual([reading('dev-1', now - 1000, 1)])
      await again.close()

      const third = captureLogs()
      await openStore({ database, rawRetentionMs: 3 * HOUR }, third.log)
      const altered = third.lines.filter((l) => l.msg === 'retention policy altered')
      expect(altered).toEqual([
        expect.objectContaining({
          retentionPolicy: 'raw',
          durationMs: 3 * HOUR,
          previousDurationMs: HOUR,
        }),
      ])
      expect(messages(third.lines)).not.toContain('continuous query created')
      const policies = await client.showRetentionPolicies()
      expect(policies.filter((p) => p.name === 'raw')).toEqual([
        expect.objectContaining({ duration: '3h0m0s', default: true }),
      ])
      expect(await client.showContinousQueries()).toHaveLength(1)
    })

    it('replaces a continuous query of the same name whose text differs', async () => {
      const { database, client } = await openStore()
      await client.dropContinuousQuery('reading_1m', database)
      await client.createContinuousQuery(
        'reading_1m',
        `SELECT mean(value) INTO ${database}.downsampled.reading_1m FROM ${database}.raw.reading GROUP BY time(5m), *`,
        database,
      )
      await openStore({ database })
      const queries = await client.showContinousQueries()
      expect(queries).toHaveLength(1)
      expect(queries[0]?.query).toContain('GROUP BY time(1m), device, metric')
    })

    it('refuses a URL without a database and a retention shorter than InfluxDB allows', async () => {
      await expect(
        createInfluxStore({ url: influxd.url, rawRetentionMs: HOUR, downsampledRetentionMs: HOUR }),
      ).rejects.toMatchObject({
        code: ERROR_CODES.store,
        message: expect.stringMatching(/database/),
      })
      await expect(
        createInfluxStore({
          url: `${influxd.url}/${freshDatabase()}`,
          rawRetentionMs: MINUTE,
          downsampledRetentionMs: HOUR,
        }),
      ).rejects.toMatchObject({
        code: ERROR_CODES.store,
        message: expect.stringMatching(/rawRetentionMs/),
      })
    })
  })

  describe('InfluxDB unreachable at open', () => {
    let down: RunningInfluxd | undefined
    afterEach(async () => {
      await down?.stop()
      down = undefined
    })

    it('rejects the open by default; with allowUnreachable, fails calls as transient until InfluxDB answers, then creates the schema', async () => {
      // Its own influxd, halted (by PID): nothing listens on its port until restart().
      down = await startInfluxd()
      await down.halt()
      const database = freshDatabase()
      const url = `${down.url}/${database}`
      const options = { url, rawRetentionMs: HOUR, downsampledRetentionMs: DAY }
      await expect(createInfluxStore(options)).rejects.toMatchObject({
        code: ERROR_CODES.store,
        message: expect.stringMatching(/cannot open InfluxDB store .*ECONNREFUSED/),
      })

      const { log, lines } = captureLogs()
      const store = await createInfluxStore({
        ...options,
        allowUnreachable: true,
        schemaRetryMs: 50,
        log,
      })
      opened.push(store)
      expect(store.schemaReady()).toBe(false)
      const now = Date.now()
      // A write before the schema exists is a transient failure (the writer spools and retries),
      // never a refusal that would dead-letter the readings.
      const write = store.writeReadings([reading('dev-1', now, 1)])
      await expect(write).rejects.toThrow(/not ready \(database and retention policies/)
      await expect(write).rejects.not.toBeInstanceOf(StoreRejectedError)
      await expect(store.latest()).rejects.toMatchObject({ code: ERROR_CODES.store })
      expect(lines.map((l) => l.msg)).toContain(
        'InfluxDB store open, waiting for InfluxDB to answer',
      )

      await down.restart()
      // The background retry creates the schema with no call made.
      await expect(store.whenSchemaReady()).resolves.toBe(true)
      expect(store.schemaReady()).toBe(true)
      const client = new InfluxDB(url)
      expect(await client.getDatabaseNames()).toContain(database)
      expect((await client.showRetentionPolicies()).map((p) => p.name)).toEqual(
        expect.arrayContaining(['raw', 'downsampled', 'alerts']),
      )
      expect((await client.showContinousQueries()).map((q) => q.name)).toEqual(['reading_1m'])
      await store.writeReadings([reading('dev-1', now, 1)])
      expect(await store.latest()).toEqual([reading('dev-1', now, 1)])
    })

    it('does not hold up the open past openWaitMs on a server that accepts and never answers', async () => {
      // A host that drops packets: without openWaitMs the open would wait the 30 s query timeout.
      const sockets = new Set<Socket>()
      const silent = createNetServer((socket) => {
        sockets.add(socket)
      }).listen(0, '127.0.0.1')
      await once(silent, 'listening')
      const { port } = silent.address() as AddressInfo
      try {
        const store = await createInfluxStore({
          url: `http://127.0.0.1:${port}/${freshDatabase()}`,
          rawRetentionMs: HOUR,
          downsampledRetentionMs: DAY,
          allowUnreachable: true,
          openWaitMs: 100,
        })
        expect(store.schemaReady()).toBe(false)
        const ready = store.whenSchemaReady()
        await store.close()
        await expect(ready).resolves.toBe(false)
      } finally {
        for (const socket of sockets) socket.destroy()
        await new Promise((resolve) => silent.close(resolve))
      }
    })

    it('whenSchemaReady resolves false when the store is closed before InfluxDB answers', async () => {
      down = await startInfluxd()
      await down.halt()
      const store = await createInfluxStore({
        url: `${down.url}/${freshDatabase()}`,
        rawRetentionMs: HOUR,
        downsampledRetentionMs: DAY,
        allowUnreachable: true,
        schemaRetryMs: 50,
      })
      const ready = store.whenSchemaReady()
      await store.close()
      await expect(ready).resolves.toBe(false)
    })
  })

  it('creates the database again when it is dropped under a running store: the write fails as transient, the next one stores', async () => {
    const { log, lines } = captureLogs()
    const { store, database } = await openStore({}, log)
    const now = Date.now()
    await store.writeReadings([reading('dev-1', now - 2, 1)])
    await admin.dropDatabase(database)
    const write = store.writeReadings([reading('dev-1', now - 1, 2)])
    await expect(write).rejects.toThrow(/database not found/)
    await expect(write).rejects.not.toBeInstanceOf(StoreRejectedError)
    expect(lines.map((l) => l.msg)).toContain(
      'InfluxDB has lost the database or a retention policy: creating them again before the next write',
    )
    await store.writeReadings([reading('dev-1', now, 3)])
    expect(await store.latest()).toEqual([reading('dev-1', now, 3)])
  })

  describe('downsampled reads', () => {
    /** The start of an hour that lies entirely before the raw retention (1 h) began. */
    const oldHour = () => Math.floor((Date.now() - 3 * HOUR) / HOUR) * HOUR

    it('reads a range older than the raw retention from the 1-minute aggregates, mean weighted by count', async () => {
      const { store, client } = await openStore()
      const H = oldHour()
      const rows = [
        { minute: 0, mean: 10, min: 5, max: 15, count: 3, last: 12 },
        { minute: 1, mean: 20, min: 18, max: 22, count: 1, last: 20 },
        { minute: 2, mean: 30, min: 25, max: 35, count: 2, last: 26 },
      ]
      // What the continuous query writes: count is an integer field.
      await client.writePoints(
        rows.map(({ minute, ...fields }) => ({
          measurement: 'reading_1m',
          tags: { device: 'old', metric: 'temperature' },
          fields,
          timestamp: H + minute * MINUTE,
        })),
        { retentionPolicy: 'downsampled', precision: 'ms' },
      )
      await client.writePoints(
        [
          {
            measurement: 'reading_1m',
            tags: { device: 'other', metric: 'temperature' },
            fields: { mean: 1000, min: 1000, max: 1000, count: 50, last: 1000 },
            timestamp: H,
          },
        ],
        { retentionPolicy: 'downsampled', precision: 'ms' },
      )

      const query = { deviceId: 'old', metric: 'temperature', fromMs: H, toMs: H + HOUR }
      const expected: Record<AggregateFunction, number> = {
        mean: (10 * 3 + 20 * 1 + 30 * 2) / 6,
        min: 5,
        max: 35,
        count: 6,
        last: 26,
      }
      for (const fn of Object.keys(expected) as AggregateFunction[]) {
        const buckets = await store.aggregate({ ...query, everyMs: HOUR, fn })
        expect(buckets, fn).toHaveLength(1)
        expect(buckets[0]?.ts).toBe(H)
        expect(buckets[0]?.count).toBe(6)
        expect(buckets[0]?.value).toBeCloseTo(expected[fn], 9)
      }
      expect(await store.aggregate({ ...query, everyMs: MINUTE, fn: 'mean' })).toEqual(
        rows.map((r) => ({ ts: H + r.minute * MINUTE, value: r.mean, count: r.count })),
      )
      // A bucket that is not whole minutes cannot come from them: raw, where nothing is left.
      expect(await store.aggregate({ ...query, everyMs: 90_000, fn: 'mean' })).toEqual([])
    })

    it('adds raw readings for the minutes the continuous query may still recompute', async () => {
      const { store, client } = await openStore()
      const H = oldHour()
      await client.writePoints(
        [
          {
            measurement: 'reading_1m',
            tags: { device: 'mix', metric: 'temperature' },
            fields: { mean: 10, min: 10, max: 10, count: 2, last: 10 },
            timestamp: H,
          },
        ],
        { retentionPolicy: 'downsampled', precision: 'ms' },
      )
      const now = Date.now()
      await store.writeReadings([reading('mix', now - 2000, 40), reading('mix', now - 1000, 50)])
      const buckets = await store.aggregate({
        deviceId: 'mix',
        metric: 'temperature',
        fromMs: H,
        toMs: now + 1,
        everyMs: 4 * HOUR,
        fn: 'mean',
      })
      const counted = buckets.reduce((sum, b) => sum + b.count, 0)
      expect(counted).toBe(4)
      const total = buckets.reduce((sum, b) => sum + b.value * b.count, 0)
      expect(total).toBeCloseTo(10 * 2 + 40 + 50, 9)
      const last = await store.aggregate({
        deviceId: 'mix',
        metric: 'temperature',
        fromMs: H,
        toMs: now + 1,
        everyMs: 7 * DAY,
        fn: 'last',
      })
      expect(last.map((b) => b.value).at(-1)).toBe(50)
    })

    it("reads what the continuous query's own SELECT wrote, run by hand for a past range", async () => {
      const { store, client, database } = await openStore({ rawRetentionMs: 2 * HOUR })
      // Twenty minutes ago: settled, and late for the running continuous query. Written past
      // the store (which would downsample it itself), so only the continuous query's SELECT can.
      const M = Math.floor((Date.now() - 20 * MINUTE) / MINUTE) * MINUTE
      await client.writePoints(
        [1, 2, 3].map((value, i) => ({
          measurement: 'reading',
          tags: { device: 'cq', metric: 'temperature' },
          fields: { value },
          timestamp: M + (i + 1) * 1000,
        })),
        { retentionPolicy: 'raw', precision: 'ms' },
      )
      // Longer than a day: read from the 1-minute aggregates, which have nothing yet.
      const query = {
        deviceId: 'cq',
        metric: 'temperature',
        fromMs: M - 2 * DAY,
        toMs: M + MINUTE,
        everyMs: MINUTE,
      }
      expect(await store.aggregate({ ...query, fn: 'count' })).toEqual([])

      const [cq] = await client.showContinousQueries()
      const select = /BEGIN (SELECT .*) END$/.exec(cq?.query ?? '')?.[1] ?? ''
      const byHand = select.replace(
        ' GROUP BY ',
        ` WHERE time >= ${M - MINUTE}ms AND time < ${M + 2 * MINUTE}ms GROUP BY `,
      )
      expect(byHand).toContain(`INTO ${database}.downsampled.reading_1m`)
      await client.queryRaw(byHand, { method: 'POST' })

      const expected: Record<AggregateFunction, number> = {
        mean: 2,
        min: 1,
        max: 3,
        count: 3,
        last: 3,
      }
      for (const fn of Object.keys(expected) as AggregateFunction[]) {
        expect(await store.aggregate({ ...query, fn }), fn).toEqual([
          { ts: M, value: expected[fn], count: 3 },
        ])
      }
    })

    it('downsamples readings written too late for the continuous query itself, off the write path', async () => {
      const { store, client } = await openStore({ rawRetentionMs: 2 * HOUR })
      const M = Math.floor((Date.now() - 30 * MINUTE) / MINUTE) * MINUTE
      await store.writeReadings([
        reading('late', M + 1000, 4),
        reading('late', M + 2000, 8),
        reading('late', M + 3 * MINUTE, 1, 'humidity'),
        // Recent: the continuous query's business, not the store's.
        reading('late', Date.now() - 1000, 100),
      ])
      const downsampled = async () =>
        (
          await client.query<{ mean: number; count: number; metric: string }>(
            `SELECT "mean", "count", "metric" FROM "downsampled"."reading_1m" WHERE "device" = 'late'`,
          )
        ).map((r) => ({ metric: r.metric, mean: r.mean, count: r.count }))
      await vi.waitFor(
        async () => {
          expect(await downsampled()).toEqual([
            { metric: 'temperature', mean: 6, count: 2 },
            { metric: 'humidity', mean: 1, count: 1 },
          ])
        },
        { timeout: 10_000, interval: 100 },
      )
      // A rewrite of a late reading recomputes its minute, and a read of the aggregates right
      // after the write waits for that.
      await store.writeReadings([reading('late', M + 2000, 16)])
      const buckets = await store.aggregate({
        deviceId: 'late',
        metric: 'temperature',
        fromMs: M - 2 * DAY,
        toMs: M + MINUTE,
        everyMs: MINUTE,
        fn: 'mean',
      })
      expect(buckets).toEqual([{ ts: M, value: 10, count: 2 }])
    })

    it('downsamples the late minutes still queued when it closes', async () => {
      const { store, client } = await openStore({ rawRetentionMs: 2 * HOUR })
      const M = Math.floor((Date.now() - 30 * MINUTE) / MINUTE) * MINUTE
      await store.writeReadings([reading('closing', M + 1000, 3), reading('closing', M + 2000, 5)])
      await store.close()
      const rows = await client.query<{ mean: number; count: number }>(
        `SELECT "mean", "count" FROM "downsampled"."reading_1m" WHERE "device" = 'closing'`,
      )
      expect(rows.map((r) => [r.mean, r.count])).toEqual([[4, 2]])
    })
  })

  describe('write errors', () => {
    it('throws StoreRejectedError with InfluxDB’s message on a field type conflict', async () => {
      const { store, client } = await openStore()
      const ts = Date.now() - 1000
      await client.writePoints(
        [
          {
            measurement: 'reading',
            tags: { device: 'typed', metric: 'temperature' },
            fields: { value: 'warm' },
            timestamp: ts,
          },
        ],
        { retentionPolicy: 'raw', precision: 'ms' },
      )
      const error = await store.writeReadings([reading('typed', ts + 1, 21.5)]).catch((e) => e)
      expect(error).toBeInstanceOf(StoreRejectedError)
      expect((error as StoreRejectedError).reason).toMatch(
        /field type conflict: input field "value" on measurement "reading" is type float, already exists as type string/,
      )
    })

    it('throws StoreRejectedError for points beyond the retention policy', async () => {
      const { store } = await openStore()
      const error = await store
        .writeReadings([reading('old', Date.now() - 3 * HOUR, 1)])
        .catch((e) => e)
      expect(error).toBeInstanceOf(StoreRejectedError)
      expect((error as StoreRejectedError).reason).toMatch(/points beyond retention policy/)
    })

    it('refuses a tag value line protocol cannot carry before sending anything', async () => {
      const { store } = await openStore()
      const error = await store
        .writeReadings([reading('back\\slash', Date.now(), 1)])
        .catch((e) => e)
      expect(error).toBeInstanceOf(StoreRejectedError)
      expect(await store.latest()).toEqual([])
    })

    it('throws a plain, retryable Error when the server is gone, and queries fail as store errors', async () => {
      const own = await startInfluxd()
      let stopped = false
      try {
        const store = await createInfluxStore({
          url: `${own.url}/gone`,
          rawRetentionMs: HOUR,
          downsampledRetentionMs: HOUR,
        })
        opened.push(store)
        await store.writeReadings([reading('dev-1', Date.now(), 1)])
        await own.stop()
        stopped = true
        const error = await store.writeReadings([reading('dev-1', Date.now(), 2)]).catch((e) => e)
        expect(error).toBeInstanceOf(Error)
        expect(error).not.toBeInstanceOf(StoreRejectedError)
        expect((error as Error).message).toMatch(/ECONNREFUSED/)
        await expect(store.latest()).rejects.toMatchObject({ code: ERROR_CODES.store })
      } finally {
        if (!stopped) await own.stop()
      }
    })
  })

  it('latest finds series that stopped reporting long ago next to active ones', async () => {
    const { store } = await openStore({ rawRetentionMs: 3 * DAY })
    const now = Date.now()
    await store.writeReadings([
      reading('active', now - 1000, 1),
      reading('active', now - 2 * DAY, 2, 'humidity'),
      reading('quiet', now - 2 * DAY, 3),
    ])
    // Older than the recent window and newer than what it replaces: the newest still wins.
    await store.writeReadings([reading('active', now - DAY, 4, 'humidity')])
    expect(await store.latest()).toEqual([
      reading('active', now - DAY, 4, 'humidity'),
      reading('active', now - 1000, 1),
      reading('quiet', now - 2 * DAY, 3),
    ])
    expect(await store.latest('quiet')).toEqual([reading('quiet', now - 2 * DAY, 3)])
  })

  describe('names and escaping', () => {
    it('round-trips device ids and metrics with line-protocol and InfluxQL special characters', async () => {
      const { store } = await openStore()
      const now = Date.now()
      const odd = [
        {
          deviceId: 'a b,c=d',
          metric: 'it\'s "quoted"',
          ts: now - 3000,
          value: 1,
          unit: 'say "hi"\\',
        },
        { deviceId: 'a b,c=d', metric: 'plain', ts: now - 2000, value: -0.5 },
      ]
      await store.writeReadings(odd)
      expect(
        await store.queryReadings({
          deviceId: 'a b,c=d',
          fromMs: now - HOUR,
          toMs: now,
          limit: 10,
          order: 'asc',
        }),
      ).toEqual(odd)
      expect((await store.latest('a b,c=d')).map((r) => r.metric).sort()).toEqual([
        'it\'s "quoted"',
        'plain',
      ])
      // A quote in a device id cannot widen the query.
      expect(await store.latest("x' OR device =~ /./ OR device = 'y")).toEqual([])
    })

    it('round-trips alert fields with quotes, backslashes and line breaks, and NaN values', async () => {
      const { store } = await openStore()
      const alert = {
        id: 'hot:dev-1',
        ruleId: 'hot',
        kind: 'threshold',
        deviceId: 'dev-1',
        metric: 'temperature',
        severity: 'major' as const,
        state: 'firing' as const,
        value: Number.NaN,
        threshold: 30,
        since: Date.now() - 5000,
        ts: Date.now() - 1000,
        message: 'line one\nline "two" \\ end\\',
        flapping: false,
      }
      await store.writeAlerts([alert])
      expect(await store.latestAlerts()).toEqual([alert])
    })
  })

  it('closes idempotently and rejects use after close', async () => {
    const { store } = await openStore()
    await store.close()
    await store.close()
    await expect(store.writeReadings([reading('dev-1', Date.now(), 1)])).rejects.toMatchObject({
      code: ERROR_CODES.store,
    })
    await expect(store.latest()).rejects.toMatchObject({ code: ERROR_CODES.store })
  })
})

describe('InfluxDB line protocol', () => {
  it('escapes tags and string fields, and writes floats without a type suffix', () => {
    expect(
      readingLines([
        { deviceId: 'a b', metric: 'x,y=z', ts: 1, value: 20, unit: 'a"b\\' },
        { deviceId: 'd', metric: 'm', ts: -5, value: 1e21 },
      ]),
    ).toBe(
      'reading,device=a\\ b,metric=x\\,y\\=z value=20,unit="a\\"b\\\\" 1\nreading,device=d,metric=m value=1e+21 -5\n',
    )
  })

  it('refuses values InfluxDB cannot store as StoreRejectedError', () => {
    const bad: Reading[] = [
      { deviceId: 'd', metric: 'm', ts: 1, value: Number.NaN },
      { deviceId: 'd', metric: 'm', ts: 1, value: Number.POSITIVE_INFINITY },
      { deviceId: 'd', metric: 'm', ts: 1.5, value: 1 },
      { deviceId: '', metric: 'm', ts: 1, value: 1 },
      { deviceId: 'd', metric: 'a\nb', ts: 1, value: 1 },
    ]
    for (const r of bad) expect(() => readingLines([r])).toThrow(StoreRejectedError)
  })

  it('leaves a NaN value or threshold out of an alert, and fills in a missing id and kind', () => {
    const line = alertLines([
      {
        ruleId: 'r',
        deviceId: 'd',
        metric: 'm',
        severity: 'info',
        state: 'resolved',
        value: Number.NaN,
        threshold: Number.NaN,
        since: 1,
        ts: 2,
        message: 'ok',
        flapping: true,
      } as never,
    ])
    expect(line).toBe(
      'alert,device=d,rule=r id="r:d",kind="unknown",severity="info",state="resolved",metric="m",since=1,message="ok",flapping=true 2\n',
    )
  })
})

describe('InfluxDB aggregate planning', () => {
  const NOW = Date.UTC(2026, 5, 1, 12, 0, 30)
  const RAW = 30 * DAY

  it('reads raw for short recent ranges and for buckets that are not whole minutes', () => {
    const recent = { fromMs: NOW - 6 * HOUR, toMs: NOW, everyMs: MINUTE }
    expect(planAggregate(recent, NOW, RAW)).toEqual([
      { source: 'raw', fromMs: recent.fromMs, toMs: recent.toMs },
    ])
    const odd = { fromMs: NOW - 40 * DAY, toMs: NOW, everyMs: 90_000 }
    expect(planAggregate(odd, NOW, RAW)).toEqual([{ source: 'raw', fromMs: odd.fromMs, toMs: NOW }])
  })

  it('reads settled whole minutes downsampled, and raw around them, beyond the retention or for long ranges', () => {
    const settled = Math.floor(NOW / MINUTE) * MINUTE - CQ_RESAMPLE_FOR_MS
    const from = NOW - 40 * DAY + 1234
    const firstWhole = Math.ceil(from / MINUTE) * MINUTE
    expect(planAggregate({ fromMs: from, toMs: NOW, everyMs: HOUR }, NOW, RAW)).toEqual([
      { source: 'raw', fromMs: from, toMs: firstWhole },
      { source: 'downsampled', fromMs: firstWhole, toMs: settled },
      { source: 'raw', fromMs: settled, toMs: NOW },
    ])
    const longFrom = Math.floor(NOW / MINUTE) * MINUTE - DOWNSAMPLED_MIN_RANGE_MS - HOUR
    expect(planAggregate({ fromMs: longFrom, toMs: NOW, everyMs: HOUR }, NOW, RAW)).toEqual([
      { source: 'downsampled', fromMs: longFrom, toMs: settled },
      { source: 'raw', fromMs: settled, toMs: NOW },
    ])
    // Entirely settled and minute-aligned: downsampled only.
    const old = { fromMs: NOW - 60 * DAY - 30_000, toMs: NOW - 50 * DAY - 30_000, everyMs: DAY }
    expect(planAggregate(old, NOW, RAW)).toEqual([
      { source: 'downsampled', fromMs: old.fromMs, toMs: old.toMs },
    ])
  })

  it('merges segments: counts and sums add up, last comes from the latest segment', () => {
    const bucket = (
      ts: number,
      count: number,
      sum: number,
      min: number,
      max: number,
      last: number,
    ) => ({
      ts,
      count,
      sum,
      min,
      max,
      last,
    })
    const segments = [
      [bucket(0, 2, 10, 4, 6, 6)],
      [bucket(0, 3, 30, 1, 20, 20), bucket(HOUR, 1, 7, 7, 7, 7)],
      [bucket(HOUR, 1, 9, 9, 9, 9)],
    ]
    expect(mergeBuckets(segments, 'mean')).toEqual([
      { ts: 0, value: 8, count: 5 },
      { ts: HOUR, value: 8, count: 2 },
    ])
    expect(mergeBuckets(segments, 'min').map((b) => b.value)).toEqual([1, 7])
    expect(mergeBuckets(segments, 'max').map((b) => b.value)).toEqual([20, 9])
    expect(mergeBuckets(segments, 'count').map((b) => b.value)).toEqual([5, 2])
    expect(mergeBuckets(segments, 'last').map((b) => b.value)).toEqual([20, 9])
  })
})

// Debian's influxdb.conf sets max-row-limit = 10000: InfluxDB then answers at most 10,000 rows
// per query and marks the answer partial. The HTTP API asks for limit + 1 rows to see whether
// it truncated, so /api/readings?limit=10000 depends on reads past the server's row limit.
describe('InfluxDB store on a server with max-row-limit = 10000', () => {
  const SERVER_ROW_LIMIT = 10_000
  let limited: RunningInfluxd
  let store: InfluxStore
  const database = freshDatabase()
  // 12,001 readings over two metrics, two per timestamp: pages start in the middle of a tie.
  const T0 = Date.UTC(2026, 0, 1)
  const written: Reading[] = Array.from({ length: 12_001 }, (_, i) => ({
    deviceId: 'dev-big',
    metric: i % 2 === 0 ? 'a' : 'b',
    ts: T0 + Math.floor(i / 2),
    value: i,
  }))

  beforeAll(async () => {
    // influxd reads INFLUXDB_<SECTION>_<KEY> over its config file; spawn passes our environment.
    process.env.INFLUXDB_HTTP_MAX_ROW_LIMIT = String(SERVER_ROW_LIMIT)
    try {
      limited = await startInfluxd()
    } finally {
      delete process.env.INFLUXDB_HTTP_MAX_ROW_LIMIT
    }
    store = await createInfluxStore({
      url: `${limited.url}/${database}`,
      rawRetentionMs: CENTURY,
      downsampledRetentionMs: CENTURY,
    })
    for (let i = 0; i < written.length; i += 5_000) {
      await store.writeReadings(written.slice(i, i + 5_000))
    }
  }, 60_000)
  afterAll(async () => {
    await store?.close()
    await limited?.stop()
  })

  async function read(limit: number, order: 'asc' | 'desc'): Promise<Reading[]> {
    return store.queryReadings({
      deviceId: 'dev-big',
      fromMs: T0,
      toMs: T0 + 1_000_000,
      limit,
      order,
    })
  }
  const key = (r: Reading) => `${r.ts}/${r.metric}/${r.value}`

  it('the server really cuts a plain query at its row limit (partial)', async () => {
    const res = await fetch(
      `${limited.url}/query?db=${database}&q=${encodeURIComponent('SELECT value FROM raw.reading LIMIT 10001')}`,
    )
    const body = (await res.json()) as { results: Array<{ series: InfluxSeries[] }> }
    const series = body.results[0]?.series[0]
    expect(series?.partial).toBe(true)
    expect(series?.values).toHaveLength(SERVER_ROW_LIMIT)
  })

  it('reads limit + 1 = 10,001 rows and more, in order, each once, as without a row limit', async () => {
    for (const order of ['asc', 'desc'] as const) {
      const sorted = [...written].sort((x, y) => (order === 'asc' ? x.ts - y.ts : y.ts - x.ts))
      for (const limit of [SERVER_ROW_LIMIT, SERVER_ROW_LIMIT + 1, 25_000]) {
        const got = await read(limit, order)
        const expected = sorted.slice(0, limit)
        expect(got).toHaveLength(expected.length)
        // Same timestamps in the same order; each row once and one that was written (which of
        // two readings sharing the last timestamp ends the page is InfluxDB's choice).
        expect(got.map((r) => r.ts)).toEqual(expected.map((r) => r.ts))
        expect(new Set(got.map(key)).size).toBe(got.length)
        const all = new Set(written.map(key))
        expect(got.filter((r) => !all.has(key(r)))).toEqual([])
      }
    }
  })

  it('reads more alert transitions than the row limit, newest first, each once', async () => {
    // Two rules on one device, 2 transitions per ms: 10,001 of them.
    const alerts: Alert[] = Array.from({ length: SERVER_ROW_LIMIT + 1 }, (_, i) => {
      const ruleId = i % 2 === 0 ? 'r-a' : 'r-b'
      const ts = T0 + Math.floor(i / 2)
      return {
        id: `${ruleId}:dev-big`,
        kind: 'threshold',
        metric: 'a',
        severity: 'major',
        state: i % 4 < 2 ? 'firing' : 'resolved',
        value: i,
        threshold: 30,
        since: ts,
        message: `transition ${i}`,
        flapping: false,
        ruleId,
        deviceId: 'dev-big',
        ts,
      }
    })
    for (let i = 0; i < alerts.length; i += 5_000) {
      await store.writeAlerts(alerts.slice(i, i + 5_000))
    }
    const got = await store.queryAlerts({ limit: 20_000 })
    expect(got).toHaveLength(alerts.length)
    expect(got.map((a) => a.ts)).toEqual(alerts.map((a) => a.ts).reverse())
    expect(new Set(got.map((a) => a.message)).size).toBe(alerts.length)
  })

  it('latest() and latestAlerts() return every series when there are more than the row limit', async () => {
    const now = Date.now()
    const count = SERVER_ROW_LIMIT + 1
    // Half reported in the last minute, half long ago: both of latest()'s reads go past the limit.
    const readings: Reading[] = Array.from({ length: count }, (_, i) => ({
      deviceId: `lat-${i}`,
      metric: 'm',
      ts: i % 2 === 0 ? now - MINUTE : T0 + i,
      value: i,
    }))
    const alerts: Alert[] = Array.from({ length: count }, (_, i) => ({
      id: `rule-${i}:lat-alerts`,
      kind: 'threshold',
      metric: 'm',
      severity: 'minor',
      state: 'firing',
      value: i,
      threshold: 1,
      since: T0 + i,
      message: `rule ${i}`,
      flapping: false,
      ruleId: `rule-${i}`,
      deviceId: 'lat-alerts',
      ts: T0 + i,
    }))
    for (let i = 0; i < count; i += 5_000) {
      await store.writeReadings(readings.slice(i, i + 5_000))
      await store.writeAlerts(alerts.slice(i, i + 5_000))
    }
    const latest = (await store.latest()).filter((r) => r.deviceId.startsWith('lat-'))
    expect(latest).toHaveLength(count)
    expect(latest.every((r) => r.deviceId === `lat-${r.value}`)).toBe(true)
    const current = (await store.latestAlerts()).filter((a) => a.deviceId === 'lat-alerts')
    expect(current).toHaveLength(count)
    expect(new Set(current.map((a) => a.ruleId)).size).toBe(count)
  }, 60_000)

  it('GET /api/readings?limit=10000 answers 200 with 10,000 readings and truncated: true', async () => {
    const gwDatabase = freshDatabase()
    const gw = await startTestGateway({
      STORE: 'influx',
      INFLUX_URL: `${limited.url}/${gwDatabase}`,
    })
    try {
      // Stamped in the last hour (the API's default range), through a store of our own.
      const writer = await createInfluxStore({
        url: `${limited.url}/${gwDatabase}`,
        rawRetentionMs: 30 * DAY,
        downsampledRetentionMs: 365 * DAY,
      })
      const start = Date.now() - 30 * MINUTE
      const recent = written.map((r) => ({ ...r, deviceId: 'dev-http', ts: r.ts - T0 + start }))
      try {
        for (let i = 0; i < recent.length; i += 5_000) {
          await writer.writeReadings(recent.slice(i, i + 5_000))
        }
      } finally {
        await writer.close()
      }
      const res = await fetch(`${gw.httpUrl}/api/readings?device=dev-http&limit=10000`)
      const body = (await res.json()) as { count: number; truncated: boolean; readings: unknown[] }
      expect(res.status).toBe(200)
      expect(body.count).toBe(SERVER_ROW_LIMIT)
      expect(body.readings).toHaveLength(SERVER_ROW_LIMIT)
      expect(body.truncated).toBe(true)
    } finally {
      await gw.cleanup()
    }
  }, 60_000)
})

interface InfluxSeries {
  values?: unknown[][]
  partial?: boolean
}
