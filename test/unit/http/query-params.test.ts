import { describe, expect, it } from 'vitest'
import {
  bucketCount,
  DEFAULT_LIMIT,
  defaultEveryMs,
  MAX_BUCKETS,
  parseAggregateQuery,
  parseAlertsQuery,
  parseNoQuery,
  parseReadingsQuery,
  parseTime,
} from '../../../src/http/query-params.ts'

/** 2026-11-26T10:00:00.000Z: every relative time below is anchored here. */
const NOW = Date.UTC(2026, 10, 26, 10, 0, 0, 0)
const MIN = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000

describe('parseTime', () => {
  const good: Array<[name: string, raw: string, expected: number]> = [
    ['from', '2026-11-26T10:00:00Z', NOW],
    ['from', '2026-11-26T10:00:00.123Z', NOW + 123],
    ['from', '2026-11-26T10:00:00.5Z', NOW + 500],
    ['from', '2026-11-26T10:00:00.123456789Z', NOW + 123],
    ['from', '2026-11-26T10:00Z', NOW],
    ['from', '2026-11-26T10:00:00', NOW],
    ['from', '2026-11-26 10:00:00', NOW],
    ['from', '2026-11-26T11:30:00+01:30', NOW],
    ['from', '2026-11-26T08:00:00-02:00', NOW],
    ['from', '2026-11-26', NOW - 10 * HOUR],
    ['from', '2024-02-29', Date.UTC(2024, 1, 29)],
    ['from', '0050-01-01', Date.parse('0050-01-01T00:00:00Z')],
    ['from', '1795687200000', NOW],
    ['from', '0', 0],
    ['from', 'now', NOW],
    ['to', 'now', NOW + 1],
    ['from', '-15m', NOW - 15 * MIN],
    ['to', '-15m', NOW - 15 * MIN],
    ['from', '-1h', NOW - HOUR],
    ['from', '-7d', NOW - 7 * DAY],
    ['from', '-1.5h', NOW - 1.5 * HOUR],
    ['from', '-250ms', NOW - 250],
    ['from', '-2w', NOW - 14 * DAY],
  ]
  it.each(good)('%s=%s', (name, raw, expected) => {
    expect(parseTime(name, raw, NOW)).toEqual({ ok: true, value: expected })
  })

  const expected = 'expected ISO-8601 time, epoch ms or relative time like -1h'
  const bad: Array<[raw: string, message: string]> = [
    ['yesterday', `query parameter "from": ${expected}, got "yesterday"`],
    ['', `query parameter "from": ${expected}, got ""`],
    ['15m', `query parameter "from": ${expected}, got "15m"`],
    ['+1h', `query parameter "from": ${expected}, got "+1h"`],
    ['-1y', `query parameter "from": ${expected}, got "-1y"`],
    ['- 1h', `query parameter "from": ${expected}, got "- 1h"`],
    ['-', `query parameter "from": ${expected}, got "-"`],
    ['1.5', `query parameter "from": ${expected}, got "1.5"`],
    ['-1795687200000', `query parameter "from": ${expected}, got "-1795687200000"`],
    ['Nov 26 2026', `query parameter "from": ${expected}, got "Nov 26 2026"`],
    [
      '2026-11-26T10:00:00+0100',
      `query parameter "from": ${expected}, got "2026-11-26T10:00:00+0100"`,
    ],
    ['2026-11-26T10', `query parameter "from": ${expected}, got "2026-11-26T10"`],
    ['2026-02-30', 'query parameter "from": "2026-02-30" is not a valid date and time'],
    ['2025-02-29', 'query parameter "from": "2025-02-29" is not a valid date and time'],
    ['2026-13-01', 'query parameter "from": "2026-13-01" is not a valid date and time'],
    ['2026-11-00', 'query parameter "from": "2026-11-00" is not a valid date and time'],
    [
      '2026-11-26T24:00:00Z',
      'query parameter "from": "2026-11-26T24:00:00Z" is not a valid date and time',
    ],
    [
      '2026-11-26T10:60:00Z',
      'query parameter "from": "2026-11-26T10:60:00Z" is not a valid date and time',
    ],
    [
      '2026-11-26T10:00:60Z',
      'query parameter "from": "2026-11-26T10:00:60Z" is not a valid date and time',
    ],
    [
      '2026-11-26T10:00:00+24:00',
      'query parameter "from": "2026-11-26T10:00:00+24:00" is not a valid date and time',
    ],
    [
      '8640000000000001',
      'query parameter "from": epoch ms "8640000000000001" is out of range (at most 8640000000000000)',
    ],
    [
      '-99999999w',
      'query parameter "from": "-99999999w" reaches before the earliest representable time',
    ],
  ]
  it.each(bad)('rejects %j', (raw, message) => {
    expect(parseTime('from', raw, NOW)).toEqual({ ok: false, message })
  })

  it('cuts a long echoed value', () => {
    const result = parseTime('to', 'x'.repeat(100), NOW)
    expect(result).toEqual({
      ok: false,
      message: `query parameter "to": ${expected}, got "${'x'.repeat(64)}..."`,
    })
  })
})

