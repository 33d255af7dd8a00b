import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ERROR_CODES, GatewayError } from '../../../src/errors.ts'
import { loadRulesFile, parseRules } from '../../../src/rules/load-rules.ts'
import type { RuleKind } from '../../../src/rules/rule-handler.ts'
import { BUILT_IN_RULE_KINDS } from '../../../src/rules/rule-kinds.ts'
import { startEngine } from './harness.ts'

const FILE = 'config/rules.yaml'
const SHIPPED = fileURLToPath(new URL('../../../config/rules.yaml', import.meta.url))

function errorsOf(text: string): string[] {
  const result = parseRules(text, FILE)
  if (result.ok) throw new Error('expected errors')
  return result.errors
}

describe('parseRules: valid files', () => {
  it('applies defaults: severity warning, every device, for 0', () => {
    const result = parseRules(
      'rules:\n  - id: t\n    kind: threshold\n    match: { metric: temperature }\n    above: 30\n',
      FILE,
    )
    expect(result.ok).toBe(true)
    if (!result.ok) return
    const [rule] = result.rules
    expect(rule).toMatchObject({
      ruleId: 't',
      kind: 'threshold',
      severity: 'warning',
      match: { devices: ['*'], metric: 'temperature' },
      definition: { id: 't', kind: 'threshold', match: { metric: 'temperature' }, above: 30 },
    })
    expect(Object.isFrozen(rule?.definition)).toBe(true)
  })

  it.each([
    ['an empty list', 'rules: []\n'],
    ['every rule commented out', 'rules:\n#  - id: x\n'],
  ])('accepts %s as no rules', (_name, text) => {
    expect(parseRules(text, FILE)).toEqual({ ok: true, rules: [] })
  })

  it('takes a device as an id, a glob or a list', () => {
    const result = parseRules(
      `rules:
  - { id: a, kind: threshold, match: { device: dev-1, metric: m }, above: 1 }
  - { id: b, kind: threshold, match: { device: 'dev-*', metric: m }, above: 1 }
  - { id: c, kind: threshold, match: { device: [x, 'y?'], metric: m }, above: 1 }
`,
      FILE,
    )
    expect(result.ok && result.rules.map((r) => r.match.devices)).toEqual([
      ['dev-1'],
      ['dev-*'],
      ['x', 'y?'],
    ])
  })

  it('looks kinds up in the registry it is given', () => {
    const echo: RuleKind = {
      name: 'echo',
      fields: ['level'],
      parse: (raw, ctx) =>
        typeof raw.level === 'number'
          ? {
              ok: true,
              handler: {
                ...ctx,
                kind: 'echo',
                initialState: () => null,
                evaluate: () => 'hold',
                describe: (_s, r) => ({ value: r.value, threshold: 0, message: '' }),
              },
            }
          : { ok: false, errors: [{ field: 'level', message: 'must be a number' }] },
    }
    const kinds = new Map([...BUILT_IN_RULE_KINDS, ['echo', echo]])
    const good = parseRules(
      'rules:\n  - { id: e, kind: echo, match: { metric: m }, level: 3 }\n',
      FILE,
      kinds,
    )
    expect(good.ok && good.rules[0]?.kind).toBe('echo')
    const bad = parseRules(
      'rules:\n  - { id: e, kind: echo, match: { metric: m }, level: x }\n',
      FILE,
      kinds,
    )
    expect(bad).toEqual({
      ok: false,
      errors: [`${FILE}: rule "e": field "level": must be a number`],
    })
  })
})

