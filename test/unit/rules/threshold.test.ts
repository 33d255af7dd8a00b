import { describe, expect, it } from 'vitest'
import {
  breaches,
  parseThreshold,
  type ThresholdCondition,
  thresholdOf,
} from '../../../src/rules/kinds/threshold.ts'
import { type Series, transitionsOf } from './harness.ts'

const temperature = { id: 'r', kind: 'threshold', match: { metric: 'temperature' } }

describe('threshold conditions', () => {
  const cases: Array<{
    name: string
    fields: Record<string, unknown>
    series: Series
    want: string[]
  }> = [
    {
      name: 'above is strict: 30 does not breach above 30',
      fields: { above: 30 },
      series: [
        [25, 1],
        [30, 2],
        [30.01, 3],
        [35, 4],
        [30, 5],
      ],
      want: ['firing@3', 'resolved@5'],
    },
    {
      name: 'below is strict: 10 does not breach below 10',
      fields: { below: 10 },
      series: [
        [12, 1],
        [10, 2],
        [9.9, 3],
        [15, 4],
      ],
      want: ['firing@3', 'resolved@4'],
    },
    {
      name: 'outside excludes its bounds on both sides',
      fields: { outside: [20, 80] },
      series: [
        [50, 1],
        [20, 2],
        [80, 3],
        [80.1, 4],
        [85, 5],
        [79, 6],
        [19.9, 7],
        [20, 8],
      ],
      want: ['firing@4', 'resolved@6', 'firing@7', 'resolved@8'],
    },
    {
      name: 'inside includes its bounds',
      fields: { inside: [20, 80] },
      series: [
        [10, 1],
        [20, 2],
        [50, 3],
        [80, 4],
        [80.1, 5],
        [19.99, 6],
        [80, 7],
      ],
      want: ['firing@2', 'resolved@5', 'firing@7'],
    },
    {
      name: 'negative limits',
      fields: { below: -10 },
      series: [
        [-5, 1],
        [-10.5, 2],
        [-9, 3],
      ],
      want: ['firing@2', 'resolved@3'],
    },
  ]
  it.each(cases)('$name', ({ fields, series, want }) => {
    expect(transitionsOf({ ...temperature, ...fields }, series)).toEqual(want)
  })
})

describe('threshold for (held on reading timestamps)', () => {
  const cases: Array<{
    name: string
    fields: Record<string, unknown>
    series: Series
    want: string[]
  }> = [
    {
      name: 'held for the whole period, fires on the reading that completes it',
      fields: { above: 30, for: '30s' },
      series: [
        [31, 1_000],
        [32, 11_000],
        [33, 30_999],
        [34, 31_000],
        [35, 40_000],
      ],
      want: ['firing@31000'],
    },
    {
      name: 'a number is milliseconds',
      fields: { above: 30, for: 30_000 },
      series: [
        [31, 0],
        [31, 29_999],
        [31, 30_000],
      ],
      want: ['firing@30000'],
    },
    {
      name: 'interrupted by a non-breaching reading, restarts from the next breach',
      fields: { above: 30, for: '30s' },
      series: [
        [31, 0],
        [32, 20_000],
        [29, 25_000],
        [31, 30_000],
        [31, 59_999],
        [31, 60_000],
      ],
      want: ['firing@60000'],
    },
    {
      name: 'a value at the limit interrupts too (it does not breach)',
      fields: { above: 30, for: '10s' },
      series: [
        [31, 0],
        [30, 5_000],
        [31, 10_000],
        [31, 19_000],
        [31, 20_000],
      ],
      want: ['firing@20000'],
    },
    {
      name: 'two readings far apart: held on every reading seen, fires',
      fields: { below: 5, for: '1m' },
      series: [
        [4, 0],
        [3, 90_000],
      ],
      want: ['firing@90000'],
    },
    {
      name: 'for 0 fires on the first breaching reading',
      fields: { above: 30, for: 0 },
      series: [[31, 5]],
      want: ['firing@5'],
    },
    {
      name: 'resolution is immediate, and a new breach waits the full period again',
      fields: { above: 30, for: '10s' },
      series: [
        [31, 0],
        [31, 10_000],
        [25, 11_000],
        [31, 12_000],
        [31, 21_999],
        [31, 22_000],
      ],
      want: ['firing@10000', 'resolved@11000', 'firing@22000'],
    },
    {
      name: 'outside with for, breaching on alternating sides is one unbroken run',
      fields: { outside: [20, 80], for: '30s' },
      series: [
        [85, 0],
        [10, 15_000],
        [90, 30_000],
      ],
      want: ['firing@30000'],
    },
  ]
  it.each(cases)('$name', ({ fields, series, want }) => {
    expect(transitionsOf({ ...temperature, ...fields }, series)).toEqual(want)
  })
})

