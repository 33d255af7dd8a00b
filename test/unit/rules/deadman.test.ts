import { afterEach, describe, expect, it, vi } from 'vitest'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import type { Alert } from '../../../src/contract/types.ts'
import { createRuleEngine, DEADLINE_TICK_MS } from '../../../src/rules/rule-engine.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { brief, rulesFrom, startEngine, transitionsOf } from './harness.ts'

const quiet = {
  id: 'quiet',
  kind: 'deadman',
  match: { metric: 'temperature' },
  after: '60s',
  severity: 'minor',
}

describe('deadman: fires once per silence, the next reading resolves', () => {
  it('fires at the deadline (as ts), once, and resolves on the next reading', () => {
    const h = startEngine(rulesFrom(quiet))
    h.at(1_000)
    h.send('dev-1', 'temperature', 21, 1_000)
    h.at(60_999)
    expect(h.alerts).toEqual([])
    h.at(61_000)
    h.at(200_000)
    h.at(900_000)
    expect(h.alerts).toEqual<Alert[]>([
      {
        id: 'quiet:dev-1',
        ruleId: 'quiet',
        kind: 'deadman',
        deviceId: 'dev-1',
        metric: 'temperature',
        severity: 'minor',
        state: 'firing',
        value: 60,
        threshold: 60,
        since: 61_000,
        ts: 61_000,
        message: 'dev-1 temperature: no reading for 60 s (after 1m)',
        flapping: false,
      },
    ])
    h.at(905_000)
    h.send('dev-1', 'temperature', 21.5, 905_000)
    expect(h.alerts[1]).toMatchObject({
      state: 'resolved',
      value: 904,
      since: 905_000,
      ts: 905_000,
      message: 'dev-1 temperature: reporting again after 904 s of silence',
    })
    // Re-armed by that reading: the next silence fires again.
    h.at(965_000)
    expect(brief(h.alerts)).toEqual(['firing@61000', 'resolved@905000', 'firing@965000'])
  })

  it('regular readings keep it quiet; deadlines are gateway time, not reading time', () => {
    const h = startEngine(rulesFrom(quiet))
    for (let t = 0; t <= 600_000; t += 30_000) {
      h.at(t)
      // The device clock is a day behind: silence is judged on the gateway's clock.
      h.send('dev-1', 'temperature', 20, t - 86_400_000)
    }
    expect(h.alerts).toEqual([])
  })

  it('a reading that arrives after the deadline, before the tick got there, reports the silence first', () => {
    const h = startEngine(rulesFrom(quiet))
    h.at(0)
    h.send('dev-1', 'temperature', 20, 0)
    h.clock.now = 60_100 // no advance(): the tick has not run
    h.send('dev-1', 'temperature', 20, 60_100)
    expect(brief(h.alerts)).toEqual(['firing@60000', 'resolved@60100'])
  })

  it('a late (out-of-order) reading is still a sign of life', () => {
    const h = startEngine(rulesFrom(quiet))
    h.at(0)
    h.send('dev-1', 'temperature', 20, 50_000)
    h.at(40_000)
    h.send('dev-1', 'temperature', 20, 10_000) // older than the last reading
    h.at(90_000)
    expect(h.alerts).toEqual([])
    h.at(100_000)
    expect(brief(h.alerts)).toEqual(['firing@100000'])
  })

  it('keys are per device and metric; an unmatched metric arms nothing', () => {
    const h = startEngine(rulesFrom(quiet))
    h.at(0)
    h.send('a', 'temperature', 1, 0)
    h.send('a', 'humidity', 1, 0)
    h.at(30_000)
    h.send('b', 'temperature', 1, 30_000)
    expect(h.engine.stats().deadlines).toBe(2)
    h.at(60_000)
    expect(h.alerts.map((a) => `${a.deviceId}@${a.ts}`)).toEqual(['a@60000'])
    h.at(90_000)
    expect(h.alerts.map((a) => `${a.deviceId}@${a.ts}`)).toEqual(['a@60000', 'b@90000'])
  })

  it('works in reading time through transitionsOf (dry-run style clock)', () => {
    expect(
      transitionsOf({ ...quiet, after: '10s' }, [
        [1, 0],
        [1, 9_000],
        [1, 25_000],
        [1, 30_000],
      ]),
    ).toEqual(['firing@19000', 'resolved@25000'])
  })
})