describe('parseRules: errors name file, rule and field', () => {
  const rule = (extra: string) =>
    `rules:\n  - id: high-temperature\n    kind: threshold\n    match: { metric: temperature }\n${extra}`

  it.each([
    {
      name: 'not a number',
      text: rule('    above: thirty\n'),
      want: `${FILE}: rule "high-temperature": field "above": must be a number, got "thirty"`,
    },
    {
      name: 'unknown kind',
      text: 'rules:\n  - { id: r1, kind: thresold, match: { metric: m }, above: 1 }\n',
      want: `${FILE}: rule "r1": field "kind": unknown kind "thresold" (did you mean "threshold"?); known kinds: threshold, rate, deadman, custom`,
    },
    {
      name: 'missing kind',
      text: 'rules:\n  - { id: r1, match: { metric: m } }\n',
      want: `${FILE}: rule "r1": field "kind": is required; known kinds: threshold, rate, deadman, custom`,
    },
    {
      name: 'unknown field (typo)',
      text: rule('    above: 30\n    hysterisis: 1\n'),
      want: `${FILE}: rule "high-temperature": field "hysterisis": unknown field (did you mean "hysteresis"?)`,
    },
    {
      name: 'unknown field in match',
      text: 'rules:\n  - { id: r1, kind: threshold, match: { metric: m, devices: x }, above: 1 }\n',
      want: `${FILE}: rule "r1": field "match.devices": unknown field (did you mean "device"?); known: device, metric, tags`,
    },
    {
      name: 'bad identifier: rule named by index',
      text: 'rules:\n  - { id: ok, kind: threshold, match: { metric: m }, above: 1 }\n  - { id: "bad id", kind: threshold, match: { metric: m }, above: 1 }\n',
      want: `${FILE}: rules[1]: field "id": must be an identifier ([A-Za-z0-9_.-]{1,64}), got "bad id"`,
    },
    {
      name: 'missing id',
      text: 'rules:\n  - { kind: threshold, match: { metric: m }, above: 1 }\n',
      want: `${FILE}: rules[0]: field "id": is required`,
    },
    {
      name: 'bad metric id',
      text: 'rules:\n  - { id: r1, kind: threshold, match: { metric: "a/b" }, above: 1 }\n',
      want: `${FILE}: rule "r1": field "match.metric": must be a metric id ([A-Za-z0-9_.-]{1,64}) or a glob (* and ?), got "a/b"`,
    },
    {
      name: 'missing match',
      text: 'rules:\n  - { id: r1, kind: threshold, above: 1 }\n',
      want: `${FILE}: rule "r1": field "match": is required`,
    },
    {
      name: 'bad device pattern in a list',
      text: 'rules:\n  - { id: r1, kind: threshold, match: { metric: m, device: [a, "b c"] }, above: 1 }\n',
      want: `${FILE}: rule "r1": field "match.device[1]": must be a device id, a glob (* and ?) or a list of them, got "b c"`,
    },
    {
      name: 'duplicate id',
      text: 'rules:\n  - { id: r1, kind: threshold, match: { metric: m }, above: 1 }\n  - { id: r1, kind: threshold, match: { metric: m }, below: 1 }\n',
      want: `${FILE}: rule "r1" (rules[1]): field "id": duplicate id, already used by rules[0]`,
    },
    {
      name: 'bad duration',
      text: rule('    above: 30\n    for: 30 seconds\n'),
      want: `${FILE}: rule "high-temperature": field "for": must be a duration like 30s, 5m, 1h or a number of milliseconds, got "30 seconds"`,
    },
    {
      name: 'outside with lo >= hi',
      text: rule('    outside: [80, 20]\n'),
      want: `${FILE}: rule "high-temperature": field "outside": lo must be less than hi, got [80, 20]`,
    },
    {
      name: 'bad severity',
      text: rule('    above: 30\n    severity: urgent\n'),
      want: `${FILE}: rule "high-temperature": field "severity": must be one of critical, major, minor, warning, info, got "urgent"`,
    },
    {
      name: 'no condition',
      text: rule('    severity: major\n'),
      want: `${FILE}: rule "high-temperature": field "above|below|outside|inside": one of above, below, outside, inside is required`,
    },
    {
      name: 'two conditions',
      text: rule('    above: 30\n    below: 10\n'),
      want: `${FILE}: rule "high-temperature": field "above|below|outside|inside": exactly one of above, below, outside, inside is allowed, got above and below`,
    },
    {
      name: 'rule not a mapping',
      text: 'rules:\n  - high-temperature\n',
      want: `${FILE}: rules[0]: must be a mapping, got "high-temperature"`,
    },
    {
      name: 'rules not a list',
      text: 'rules: { id: x }\n',
      want: `${FILE}: field "rules": must be a list of rules, got a mapping`,
    },
    {
      name: 'unknown top-level field',
      text: 'rule: []\nrules: []\n',
      want: `${FILE}: field "rule": unknown top-level field (did you mean "rules"?); known: rules`,
    },
    {
      name: 'empty file',
      text: '',
      want: `${FILE}: must be a mapping with a "rules" list, got null`,
    },
    {
      name: 'YAML syntax error with line and column',
      text: 'rules:\n  - id: a\n    id: b\n',
      want: `${FILE}:3:5: Map keys must be unique`,
    },
  ])('$name', ({ text, want }) => {
    const errors = errorsOf(text)
    expect(
      errors.some((e) => e.startsWith(want)),
      errors.join('\n'),
    ).toBe(true)
  })

  it('reports every problem of every rule at once', () => {
    const errors = errorsOf(`rules:
  - id: high-temperature
    kind: threshold
    match: { metric: temperature, devices: x }
    above: thirty
    hysterisis: 1
    for: 30 seconds
    severity: huge
  - id: high-temperature
    kind: thresold
    match: { metric: temperature }
  - id: "bad id"
    kind: threshold
    match: { metric: co2 }
    outside: [80, 20]
    message: "{foo} {value}"
  - id: fine
    kind: threshold
    match: { metric: co2 }
    above: 1500
`)
    expect(errors).toEqual([
      `${FILE}: rule "high-temperature": field "match.devices": unknown field (did you mean "device"?); known: device, metric, tags`,
      `${FILE}: rule "high-temperature": field "severity": must be one of critical, major, minor, warning, info, got "huge"`,
      `${FILE}: rule "high-temperature": field "hysterisis": unknown field (did you mean "hysteresis"?); known fields of kind "threshold": id, kind, match, severity, message, cooldown, flapping, above, below, outside, inside, for, hysteresis, clear`,
      `${FILE}: rule "high-temperature": field "above": must be a number, got "thirty"`,
      `${FILE}: rule "high-temperature": field "for": must be a duration like 30s, 5m, 1h or a number of milliseconds, got "30 seconds"`,
      `${FILE}: rule "high-temperature" (rules[1]): field "id": duplicate id, already used by rules[0]`,
      `${FILE}: rule "high-temperature" (rules[1]): field "kind": unknown kind "thresold" (did you mean "threshold"?); known kinds: threshold, rate, deadman, custom`,
      `${FILE}: rules[2]: field "id": must be an identifier ([A-Za-z0-9_.-]{1,64}), got "bad id"`,
      `${FILE}: rules[2]: field "message": unknown placeholder {foo}; known: {deviceId} {metric} {value} {threshold} {ruleId} {state} {severity} {kind}`,
      `${FILE}: rules[2]: field "outside": lo must be less than hi, got [80, 20]`,
    ])
  })
})

