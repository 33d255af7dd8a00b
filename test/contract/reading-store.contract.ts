import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type Alert, alertId, type Reading } from '../../src/contract/types.ts'
import type {
  AggregateFunction,
  AggregateQuery,
  AlertQuery,
  Bucket,
  ReadingStore,
} from '../../src/store/reading-store.ts'

/**
 * The one contract every ReadingStore backend passes (DESIGN §5, STYLE habit 3), written
 * against the interface only. `open` must return a fresh, empty store; `cleanup` closes it
 * and removes whatever it created.
 *
 * Timestamps are fixed (around 2026-01-01) so buckets and ordering are exact. Every alert of
 * one (ruleId, deviceId) has its own ts and no two metrics of a device share a ts where order
 * across metrics is asserted, since a time-series backend may key points by time.
 */
export function describeReadingStoreContract(
  name: string,
  open: () => Promise<{ store: ReadingStore; cleanup: () => Promise<void> }>,
): void {
  const T0 = Date.UTC(2026, 0, 1)
  const MINUTE = 60_000

  function reading(
    deviceId: string,
    metric: string,
    ts: number,
    value: number,
    unit?: string,
  ): Reading {
    return unit === undefined
      ? { deviceId, metric, ts, value }
      : { deviceId, metric, ts, value, unit }
  }

  function alert(overrides: Partial<Alert> & Pick<Alert, 'ruleId' | 'deviceId' | 'ts'>): Alert {
    return {
      id: alertId(overrides.ruleId, overrides.deviceId),
      kind: 'threshold',
      metric: 'temperature',
      severity: 'major',
      state: 'firing',
      value: 31.5,
      threshold: 30,
      since: overrides.ts,
      message: `${overrides.ruleId} on ${overrides.deviceId}`,
      flapping: false,
      ...overrides,
    }
  }

  function byDeviceAndMetric(a: Reading, b: Reading): number {
    return a.deviceId.localeCompare(b.deviceId) || a.metric.localeCompare(b.metric)
  }

  describe(`ReadingStore contract: ${name}`, () => {
    let store: ReadingStore
    let cleanup: () => Promise<void>

    beforeEach(async () => {
      ;({ store, cleanup } = await open())
    })

    afterEach(async () => {
      await cleanup()
    })

    describe('raw readings', () => {
      // dev-a: temperature on whole seconds, humidity on half seconds; dev-b mirrors dev-a.
      const temperature = Array.from({ length: 10 }, (_, i) =>
        reading('dev-a', 'temperature', T0 + i * 1000, 20 + i, 'Cel'),
      )
      const humidity = Array.from({ length: 10 }, (_, i) =>
        reading('dev-a', 'humidity', T0 + i * 1000 + 500, 40 + i, '%RH'),
      )
      const other = temperature.map((r) => ({ ...r, deviceId: 'dev-b', value: -r.value }))

      beforeEach(async () => {
        await store.writeReadings([...temperature, ...humidity])
        await store.writeReadings(other)
      })

      it('returns a range with fromMs inclusive and toMs exclusive, oldest first', async () => {
        const got = await store.queryReadings({
          deviceId: 'dev-a',
          metric: 'temperature',
          fromMs: T0 + 2000,
          toMs: T0 + 5000,
          limit: 100,
          order: 'asc',
        })
        expect(got).toEqual(temperature.slice(2, 5))
      })

      it('returns newest first with order desc, and limit keeps the first rows of that order', async () => {
        const query = { deviceId: 'dev-a', metric: 'temperature', fromMs: T0, toMs: T0 + 10_000 }
        const newest = await store.queryReadings({ ...query, limit: 3, order: 'desc' })
        expect(newest).toEqual([temperature[9], temperature[8], temperature[7]])
        const oldest = await store.queryReadings({ ...query, limit: 3, order: 'asc' })
        expect(oldest).toEqual(temperature.slice(0, 3))
      })

      it('returns every metric of the device in time order when metric is absent', async () => {
        const query = { deviceId: 'dev-a', fromMs: T0 + 1000, toMs: T0 + 3000, limit: 100 }
        const expected = [temperature[1], humidity[1], temperature[2], humidity[2]]
        expect(await store.queryReadings({ ...query, order: 'asc' })).toEqual(expected)
        expect(await store.queryReadings({ ...query, order: 'desc' })).toEqual(
          [...expected].reverse(),
        )
      })

      it('filters by metric and never returns another device', async () => {
        const got = await store.queryReadings({
          deviceId: 'dev-a',
          metric: 'humidity',
          fromMs: T0,
          toMs: T0 + 60_000,
          limit: 100,
          order: 'asc',
        })
        expect(got).toEqual(humidity)
        const all = await store.queryReadings({
          deviceId: 'dev-a',
          fromMs: T0 - MINUTE,
          toMs: T0 + MINUTE,
          limit: 1000,
          order: 'asc',
        })
        expect(all).toHaveLength(20)
        expect(all.every((r) => r.deviceId === 'dev-a')).toBe(true)
      })

      it('returns nothing for an unknown device, an unknown metric or an empty range', async () => {
        const base = { fromMs: T0, toMs: T0 + 60_000, limit: 100, order: 'asc' as const }
        expect(await store.queryReadings({ ...base, deviceId: 'nobody' })).toEqual([])
        expect(await store.queryReadings({ ...base, deviceId: 'dev-a', metric: 'co2' })).toEqual([])
        expect(
          await store.queryReadings({ ...base, deviceId: 'dev-a', fromMs: T0 + 1, toMs: T0 + 1 }),
        ).toEqual([])
      })
    })

    it('replaces the value of an existing (deviceId, metric, ts) instead of adding a row', async () => {
      await store.writeReadings([
        reading('dev-r', 'temperature', T0, 1),
        reading('dev-r', 'temperature', T0 + 1000, 2),
      ])
      await store.writeReadings([reading('dev-r', 'temperature', T0, 10)])
      // A duplicate inside one batch: the later one wins.
      await store.writeReadings([
        reading('dev-r', 'temperature', T0 + 1000, 3),
        reading('dev-r', 'temperature', T0 + 1000, 20),
      ])
      const got = await store.queryReadings({
        deviceId: 'dev-r',
        metric: 'temperature',
        fromMs: T0,
        toMs: T0 + MINUTE,
        limit: 100,
        order: 'asc',
      })
      expect(got).toEqual([
        reading('dev-r', 'temperature', T0, 10),
        reading('dev-r', 'temperature', T0 + 1000, 20),
      ])
      const [count] = await store.aggregate({
        deviceId: 'dev-r',
        metric: 'temperature',
        fromMs: T0,
        toMs: T0 + MINUTE,
        everyMs: MINUTE,
        fn: 'count',
      })
      expect(count).toEqual({ ts: T0, value: 2, count: 2 })
      expect(await store.latest('dev-r')).toEqual([reading('dev-r', 'temperature', T0 + 1000, 20)])
    })

    it('round-trips the unit, and a reading without one comes back without one', async () => {
      const withUnit = reading('dev-u', 'temperature', T0, 21.5, 'Cel')
      const without = reading('dev-u', 'count', T0 + 1, 7)
      await store.writeReadings([withUnit, without])
      const got = await store.queryReadings({
        deviceId: 'dev-u',
        fromMs: T0,
        toMs: T0 + MINUTE,
        limit: 10,
        order: 'asc',
      })
      expect(got).toEqual([withUnit, without])
      expect(got[0]?.unit).toBe('Cel')
      expect(got[1]?.unit).toBeUndefined()
      const latest = (await store.latest('dev-u')).sort(byDeviceAndMetric)
      expect(latest.map((r) => r.unit)).toEqual([undefined, 'Cel'])
    })

    it('accepts empty batches', async () => {
      await store.writeReadings([])
      await store.writeAlerts([])
      expect(await store.latest()).toEqual([])
      expect(await store.queryAlerts({ limit: 10 })).toEqual([])
      expect(await store.queryAlerts({ current: true, limit: 10 })).toEqual([])
      expect(await store.latestAlerts()).toEqual([])
    })

    describe('aggregate', () => {
      const query: Omit<AggregateQuery, 'fn'> = {
        deviceId: 'dev-g',
        metric: 'temperature',
        fromMs: T0,
        toMs: T0 + 4 * MINUTE,
        everyMs: MINUTE,
      }

      beforeEach(async () => {
        await store.writeReadings([
          reading('dev-g', 'temperature', T0 - 1, -1000), // before fromMs
          // bucket T0: 10, 20, 30
          reading('dev-g', 'temperature', T0, 10),
          reading('dev-g', 'temperature', T0 + 20_000, 20),
          reading('dev-g', 'temperature', T0 + 40_000, 30),
          // bucket T0 + 1 min: empty
          // bucket T0 + 2 min: written newest first, so `last` must go by ts, not by write order
          reading('dev-g', 'temperature', T0 + 2 * MINUTE + 10_000, -5),
          reading('dev-g', 'temperature', T0 + 2 * MINUTE + 5000, 5),
          // bucket T0 + 3 min
          reading('dev-g', 'temperature', T0 + 3 * MINUTE + 59_999, 7.5),
          reading('dev-g', 'temperature', T0 + 4 * MINUTE, 1000), // at toMs: excluded
          // same buckets, other metric and other device: never mixed in
          reading('dev-g', 'humidity', T0 + 30_000, 500),
          reading('dev-h', 'temperature', T0 + 30_000, 500),
        ])
      })

      const expected: Record<AggregateFunction, Array<[ts: number, value: number]>> = {
        mean: [
          [T0, 20],
          [T0 + 2 * MINUTE, 0],
          [T0 + 3 * MINUTE, 7.5],
        ],
        min: [
          [T0, 10],
          [T0 + 2 * MINUTE, -5],
          [T0 + 3 * MINUTE, 7.5],
        ],
        max: [
          [T0, 30],
          [T0 + 2 * MINUTE, 5],
          [T0 + 3 * MINUTE, 7.5],
        ],
        count: [
          [T0, 3],
          [T0 + 2 * MINUTE, 2],
          [T0 + 3 * MINUTE, 1],
        ],
        last: [
          [T0, 30],
          [T0 + 2 * MINUTE, -5],
          [T0 + 3 * MINUTE, 7.5],
        ],
      }
      const counts = [3, 2, 1]

      for (const fn of Object.keys(expected) as AggregateFunction[]) {
        it(`${fn}: one bucket per non-empty interval, ascending, empty ones omitted`, async () => {
          const buckets = await store.aggregate({ ...query, fn })
          expect(buckets.map((b) => b.ts)).toEqual(expected[fn].map(([ts]) => ts))
          expect(buckets.map((b) => b.count)).toEqual(counts)
          buckets.forEach((bucket: Bucket, i) => {
            expect(bucket.value).toBeCloseTo(expected[fn][i]?.[1] ?? Number.NaN, 9)
          })
        })
      }

      it('aligns buckets to multiples of everyMs since the epoch, not to fromMs', async () => {
        const buckets = await store.aggregate({ ...query, fromMs: T0 + 30_000, fn: 'count' })
        expect(buckets).toEqual([
          { ts: T0, value: 1, count: 1 },
          { ts: T0 + 2 * MINUTE, value: 2, count: 2 },
          { ts: T0 + 3 * MINUTE, value: 1, count: 1 },
        ])
        const hourly = await store.aggregate({ ...query, everyMs: 60 * MINUTE, fn: 'max' })
        expect(hourly).toEqual([{ ts: T0, value: 30, count: 6 }])
      })

      it('returns nothing for a range without readings', async () => {
        expect(
          await store.aggregate({
            ...query,
            fromMs: T0 + MINUTE,
            toMs: T0 + 2 * MINUTE,
            fn: 'mean',
          }),
        ).toEqual([])
      })
    })

    describe('latest', () => {
      beforeEach(async () => {
        await store.writeReadings([
          reading('lat-a', 'temperature', T0 + 2000, 2, 'Cel'),
          reading('lat-a', 'humidity', T0 + 500, 50, '%RH'),
          reading('lat-b', 'temperature', T0 + 3000, 3, 'Cel'),
        ])
        // Arrives late: older than what is stored, so it must not become the latest.
        await store.writeReadings([reading('lat-a', 'temperature', T0 + 1000, 1, 'Cel')])
      })

      it('returns the newest reading of every device and metric', async () => {
        const got = (await store.latest()).sort(byDeviceAndMetric)
        expect(got).toEqual([
          reading('lat-a', 'humidity', T0 + 500, 50, '%RH'),
          reading('lat-a', 'temperature', T0 + 2000, 2, 'Cel'),
          reading('lat-b', 'temperature', T0 + 3000, 3, 'Cel'),
        ])
      })

      it('returns only the given device when one is named', async () => {
        const got = (await store.latest('lat-a')).sort(byDeviceAndMetric)
        expect(got).toEqual([
          reading('lat-a', 'humidity', T0 + 500, 50, '%RH'),
          reading('lat-a', 'temperature', T0 + 2000, 2, 'Cel'),
        ])
        expect(await store.latest('nobody')).toEqual([])
      })

      it('moves forward when a newer reading arrives', async () => {
        await store.writeReadings([reading('lat-b', 'temperature', T0 + 9000, 9, 'Cel')])
        expect(await store.latest('lat-b')).toEqual([
          reading('lat-b', 'temperature', T0 + 9000, 9, 'Cel'),
        ])
      })
    })

    describe('alert history', () => {
      const a1 = alert({ ruleId: 'hot', deviceId: 'a', ts: T0 + 1000 })
      const a2 = alert({
        ruleId: 'hot',
        deviceId: 'a',
        ts: T0 + 5000,
        state: 'resolved',
        value: 27.25,
        message: 'back to normal',
      })
      const a3 = alert({
        ruleId: 'cold',
        deviceId: 'a',
        ts: T0 + 3000,
        severity: 'warning',
        value: 1.5,
        threshold: 2,
      })
      const a4 = alert({ ruleId: 'hot', deviceId: 'b', ts: T0 + 4000, severity: 'critical' })
      const a5 = alert({ ruleId: 'hot', deviceId: 'a', ts: T0 + 9000, since: T0 + 8000 })
      // Another kind, flagged flapping: every field of the contract round-trips.
      const a6 = alert({
        ruleId: 'rising',
        kind: 'rate',
        deviceId: 'b',
        metric: 'pressure',
        ts: T0 + 2000,
        severity: 'info',
        state: 'resolved',
        flapping: true,
      })

      beforeEach(async () => {
        await store.writeAlerts([a1, a3, a5])
        await store.writeAlerts([a2, a4, a6])
      })

      it('returns every transition newest first, all fields intact', async () => {
        expect(await store.queryAlerts({ limit: 100 })).toEqual([a5, a2, a4, a3, a6, a1])
        const [rising] = await store.queryAlerts({ ruleId: 'rising', limit: 1 })
        expect(rising).toMatchObject({ id: 'rising:b', kind: 'rate', flapping: true })
      })

      it('filters by state, device, rule and severity', async () => {
        expect(await store.queryAlerts({ state: 'firing', limit: 100 })).toEqual([a5, a4, a3, a1])
        expect(await store.queryAlerts({ state: 'resolved', limit: 100 })).toEqual([a2, a6])
        expect(await store.queryAlerts({ deviceId: 'a', limit: 100 })).toEqual([a5, a2, a3, a1])
        expect(await store.queryAlerts({ ruleId: 'hot', limit: 100 })).toEqual([a5, a2, a4, a1])
        expect(await store.queryAlerts({ deviceId: 'a', ruleId: 'hot', limit: 100 })).toEqual([
          a5,
          a2,
          a1,
        ])
        expect(
          await store.queryAlerts({ deviceId: 'b', ruleId: 'hot', state: 'resolved', limit: 100 }),
        ).toEqual([])
        expect(await store.queryAlerts({ severity: 'major', limit: 100 })).toEqual([a5, a2, a1])
        expect(await store.queryAlerts({ severity: 'critical', limit: 100 })).toEqual([a4])
        expect(
          await store.queryAlerts({ severity: 'major', state: 'resolved', limit: 100 }),
        ).toEqual([a2])
        expect(await store.queryAlerts({ severity: 'minor', limit: 100 })).toEqual([])
      })

      it('filters by time with fromMs inclusive and toMs exclusive, and applies limit', async () => {
        expect(await store.queryAlerts({ fromMs: T0 + 3000, toMs: T0 + 5000, limit: 100 })).toEqual(
          [a4, a3],
        )
        expect(await store.queryAlerts({ fromMs: T0 + 5000, limit: 100 })).toEqual([a5, a2])
        expect(await store.queryAlerts({ toMs: T0 + 3000, limit: 100 })).toEqual([a6, a1])
        expect(await store.queryAlerts({ limit: 2 })).toEqual([a5, a2])
      })

      it('keeps one copy of a transition written twice (a spool replayed after a crash)', async () => {
        await store.writeAlerts([a1, a3, a5])
        expect(await store.queryAlerts({ limit: 100 })).toEqual([a5, a2, a4, a3, a6, a1])
        expect(await store.latestAlerts()).toEqual([a5, a4, a3, a6])
      })

      it('latestAlerts returns the latest transition of every (ruleId, deviceId), newest first', async () => {
        // hot/a and hot/b share the rule and are two keys; hot/a's a1 and a2 are history.
        expect(await store.latestAlerts()).toEqual([a5, a4, a3, a6])
      })

      it('latestAlerts goes by ts: a transition written late with an older ts does not replace it', async () => {
        const late = alert({ ruleId: 'hot', deviceId: 'a', ts: T0 + 7000, state: 'resolved' })
        const newer = alert({ ruleId: 'cold', deviceId: 'a', ts: T0 + 9500, state: 'resolved' })
        await store.writeAlerts([late, newer])
        expect(await store.latestAlerts()).toEqual([newer, a5, a4, a6])
        // The history keeps every transition all the same.
        expect(await store.queryAlerts({ deviceId: 'a', ruleId: 'hot', limit: 100 })).toEqual([
          a5,
          late,
          a2,
          a1,
        ])
      })

      describe('current: true', () => {
        it('considers only the latest transition of each key', async () => {
          expect(await store.queryAlerts({ current: true, limit: 100 })).toEqual([a5, a4, a3, a6])
          expect(await store.queryAlerts({ current: false, limit: 100 })).toHaveLength(6)
        })

        it('state filters on the current state, not on past transitions', async () => {
          expect(await store.queryAlerts({ current: true, state: 'firing', limit: 100 })).toEqual([
            a5,
            a4,
            a3,
          ])
          expect(await store.queryAlerts({ current: true, state: 'resolved', limit: 100 })).toEqual(
            [a6],
          )
          // hot/a resolved at a2 but fired again at a5: it is not currently resolved.
          expect(
            await store.queryAlerts({
              current: true,
              ruleId: 'hot',
              deviceId: 'a',
              state: 'resolved',
              limit: 100,
            }),
          ).toEqual([])
        })

        it('applies device, rule, severity, time and limit to the current transitions', async () => {
          const current = (q: Omit<AlertQuery, 'current'>) =>
            store.queryAlerts({ ...q, current: true })
          expect(await current({ deviceId: 'a', limit: 100 })).toEqual([a5, a3])
          expect(await current({ ruleId: 'hot', limit: 100 })).toEqual([a5, a4])
          expect(await current({ severity: 'critical', limit: 100 })).toEqual([a4])
          expect(await current({ severity: 'warning', state: 'firing', limit: 100 })).toEqual([a3])
          // The range applies to the current transition's ts: hot/a's earlier ones do not count.
          expect(await current({ fromMs: T0 + 3000, toMs: T0 + 5000, limit: 100 })).toEqual([
            a4,
            a3,
          ])
          expect(await current({ toMs: T0 + 2000, limit: 100 })).toEqual([])
          expect(await current({ limit: 2 })).toEqual([a5, a4])
        })
      })
    })

    it('stores every reading of a large batch', async () => {
      const count = 10_000
      const batch = Array.from({ length: count }, (_, i) =>
        reading('bulk', i % 2 === 0 ? 'temperature' : 'humidity', T0 + i * 1000, i),
      )
      await store.writeReadings(batch)
      const got = await store.queryReadings({
        deviceId: 'bulk',
        fromMs: T0,
        toMs: T0 + count * 1000,
        limit: count * 2,
        order: 'asc',
      })
      expect(got).toHaveLength(count)
      expect(got[0]).toEqual(batch[0])
      expect(got[count - 1]).toEqual(batch[count - 1])
      const hourly = await store.aggregate({
        deviceId: 'bulk',
        metric: 'temperature',
        fromMs: T0,
        toMs: T0 + count * 1000,
        everyMs: 60 * MINUTE,
        fn: 'count',
      })
      expect(hourly.reduce((sum, b) => sum + b.count, 0)).toBe(count / 2)
    })
  })
}