describe('deadman: metric glob', () => {
  it('watches each metric; fires on the first silent one, resolves when none is silent', () => {
    const h = startEngine(
      rulesFrom({ ...quiet, id: 'any', match: { device: 'dev-*', metric: '*' }, after: '10s' }),
    )
    h.at(0)
    h.send('dev-1', 'temperature', 1, 0)
    h.send('dev-1', 'humidity', 1, 0)
    h.at(5_000)
    h.send('dev-1', 'humidity', 1, 5_000)
    h.at(10_000) // temperature silent
    h.at(15_000) // humidity silent too: same alert, still firing
    h.at(16_000)
    h.send('dev-1', 'temperature', 1, 16_000) // humidity still silent
    h.at(17_000)
    h.send('dev-1', 'humidity', 1, 17_000) // none silent
    expect(h.alerts.map((a) => `${a.state}:${a.metric}@${a.ts}`)).toEqual([
      'firing:temperature@10000',
      'resolved:humidity@17000',
    ])
  })
})

describe('deadman: 100,000 keys in one wheel', () => {
  it('all fire once at their deadline, all resolve on the next reading; re-arming is O(1)', () => {
    const n = 100_000
    const h = startEngine(rulesFrom(quiet))
    const ids = Array.from({ length: n }, (_, i) => `dev-${i}`)
    h.at(0)
    for (const id of ids) h.send(id, 'temperature', 20, 0)
    expect(h.engine.stats()).toMatchObject({ keys: n, deadlines: n })

    // Re-arm: every key reports again. The wheel is not touched (lazy re-arm: a field write).
    h.at(30_000)
    const before = h.engine.stats().deadlineRelinks
    const started = performance.now()
    for (const id of ids) h.send(id, 'temperature', 20, 30_000)
    const perReadingUs = ((performance.now() - started) * 1_000) / n
    expect(h.engine.stats().deadlineRelinks).toBe(before)
    expect(h.engine.stats().deadlines).toBe(n)
    // Generous bound: about 1 µs on a laptop; it guards against O(keys) work per reading.
    expect(perReadingUs).toBeLessThan(50)

    // The first deadlines (60 s) are stale now: one lazy relink each, no alert.
    h.at(60_000)
    expect(h.alerts).toHaveLength(0)
    expect(h.engine.stats().deadlineRelinks).toBe(before + n)
    h.at(89_999)
    expect(h.alerts).toHaveLength(0)
    h.at(90_000)
    expect(h.alerts).toHaveLength(n)
    expect(h.alerts.every((a) => a.state === 'firing' && a.ts === 90_000)).toBe(true)
    expect(new Set(h.alerts.map((a) => a.id)).size).toBe(n)
    expect(h.engine.stats().deadlines).toBe(0)
    h.at(500_000)
    expect(h.alerts).toHaveLength(n)
    expect(h.engine.firingCounts().get('quiet')).toBe(n)

    h.at(600_000)
    for (const id of ids) h.send(id, 'temperature', 20, 600_000)
    expect(h.alerts).toHaveLength(2 * n)
    expect(h.alerts.slice(n).every((a) => a.state === 'resolved')).toBe(true)
    expect(h.engine.firingCounts().get('quiet')).toBe(0)
    expect(h.engine.stats().deadlines).toBe(n)
  })
})

