import { describe, expect, it } from 'vitest'
import type { Alert } from '../../../src/contract/types.ts'
import { createDeviceRegistry } from '../../../src/rules/device-registry.ts'
import { brief, rulesFrom, type Series, startEngine } from './harness.ts'

const hot = {
  id: 'hot',
  kind: 'threshold',
  match: { metric: 'temperature' },
  above: 30,
  severity: 'major',
}

function run(rule: Record<string, unknown>, series: Series): Alert[] {
  const h = startEngine(rulesFrom(rule))
  for (const [value, ts] of series) {
    h.at(ts)
    h.send('dev-1', 'temperature', value, ts)
  }
  return h.alerts
}

describe('cooldown (reading time)', () => {
  const cases: Array<{
    name: string
    fields: Record<string, unknown>
    series: Series
    want: string[]
  }> = [
    {
      name: 'a breach within the cooldown is held and fires on the first breaching reading after it',
      fields: { cooldown: '60s' },
      series: [
        [35, 0],
        [20, 10_000], // resolved: cooldown until 70 000
        [35, 20_000], // held
        [36, 69_999], // held
        [37, 70_000], // cooldown over: fires
        [38, 80_000],
      ],
      want: ['firing@0', 'resolved@10000', 'firing@70000'],
    },
    {
      name: 'a breach that ends within the cooldown never fires',
      fields: { cooldown: '60s' },
      series: [
        [35, 0],
        [20, 10_000],
        [35, 20_000],
        [20, 30_000],
        [20, 80_000],
      ],
      want: ['firing@0', 'resolved@10000'],
    },
    {
      name: 'resolving is never held',
      fields: { cooldown: '1h' },
      series: [
        [35, 0],
        [20, 1],
      ],
      want: ['firing@0', 'resolved@1'],
    },
    {
      name: 'held in a hysteresis band after the cooldown: waits for a breaching value',
      fields: { cooldown: '60s', hysteresis: 2 },
      series: [
        [35, 0],
        [20, 10_000],
        [31, 20_000], // breach, held
        [29, 75_000], // in the band: condition still holds, but this is no breaching reading
        [30.5, 80_000], // breaching: fires
      ],
      want: ['firing@0', 'resolved@10000', 'firing@80000'],
    },
    {
      name: 'the first firing is not held (no resolve yet)',
      fields: { cooldown: '1h' },
      series: [[35, 5]],
      want: ['firing@5'],
    },
  ]
  it.each(cases)('$name', ({ fields, series, want }) => {
    expect(brief(run({ ...hot, ...fields }, series))).toEqual(want)
  })
})

describe('flapping', () => {
  const flapping = { flapping: { transitions: 3, window: '10m' } }

  it('more than N changes within the window: one flapping alert, then held until stable', () => {
    const alerts = run({ ...hot, ...flapping }, [
      [35, 0], // change 1: firing
      [20, 60_000], // 2: resolved
      [35, 120_000], // 3: firing
      [20, 180_000], // 4 within 10 min: flapping, published as resolved + flapping
      [35, 240_000], // held
      [20, 300_000], // held
      [35, 360_000], // held: last change
      [36, 900_000], // 9 min stable: still flapping
      [36, 960_000], // 10 min stable: flapping over, state firing differs from published: transition
      [20, 1_000_000], // normal again
    ])
    expect(brief(alerts)).toEqual([
      'firing@0',
      'resolved@60000',
      'firing@120000',
      'resolved@180000 flapping',
      'firing@960000',
      'resolved@1000000',
    ])
    expect(alerts[3]?.message).toBe(
      'dev-1 temperature 20 no longer > 30 [flapping: further changes held until stable]',
    )
    expect(alerts[4]).toMatchObject({
      since: 960_000,
      message: 'dev-1 temperature 36 > 30 [stable again]',
    })
  })

  it('settling in the published state sends just the flapping:false notice (same since)', () => {
    const alerts = run({ ...hot, ...flapping }, [
      [35, 0],
      [20, 60_000],
      [35, 120_000],
      [20, 180_000], // flapping, resolved
      [35, 200_000], // held
      [20, 220_000], // held: back to resolved
      [20, 820_000], // stable for 10 min: notice
    ])
    expect(brief(alerts)).toEqual([
      'firing@0',
      'resolved@60000',
      'firing@120000',
      'resolved@180000 flapping',
      'resolved@820000',
    ])
    expect(alerts[4]).toMatchObject({ state: 'resolved', since: 180_000, flapping: false })
  })

  it('N changes, or more spread wider than the window, are not flapping', () => {
    expect(
      brief(
        run({ ...hot, ...flapping }, [
          [35, 0],
          [20, 200_000],
          [35, 400_000],
          [20, 601_000], // 4th change, but 601 s after the 1st
          [35, 1_300_000], // 5th: the last 4 span 900 s
        ]),
      ),
    ).toEqual(['firing@0', 'resolved@200000', 'firing@400000', 'resolved@601000', 'firing@1300000'])
  })

  it('can flap again after settling', () => {
    const series: Array<[number, number]> = []
    for (let i = 0; i < 4; i++) series.push([i % 2 === 0 ? 35 : 20, i * 1_000])
    series.push([20, 700_000]) // settles as resolved (notice)
    for (let i = 0; i < 4; i++) series.push([i % 2 === 0 ? 35 : 20, 800_000 + i * 1_000])
    expect(brief(run({ ...hot, ...flapping }, series))).toEqual([
      'firing@0',
      'resolved@1000',
      'firing@2000',
      'resolved@3000 flapping',
      'resolved@700000',
      'firing@800000',
      'resolved@801000',
      'firing@802000',
      'resolved@803000 flapping',
    ])
  })
})

