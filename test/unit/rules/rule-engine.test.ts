import { describe, expect, it, vi } from 'vitest'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import type { Alert } from '../../../src/contract/types.ts'
import { GatewayError } from '../../../src/errors.ts'
import { createRuleEngine } from '../../../src/rules/rule-engine.ts'
import type { RuleHandler, Verdict } from '../../../src/rules/rule-handler.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { rulesFrom, startEngine } from './harness.ts'

const highTemp = {
  id: 'high-temperature',
  kind: 'threshold',
  match: { metric: 'temperature' },
  above: 30,
  severity: 'major',
}

/** A hand-written handler through the same interface: proves the engine knows no kind. */
function spyHandler(ruleId: string, metric: string, verdicts: Verdict[] = []) {
  const evaluate = vi.fn((_state: { n: number }, _reading, _firing: boolean): Verdict => {
    return verdicts.shift() ?? 'hold'
  })
  const handler: RuleHandler<{ n: number }> = {
    ruleId,
    kind: 'spy',
    severity: 'info',
    match: { devices: ['*'], metric },
    definition: { id: ruleId },
    initialState: () => ({ n: 0 }),
    evaluate,
    describe: (_state, reading, transition) => ({
      value: reading.value,
      threshold: 0,
      message: `${ruleId} ${transition}`,
    }),
  }
  return { handler: handler as RuleHandler, evaluate }
}

describe('rule engine: alert lifecycle', () => {
  it('emits one firing alert for 10 breaching readings, then one resolved', () => {
    const h = startEngine(rulesFrom(highTemp))
    for (let i = 0; i < 10; i++) h.send('dev-1', 'temperature', 31 + i, 1_000 + i)
    expect(h.alerts).toHaveLength(1)
    for (let i = 0; i < 5; i++) h.send('dev-1', 'temperature', 20, 2_000 + i)
    expect(h.alerts.map((a) => a.state)).toEqual(['firing', 'resolved'])
  })

  it('fills every Alert field from the rule and the triggering reading', () => {
    const h = startEngine(rulesFrom(highTemp))
    h.send('dev-1', 'temperature', 35, 1_764_165_915_123)
    h.send('dev-1', 'temperature', 28, 1_764_165_975_123)
    expect(h.alerts).toEqual<Alert[]>([
      {
        id: 'high-temperature:dev-1',
        ruleId: 'high-temperature',
        kind: 'threshold',
        deviceId: 'dev-1',
        metric: 'temperature',
        severity: 'major',
        state: 'firing',
        value: 35,
        threshold: 30,
        since: 1_764_165_915_123,
        ts: 1_764_165_915_123,
        message: 'dev-1 temperature 35 > 30',
        flapping: false,
      },
      {
        id: 'high-temperature:dev-1',
        ruleId: 'high-temperature',
        kind: 'threshold',
        deviceId: 'dev-1',
        metric: 'temperature',
        severity: 'major',
        state: 'resolved',
        value: 28,
        threshold: 30,
        since: 1_764_165_975_123,
        ts: 1_764_165_975_123,
        message: 'dev-1 temperature 28 no longer > 30',
        flapping: false,
      },
    ])
  })

  it('keeps state per (rule, device): devices do not share for periods or alerts', () => {
    const h = startEngine(rulesFrom({ ...highTemp, for: '10s' }))
    h.send('a', 'temperature', 31, 0)
    h.send('b', 'temperature', 31, 5_000)
    h.send('a', 'temperature', 31, 10_000)
    h.send('b', 'temperature', 31, 10_000)
    h.send('b', 'temperature', 31, 15_000)
    expect(h.alerts.map((a) => `${a.deviceId}:${a.state}@${a.ts}`)).toEqual([
      'a:firing@10000',
      'b:firing@15000',
    ])
  })

  it('alerts() gives the latest alert of every key', () => {
    const h = startEngine(rulesFrom(highTemp, { ...highTemp, id: 'very-high', above: 40 }))
    h.send('a', 'temperature', 45, 1)
    h.send('b', 'temperature', 35, 2)
    h.send('a', 'temperature', 35, 3)
    const state = h.engine
      .alerts()
      .map((a) => `${a.ruleId}/${a.deviceId}:${a.state}@${a.since}`)
      .sort()
    expect(state).toEqual([
      'high-temperature/a:firing@1',
      'high-temperature/b:firing@2',
      'very-high/a:resolved@3',
    ])
  })
})

