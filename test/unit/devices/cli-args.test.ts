import { describe, expect, it } from 'vitest'
import { DEFAULT_URL, layerSettings, parseSimulatorArgs } from '../../../devices/cli-args.ts'

describe('parseSimulatorArgs', () => {
  it('defaults to MQTT_URL, then the loopback broker', () => {
    expect(parseSimulatorArgs([], {})).toEqual({
      ok: true,
      args: { help: false, url: DEFAULT_URL, fleetPath: null, settings: {} },
    })
    const fromEnv = parseSimulatorArgs([], { MQTT_URL: 'mqtt://gateway:1883' })
    expect(fromEnv.ok && fromEnv.args.url).toBe('mqtt://gateway:1883')
  })

  it('reads every flag into settings', () => {
    const parsed = parseSimulatorArgs(
      [
        '--url=ws://h:8080/mqtt',
        '--devices',
        '1000',
        '--interval',
        '250ms',
        '--qos',
        '0',
        '--form',
        'senml',
        '--malformed',
        '0.1',
        '--fleet',
        'x.yaml',
        '--duration',
        '5m',
        '--count',
        '500',
        '--prefix',
        'lab',
        '--seed',
        '9',
      ],
      { MQTT_URL: 'mqtt://ignored:1883' },
    )
    expect(parsed).toEqual({
      ok: true,
      args: {
        help: false,
        url: 'ws://h:8080/mqtt',
        fleetPath: 'x.yaml',
        settings: {
          devices: 1000,
          intervalMs: 250,
          qos: 0,
          form: 'senml',
          malformedShare: 0.1,
          durationMs: 300_000,
          count: 500,
          prefix: 'lab',
          seed: 9,
        },
      },
    })
  })

  it('recognises --help and -h', () => {
    for (const flag of ['--help', '-h']) {
      const parsed = parseSimulatorArgs([flag], {})
      expect(parsed.ok && parsed.args.help).toBe(true)
    }
  })

  it.each([
    [['--devices', 'ten'], /^--devices must be an integer/],
    [['--interval', '2 seconds'], /^--interval must be a positive duration/],
    [['--qos', '2'], /^--qos must be 0 or 1/],
    [['--form', 'xml'], /^--form must be one of metric, object, senml, mixed/],
    [['--malformed', '1.5'], /^--malformed must be a number from 0\.0 to 1\.0/],
    [['--count', '0'], /^--count must be an integer >= 1/],
    [['--prefix', 'a/b'], /^--prefix must be/],
    [['--url', 'http://x'], /^--url must be a broker URL/],
    [['--nope'], /^unknown flag --nope$/],
    [['--devices'], /--devices/],
    [['stray'], /^unexpected argument stray/],
  ])('%j fails naming the flag', (argv, message) => {
    const parsed = parseSimulatorArgs(argv, {})
    expect(parsed.ok).toBe(false)
    if (!parsed.ok) expect(parsed.message).toMatch(message)
  })

  it('names a bad MQTT_URL', () => {
    const parsed = parseSimulatorArgs([], { MQTT_URL: 'gateway' })
    expect(parsed.ok).toBe(false)
    if (!parsed.ok) expect(parsed.message).toMatch(/^MQTT_URL /)
  })
})

describe('layerSettings', () => {
  it('flags override the file, and --form and --interval override its groups too', () => {
    const file = {
      devices: 10,
      qos: 1 as const,
      groups: [{ name: 'greenhouse', count: 2, form: 'senml' as const, intervalMs: 5_000 }],
    }
    expect(layerSettings(file, { devices: 3 })).toEqual({ ...file, devices: 3 })
    expect(layerSettings(file, { form: 'metric', intervalMs: 100 })).toEqual({
      devices: 10,
      qos: 1,
      form: 'metric',
      intervalMs: 100,
      groups: [{ name: 'greenhouse', count: 2 }],
    })
    expect(file.groups[0]?.form).toBe('senml')
  })
})