describe('alert identity, since and message templates', () => {
  it('id is rule:device for every transition; since is when the current state began', () => {
    const alerts = run(hot, [
      [35, 1_000],
      [36, 2_000],
      [20, 3_000],
    ])
    expect(alerts.map((a) => [a.id, a.kind, a.state, a.since, a.ts])).toEqual([
      ['hot:dev-1', 'threshold', 'firing', 1_000, 1_000],
      ['hot:dev-1', 'threshold', 'resolved', 3_000, 3_000],
    ])
    expect(alerts.every(Object.isFrozen)).toBe(true)
  })

  it('renders every placeholder; numbers without float noise', () => {
    const h = startEngine(
      rulesFrom({
        id: 'jump',
        kind: 'rate',
        match: { metric: 'temperature' },
        delta: 5,
        per: '1m',
        severity: 'minor',
        message: '{ruleId}/{kind}/{severity}: {deviceId} {metric} {value} vs {threshold} ({state})',
      }),
    )
    h.send('dev-1', 'temperature', 21, 0)
    h.send('dev-1', 'temperature', 26.1, 30_000)
    expect(h.alerts[0]?.message).toBe('jump/rate/minor: dev-1 temperature 5.1 vs 5 (firing)')
    expect(h.alerts[0]?.value).toBe(5.1)
  })
})

describe('matching: metric globs and tags', () => {
  it('a metric glob keeps state per metric; the alert fires on the first, resolves when none breaches', () => {
    const h = startEngine(
      rulesFrom({ ...hot, id: 'any-temp', match: { metric: 'temp*' }, above: 30 }),
    )
    h.send('dev-1', 'temp_in', 35, 1)
    h.send('dev-1', 'temp_out', 36, 2)
    h.send('dev-1', 'humidity', 99, 3) // not matched
    h.send('dev-1', 'temp_in', 20, 4) // temp_out still breaches
    h.send('dev-1', 'temp_out', 20, 5)
    expect(h.alerts.map((a) => `${a.state}:${a.metric}@${a.ts}`)).toEqual([
      'firing:temp_in@1',
      'resolved:temp_out@5',
    ])
    expect(new Set(h.alerts.map((a) => a.id))).toEqual(new Set(['any-temp:dev-1']))
  })

  it('out-of-order is judged per metric under a glob', () => {
    const h = startEngine(rulesFrom({ ...hot, match: { metric: '*' } }))
    h.send('dev-1', 'a', 35, 10)
    h.send('dev-1', 'b', 35, 5) // older than a's reading, but b's first
    expect(h.engine.stats()).toMatchObject({ outOfOrder: 0, evaluations: 2 })
  })

  it('tags: the device must have all of them in the registry', () => {
    const registry = createDeviceRegistry([
      { id: 'gh-1', tags: { site: 'greenhouse', zone: 'north' } },
      { id: 'gh-2', tags: { site: 'greenhouse', zone: 'south' } },
      { id: 'office-1', tags: { site: 'office', zone: 'north' } },
    ])
    const h = startEngine(
      rulesFrom({
        ...hot,
        match: { metric: 'temperature', tags: { site: 'greenhouse', zone: 'north' } },
      }),
      { registry },
    )
    for (const id of ['gh-1', 'gh-2', 'office-1', 'unregistered']) h.send(id, 'temperature', 35, 1)
    expect(h.alerts.map((a) => a.deviceId)).toEqual(['gh-1'])
  })

  it('exact-metric and glob-metric rules on one reading fire in rule order', () => {
    const h = startEngine(
      rulesFrom(
        { ...hot, id: 'glob-first', match: { metric: 'temp*' } },
        { ...hot, id: 'exact', match: { metric: 'temperature' } },
        { ...hot, id: 'glob-last', match: { metric: '*' } },
      ),
    )
    h.send('d', 'temperature', 35, 1)
    expect(h.alerts.map((a) => a.ruleId)).toEqual(['glob-first', 'exact', 'glob-last'])
  })
})