describe('rule engine: out-of-order readings are ignored for state', () => {
  it('a late non-breaching reading does not interrupt a for period', () => {
    const h = startEngine(rulesFrom({ ...highTemp, for: '30s' }))
    h.send('dev-1', 'temperature', 31, 0)
    h.send('dev-1', 'temperature', 31, 20_000)
    h.send('dev-1', 'temperature', 20, 10_000) // late: describes the past
    h.send('dev-1', 'temperature', 31, 30_000)
    expect(h.alerts.map((a) => `${a.state}@${a.ts}`)).toEqual(['firing@30000'])
    expect(h.engine.stats().outOfOrder).toBe(1)
  })

  it('a late reading neither resolves nor re-fires', () => {
    const h = startEngine(rulesFrom(highTemp))
    h.send('dev-1', 'temperature', 35, 10_000)
    h.send('dev-1', 'temperature', 20, 9_000)
    expect(h.alerts.map((a) => a.state)).toEqual(['firing'])
    h.send('dev-1', 'temperature', 20, 11_000)
    h.send('dev-1', 'temperature', 35, 10_500)
    expect(h.alerts.map((a) => a.state)).toEqual(['firing', 'resolved'])
    expect(h.engine.stats().outOfOrder).toBe(2)
  })

  it('a reading with the same timestamp is evaluated', () => {
    const h = startEngine(rulesFrom(highTemp))
    h.send('dev-1', 'temperature', 20, 5_000)
    h.send('dev-1', 'temperature', 35, 5_000)
    expect(h.alerts.map((a) => a.state)).toEqual(['firing'])
    expect(h.engine.stats().outOfOrder).toBe(0)
  })

  it('order is judged per key: another device may be behind', () => {
    const h = startEngine(rulesFrom(highTemp))
    h.send('a', 'temperature', 20, 10_000)
    h.send('b', 'temperature', 35, 1_000)
    expect(h.alerts.map((a) => a.deviceId)).toEqual(['b'])
  })
})

describe('rule engine: matching', () => {
  it.each([
    { device: 'greenhouse-1', matched: true },
    { device: 'greenhouse-', matched: true },
    { device: 'lab-1', matched: true },
    { device: 'lab-12', matched: false },
    { device: 'office-1', matched: true },
    { device: 'office-10', matched: false },
    { device: 'x-greenhouse-1', matched: false },
    { device: 'labx1', matched: false },
  ])('device list [greenhouse-*, lab-?, office-1] vs $device: $matched', ({ device, matched }) => {
    const rules = rulesFrom({
      ...highTemp,
      match: { device: ['greenhouse-*', 'lab-?', 'office-1'], metric: 'temperature' },
    })
    const h = startEngine(rules)
    h.send(device, 'temperature', 35, 1)
    expect(h.alerts.length).toBe(matched ? 1 : 0)
  })

  it('a single glob and an exact id', () => {
    const h = startEngine(
      rulesFrom(
        { ...highTemp, id: 'glob', match: { device: '*-north', metric: 'temperature' } },
        { ...highTemp, id: 'exact', match: { device: 'hall.1', metric: 'temperature' } },
      ),
    )
    for (const device of ['a-north', 'north', 'hall.1', 'hallx1'])
      h.send(device, 'temperature', 35, 1)
    expect(h.alerts.map((a) => `${a.ruleId}/${a.deviceId}`)).toEqual([
      'glob/a-north',
      'exact/hall.1',
    ])
  })

  it('indexes by metric: a reading of another metric reaches no handler of this one', () => {
    const humidity = spyHandler('humid', 'humidity')
    const temp = spyHandler('temp', 'temperature')
    const h = startEngine([humidity.handler, temp.handler])
    for (let i = 0; i < 5; i++) h.send('dev-1', 'temperature', 20, i)
    h.send('dev-1', 'co2', 900, 10)
    expect(humidity.evaluate).not.toHaveBeenCalled()
    expect(temp.evaluate).toHaveBeenCalledTimes(5)
    h.send('dev-1', 'humidity', 50, 11)
    expect(humidity.evaluate).toHaveBeenCalledTimes(1)
    expect(h.engine.stats()).toMatchObject({ readings: 7, evaluations: 6 })
  })

  it('drives any handler through the interface (verdicts in, transitions out)', () => {
    const spy = spyHandler('custom', 'temperature', ['hold', 'breach', 'breach', 'clear', 'clear'])
    const h = startEngine([spy.handler])
    for (let i = 0; i < 5; i++) h.send('dev-1', 'temperature', i, i)
    expect(h.alerts.map((a) => `${a.message}@${a.ts}`)).toEqual([
      'custom firing@1',
      'custom resolved@3',
    ])
    expect(spy.evaluate.mock.calls.map((call) => call[2])).toEqual([
      false,
      false,
      true,
      true,
      false,
    ])
  })
})