describe('loadRulesFile', () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rules-test-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('returns handlers of a valid file', async () => {
    const path = join(dir, 'ok.yaml')
    await writeFile(
      path,
      'rules:\n  - { id: r, kind: threshold, match: { metric: m }, above: 1 }\n',
    )
    const rules = await loadRulesFile(path)
    expect(rules.map((r) => r.ruleId)).toEqual(['r'])
  })

  it('throws GW_ERR_RULES with every message on its own line', async () => {
    const path = join(dir, 'bad.yaml')
    await writeFile(
      path,
      'rules:\n  - { id: r, kind: threshold, match: { metric: m }, above: x, severity: no }\n',
    )
    const err = await loadRulesFile(path).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(GatewayError)
    expect((err as GatewayError).code).toBe(ERROR_CODES.rules)
    expect((err as GatewayError).message.split('\n')).toEqual([
      `${path}: rule "r": field "severity": must be one of critical, major, minor, warning, info, got "no"`,
      `${path}: rule "r": field "above": must be a number, got "x"`,
    ])
  })

  it('throws GW_ERR_RULES naming the file when it cannot be read', async () => {
    const path = join(dir, 'missing.yaml')
    await expect(loadRulesFile(path)).rejects.toMatchObject({
      code: ERROR_CODES.rules,
      message: expect.stringContaining(`${path}: cannot read rules file`),
    })
  })
})

