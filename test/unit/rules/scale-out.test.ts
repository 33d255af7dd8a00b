import { describe, expect, it } from 'vitest'
import type { Alert } from '../../../src/contract/types.ts'
import { rulesFrom, startEngine } from './harness.ts'

/** What an engine learns from other gateway instances (src/cluster/): adopt() and release(). */

const hot = {
  id: 'hot',
  kind: 'threshold',
  match: { metric: 'temperature' },
  above: 30,
  severity: 'major',
}
const quiet = {
  id: 'quiet',
  kind: 'deadman',
  match: { metric: 'temperature' },
  after: '60s',
  severity: 'minor',
}

function firing(ts: number): Alert {
  return {
    id: 'hot:dev-1',
    ruleId: 'hot',
    kind: 'threshold',
    deviceId: 'dev-1',
    metric: 'temperature',
    severity: 'major',
    state: 'firing',
    value: 35,
    threshold: 30,
    since: ts,
    ts,
    message: 'dev-1 temperature 35 > 30',
    flapping: false,
  }
}

describe('scale-out: adopting alerts another instance published', () => {
  it('a device that moves here while firing does not fire again, and resolves here', () => {
    const h = startEngine(rulesFrom(hot))
    h.engine.adopt(firing(1_000))
    // Adopting emits nothing: the other instance published it.
    expect(h.alerts).toEqual([])
    h.send('dev-1', 'temperature', 36, 2_000)
    expect(h.alerts).toEqual([])
    h.send('dev-1', 'temperature', 20, 3_000)
    expect(h.alerts.map((a) => [a.state, a.ts])).toEqual([['resolved', 3_000]])
  })

  it('a resolve adopted after a local firing lets the next breach fire again', () => {
    const h = startEngine(rulesFrom(hot))
    h.send('dev-1', 'temperature', 35, 1_000)
    expect(h.alerts.map((a) => a.state)).toEqual(['firing'])
    h.engine.adopt({ ...firing(1_000), state: 'resolved', value: 20, ts: 2_000 })
    h.send('dev-1', 'temperature', 35, 3_000)
    expect(h.alerts.map((a) => [a.state, a.ts])).toEqual([
      ['firing', 1_000],
      ['firing', 3_000],
    ])
  })

  it('ignores older transitions, unknown rules and unmatched metrics', () => {
    const h = startEngine(rulesFrom(hot))
    h.engine.adopt(firing(5_000))
    h.engine.adopt({ ...firing(1_000), state: 'resolved' })
    h.engine.adopt({ ...firing(6_000), ruleId: 'gone', id: 'gone:dev-1' })
    h.engine.adopt({ ...firing(6_000), metric: 'humidity' })
    expect(h.engine.alerts()).toEqual([firing(5_000)])
  })
})

describe('scale-out: releasing a device that moved to another instance', () => {
  it('disarms its deadman here, and a reading here arms it again', () => {
    const h = startEngine(rulesFrom(quiet))
    h.at(1_000)
    h.send('dev-1', 'temperature', 21, 1_000)
    expect(h.engine.release('dev-1')).toBe(1)
    expect(h.engine.release('dev-1')).toBe(0)
    // The device lives on elsewhere: this instance must not call it silent.
    h.at(500_000)
    expect(h.alerts).toEqual([])
    h.send('dev-1', 'temperature', 21, 500_000)
    h.at(560_000)
    expect(h.alerts.map((a) => [a.state, a.ts])).toEqual([['firing', 560_000]])
  })

  it('keeps a deadline armed by a reading newer than the news of the move', () => {
    const h = startEngine(rulesFrom(quiet))
    h.at(1_000)
    h.send('dev-1', 'temperature', 21, 1_000)
    // The other instance took the device at 500: this instance has heard from it since.
    expect(h.engine.release('dev-1', 500)).toBe(0)
    expect(h.engine.release('dev-1', 1_000)).toBe(1)
  })
})
