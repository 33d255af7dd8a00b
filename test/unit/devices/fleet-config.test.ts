import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { createFleet } from '../../../devices/fleet.ts'
import {
  checkFleetConfig,
  DEFAULT_FLEET,
  parseFleetFile,
  planDevices,
  resolveFleet,
} from '../../../devices/fleet-config.ts'
import { DEFAULT_SIGNALS } from '../../../devices/signals.ts'
import { isIdentifier } from '../../../src/contract/index.ts'

const SHIPPED = new URL('../../../devices/fleet.yaml', import.meta.url)

describe('the shipped fleet file', () => {
  it('parses, and plans 10 devices with a hotter greenhouse group and a flaky one', async () => {
    const parsed = parseFleetFile(await readFile(SHIPPED, 'utf8'), 'devices/fleet.yaml')
    if (!parsed.ok) throw new Error(parsed.problems.join('\n'))
    const devices = planDevices(resolveFleet(parsed.settings))
    expect(devices).toHaveLength(10)
    expect(devices.map((d) => d.id)).toEqual([
      'greenhouse-sim-001',
      'greenhouse-sim-002',
      'flaky-sim-001',
      ...Array.from({ length: 7 }, (_, i) => `sim-00${i + 1}`),
    ])
    const greenhouse = devices[0]!
    expect(greenhouse).toMatchObject({ group: 'greenhouse', form: 'senml', intervalMs: 5_000 })
    expect(greenhouse.metrics).toEqual(['temperature', 'humidity'])
    expect(greenhouse.signals.temperature.baseCel).toBeGreaterThan(
      DEFAULT_SIGNALS.temperature.baseCel,
    )
    expect(greenhouse.signals.temperature.noiseCel).toBe(DEFAULT_SIGNALS.temperature.noiseCel)
    expect(greenhouse.outage).toBeNull()
    const flaky = devices[2]!
    expect(flaky).toMatchObject({ group: 'flaky', intervalMs: 2_000 })
    expect(flaky.signals).toEqual(DEFAULT_SIGNALS)
    // Down for 90 s every 4 min from 1 min after start: longer than a deadman rule's 1m.
    expect(flaky.outage).toEqual({
      everyMs: 240_000,
      forMs: 90_000,
      mode: 'disconnect',
      offsetMs: 60_000,
    })
    const plain = devices[3]!
    expect(plain.signals).toEqual(DEFAULT_SIGNALS)
    expect(plain.intervalMs).toBe(2_000)
    expect(devices.filter((d) => d.outage !== null).map((d) => d.id)).toEqual(['flaky-sim-001'])
  })
})

describe('parseFleetFile', () => {
  it('reads durations, shares and signal parameters into config units', () => {
    const text = [
      'devices: 3',
      'interval: 500ms',
      'malformed: 0.25',
      'qos: 0',
      'duration: 1m',
      'signals:',
      '  temperature: { base: 25, period: 1h }',
      '  co2: { crowdPeak: 2000 }',
    ].join('\n')
    const parsed = parseFleetFile(text, 'f.yaml')
    expect(parsed).toEqual({
      ok: true,
      settings: {
        devices: 3,
        intervalMs: 500,
        malformedShare: 0.25,
        qos: 0,
        durationMs: 60_000,
        signals: { temperature: { baseCel: 25, periodMs: 3_600_000 }, co2: { crowdPeakPpm: 2000 } },
      },
    })
  })

  it('reports every problem, each naming the file and the key', () => {
    const text = [
      'devices: many',
      'interval: fast',
      'qos: 2',
      'form: xml',
      'malformed: 1.5',
      'colour: blue',
      'signals:',
      '  temperature: { bse: 1, noise: -1 }',
      '  pressure: {}',
      'groups:',
      '  - name: bad name',
      '  - name: ok',
    ].join('\n')
    const parsed = parseFleetFile(text, 'fleet.yaml')
    expect(parsed.ok).toBe(false)
    if (parsed.ok) return
    const keys = parsed.problems.map((p) => /^fleet\.yaml: (\S+)/.exec(p)?.[1])
    expect(keys).toEqual([
      'devices',
      'interval',
      'qos',
      'form',
      'malformed',
      'colour',
      'signals.temperature.bse',
      'signals.temperature.noise',
      'signals.pressure',
      'groups[0].name',
      'groups[0].count',
      'groups[1].count',
    ])
  })

  it('reads outage schedules, fleet-wide and per group, `none` opting a group out', () => {
    const text = [
      'outage: { every: 5m, for: 90s, mode: silent }',
      'groups:',
      '  - name: flaky',
      '    count: 1',
      '    outage: { every: 400ms, for: 200ms, mode: disconnect, offset: 0s }',
      '  - name: steady',
      '    count: 1',
      '    outage: none',
    ].join('\n')
    expect(parseFleetFile(text, 'f.yaml')).toEqual({
      ok: true,
      settings: {
        outage: { everyMs: 300_000, forMs: 90_000, mode: 'silent' },
        groups: [
          {
            name: 'flaky',
            count: 1,
            outage: { everyMs: 400, forMs: 200, mode: 'disconnect', offsetMs: 0 },
          },
          { name: 'steady', count: 1, outage: null },
        ],
      },
    })
  })

  it('reports outage problems naming the key', () => {
    const text = [
      'outage: { every: 1m, for: 2m, mode: sleepy, offset: -1s, colour: red }',
      'groups:',
      '  - name: a',
      '    count: 1',
      '    outage: { every: 1m }',
      '  - name: b',
      '    count: 1',
      '    outage: { every: 90s, for: 90s, mode: silent }',
      '  - name: c',
      '    count: 1',
      '    outage: sometimes',
      '  - name: d',
      '    count: 1',
      '    outage: { every: 0s, for: 1s, mode: silent }',
    ].join('\n')
    const parsed = parseFleetFile(text, 'fleet.yaml')
    expect(parsed.ok).toBe(false)
    if (parsed.ok) return
    expect(parsed.problems).toEqual([
      'fleet.yaml: outage.mode must be one of silent, disconnect, got "sleepy"',
      'fleet.yaml: outage.offset must be a duration like 30s or 1m (0s: start with an outage), got "-1s"',
      'fleet.yaml: outage.colour is not a known key (known: every, for, mode, offset)',
      'fleet.yaml: outage.for must be shorter than outage.every (1m), got "2m"',
      'fleet.yaml: groups[0].outage.for is required',
      'fleet.yaml: groups[0].outage.mode is required',
      'fleet.yaml: groups[1].outage.for must be shorter than groups[1].outage.every (90s), got "90s"',
      'fleet.yaml: groups[2].outage must be a map like { every: 5m, for: 90s, mode: silent } or none, got "sometimes"',
      'fleet.yaml: groups[3].outage.every must be a positive duration like 500ms, 2s or 10m, got "0s"',
    ])
  })

  it('reports YAML syntax errors with the file name', () => {
    const parsed = parseFleetFile('devices: [1, 2', 'broken.yaml')
    expect(parsed.ok).toBe(false)
    if (!parsed.ok) expect(parsed.problems[0]).toMatch(/^broken\.yaml: /)
  })

  it('treats an empty file as no settings', () => {
    expect(parseFleetFile('# nothing\n', 'empty.yaml')).toEqual({ ok: true, settings: {} })
  })
})

