import { describe, expect, it } from 'vitest'
import {
  newRing,
  observe,
  parseRate,
  RATE_RING_CAPACITY,
  RATE_RING_INITIAL,
  type RateState,
} from '../../../src/rules/kinds/rate.ts'
import { rulesFrom, type Series, startEngine, transitionsOf } from './harness.ts'

function fresh(): RateState {
  return { ring: newRing(RATE_RING_INITIAL * 2), head: 0, count: 0, change: 0 }
}

/** The change `observe` reports for the last of `points`, per 60 s. */
function changeAfter(points: Series, perMs = 60_000): number {
  const state = fresh()
  let change = Number.NaN
  for (const [value, ts] of points) change = observe(state, ts, value, perMs)
  return change
}

describe('rate: the change over `per` (pure)', () => {
  it.each([
    { name: 'first reading: no change', points: [[10, 0]] as Series, want: 0 },
    {
      name: 'history shorter than per: against the oldest reading',
      points: [
        [10, 0],
        [16, 20_000],
      ] as Series,
      want: 6,
    },
    {
      name: 'interpolated between the two readings around now - per',
      points: [
        [10, 0],
        [15, 50_000],
        [20, 70_000], // now - per = 10 000: 10 + 5 * 10/50 = 11
      ] as Series,
      want: 9,
    },
    {
      name: 'only one stored reading before now - per: interpolated towards this reading',
      points: [
        [10, 0],
        [12, 30_000],
        [18, 90_000], // now - per = 30 000 exactly
      ] as Series,
      want: 6,
    },
    {
      name: 'a long gap: interpolated across it',
      points: [
        [10, 0],
        [30, 200_000], // now - per = 140 000: 10 + 20 * 140/200 = 24
      ] as Series,
      want: 6,
    },
  ])('$name', ({ points, want }) => {
    expect(changeAfter(points)).toBeCloseTo(want, 9)
  })

  it('a steady ramp sampled irregularly reads its true slope, not the gap between samples', () => {
    // 4 per minute: a naive "previous reading" comparison would see 5.3 across the 80 s gap.
    const ramp = (t: number) => 20 + (4 * t) / 60_000
    const state = fresh()
    const changes = [0, 45_000, 50_000, 130_000, 135_000, 200_000].map((t) =>
      observe(state, t, ramp(t), 60_000),
    )
    expect(changes.slice(3).map((c) => Number(c.toFixed(9)))).toEqual([4, 4, 4])
  })

  it('a fast sensor keeps the whole window in a bounded ring', () => {
    // 10 000 readings, 1 ms apart, value = seconds: the change over 1 s is 1 throughout.
    const state = fresh()
    let change = 0
    let maxCount = 0
    for (let t = 0; t <= 10_000; t++) {
      change = observe(state, t, t / 1_000, 1_000)
      maxCount = Math.max(maxCount, state.count)
    }
    expect(change).toBeCloseTo(1, 9)
    expect(maxCount).toBeLessThanOrEqual(RATE_RING_CAPACITY)
    expect(maxCount).toBeLessThanOrEqual(34)
    expect(state.ring.length / 2).toBeLessThanOrEqual(RATE_RING_CAPACITY)
  })

  it('starts small and grows only as the sampling needs', () => {
    const state = fresh()
    for (let t = 0; t <= 600_000; t += 20_000) observe(state, t, 1, 60_000)
    expect(state.ring.length / 2).toBe(RATE_RING_INITIAL)
  })

  it('drops points older than the window (bounded by time)', () => {
    const state = fresh()
    for (let t = 0; t <= 600_000; t += 10_000) observe(state, t, 1, 60_000)
    // One point at or before now - per, and those after it.
    expect(state.count).toBe(7)
  })
})

describe('rate: transitions over irregular sampling', () => {
  const series: Series = [
    [20, 0],
    [21, 7_000],
    [22, 50_000],
    [26, 61_000], // now - 1m = 1 000: reference 20.14 (between 0 and 7 s): change 5.86
    [26.5, 130_000], // reference 26.07: change 0.43
    [10, 140_000], // reference 26.14: change -16.1
  ]
  it.each([
    { direction: 'rising', want: ['firing@61000', 'resolved@130000'] },
    { direction: undefined, want: ['firing@61000', 'resolved@130000', 'firing@140000'] },
    { direction: 'falling', want: ['firing@140000'] },
  ])('direction $direction', ({ direction, want }) => {
    const rule = {
      id: 'jump',
      kind: 'rate',
      match: { metric: 'temperature' },
      delta: 5,
      per: '1m',
      ...(direction ? { direction } : {}),
    }
    expect(transitionsOf(rule, series)).toEqual(want)
  })

  it('reports the change as value and delta as threshold', () => {
    const h = startEngine(
      rulesFrom({ id: 'jump', kind: 'rate', match: { metric: 't' }, delta: 5, per: '1m' }),
    )
    for (const [value, ts] of series.slice(0, 5)) h.send('dev-1', 't', value, ts)
    expect(h.alerts.map((a) => [a.state, a.value, a.threshold, a.message])).toEqual([
      ['firing', 5.85714285714, 5, 'dev-1 t rose 5.85714285714 in 1m (>= 5)'],
      ['resolved', 0.434782608696, 5, 'dev-1 t rose 0.434782608696 in 1m, under 5 again'],
    ])
  })

  it('the change equal to delta breaches', () => {
    expect(
      transitionsOf({ id: 'r', kind: 'rate', match: { metric: 'm' }, delta: 5, per: '10s' }, [
        [0, 0],
        [5, 10_000],
        [5, 20_000],
      ]),
    ).toEqual(['firing@10000', 'resolved@20000'])
  })
})

describe('parseRate', () => {
  it('defaults direction to either', () => {
    expect(parseRate({ delta: 2, per: '30s' })).toEqual({
      ok: true,
      spec: { delta: 2, perMs: 30_000, direction: 'either' },
    })
  })

  it('reports every problem', () => {
    const result = parseRate({ delta: -1, per: 'x', direction: 'sideways' })
    expect(result.ok).toBe(false)
    if (result.ok) return
    expect(result.errors.map((e) => e.field)).toEqual(['delta', 'per', 'direction'])
  })
})