describe('shipped config/rules.yaml', () => {
  it('is valid and has high-temperature as specified', async () => {
    const rules = await loadRulesFile(SHIPPED)
    const rule = rules.find((r) => r.ruleId === 'high-temperature')
    expect(rule).toMatchObject({
      kind: 'threshold',
      severity: 'major',
      match: { devices: ['*'], metric: 'temperature' },
      definition: { above: 30, hysteresis: 1, severity: 'major' },
    })
    expect(rule?.definition).not.toHaveProperty('for')
    expect(rules.map((r) => r.ruleId)).toEqual([
      'high-temperature',
      'low-temperature',
      'humidity-out-of-range',
      'high-co2',
      'greenhouse-overheat',
      'temperature-jump',
      'sensor-silent',
      'greenhouse-warm-average',
    ])
    expect(new Set(rules.map((r) => r.kind))).toEqual(
      new Set(['threshold', 'rate', 'deadman', 'mean-above']),
    )
  })

  it('high-temperature fires above 30 and resolves at 29', async () => {
    const h = startEngine(await loadRulesFile(SHIPPED))
    const series = [30, 30.5, 31, 29.5, 29.01, 29, 30, 31]
    for (const [i, value] of series.entries())
      h.send('greenhouse-1', 'temperature', value, i * 1000)
    expect(
      h.alerts
        .filter((a) => a.ruleId === 'high-temperature')
        .map((a) => `${a.state}@${a.value} ${a.severity}`),
    ).toEqual(['firing@30.5 major', 'resolved@29 major', 'firing@31 major'])
  })
})

describe('shipped config/rules.yaml: new rules stay quiet for test devices', () => {
  it('only high-temperature reacts to dev-1 at 21.5, 35, 20 (also after deadman periods)', async () => {
    const h = startEngine(await loadRulesFile(SHIPPED))
    for (const [i, value] of [21.5, 35, 20].entries()) {
      h.at(i * 1_000)
      h.send('dev-1', 'temperature', value, i * 1_000)
    }
    h.at(3_600_000)
    expect(h.alerts.map((a) => `${a.ruleId}:${a.state}`)).toEqual([
      'high-temperature:firing',
      'high-temperature:resolved',
    ])
  })

  it('demonstrates every kind and the common fields', async () => {
    const rules = await loadRulesFile(SHIPPED)
    const byId = new Map(rules.map((r) => [r.ruleId, r]))
    expect(byId.get('greenhouse-overheat')).toMatchObject({
      match: { tags: { site: 'greenhouse' } },
      lifecycle: { cooldownMs: 300_000 },
      definition: { clear: 29 },
    })
    expect(byId.get('temperature-jump')?.lifecycle?.flapping).toEqual({
      transitions: 4,
      windowMs: 600_000,
    })
    expect(byId.get('sensor-silent')).toMatchObject({ kind: 'deadman', silenceMs: 60_000 })
    expect(byId.get('greenhouse-warm-average')?.kind).toBe('mean-above')
  })
})

