import { describe, expect, it } from 'vitest'
import {
  createDeviceIdleSweeper,
  type DeviceIdleSweeper,
  type DeviceStateHolder,
  effectiveIdleReleaseMs,
  longestRuleWindowMs,
  MIN_AUTO_IDLE_RELEASE_MS,
} from '../../../src/rules/device-idle.ts'
import { captureLogs } from '../../helpers/log-capture.ts'
import { brief, type Harness, rulesFrom, startEngine } from './harness.ts'

const MIN = 60_000
const HOUR = 3_600_000
const IDLE_MS = 10 * MIN

const hot = { id: 'hot', kind: 'threshold', match: { metric: 'temperature' }, above: 30 }
const silent = {
  id: 'silent',
  kind: 'deadman',
  match: { device: 'dev-*', metric: 'temperature' },
  after: '2m',
}

/** The engine harness plus a sweeper over its bus, on the same manual clock (no timer runs). */
function setup(
  rules: Array<Record<string, unknown>>,
  extraHolders: DeviceStateHolder[] = [],
): Harness & { idle: DeviceIdleSweeper; lines: () => Array<Record<string, unknown>> } {
  const h = startEngine(rulesFrom(...rules))
  const capture = captureLogs('info')
  const idle = createDeviceIdleSweeper(
    {
      bus: h.bus,
      log: capture.log,
      now: () => h.clock.now,
      holders: [{ name: 'rule-engine', releaseDevice: h.engine.forgetDevice }, ...extraHolders],
    },
    { idleMs: IDLE_MS, sweepEveryMs: 1e9 },
  )
  idle.start()
  return Object.assign(h, { idle, lines: () => capture.lines })
}

describe('release time', () => {
  it('auto is 4x the longest rule window, at least a day; a set value is taken as is', () => {
    const rules = rulesFrom(
      hot,
      silent,
      { ...hot, id: 'slow', for: '8h' },
      { id: 'jump', kind: 'rate', match: { metric: 'co2' }, delta: 5, per: '1m', cooldown: '3h' },
    )
    expect(longestRuleWindowMs(rules)).toBe(8 * HOUR)
    expect(effectiveIdleReleaseMs('auto', rules)).toBe(32 * HOUR)
    expect(effectiveIdleReleaseMs('auto', rulesFrom(hot, silent))).toBe(MIN_AUTO_IDLE_RELEASE_MS)
    expect(effectiveIdleReleaseMs('auto', [])).toBe(86_400_000)
    expect(effectiveIdleReleaseMs(5_000, rules)).toBe(5_000)
    expect(effectiveIdleReleaseMs(0, rules)).toBe(0)
  })
})