describe('threshold hysteresis (the shifted boundary itself resolves)', () => {
  const cases: Array<{
    name: string
    fields: Record<string, unknown>
    series: Series
    want: string[]
  }> = [
    {
      name: 'above 30 h1: (29, 30] holds, 29 resolves',
      fields: { above: 30, hysteresis: 1 },
      series: [
        [31, 1],
        [30, 2],
        [29.5, 3],
        [29.0001, 4],
        [29, 5],
      ],
      want: ['firing@1', 'resolved@5'],
    },
    {
      name: 'above 30 h1: just below the boundary resolves',
      fields: { above: 30, hysteresis: 1 },
      series: [
        [31, 1],
        [28.99, 2],
      ],
      want: ['firing@1', 'resolved@2'],
    },
    {
      name: 'above 30 h1: back above 30 from the band does not fire again',
      fields: { above: 30, hysteresis: 1 },
      series: [
        [31, 1],
        [29.5, 2],
        [31, 3],
        [29.5, 4],
        [29, 5],
        [29.5, 6],
        [30.5, 7],
      ],
      want: ['firing@1', 'resolved@5', 'firing@7'],
    },
    {
      name: 'above 30 h1: the band does not fire when not firing',
      fields: { above: 30, hysteresis: 1 },
      series: [
        [29.5, 1],
        [30, 2],
      ],
      want: [],
    },
    {
      name: 'below 10 h2: 11.99 holds, 12 resolves',
      fields: { below: 10, hysteresis: 2 },
      series: [
        [9, 1],
        [11.99, 2],
        [12, 3],
      ],
      want: ['firing@1', 'resolved@3'],
    },
    {
      name: 'outside [20, 80] h2: resolves at 78 from above',
      fields: { outside: [20, 80], hysteresis: 2 },
      series: [
        [81, 1],
        [79, 2],
        [78.01, 3],
        [78, 4],
      ],
      want: ['firing@1', 'resolved@4'],
    },
    {
      name: 'outside [20, 80] h2: resolves at 22 from below',
      fields: { outside: [20, 80], hysteresis: 2 },
      series: [
        [19, 1],
        [21.9, 2],
        [22, 3],
      ],
      want: ['firing@1', 'resolved@3'],
    },
    {
      name: 'inside [20, 80] h5: 85 holds (inside includes bounds), above 85 resolves',
      fields: { inside: [20, 80], hysteresis: 5 },
      series: [
        [50, 1],
        [84, 2],
        [85, 3],
        [85.01, 4],
      ],
      want: ['firing@1', 'resolved@4'],
    },
    {
      name: 'inside [20, 80] h5: 15 holds, below 15 resolves',
      fields: { inside: [20, 80], hysteresis: 5 },
      series: [
        [50, 1],
        [15, 2],
        [14.99, 3],
      ],
      want: ['firing@1', 'resolved@3'],
    },
    {
      name: 'hysteresis 0 resolves on the first non-breaching value',
      fields: { above: 30, hysteresis: 0 },
      series: [
        [31, 1],
        [30, 2],
      ],
      want: ['firing@1', 'resolved@2'],
    },
  ]
  it.each(cases)('$name', ({ fields, series, want }) => {
    expect(transitionsOf({ ...temperature, ...fields }, series)).toEqual(want)
  })
})

describe('threshold clear (the resolve limit itself)', () => {
  const cases: Array<{
    name: string
    fields: Record<string, unknown>
    series: Series
    want: string[]
  }> = [
    {
      name: 'above 30 clear 27: (27, 30] holds, 27 resolves',
      fields: { above: 30, clear: 27 },
      series: [
        [31, 1],
        [29, 2],
        [27.01, 3],
        [27, 4],
      ],
      want: ['firing@1', 'resolved@4'],
    },
    {
      name: 'above 30 clear 27: back above 30 from the band does not fire again',
      fields: { above: 30, clear: 27 },
      series: [
        [31, 1],
        [28, 2],
        [32, 3],
        [26, 4],
        [30.5, 5],
      ],
      want: ['firing@1', 'resolved@4', 'firing@5'],
    },
    {
      name: 'clear equal to the threshold resolves on the first normal value',
      fields: { above: 30, clear: 30 },
      series: [
        [31, 1],
        [30, 2],
      ],
      want: ['firing@1', 'resolved@2'],
    },
    {
      name: 'below 10 clear 12: 11.99 holds, 12 resolves',
      fields: { below: 10, clear: 12 },
      series: [
        [9, 1],
        [11.99, 2],
        [12, 3],
      ],
      want: ['firing@1', 'resolved@3'],
    },
    {
      name: 'outside [20, 80] clear [25, 75]: resolves only within [25, 75]',
      fields: { outside: [20, 80], clear: [25, 75] },
      series: [
        [85, 1],
        [76, 2],
        [75, 3],
        [19, 4],
        [24.9, 5],
        [25, 6],
      ],
      want: ['firing@1', 'resolved@3', 'firing@4', 'resolved@6'],
    },
    {
      name: 'inside [20, 80] clear [10, 90]: holds up to 90, resolves above',
      fields: { inside: [20, 80], clear: [10, 90] },
      series: [
        [50, 1],
        [90, 2],
        [90.5, 3],
      ],
      want: ['firing@1', 'resolved@3'],
    },
    {
      name: 'clear with for: the for period restarts, resolving is immediate',
      fields: { above: 30, clear: 28, for: '10s' },
      series: [
        [31, 0],
        [31, 10_000],
        [29, 11_000],
        [28, 12_000],
      ],
      want: ['firing@10000', 'resolved@12000'],
    },
  ]
  it.each(cases)('$name', ({ fields, series, want }) => {
    expect(transitionsOf({ ...temperature, ...fields }, series)).toEqual(want)
  })
})

