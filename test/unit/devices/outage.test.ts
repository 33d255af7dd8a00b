import { describe, expect, it } from 'vitest'
import { isOutageMode, type OutageSchedule, outagePhase } from '../../../devices/outage.ts'

const START_MS = Date.UTC(2025, 0, 1)
const SECOND = 1_000
const MINUTE = 60 * SECOND

/** The shipped flaky device: dark for 90 s every 4 min, the first time 1 min after start. */
const FLAKY: OutageSchedule = {
  everyMs: 4 * MINUTE,
  forMs: 90 * SECOND,
  mode: 'disconnect',
  offsetMs: MINUTE,
}

const at = (schedule: OutageSchedule, afterStartMs: number) =>
  outagePhase(schedule, START_MS, START_MS + afterStartMs)

describe('outagePhase', () => {
  it('is up until the offset, then down for `for`, then up until the next period', () => {
    expect(at(FLAKY, 0)).toEqual({ down: false, started: 0, nextChangeMs: START_MS + MINUTE })
    expect(at(FLAKY, MINUTE - 1)).toEqual({
      down: false,
      started: 0,
      nextChangeMs: START_MS + MINUTE,
    })
    expect(at(FLAKY, MINUTE)).toEqual({
      down: true,
      started: 1,
      nextChangeMs: START_MS + MINUTE + 90 * SECOND,
    })
    expect(at(FLAKY, MINUTE + 90 * SECOND - 1)).toMatchObject({ down: true, started: 1 })
    expect(at(FLAKY, MINUTE + 90 * SECOND)).toEqual({
      down: false,
      started: 1,
      nextChangeMs: START_MS + 5 * MINUTE,
    })
    expect(at(FLAKY, 5 * MINUTE)).toEqual({
      down: true,
      started: 2,
      nextChangeMs: START_MS + 5 * MINUTE + 90 * SECOND,
    })
  })

  it('starts the first outage one period after start without an offset', () => {
    const schedule: OutageSchedule = { everyMs: 5 * MINUTE, forMs: 90 * SECOND, mode: 'silent' }
    expect(at(schedule, 0)).toEqual({
      down: false,
      started: 0,
      nextChangeMs: START_MS + 5 * MINUTE,
    })
    expect(at(schedule, 5 * MINUTE)).toMatchObject({ down: true, started: 1 })
    expect(at(schedule, 10 * MINUTE + 89 * SECOND)).toMatchObject({ down: true, started: 2 })
    expect(at(schedule, 10 * MINUTE + 90 * SECOND)).toMatchObject({ down: false, started: 2 })
  })

  it('starts down with an offset of 0', () => {
    const schedule: OutageSchedule = { everyMs: 400, forMs: 200, mode: 'silent', offsetMs: 0 }
    expect(at(schedule, 0)).toEqual({ down: true, started: 1, nextChangeMs: START_MS + 200 })
    expect(at(schedule, 200)).toEqual({ down: false, started: 1, nextChangeMs: START_MS + 400 })
    expect(at(schedule, 400)).toEqual({ down: true, started: 2, nextChangeMs: START_MS + 600 })
  })

  it('agrees with a millisecond walk: down exactly `for` of every period, changes where it says', () => {
    const schedule: OutageSchedule = { everyMs: 400, forMs: 150, mode: 'silent', offsetMs: 70 }
    let downMs = 0
    let previous = at(schedule, 0)
    for (let t = 1; t < 70 + 10 * 400; t++) {
      const phase = at(schedule, t)
      if (phase.down) downMs++
      if (phase.down !== previous.down) expect(previous.nextChangeMs - START_MS, `t=${t}`).toBe(t)
      else expect(phase.nextChangeMs).toBe(previous.nextChangeMs)
      expect(phase.nextChangeMs).toBeGreaterThan(START_MS + t)
      previous = phase
    }
    expect(downMs).toBe(10 * 150)
    expect(previous.started).toBe(10)
  })

  it('counts from the device start, not from the epoch', () => {
    const schedule: OutageSchedule = { everyMs: 400, forMs: 200, mode: 'disconnect' }
    const lateStart = START_MS + 123
    expect(outagePhase(schedule, lateStart, lateStart + 399).down).toBe(false)
    expect(outagePhase(schedule, lateStart, lateStart + 400)).toEqual({
      down: true,
      started: 1,
      nextChangeMs: lateStart + 600,
    })
  })
})

describe('isOutageMode', () => {
  it('knows silent and disconnect only', () => {
    expect(isOutageMode('silent')).toBe(true)
    expect(isOutageMode('disconnect')).toBe(true)
    expect(isOutageMode('off')).toBe(false)
    expect(isOutageMode(undefined)).toBe(false)
  })
})