describe('restore', () => {
  const firing: Alert = {
    id: 'hot:dev-1',
    ruleId: 'hot',
    kind: 'threshold',
    deviceId: 'dev-1',
    metric: 'temperature',
    severity: 'major',
    state: 'firing',
    value: 35,
    threshold: 30,
    since: 1_000,
    ts: 1_000,
    message: 'dev-1 temperature 35 > 30',
    flapping: false,
  }

  it('a firing key stays firing: no emit, no duplicate on breach, resolves normally', () => {
    const h = startEngine(rulesFrom({ ...hot, hysteresis: 1 }), { start: false })
    expect(h.engine.restore([firing])).toEqual({ restored: 1, resolved: [] })
    h.engine.start()
    expect(h.alerts).toEqual([])
    expect(h.engine.alerts()).toEqual([firing])
    expect(h.engine.firingCounts()).toEqual(new Map([['hot', 1]]))
    h.send('dev-1', 'temperature', 36, 2_000) // still breaching: no duplicate
    h.send('dev-1', 'temperature', 29.5, 3_000) // hysteresis band holds: restored as firing
    expect(h.alerts).toEqual([])
    h.send('dev-1', 'temperature', 20, 4_000)
    expect(h.alerts).toHaveLength(1)
    expect(h.alerts[0]).toMatchObject({ id: 'hot:dev-1', state: 'resolved', since: 4_000 })
  })

  it('a resolved key starts its cooldown from the stored resolve', () => {
    const h = startEngine(rulesFrom({ ...hot, cooldown: '1m' }), { start: false })
    h.engine.restore([{ ...firing, state: 'resolved', since: 10_000, ts: 10_000 }])
    h.engine.start()
    h.send('dev-1', 'temperature', 35, 20_000)
    expect(h.alerts).toEqual([])
    h.send('dev-1', 'temperature', 35, 70_000)
    expect(brief(h.alerts)).toEqual(['firing@70000'])
  })

  it('the newest stored transition wins when several are given for a key', () => {
    const h = startEngine(rulesFrom(hot), { start: false })
    h.engine.restore([
      { ...firing, state: 'resolved', since: 5_000, ts: 5_000 },
      firing, // older
    ])
    expect(h.engine.alerts().map((a) => a.state)).toEqual(['resolved'])
  })

  it('resolves stored firing alerts of rules no longer in force (or no longer matching)', () => {
    const h = startEngine(
      rulesFrom({ ...hot, match: { device: 'dev-1', metric: 'temperature' } }),
      {
        start: false,
      },
    )
    h.clock.now = 9_000
    const result = h.engine.restore([
      { ...firing, id: 'gone:dev-1', ruleId: 'gone' },
      { ...firing, id: 'hot:dev-2', deviceId: 'dev-2' },
      { ...firing, id: 'gone:dev-3', ruleId: 'gone', deviceId: 'dev-3', state: 'resolved' },
    ])
    expect(result.restored).toBe(0)
    expect(result.resolved.map((a) => `${a.id}:${a.state}@${a.ts}`)).toEqual([
      'gone:dev-1:resolved@9000',
      'hot:dev-2:resolved@9000',
    ])
    expect(h.alerts).toEqual(result.resolved)
    expect(result.resolved[0]?.message).toBe('gone on dev-1: rule gone was removed; alert resolved')
  })
})