describe('defaultEveryMs and bucketCount', () => {
  it.each([
    [1000, 1_000],
    [HOUR, 10_000],
    [6 * HOUR, 60_000],
    [DAY, 5 * MIN],
    [7 * DAY, 30 * MIN],
    [30 * DAY, 2 * HOUR],
    [365 * DAY, DAY],
    [10 * 365 * DAY, 8 * DAY],
    [100 * 365 * DAY, 73 * DAY],
  ])('range %i ms -> every %i ms', (rangeMs, everyMs) => {
    expect(defaultEveryMs(rangeMs)).toBe(everyMs)
    expect(Math.ceil(rangeMs / everyMs)).toBeLessThanOrEqual(500)
  })

  it('counts the aligned buckets a half-open range touches', () => {
    expect(bucketCount(NOW, NOW + HOUR, MIN)).toBe(60)
    expect(bucketCount(NOW, NOW + HOUR + 1, MIN)).toBe(61)
    expect(bucketCount(NOW + 30_000, NOW + HOUR, MIN)).toBe(60)
    expect(bucketCount(NOW + 30_000, NOW + HOUR + 30_000, MIN)).toBe(61)
    expect(bucketCount(NOW, NOW, MIN)).toBe(0)
  })
})

describe('parseReadingsQuery', () => {
  it('applies the defaults: last hour up to and including now, 1000 rows, oldest first', () => {
    expect(parseReadingsQuery({ device: 'gh-1' }, NOW)).toEqual({
      ok: true,
      value: {
        deviceId: 'gh-1',
        fromMs: NOW - HOUR,
        toMs: NOW + 1,
        limit: DEFAULT_LIMIT,
        order: 'asc',
      },
    })
  })

  it('takes every parameter', () => {
    const query = {
      device: 'gh-1',
      metric: 'temperature',
      from: '2026-11-26T09:00:00Z',
      to: '1795687200000',
      limit: '10000',
      order: 'desc',
    }
    expect(parseReadingsQuery(query, NOW)).toEqual({
      ok: true,
      value: {
        deviceId: 'gh-1',
        metric: 'temperature',
        fromMs: NOW - HOUR,
        toMs: NOW,
        limit: 10000,
        order: 'desc',
      },
    })
  })

  it('accepts a null-prototype query object as Fastify builds it', () => {
    const query = Object.assign(Object.create(null) as object, { device: 'a', limit: '1' })
    const result = parseReadingsQuery(query, NOW)
    expect(result.ok && result.value.limit).toBe(1)
  })

  const idExpected = 'expected an identifier matching ^[A-Za-z0-9_.-]{1,64}$'
  const bad: Array<[query: Record<string, unknown>, message: string]> = [
    [{}, 'query parameter "device": is required'],
    [{ metric: 'temperature' }, 'query parameter "device": is required'],
    [{ device: '' }, `query parameter "device": ${idExpected}, got ""`],
    [{ device: 'gh/1' }, `query parameter "device": ${idExpected}, got "gh/1"`],
    [
      { device: 'a'.repeat(65) },
      `query parameter "device": ${idExpected}, got "${'a'.repeat(64)}..."`,
    ],
    [{ device: 'gh-1', metric: 'temp*' }, `query parameter "metric": ${idExpected}, got "temp*"`],
    [{ device: ['a', 'b'] }, 'query parameter "device": given 2 times, expected at most once'],
    [
      { device: 'a', to: ['now', 'now'] },
      'query parameter "to": given 2 times, expected at most once',
    ],
    [{ device: 42 }, 'query parameter "device": expected a single text value'],
    [
      { device: 'a', limit: '0' },
      'query parameter "limit": expected an integer from 1 to 10000, got "0"',
    ],
    [
      { device: 'a', limit: '10001' },
      'query parameter "limit": expected an integer from 1 to 10000, got "10001"',
    ],
    [
      { device: 'a', limit: '1e3' },
      'query parameter "limit": expected an integer from 1 to 10000, got "1e3"',
    ],
    [
      { device: 'a', limit: '-5' },
      'query parameter "limit": expected an integer from 1 to 10000, got "-5"',
    ],
    [
      { device: 'a', limit: '' },
      'query parameter "limit": expected an integer from 1 to 10000, got ""',
    ],
    [
      { device: 'a', order: 'newest' },
      'query parameter "order": expected one of asc, desc, got "newest"',
    ],
    [
      { device: 'a', from: 'yesterday' },
      'query parameter "from": expected ISO-8601 time, epoch ms or relative time like -1h, got "yesterday"',
    ],
    [
      { device: 'a', to: 'tomorrow' },
      'query parameter "to": expected ISO-8601 time, epoch ms or relative time like -1h, got "tomorrow"',
    ],
    [
      { device: 'a', from: '-1h', to: '-2h' },
      'query parameter "from": must be before "to" (to is exclusive), got from 2026-11-26T09:00:00.000Z and to 2026-11-26T08:00:00.000Z',
    ],
    [
      { device: 'a', from: '2026-11-26T10:00:00Z', to: '2026-11-26T10:00:00Z' },
      'query parameter "from": must be before "to" (to is exclusive), got from 2026-11-26T10:00:00.000Z and to 2026-11-26T10:00:00.000Z',
    ],
    [
      { device: 'a', from: '2026-11-26T10:00:00.002Z' },
      'query parameter "from": must be before "to" (to is exclusive), got from 2026-11-26T10:00:00.002Z and to 2026-11-26T10:00:00.001Z',
    ],
    [
      { device: 'a', form: '-1h' },
      'unknown query parameter "form" (allowed: device, metric, from, to, limit, order)',
    ],
    [
      { device: 'a', devices: 'b', every: '1m' },
      'unknown query parameters "devices", "every" (allowed: device, metric, from, to, limit, order)',
    ],
  ]
  it.each(bad)('rejects %j', (query, message) => {
    expect(parseReadingsQuery(query, NOW)).toEqual({ ok: false, message })
  })

  it('allows from=now: the default to includes the reading stamped exactly now', () => {
    const result = parseReadingsQuery({ device: 'a', from: 'now' }, NOW)
    expect(result).toMatchObject({ ok: true, value: { fromMs: NOW, toMs: NOW + 1 } })
  })
})