describe('planDevices', () => {
  it('rotates forms over positions for mixed and gives unique identifier ids', () => {
    const devices = planDevices(resolveFleet({ devices: 1_000, prefix: 'load' }))
    expect(devices).toHaveLength(1_000)
    expect(new Set(devices.map((d) => d.id)).size).toBe(1_000)
    expect(devices.every((d) => isIdentifier(d.id))).toBe(true)
    expect(devices[0]?.id).toBe('load-0001')
    expect(devices.slice(0, 4).map((d) => d.form)).toEqual(['metric', 'object', 'senml', 'metric'])
    expect(new Set(devices.map((d) => d.seed)).size).toBe(1_000)
  })

  it('gives each device its group outage, else the fleet-wide one', () => {
    const fleetWide = { everyMs: 300_000, forMs: 90_000, mode: 'silent' as const }
    const own = { everyMs: 400, forMs: 200, mode: 'disconnect' as const }
    const config = resolveFleet({
      devices: 4,
      outage: fleetWide,
      groups: [
        { name: 'flaky', count: 1, outage: own },
        { name: 'steady', count: 1, outage: null },
        { name: 'plain', count: 1 },
      ],
    })
    expect(planDevices(config).map((d) => [d.id, d.outage])).toEqual([
      ['flaky-sim-001', own],
      ['steady-sim-001', null],
      ['plain-sim-001', fleetWide],
      ['sim-001', fleetWide],
    ])
    expect(planDevices(resolveFleet({ devices: 1 }))[0]?.outage).toBeNull()
  })

  it('takes group devices out of the total, groups first', () => {
    const config = resolveFleet({
      devices: 3,
      groups: [
        { name: 'greenhouse', count: 2, form: 'object' },
        { name: 'cellar', count: 5 },
      ],
    })
    expect(planDevices(config).map((d) => [d.id, d.form])).toEqual([
      ['greenhouse-sim-001', 'object'],
      ['greenhouse-sim-002', 'object'],
      ['cellar-sim-001', 'senml'],
    ])
  })
})

describe('resolveFleet and checkFleetConfig', () => {
  it('layers settings over the defaults', () => {
    const config = resolveFleet({ devices: 5, intervalMs: 100 }, { devices: 7, count: undefined })
    expect(config).toMatchObject({
      devices: 7,
      intervalMs: 100,
      qos: 1,
      form: 'mixed',
      prefix: 'sim',
    })
    expect(config.count).toBeUndefined()
    expect(checkFleetConfig(config)).toEqual([])
    expect(DEFAULT_FLEET.devices).toBe(10)
  })

  it('checks outage schedules built in code', () => {
    const config = resolveFleet({
      outage: { everyMs: 1_000, forMs: 1_000, mode: 'silent' },
      groups: [
        {
          name: 'g',
          count: 1,
          outage: { everyMs: 0, forMs: 10, mode: 'off' as never, offsetMs: -5 },
        },
      ],
    })
    expect(checkFleetConfig(config)).toEqual([
      'outage.forMs must be less than outage.everyMs (1000), got 1000',
      'groups[0].outage.everyMs must be a number >= 1, got 0',
      'groups[0].outage.mode must be one of silent, disconnect, got "off"',
      'groups[0].outage.offsetMs must be a number >= 0, got -5',
    ])
    expect(() =>
      createFleet({
        url: 'mqtt://127.0.0.1:1',
        outage: { everyMs: 100, forMs: 200, mode: 'disconnect' },
      }),
    ).toThrow(/outage\.forMs must be less than outage\.everyMs/)
  })

  it('createFleet refuses invalid options, naming them', () => {
    expect(() =>
      createFleet({ url: 'mqtt://127.0.0.1:1', devices: -1, malformedShare: 2, prefix: 'a/b' }),
    ).toThrow(/devices .*; prefix .*; malformedShare /)
  })
})