describe('setRules', () => {
  it('an unchanged rule keeps its handler state (a running for period)', () => {
    const rule = { ...hot, for: '10s' }
    const h = startEngine(rulesFrom(rule))
    h.send('dev-1', 'temperature', 35, 0)
    h.engine.setRules(rulesFrom(rule, { ...hot, id: 'other' }))
    h.send('dev-1', 'temperature', 35, 10_000)
    expect(h.alerts.map((a) => `${a.ruleId}@${a.ts}`)).toEqual(['hot@10000', 'other@10000'])
  })

  it('a changed rule restarts handler state (the for period begins again)', () => {
    const h = startEngine(rulesFrom({ ...hot, for: '10s' }))
    h.send('dev-1', 'temperature', 35, 0)
    const change = h.engine.setRules(rulesFrom({ ...hot, for: '20s' }))
    expect(change.changed).toEqual(['hot'])
    h.send('dev-1', 'temperature', 35, 10_000)
    h.send('dev-1', 'temperature', 35, 29_999)
    expect(h.alerts).toEqual([])
    h.send('dev-1', 'temperature', 35, 30_000)
    expect(brief(h.alerts)).toEqual(['firing@30000'])
  })

  it('a changed rule keeps a firing alert firing (same since) and its cooldown', () => {
    const h = startEngine(rulesFrom({ ...hot, cooldown: '1m' }))
    h.send('dev-1', 'temperature', 35, 0)
    h.send('dev-2', 'temperature', 35, 0)
    h.send('dev-2', 'temperature', 20, 1_000)
    h.engine.setRules(rulesFrom({ ...hot, cooldown: '1m', severity: 'critical' }))
    h.send('dev-1', 'temperature', 36, 2_000)
    h.send('dev-2', 'temperature', 36, 2_000) // still in dev-2's cooldown
    expect(h.alerts).toHaveLength(3)
    expect(h.engine.alerts().map((a) => `${a.deviceId}:${a.state}@${a.since}`)).toEqual([
      'dev-1:firing@0',
      'dev-2:resolved@1000',
    ])
    h.send('dev-1', 'temperature', 20, 3_000)
    expect(h.alerts[3]).toMatchObject({
      deviceId: 'dev-1',
      state: 'resolved',
      severity: 'critical',
    })
  })

  it('a changed rule that no longer matches a firing device resolves it', () => {
    const h = startEngine(rulesFrom(hot))
    h.send('dev-1', 'temperature', 35, 0)
    h.send('dev-2', 'temperature', 35, 0)
    h.clock.now = 7_000
    const change = h.engine.setRules(
      rulesFrom({ ...hot, match: { device: 'dev-2', metric: 'temperature' } }),
    )
    expect(change.resolved.map((a) => `${a.deviceId}:${a.state}@${a.ts}`)).toEqual([
      'dev-1:resolved@7000',
    ])
    expect(h.engine.firingCounts()).toEqual(new Map([['hot', 1]]))
    h.send('dev-1', 'temperature', 35, 8_000)
    expect(h.alerts).toHaveLength(3)
  })

  it('a changed rule on another metric resolves alerts of the old metric', () => {
    const h = startEngine(rulesFrom(hot))
    h.send('dev-1', 'temperature', 35, 0)
    const change = h.engine.setRules(rulesFrom({ ...hot, match: { metric: 'co2' } }))
    expect(change.resolved.map((a) => `${a.deviceId}:${a.metric}:${a.state}`)).toEqual([
      'dev-1:temperature:resolved',
    ])
    h.send('dev-1', 'co2', 35, 1)
    expect(brief(h.alerts.slice(2))).toEqual(['firing@1'])
  })

  it('firingCounts lists every rule in force', () => {
    const h = startEngine(rulesFrom(hot, { ...hot, id: 'cold', above: undefined, below: 0 }))
    h.send('a', 'temperature', 35, 1)
    h.send('b', 'temperature', 35, 1)
    expect(h.engine.firingCounts()).toEqual(
      new Map([
        ['hot', 2],
        ['cold', 0],
      ]),
    )
  })
})
