import { describe, expect, it } from 'vitest'
import { compileDeviceMatcher, compileGlob, isDevicePattern } from '../../../src/rules/glob.ts'

describe('compileGlob', () => {
  it.each([
    { pattern: '*', id: 'anything', want: true },
    { pattern: '**', id: 'x', want: true },
    { pattern: 'greenhouse-*', id: 'greenhouse-12', want: true },
    { pattern: 'greenhouse-*', id: 'greenhouse-', want: true },
    { pattern: 'greenhouse-*', id: 'greenhouse', want: false },
    { pattern: 'greenhouse-*', id: 'a-greenhouse-1', want: false },
    { pattern: '*-north', id: 'hall-north', want: true },
    { pattern: 'lab-?', id: 'lab-1', want: true },
    { pattern: 'lab-?', id: 'lab-', want: false },
    { pattern: 'lab-?', id: 'lab-12', want: false },
    { pattern: 'a*b?c', id: 'axxbyc', want: true },
    { pattern: 'a*b?c', id: 'abc', want: false },
    { pattern: 'hall.1', id: 'hall.1', want: true },
    { pattern: 'hall.1', id: 'hallx1', want: false },
    { pattern: 'hall.*', id: 'hallx1', want: false },
    { pattern: 'hall.*', id: 'hall.x', want: true },
    { pattern: 'dev-1', id: 'DEV-1', want: false },
  ])('$pattern vs $id: $want', ({ pattern, id, want }) => {
    expect(compileGlob(pattern)(id)).toBe(want)
  })
})

describe('compileDeviceMatcher', () => {
  it.each([
    { patterns: ['a', 'b'], id: 'b', want: true },
    { patterns: ['a', 'b'], id: 'c', want: false },
    { patterns: ['a', 'x-*'], id: 'x-1', want: true },
    { patterns: ['a', 'x-*'], id: 'a', want: true },
    { patterns: ['a', 'x-*', 'y?'], id: 'y1', want: true },
    { patterns: ['a', 'x-*', 'y?'], id: 'z', want: false },
    { patterns: ['a', '*'], id: 'z', want: true },
    { patterns: ['only'], id: 'only', want: true },
  ])('$patterns vs $id: $want', ({ patterns, id, want }) => {
    expect(compileDeviceMatcher(patterns)(id)).toBe(want)
  })
})

describe('isDevicePattern', () => {
  it.each([
    ['dev-1', true],
    ['greenhouse-*', true],
    ['a?b', true],
    ['', false],
    ['a b', false],
    ['sensors/a', false],
    ['#', false],
    ['x'.repeat(65), false],
    [42, false],
  ])('%j -> %j', (value, want) => {
    expect(isDevicePattern(value)).toBe(want)
  })
})