describe('rule engine: messages', () => {
  it.each([
    {
      name: 'default above',
      fields: { above: 30 },
      values: [35, 20],
      want: ['dev-1 temperature 35 > 30', 'dev-1 temperature 20 no longer > 30'],
    },
    {
      name: 'default outside, threshold is the nearest bound',
      fields: { outside: [20, 80] },
      values: [85.5, 50],
      want: [
        'dev-1 temperature 85.5 outside [20, 80]',
        'dev-1 temperature 50 no longer outside [20, 80]',
      ],
    },
    {
      name: 'template with every placeholder',
      fields: {
        below: 10,
        message: '{ruleId}: {deviceId} {metric}={value} (limit {threshold}) {state}',
      },
      values: [5, 12],
      want: [
        'r: dev-1 temperature=5 (limit 10) firing',
        'r: dev-1 temperature=12 (limit 10) resolved',
      ],
    },
    {
      name: 'template without placeholders, braces-free text kept',
      fields: { inside: [0, 10], message: 'too cold for comfort' },
      values: [5, 50],
      want: ['too cold for comfort', 'too cold for comfort'],
    },
  ])('$name', ({ fields, values, want }) => {
    const h = startEngine(
      rulesFrom({ id: 'r', kind: 'threshold', match: { metric: 'temperature' }, ...fields }),
    )
    for (const [i, value] of values.entries()) h.send('dev-1', 'temperature', value, i)
    expect(h.alerts.map((a) => a.message)).toEqual(want)
  })

  it('threshold field of an outside alert is the bound crossed', () => {
    const h = startEngine(
      rulesFrom({ id: 'r', kind: 'threshold', match: { metric: 'humidity' }, outside: [20, 80] }),
    )
    h.send('dev-1', 'humidity', 10, 1)
    expect(h.alerts[0]?.threshold).toBe(20)
  })
})

describe('rule engine: isolation', () => {
  it('a listener that throws on alert does not stop the engine or other listeners', () => {
    const log = createSilentLogger()
    const bus = createEventBus(log)
    const thrower = vi.fn(() => {
      throw new Error('boom')
    })
    bus.on('broken', 'alert', thrower)
    const seen: Alert[] = []
    bus.on('test', 'alert', (a) => seen.push(a))
    const engine = createRuleEngine({ bus, log }, rulesFrom(highTemp))
    engine.start()
    bus.emit('reading', { deviceId: 'a', metric: 'temperature', value: 35, ts: 1 })
    bus.emit('reading', { deviceId: 'a', metric: 'temperature', value: 20, ts: 2 })
    bus.emit('reading', { deviceId: 'b', metric: 'temperature', value: 35, ts: 3 })
    expect(thrower).toHaveBeenCalledTimes(3)
    expect(seen.map((a) => `${a.deviceId}:${a.state}`)).toEqual([
      'a:firing',
      'a:resolved',
      'b:firing',
    ])
  })

  it('a handler that throws does not keep other rules from the reading', () => {
    const broken: RuleHandler = {
      ...spyHandler('broken', 'temperature').handler,
      evaluate: () => {
        throw new Error('bad handler')
      },
    }
    const h = startEngine([broken, ...rulesFrom(highTemp)])
    h.send('dev-1', 'temperature', 35, 1)
    h.send('dev-1', 'temperature', 36, 2)
    expect(h.alerts.map((a) => a.ruleId)).toEqual(['high-temperature'])
    expect(h.engine.stats().handlerErrors).toBe(2)
  })

  it('emitted alerts are frozen: a listener cannot change the engine state', () => {
    const h = startEngine(rulesFrom(highTemp))
    h.bus.on('meddler', 'alert', (a) => {
      ;(a as { state: string }).state = 'resolved'
    })
    h.send('dev-1', 'temperature', 35, 1)
    expect(h.engine.alerts()[0]?.state).toBe('firing')
  })
})