describe('breaches and thresholdOf (pure)', () => {
  const above30: ThresholdCondition = { op: 'above', threshold: 30 }
  const outside: ThresholdCondition = { op: 'outside', lo: 20, hi: 80 }
  it.each([
    { condition: above30, value: 30, shift: 0, want: false },
    { condition: above30, value: 29.5, shift: 1, want: true },
    { condition: above30, value: 29, shift: 1, want: false },
    { condition: outside, value: 21, shift: 2, want: true },
    { condition: outside, value: 22, shift: 2, want: false },
    { condition: outside, value: 78, shift: 2, want: false },
    { condition: outside, value: 79, shift: 2, want: true },
  ])('$condition.op $value shift $shift -> $want', ({ condition, value, shift, want }) => {
    expect(breaches(condition, value, shift)).toBe(want)
  })

  it('reports the bound nearest the value for ranges', () => {
    expect(thresholdOf(outside, 85)).toBe(80)
    expect(thresholdOf(outside, 10)).toBe(20)
    expect(thresholdOf(outside, 40)).toBe(20)
    expect(thresholdOf(above30, 99)).toBe(30)
  })
})

describe('parseThreshold', () => {
  it('defaults: for 0, hysteresis 0, no clear', () => {
    expect(parseThreshold({ above: 30 })).toEqual({
      ok: true,
      spec: { condition: { op: 'above', threshold: 30 }, forMs: 0, hysteresis: 0, clear: null },
    })
  })

  it('clear becomes the release condition of the same op', () => {
    expect(parseThreshold({ outside: [20, 80], clear: [22, 78] })).toMatchObject({
      ok: true,
      spec: { clear: { op: 'outside', lo: 22, hi: 78 } },
    })
  })

  it.each([
    {
      raw: {},
      field: 'above|below|outside|inside',
      text: 'one of above, below, outside, inside is required',
    },
    {
      raw: { above: 1, below: 0 },
      field: 'above|below|outside|inside',
      text: 'got above and below',
    },
    { raw: { above: '30' }, field: 'above', text: 'must be a number, got "30"' },
    { raw: { above: Number.POSITIVE_INFINITY }, field: 'above', text: 'must be a number' },
    { raw: { outside: [20] }, field: 'outside', text: 'must be a list [lo, hi]' },
    { raw: { inside: [20, 'x'] }, field: 'inside[1]', text: 'must be a number, got "x"' },
    { raw: { inside: [20, 20] }, field: 'inside', text: 'lo must be less than hi, got [20, 20]' },
    { raw: { above: 1, for: '5 min' }, field: 'for', text: 'must be a duration' },
    { raw: { above: 1, for: -1 }, field: 'for', text: 'got -1' },
    { raw: { above: 1, hysteresis: -0.5 }, field: 'hysteresis', text: 'must be a number >= 0' },
    {
      raw: { outside: [20, 30], hysteresis: 5 },
      field: 'hysteresis',
      text: 'less than half the width',
    },
    {
      raw: { above: 30, hysteresis: 1, clear: 27 },
      field: 'clear',
      text: 'cannot be combined with hysteresis',
    },
    { raw: { above: 30, clear: 31 }, field: 'clear', text: 'at or below the threshold' },
    { raw: { below: 10, clear: 9 }, field: 'clear', text: 'at or above the threshold' },
    { raw: { above: 30, clear: 'low' }, field: 'clear', text: 'must be a number, got "low"' },
    { raw: { outside: [20, 80], clear: [10, 78] }, field: 'clear', text: 'must lie within' },
    { raw: { outside: [20, 80], clear: 50 }, field: 'clear', text: 'must be a list [lo, hi]' },
    { raw: { inside: [20, 80], clear: [25, 85] }, field: 'clear', text: 'must contain inside' },
  ])('$field: $text', ({ raw, field, text }) => {
    const result = parseThreshold(raw)
    expect(result.ok).toBe(false)
    if (result.ok) return
    expect(result.errors).toContainEqual({ field, message: expect.stringContaining(text) })
  })
})