describe('parseAggregateQuery', () => {
  it('applies the defaults: last hour, mean, every chosen for <= ~500 buckets', () => {
    expect(parseAggregateQuery({ device: 'gh-1', metric: 'temperature' }, NOW)).toEqual({
      ok: true,
      value: {
        deviceId: 'gh-1',
        metric: 'temperature',
        fromMs: NOW - HOUR,
        toMs: NOW + 1,
        everyMs: 10_000,
        fn: 'mean',
      },
    })
  })

  it('takes every parameter', () => {
    const query = { device: 'd', metric: 'm', from: '-1d', to: 'now', every: '15m', fn: 'max' }
    expect(parseAggregateQuery(query, NOW)).toEqual({
      ok: true,
      value: {
        deviceId: 'd',
        metric: 'm',
        fromMs: NOW - DAY,
        toMs: NOW + 1,
        everyMs: 15 * MIN,
        fn: 'max',
      },
    })
  })

  it.each(['mean', 'min', 'max', 'count', 'last'])('accepts fn=%s', (fn) => {
    expect(parseAggregateQuery({ device: 'd', metric: 'm', fn }, NOW)).toMatchObject({
      ok: true,
      value: { fn },
    })
  })

  it('picks the default every from the requested range', () => {
    const result = parseAggregateQuery({ device: 'd', metric: 'm', from: '-7d' }, NOW)
    expect(result).toMatchObject({ ok: true, value: { everyMs: 30 * MIN } })
  })

  it(`allows exactly ${MAX_BUCKETS} buckets`, () => {
    const query = {
      device: 'd',
      metric: 'm',
      from: '0',
      to: String(MAX_BUCKETS * 1000),
      every: '1s',
    }
    expect(parseAggregateQuery(query, NOW)).toMatchObject({ ok: true, value: { everyMs: 1000 } })
  })

  const everyExpected = 'expected a duration of at least 1s like 30s, 5m or 1h'
  const bad: Array<[query: Record<string, unknown>, message: string]> = [
    [{ metric: 'm' }, 'query parameter "device": is required'],
    [{ device: 'd' }, 'query parameter "metric": is required'],
    [
      { device: 'd', metric: 'm m' },
      'query parameter "metric": expected an identifier matching ^[A-Za-z0-9_.-]{1,64}$, got "m m"',
    ],
    [
      { device: 'd', metric: 'm', fn: 'avg' },
      'query parameter "fn": expected one of mean, min, max, count, last, got "avg"',
    ],
    [
      { device: 'd', metric: 'm', every: '500ms' },
      `query parameter "every": ${everyExpected}, got "500ms"`,
    ],
    [
      { device: 'd', metric: 'm', every: '0s' },
      `query parameter "every": ${everyExpected}, got "0s"`,
    ],
    [
      { device: 'd', metric: 'm', every: '60000' },
      `query parameter "every": ${everyExpected}, got "60000"`,
    ],
    [
      { device: 'd', metric: 'm', every: ' 1m' },
      `query parameter "every": ${everyExpected}, got " 1m"`,
    ],
    [
      { device: 'd', metric: 'm', every: '1 minute' },
      `query parameter "every": ${everyExpected}, got "1 minute"`,
    ],
    [
      { device: 'd', metric: 'm', from: '-1d', every: '1s' },
      'query parameter "every": 1s over the requested range makes 86401 buckets, more than the 10000 allowed; use a larger "every" or a shorter range',
    ],
    [
      { device: 'd', metric: 'm', from: '0', to: String(MAX_BUCKETS * 1000 + 1), every: '1s' },
      'query parameter "every": 1s over the requested range makes 10001 buckets, more than the 10000 allowed; use a larger "every" or a shorter range',
    ],
    [
      { device: 'd', metric: 'm', from: 'now', to: '-1m' },
      'query parameter "from": must be before "to" (to is exclusive), got from 2026-11-26T10:00:00.000Z and to 2026-11-26T09:59:00.000Z',
    ],
    [
      { device: 'd', metric: 'm', limit: '10' },
      'unknown query parameter "limit" (allowed: device, metric, from, to, every, fn)',
    ],
  ]
  it.each(bad)('rejects %j', (query, message) => {
    expect(parseAggregateQuery(query, NOW)).toEqual({ ok: false, message })
  })
})

