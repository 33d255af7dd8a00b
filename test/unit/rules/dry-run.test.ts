import { describe, expect, it } from 'vitest'
import { createDeviceRegistry } from '../../../src/rules/device-registry.ts'
import { dryRunRule, MAX_DRY_RUN_READINGS } from '../../../src/rules/dry-run.ts'

const hot = {
  id: 'hot',
  kind: 'threshold',
  match: { metric: 'temperature' },
  above: 30,
  hysteresis: 1,
  severity: 'major',
}

const reading = (deviceId: string, value: number, ts: number | string) => ({
  deviceId,
  metric: 'temperature',
  value,
  ts,
})

describe('dryRunRule', () => {
  it('returns the exact transitions, readings sorted by time (ISO or epoch ms)', async () => {
    const result = await dryRunRule(hot, [
      reading('a', 20, '2026-11-26T10:00:03Z'),
      reading('a', 35, 1_795_687_201_000), // 10:00:01Z
      reading('a', 29.5, '2026-11-26T10:00:02.000Z'),
      reading('b', 31, '2026-11-26T11:00:00+01:00'), // 10:00:00Z
    ])
    expect(result).toEqual({
      ok: true,
      transitions: [
        {
          id: 'hot:b',
          ruleId: 'hot',
          kind: 'threshold',
          deviceId: 'b',
          metric: 'temperature',
          severity: 'major',
          state: 'firing',
          value: 31,
          threshold: 30,
          since: 1_795_687_200_000,
          ts: 1_795_687_200_000,
          message: 'b temperature 31 > 30',
          flapping: false,
        },
        expect.objectContaining({ id: 'hot:a', state: 'firing', ts: 1_795_687_201_000 }),
        expect.objectContaining({ id: 'hot:a', state: 'resolved', ts: 1_795_687_203_000 }),
      ],
    })
  })

  it('runs deadman rules on reading time, up to the last reading', async () => {
    const result = await dryRunRule(
      { id: 'quiet', kind: 'deadman', match: { metric: 'temperature' }, after: '1m' },
      [reading('a', 1, 0), reading('a', 1, 30_000), reading('a', 1, 200_000), reading('b', 1, 0)],
    )
    // a's reading at 30 s moved its deadline to 90 s; b is never heard again, and nothing after
    // the last reading (200 s) is reported, so b stays firing.
    expect(result.ok && result.transitions.map((a) => `${a.deviceId}:${a.state}@${a.ts}`)).toEqual([
      'b:firing@60000',
      'a:firing@90000',
      'a:resolved@200000',
    ])
  })

  it('matches tags through the registry it is given', async () => {
    const registry = createDeviceRegistry([{ id: 'gh', tags: { site: 'greenhouse' } }])
    const rule = { ...hot, match: { metric: 'temperature', tags: { site: 'greenhouse' } } }
    const readings = [reading('gh', 35, 1), reading('other', 35, 1)]
    const result = await dryRunRule(rule, readings, { registry })
    expect(result.ok && result.transitions.map((a) => a.deviceId)).toEqual(['gh'])
    const without = await dryRunRule(rule, readings)
    expect(without).toEqual({ ok: true, transitions: [] })
  })

  it('runs a custom handler from config/handlers', async () => {
    const result = await dryRunRule(
      {
        id: 'avg',
        kind: 'custom',
        handler: './config/handlers/mean-above.ts',
        match: { metric: 'temperature' },
        window: 2,
        limit: 28,
      },
      [reading('a', 27, 1), reading('a', 30, 2), reading('a', 20, 3)],
    )
    expect(result.ok && result.transitions.map((a) => `${a.kind}:${a.state}@${a.value}`)).toEqual([
      'mean-above:firing@28.5',
      'mean-above:resolved@25',
    ])
  })

  it('reports a bad rule exactly as the loader does, naming request body', async () => {
    const result = await dryRunRule({ ...hot, above: 'thirty', hysterisis: 1 }, [])
    expect(result).toEqual({
      ok: false,
      errors: [
        'request body: rule "hot": field "hysterisis": unknown field (did you mean "hysteresis"?); known fields of kind "threshold": id, kind, match, severity, message, cooldown, flapping, above, below, outside, inside, for, hysteresis, clear',
        'request body: rule "hot": field "above": must be a number, got "thirty"',
      ],
    })
  })

  it('refuses a custom handler outside config/handlers', async () => {
    const result = await dryRunRule(
      { id: 'x', kind: 'custom', handler: './src/main.ts', match: { metric: 'm' } },
      [],
    )
    expect(result).toEqual({
      ok: false,
      errors: [
        'request body: rule "x": field "handler": handler module "./src/main.ts" must be inside config/handlers',
      ],
    })
  })

  it('reports bad readings with their index and field, together with rule problems', async () => {
    const result = await dryRunRule({ ...hot, severity: 'loud' }, [
      reading('a', 1, 1),
      { deviceId: 'a b', metric: 'temperature', value: '1', ts: 'yesterday', extra: 1 },
      7,
    ])
    expect(result).toEqual({
      ok: false,
      errors: [
        'request body: rule "hot": field "severity": must be one of critical, major, minor, warning, info, got "loud"',
        'request body: readings[1].extra: unknown field; known: deviceId, metric, value, ts, unit',
        'request body: readings[1].deviceId: must be an identifier, got "a b"',
        'request body: readings[1].value: must be a finite number, got "1"',
        'request body: readings[1].ts: must be epoch milliseconds or an ISO-8601 time with an offset, got "yesterday"',
        'request body: readings[2]: must be a mapping { deviceId, metric, value, ts }, got 7',
      ],
    })
  })

  it('caps the error list for many bad readings', async () => {
    const bad = Array.from({ length: 50 }, () => ({
      deviceId: 'a',
      metric: 'm',
      value: 'x',
      ts: 1,
    }))
    const result = await dryRunRule(hot, bad)
    expect(result.ok).toBe(false)
    if (result.ok) return
    expect(result.errors).toHaveLength(21)
    expect(result.errors.at(-1)).toBe('request body: readings: 30 more problems not shown')
  })

  it(`refuses more than ${MAX_DRY_RUN_READINGS} readings`, async () => {
    const many = Array.from({ length: MAX_DRY_RUN_READINGS + 1 }, (_, i) => reading('a', 1, i))
    expect(await dryRunRule(hot, many)).toEqual({
      ok: false,
      errors: [`request body: readings: at most ${MAX_DRY_RUN_READINGS} readings, got 10001`],
    })
    const result = await dryRunRule(hot, many.slice(1))
    expect(result.ok).toBe(true)
  })

  it('readings must be a list; the caller objects are not frozen', async () => {
    expect(await dryRunRule(hot, { a: 1 })).toEqual({
      ok: false,
      errors: ['request body: readings: must be a list of readings, got a mapping'],
    })
    const rule = { ...hot }
    await dryRunRule(rule, [])
    expect(Object.isFrozen(rule)).toBe(false)
  })
})
