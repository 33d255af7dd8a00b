import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import meanAbove from '../../../config/handlers/mean-above.ts'
import { GatewayError } from '../../../src/errors.ts'
import { loadHandlerModules, loadRulesFile } from '../../../src/rules/load-rules.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'
import { startEngine } from './harness.ts'

const HANDLER = './config/handlers/mean-above.ts'

describe('custom handler modules', () => {
  let dir: TempDir
  beforeAll(async () => {
    dir = await createTempDir('rules-custom-')
  })
  afterAll(async () => {
    await dir.remove()
  })

  async function rulesFile(name: string, rules: string): Promise<string> {
    const file = path.join(dir.path, name)
    await writeFile(file, `rules:\n${rules}`)
    return file
  }

  async function problemsOf(file: string): Promise<string[]> {
    const err = await loadRulesFile(file).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(GatewayError)
    return (err as GatewayError).message.split('\n')
  }

  it('mean-above: fires on the mean of the last N readings, judged once N have arrived', async () => {
    const file = await rulesFile(
      'mean.yaml',
      `  - id: avg
    kind: custom
    handler: ${HANDLER}
    match: { metric: temperature }
    window: 3
    limit: 28
    severity: minor
`,
    )
    const rules = await loadRulesFile(file)
    expect(rules.map((r) => [r.ruleId, r.kind])).toEqual([['avg', 'mean-above']])
    const h = startEngine(rules)
    const values = [40, 40, 27, 28, 29, 30, 31, 20, 20]
    for (const [i, value] of values.entries()) h.send('dev-1', 'temperature', value, i)
    // Means from the 3rd reading: 35.67, 31.67, 28, 29, 30, 27, 23.67.
    expect(h.alerts.map((a) => [a.state, a.ts, a.value, a.threshold, a.kind])).toEqual([
      ['firing', 2, 35.6666666667, 28, 'mean-above'],
      ['resolved', 4, 28, 28, 'mean-above'],
      ['firing', 5, 29, 28, 'mean-above'],
      ['resolved', 7, 27, 28, 'mean-above'],
    ])
    expect(h.alerts[0]?.message).toBe('dev-1 temperature mean of last 3 = 35.6666666667 > 28')
  })

  it('mean-above keeps an exact running mean over many laps of its ring', () => {
    const parsed = meanAbove.parse(
      { window: 4, limit: 0.3 },
      {
        ruleId: 'm',
        severity: 'info',
        match: { devices: ['*'], metric: 'x' },
        definition: {},
        lifecycle: { cooldownMs: 0, flapping: null, message: null },
      },
    )
    expect(parsed.ok).toBe(true)
    if (!parsed.ok) return
    const handler = parsed.handler
    const state = handler.initialState()
    let verdict = ''
    for (let i = 0; i < 100_001; i++) {
      verdict = handler.evaluate(
        state,
        { deviceId: 'd', metric: 'x', value: 0.1 * (i % 7), ts: i },
        false,
      )
    }
    // Last four: i = 99 997 .. 100 000 -> i % 7 = 2, 3, 4, 5: mean 0.35.
    expect(verdict).toBe('breach')
    expect((state as { mean: number }).mean).toBeCloseTo(0.35, 12)
  })

  it('its own fields are validated by the kind and named with file and rule', async () => {
    const file = await rulesFile(
      'bad-fields.yaml',
      `  - id: avg
    kind: custom
    handler: ${HANDLER}
    match: { metric: temperature }
    window: 0
    limit: warm
    windw: 3
`,
    )
    expect(await problemsOf(file)).toEqual([
      `${file}: rule "avg": field "windw": unknown field (did you mean "window"?); known fields of custom kind "mean-above": id, kind, match, severity, message, cooldown, flapping, handler, window, limit`,
      `${file}: rule "avg": field "window": must be an integer from 1 to 1000, got 0`,
      `${file}: rule "avg": field "limit": must be a number, got "warm"`,
    ])
  })

  it('a missing module is a rules error naming file, rule and field handler', async () => {
    const file = await rulesFile(
      'missing.yaml',
      `  - { id: x, kind: custom, handler: ./config/handlers/nope.ts, match: { metric: m } }\n`,
    )
    const problems = await problemsOf(file)
    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatch(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: rule "x": field "handler": cannot load handler module "./config/handlers/nope.ts": no such file`,
      ),
    )
  })

  it.each([
    {
      name: 'not a rule kind',
      source: 'export default 42\n',
      want: 'default export must be a rule kind { name, fields, parse }, got 42',
    },
    {
      name: 'no default export',
      source: 'export const kind = {}\n',
      want: 'default export must be a rule kind { name, fields, parse }, got nothing',
    },
    {
      name: 'a built-in name',
      source: "export default { name: 'threshold', fields: [], parse() {} }\n",
      want: 'name "threshold" is taken by a built-in kind',
    },
    {
      name: 'fields not a list',
      source: "export default { name: 'k', fields: 'a', parse() {} }\n",
      want: '"fields" must be a list of field names, got "a"',
    },
    {
      name: 'throws on import',
      source: "throw new Error('broken module')\n",
      want: 'broken module',
    },
    {
      name: 'parse throws',
      source: "export default { name: 'k', fields: [], parse() { throw new Error('oops') } }\n",
      want: 'kind "k" threw while parsing: oops',
    },
    {
      name: 'parse returns junk',
      source:
        "export default { name: 'k', fields: [], parse() { return { ok: true, handler: {} } } }\n",
      want: 'kind "k" returned no usable handler',
    },
  ])('a bad module ($name) is a rules error on field handler', async ({ name, source, want }) => {
    const module = path.join(dir.path, `${name.replaceAll(' ', '-')}.mjs`)
    await writeFile(module, source)
    const file = await rulesFile(
      `${name.replaceAll(' ', '-')}.yaml`,
      `  - { id: x, kind: custom, handler: '${module}', match: { metric: m } }\n`,
    )
    const problems = await problemsOf(file)
    expect(problems).toHaveLength(1)
    expect(problems[0]).toContain(`${file}: rule "x": field "handler": `)
    expect(problems[0]).toContain(want)
  })

  it('loadHandlerModules with allowedDir refuses a module outside it', async () => {
    const module = path.join(dir.path, 'outside.mjs')
    await writeFile(module, "export default { name: 'k', fields: [], parse() {} }\n")
    const modules = await loadHandlerModules([module, HANDLER], { allowedDir: 'config/handlers' })
    expect(modules.get(module)).toEqual({
      ok: false,
      message: `handler module "${module}" must be inside config/handlers`,
    })
    expect(modules.get(HANDLER)?.ok).toBe(true)
  })
})