describe('parseAlertsQuery', () => {
  it('has no time bounds and no filters by default', () => {
    expect(parseAlertsQuery({}, NOW)).toEqual({ ok: true, value: { limit: DEFAULT_LIMIT } })
  })

  it('state=all is no state filter', () => {
    expect(parseAlertsQuery({ state: 'all' }, NOW)).toEqual({
      ok: true,
      value: { limit: DEFAULT_LIMIT },
    })
  })

  it('takes every parameter', () => {
    const query = {
      state: 'firing',
      device: 'd',
      rule: 'hot',
      severity: 'critical',
      from: '-1d',
      to: 'now',
      limit: '5',
    }
    expect(parseAlertsQuery(query, NOW)).toEqual({
      ok: true,
      value: {
        current: true,
        state: 'firing',
        deviceId: 'd',
        ruleId: 'hot',
        severity: 'critical',
        fromMs: NOW - DAY,
        toMs: NOW + 1,
        limit: 5,
      },
    })
  })

  it('takes from without to and to without from', () => {
    expect(parseAlertsQuery({ state: 'resolved', from: '-1h' }, NOW)).toEqual({
      ok: true,
      value: { current: true, state: 'resolved', fromMs: NOW - HOUR, limit: DEFAULT_LIMIT },
    })
    expect(parseAlertsQuery({ to: '-1h' }, NOW)).toEqual({
      ok: true,
      value: { toMs: NOW - HOUR, limit: DEFAULT_LIMIT },
    })
  })

  it('state=firing and state=resolved ask for the current state, anything else for the history', () => {
    for (const state of ['firing', 'resolved'] as const) {
      expect(parseAlertsQuery({ state }, NOW)).toEqual({
        ok: true,
        value: { current: true, state, limit: DEFAULT_LIMIT },
      })
    }
    for (const query of [{}, { state: 'all' }, { severity: 'info' }]) {
      const parsed = parseAlertsQuery(query, NOW)
      expect(parsed.ok && parsed.value.current).toBeFalsy()
    }
  })

  it.each(['critical', 'major', 'minor', 'warning', 'info'])('takes severity=%s', (severity) => {
    expect(parseAlertsQuery({ severity }, NOW)).toEqual({
      ok: true,
      value: { severity, limit: DEFAULT_LIMIT },
    })
  })

  const bad: Array<[query: Record<string, unknown>, message: string]> = [
    [
      { state: 'open' },
      'query parameter "state": expected one of firing, resolved, all, got "open"',
    ],
    [
      { device: 'a b' },
      'query parameter "device": expected an identifier matching ^[A-Za-z0-9_.-]{1,64}$, got "a b"',
    ],
    [
      { rule: 'r#1' },
      'query parameter "rule": expected an identifier matching ^[A-Za-z0-9_.-]{1,64}$, got "r#1"',
    ],
    [
      { from: 'today' },
      'query parameter "from": expected ISO-8601 time, epoch ms or relative time like -1h, got "today"',
    ],
    [
      { to: 'later' },
      'query parameter "to": expected ISO-8601 time, epoch ms or relative time like -1h, got "later"',
    ],
    [
      { from: '-1h', to: '-1h' },
      'query parameter "from": must be before "to" (to is exclusive), got from 2026-11-26T09:00:00.000Z and to 2026-11-26T09:00:00.000Z',
    ],
    [
      { limit: '100000' },
      'query parameter "limit": expected an integer from 1 to 10000, got "100000"',
    ],
    [
      { severity: 'Critical' },
      'query parameter "severity": expected one of critical, major, minor, warning, info, got "Critical"',
    ],
    [
      { severity: '' },
      'query parameter "severity": expected one of critical, major, minor, warning, info, got ""',
    ],
    [
      { ruleId: 'hot' },
      'unknown query parameter "ruleId" (allowed: state, device, rule, severity, from, to, limit)',
    ],
  ]
  it.each(bad)('rejects %j', (query, message) => {
    expect(parseAlertsQuery(query, NOW)).toEqual({ ok: false, message })
  })
})

describe('parseNoQuery', () => {
  it('accepts an empty query', () => {
    expect(parseNoQuery({})).toEqual({ ok: true, value: null })
    expect(parseNoQuery(undefined)).toEqual({ ok: true, value: null })
  })

  it('rejects any parameter', () => {
    expect(parseNoQuery({ device: 'a' })).toEqual({
      ok: false,
      message: 'unknown query parameter "device" (this route takes none)',
    })
  })
})