describe('deadman: start-up (watch and restore)', () => {
  it('watch arms devices known from the store; a device that never comes back is reported', () => {
    const h = startEngine(rulesFrom(quiet), { start: false })
    h.clock.now = 1_000_000
    const armed = h.engine.watch([
      { deviceId: 'recent', metric: 'temperature', lastSeenMs: 990_000 },
      { deviceId: 'long-gone', metric: 'temperature', lastSeenMs: 10_000 },
      { deviceId: 'other-metric', metric: 'co2', lastSeenMs: 990_000 },
    ])
    expect(armed).toBe(2)
    h.engine.start()
    // A recent device keeps its deadline (last seen + after); one whose deadline passed while the
    // gateway was down gets a full period from start-up.
    h.at(1_050_000)
    expect(h.alerts.map((a) => `${a.deviceId}@${a.ts}`)).toEqual(['recent@1050000'])
    h.at(1_060_000)
    expect(h.alerts.map((a) => `${a.deviceId}@${a.ts}`)).toEqual([
      'recent@1050000',
      'long-gone@1060000',
    ])
  })

  it('watch does not re-arm a key that already had a reading', () => {
    const h = startEngine(rulesFrom(quiet))
    h.at(100_000)
    h.send('a', 'temperature', 1, 100_000)
    expect(h.engine.watch([{ deviceId: 'a', metric: 'temperature', lastSeenMs: 99_000 }])).toBe(0)
  })

  it('restore: a firing deadman stays firing (no duplicate), and resolves on a reading', () => {
    const h = startEngine(rulesFrom(quiet), { start: false })
    h.clock.now = 500_000
    const stored: Alert = {
      id: 'quiet:a',
      ruleId: 'quiet',
      kind: 'deadman',
      deviceId: 'a',
      metric: 'temperature',
      severity: 'minor',
      state: 'firing',
      value: 60,
      threshold: 60,
      since: 100_000,
      ts: 100_000,
      message: 'a temperature: no reading for 60 s (after 1m)',
      flapping: false,
    }
    const resolvedB: Alert = {
      ...stored,
      id: 'quiet:b',
      deviceId: 'b',
      state: 'resolved',
      since: 200_000,
      ts: 200_000,
    }
    expect(h.engine.restore([stored, resolvedB])).toEqual({ restored: 2, resolved: [] })
    h.engine.start()
    expect(h.engine.alerts()).toEqual([stored, resolvedB])
    // b is armed from start-up; a is already firing and is not fired again.
    h.at(560_000)
    expect(h.alerts.map((a) => `${a.deviceId}:${a.state}`)).toEqual(['b:firing'])
    h.send('a', 'temperature', 20, 561_000)
    expect(h.alerts[1]).toMatchObject({
      deviceId: 'a',
      state: 'resolved',
      message: 'a temperature: reporting again',
    })
  })
})

describe('deadman: the engine tick', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it(`advances deadlines every ${DEADLINE_TICK_MS} ms while started, not after stop()`, () => {
    vi.useFakeTimers({ now: 1_000_000 })
    const log = createSilentLogger()
    const bus = createEventBus(log)
    const alerts: Alert[] = []
    bus.on('test', 'alert', (a) => alerts.push(a))
    const engine = createRuleEngine({ bus, log }, rulesFrom({ ...quiet, after: '2s' }))
    engine.start()
    bus.emit('reading', { deviceId: 'a', metric: 'temperature', value: 1, ts: 1 })
    vi.advanceTimersByTime(1_900)
    expect(alerts).toHaveLength(0)
    vi.advanceTimersByTime(DEADLINE_TICK_MS * 2)
    expect(brief(alerts)).toEqual(['firing@1002000'])
    engine.stop()
    bus.emit('reading', { deviceId: 'b', metric: 'temperature', value: 1, ts: 1 })
    vi.advanceTimersByTime(10_000)
    expect(alerts).toHaveLength(1)
    expect(vi.getTimerCount()).toBe(0)
  })
})