describe('rule engine: start, stop, setRules', () => {
  it('start subscribes once as rule-engine, stop unsubscribes', () => {
    const h = startEngine(rulesFrom(highTemp))
    h.engine.start()
    expect(h.bus.listenerCount('reading')).toBe(1)
    h.engine.stop()
    expect(h.bus.listenerCount('reading')).toBe(0)
    h.send('dev-1', 'temperature', 35, 1)
    expect(h.alerts).toEqual([])
    h.engine.start()
    h.send('dev-1', 'temperature', 35, 2)
    expect(h.alerts).toHaveLength(1)
  })

  it('keeps unchanged rules, keeps the lifecycle of changed ones, resolves removed ones', () => {
    const co2 = { id: 'co2', kind: 'threshold', match: { metric: 'co2' }, above: 1500 }
    const humid = { id: 'humid', kind: 'threshold', match: { metric: 'humidity' }, above: 80 }
    const h = startEngine(rulesFrom(highTemp, co2, humid))
    h.send('a', 'temperature', 35, 1)
    h.send('a', 'co2', 2000, 1)
    h.send('a', 'humidity', 90, 1)
    expect(h.alerts).toHaveLength(3)

    h.clock.now = 5_000
    const change = h.engine.setRules(rulesFrom(highTemp, { ...humid, above: 85 }))
    expect(change).toMatchObject({
      added: [],
      changed: ['humid'],
      unchanged: ['high-temperature'],
      removed: ['co2'],
    })
    // The removed rule's firing alert is resolved by the engine, on the bus too.
    expect(change.resolved).toEqual([h.alerts[3]])
    expect(h.alerts[3]).toMatchObject({
      id: 'co2:a',
      ruleId: 'co2',
      state: 'resolved',
      since: 5_000,
      ts: 5_000,
      message: 'co2 on a: rule co2 was removed; alert resolved',
    })
    expect(h.engine.rules().map((r) => r.ruleId)).toEqual(['high-temperature', 'humid'])
    expect(h.engine.alerts().map((a) => `${a.ruleId}:${a.state}`)).toEqual([
      'high-temperature:firing',
      'humid:firing',
    ])

    h.send('a', 'temperature', 36, 2) // unchanged rule: still firing, no second alert
    h.send('a', 'co2', 2500, 2) // removed rule: nothing
    h.send('a', 'humidity', 90, 2) // changed rule: firing stays firing, no duplicate
    expect(h.alerts).toHaveLength(4)
    h.send('a', 'humidity', 84, 3) // the new limit (85) judges it: resolved
    expect(h.alerts.slice(4).map((a) => `${a.ruleId}:${a.state}@${a.value}`)).toEqual([
      'humid:resolved@84',
    ])
  })

  it('rejects duplicate rule ids', () => {
    const log = createSilentLogger()
    const bus = createEventBus(log)
    const rules = [...rulesFrom(highTemp), ...rulesFrom(highTemp)]
    expect(() => createRuleEngine({ bus, log }, rules)).toThrow(GatewayError)
  })
})

describe('rule engine: a handler whose initialState throws', () => {
  it('is skipped for that device and metric; the other rules still run', () => {
    const broken: RuleHandler = {
      ...spyHandler('broken', 'temperature').handler,
      initialState: () => {
        throw new Error('no state')
      },
    }
    const h = startEngine([broken, ...rulesFrom(highTemp)])
    h.send('dev-1', 'temperature', 35, 1)
    h.send('dev-1', 'temperature', 20, 2)
    expect(h.alerts.map((a) => `${a.ruleId}:${a.state}`)).toEqual([
      'high-temperature:firing',
      'high-temperature:resolved',
    ])
    expect(h.engine.stats().handlerErrors).toBe(1)
  })
})