describe('parseRules: new fields name file, rule and field', () => {
  const base = 'rules:\n  - id: r\n    match: { metric: temperature }\n'
  it.each([
    { extra: '    kind: rate\n    per: 1m\n', want: 'field "delta": is required' },
    {
      extra: '    kind: rate\n    delta: 0\n    per: 1m\n',
      want: 'field "delta": must be a number > 0, got 0',
    },
    {
      extra: '    kind: rate\n    delta: 5\n    per: 0\n',
      want: 'field "per": must be a duration',
    },
    {
      extra: '    kind: rate\n    delta: 5\n    per: 1m\n    direction: up\n',
      want: 'field "direction": must be one of rising, falling, either, got "up"',
    },
    { extra: '    kind: deadman\n', want: 'field "after": is required' },
    { extra: '    kind: deadman\n    after: soon\n', want: 'field "after": must be a duration' },
    {
      extra: '    kind: deadman\n    after: 1m\n    above: 3\n',
      want: 'field "above": unknown field; known fields of kind "deadman": id, kind, match, severity, message, cooldown, flapping, after',
    },
    {
      extra: '    kind: threshold\n    above: 30\n    cooldown: later\n',
      want: 'field "cooldown": must be a duration',
    },
    {
      extra: '    kind: threshold\n    above: 30\n    flapping: 3\n',
      want: 'field "flapping": must be a mapping { transitions: N, window: 10m }, got 3',
    },
    {
      extra: '    kind: threshold\n    above: 30\n    flapping: { transitions: 0, window: 10m }\n',
      want: 'field "flapping.transitions": must be an integer >= 1, got 0',
    },
    {
      extra: '    kind: threshold\n    above: 30\n    flapping: { transitions: 3 }\n',
      want: 'field "flapping.window": is required',
    },
    {
      extra:
        '    kind: threshold\n    above: 30\n    flapping: { transitions: 3, window: 1m, windw: 2 }\n',
      want: 'field "flapping.windw": unknown field (did you mean "window"?)',
    },
    {
      extra: '    kind: threshold\n    above: 30\n    clear: 31\n',
      want: 'field "clear": must be at or below the threshold (above: 30)',
    },
    {
      extra: '    kind: threshold\n    above: 30\n    message: ""\n',
      want: 'field "message": must be a non-empty text, got ""',
    },
    {
      extra: '    kind: rate\n    delta: 5\n    per: 1m\n    message: "{device} jumped"\n',
      want: 'field "message": unknown placeholder {device}; known: {deviceId} {metric} {value} {threshold} {ruleId} {state} {severity} {kind}',
    },
    { extra: '    kind: custom\n', want: 'field "handler": is required for kind "custom"' },
    {
      extra: '    kind: custom\n    handler: 42\n',
      want: 'field "handler": must be a module path ending in .ts, .mts, .js or .mjs, got 42',
    },
    {
      extra: '    kind: custom\n    handler: ./config/handlers/mean-above.ts\n',
      want: 'field "handler": module "./config/handlers/mean-above.ts" is not loaded',
    },
  ])('$want', ({ extra, want }) => {
    const errors = errorsOf(base + extra)
    expect(
      errors.some((e) => e.startsWith(`${FILE}: rule "r": ${want}`)),
      errors.join('\n'),
    ).toBe(true)
  })

  it.each([
    {
      match: '{ metric: m, tags: { site: "" } }',
      want: 'field "match.tags.site": must be a text of 1-128 characters, a number or a boolean, got ""',
    },
    { match: '{ metric: m, tags: {} }', want: 'field "match.tags": must name at least one tag' },
    { match: '{ metric: m, tags: [a] }', want: 'field "match.tags": must be a mapping' },
    { match: '{ metric: "te mp*" }', want: 'field "match.metric": must be a metric id' },
  ])('match: $want', ({ match, want }) => {
    const errors = errorsOf(`rules:\n  - { id: r, kind: threshold, above: 1, match: ${match} }\n`)
    expect(
      errors.some((e) => e.startsWith(`${FILE}: rule "r": ${want}`)),
      errors.join('\n'),
    ).toBe(true)
  })

  it('accepts a metric glob and tags (numbers and booleans as text)', () => {
    const result = parseRules(
      'rules:\n  - { id: r, kind: threshold, above: 1, match: { metric: "temp*", tags: { floor: 2, indoor: true } } }\n',
      FILE,
    )
    expect(result.ok && result.rules[0]?.match).toEqual({
      devices: ['*'],
      metric: 'temp*',
      tags: { floor: '2', indoor: 'true' },
    })
  })

  it('parses cooldown, flapping and message into the lifecycle', () => {
    const result = parseRules(
      `rules:
  - id: r
    kind: threshold
    match: { metric: m }
    above: 1
    cooldown: 5m
    flapping: { transitions: 3, window: 10m }
    message: '{ruleId} {kind} {severity}'
`,
      FILE,
    )
    expect(result.ok && result.rules[0]?.lifecycle).toEqual({
      cooldownMs: 300_000,
      flapping: { transitions: 3, windowMs: 600_000 },
      message: '{ruleId} {kind} {severity}',
    })
  })
})