describe('idle device release', () => {
  it("releases a device's rule state once it is idle for the release time, and logs the count", () => {
    const h = setup([hot])
    for (let i = 0; i < 100; i++) h.send(`dev-${i}`, 'temperature', 20, 1_000)
    h.clock.now = 5 * MIN
    h.send('dev-0', 'temperature', 21, 2_000)
    expect(h.engine.stats()).toMatchObject({ keys: 100, devices: 100 })
    expect(h.idle.stats().tracked).toBe(100)

    // Not idle long enough yet: nothing goes.
    expect(h.idle.sweep(IDLE_MS - 1)).toBe(0)
    expect(h.engine.stats().keys).toBe(100)
    // dev-0 spoke at 5 min, the others at 0.
    expect(h.idle.sweep(IDLE_MS)).toBe(99)
    expect(h.engine.stats()).toMatchObject({ keys: 1, devices: 1, keysForgotten: 99 })
    expect(h.idle.stats()).toMatchObject({ tracked: 1, released: 99 })
    expect(h.idle.sweep(5 * MIN + IDLE_MS)).toBe(1)
    expect(h.engine.stats()).toMatchObject({ keys: 0, devices: 0 })
    expect(h.idle.stats().tracked).toBe(0)
    const released = h.lines().filter((l) => l.msg === 'idle devices released')
    expect(released.map((l) => l.released)).toEqual([99, 1])
    expect(h.alerts).toEqual([])
  })

  it('a released device that comes back is a new one: its alert fires again, exactly once', () => {
    const h = setup([{ ...hot, cooldown: '1m' }])
    h.send('dev-1', 'temperature', 35, 1_000)
    h.send('dev-1', 'temperature', 20, 2_000)
    expect(brief(h.alerts)).toEqual(['firing@1000', 'resolved@2000'])
    h.idle.sweep(IDLE_MS)
    expect(h.engine.stats().keys).toBe(0)

    // Back, with device timestamps from before (its clock was reset): still evaluated, as new.
    h.clock.now = IDLE_MS + 1
    h.send('dev-1', 'temperature', 36, 500)
    h.send('dev-1', 'temperature', 37, 600)
    expect(brief(h.alerts)).toEqual(['firing@1000', 'resolved@2000', 'firing@500'])
    expect(h.engine.stats().keys).toBe(1)
    h.send('dev-1', 'temperature', 20, 700)
    expect(brief(h.alerts)).toEqual(['firing@1000', 'resolved@2000', 'firing@500', 'resolved@700'])
  })

  it('keeps a firing alert while the device is idle; the reading that clears it resolves it', () => {
    const h = setup([
      hot,
      { ...hot, id: 'warm', above: 25 },
      { id: 'cold', kind: 'threshold', match: { metric: 'temperature' }, below: 0 },
    ])
    h.send('dev-1', 'temperature', 35, 1_000)
    expect(h.engine.stats().keys).toBe(3)
    expect(h.idle.sweep(IDLE_MS)).toBe(0)
    h.clock.now = 50 * IDLE_MS
    expect(h.idle.sweep(50 * IDLE_MS)).toBe(0)
    // Only the firing keys stay; the quiet rule's key is gone.
    expect(h.engine.stats().keys).toBe(2)
    expect(h.idle.stats().tracked).toBe(1)
    expect(h.engine.firingCounts()).toEqual(
      new Map([
        ['hot', 1],
        ['warm', 1],
        ['cold', 0],
      ]),
    )

    h.send('dev-1', 'temperature', 20, 2_000)
    expect(h.alerts.map((a) => `${a.ruleId} ${a.state}@${a.ts}`)).toEqual([
      'hot firing@1000',
      'warm firing@1000',
      'hot resolved@2000',
      'warm resolved@2000',
    ])
    expect(h.idle.sweep(51 * IDLE_MS)).toBe(1)
    expect(h.engine.stats().keys).toBe(0)
  })

  it('a deadman watching a silent device fires first; its alert is resolved and released one release time later', () => {
    const h = setup([silent])
    h.at(1_000)
    h.send('dev-1', 'temperature', 20, 1_000)
    // Release time shorter than the deadman's `after` would be: the armed deadline holds.
    h.idle.setIdleMs(MIN)
    h.clock.now = MIN + 1_000
    expect(h.idle.sweep(h.clock.now)).toBe(0)
    expect(h.engine.stats()).toMatchObject({ keys: 1, deadlines: 1 })
    h.idle.setIdleMs(IDLE_MS)

    // The silence is reported at its deadline, 2 min after the last reading.
    h.at(3 * MIN)
    expect(brief(h.alerts)).toEqual([`firing@${2 * MIN + 1_000}`])
    // Idle for the release time, but the alert has been firing for less: kept.
    h.at(IDLE_MS + 1_000)
    expect(h.idle.sweep(h.clock.now)).toBe(0)
    expect(h.engine.stats().keys).toBe(1)
    // The release time after it fired: resolved, saying why, and released.
    h.at(2 * MIN + 1_000 + IDLE_MS)
    expect(h.idle.sweep(h.clock.now)).toBe(1)
    expect(brief(h.alerts)).toEqual([`firing@${2 * MIN + 1_000}`, `resolved@${h.clock.now}`])
    expect(h.alerts[1]?.message).toMatch(/stopped watching the device \(DEVICE_IDLE_RELEASE\)/)
    expect(h.engine.stats()).toMatchObject({ keys: 0, deadlines: 0 })
    expect(h.engine.firingCounts().get('silent')).toBe(0)

    // Back: watched again from its first reading, as a new device.
    h.send('dev-1', 'temperature', 20, h.clock.now)
    expect(h.alerts).toHaveLength(2)
    expect(h.engine.stats()).toMatchObject({ keys: 1, deadlines: 1 })
    h.at(h.clock.now + 2 * MIN + 1_000)
    expect(h.alerts.map((a) => a.state)).toEqual(['firing', 'resolved', 'firing'])
  })

  it('releases nothing of a device a holder reports active (connected), and asks again later', () => {
    const connected = new Set(['dev-1'])
    const presenceReleased: string[] = []
    const h = setup(
      [hot],
      [
        {
          name: 'presence',
          isActive: (id) => connected.has(id),
          releaseDevice: (id) => {
            presenceReleased.push(id)
            return 'released'
          },
        },
      ],
    )
    h.send('dev-1', 'temperature', 20, 1_000)
    h.send('dev-2', 'temperature', 20, 1_000)
    expect(h.idle.sweep(IDLE_MS)).toBe(1)
    expect(h.engine.stats().keys).toBe(1)
    expect(h.idle.stats().tracked).toBe(1)
    expect(presenceReleased).toEqual(['dev-2'])
    connected.delete('dev-1')
    expect(h.idle.sweep(IDLE_MS + 1)).toBe(1)
    expect(h.engine.stats().keys).toBe(0)
    expect(presenceReleased).toEqual(['dev-2', 'dev-1'])
  })

  it('a device the engine keeps (firing alert) keeps the state of the holders after it', () => {
    const presenceReleased: string[] = []
    const h = setup(
      [hot],
      [
        {
          name: 'presence',
          releaseDevice: (id) => {
            presenceReleased.push(id)
            return 'released'
          },
        },
      ],
    )
    h.send('dev-1', 'temperature', 35, 1_000)
    h.send('dev-2', 'temperature', 20, 1_000)
    expect(h.idle.sweep(IDLE_MS)).toBe(1)
    expect(presenceReleased).toEqual(['dev-2'])
  })

  it('release time 0 releases nothing, and tracks nothing', () => {
    const h = setup([hot])
    h.send('dev-0', 'temperature', 20, 1_000)
    h.idle.setIdleMs(0)
    h.send('dev-1', 'temperature', 20, 1_000)
    expect(h.idle.sweep(1e12)).toBe(0)
    expect(h.engine.stats().keys).toBe(2)
    expect(h.idle.stats().tracked).toBe(0)
  })
})
