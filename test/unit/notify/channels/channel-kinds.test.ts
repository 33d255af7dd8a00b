import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BUILT_IN_CHANNEL_KINDS,
  loadCustomChannelKind,
} from '../../../../src/notify/channel-kinds.ts'
import type { ChannelKind } from '../../../../src/notify/types.ts'
import { captureLogs } from '../../../helpers/log-capture.ts'
import { createTempDir, type TempDir } from '../../../helpers/temp-dir.ts'
import { notificationFixture, problemsOf } from './fixtures.ts'

const EXAMPLE = './config/channels/append-file.ts'

describe('channel kinds', () => {
  let dir: TempDir
  beforeAll(async () => {
    dir = await createTempDir('channel-kinds-')
  })
  afterAll(async () => {
    await dir.remove()
  })

  it('the registry holds webhook, slack and email, each with its secret fields', () => {
    expect(
      [...BUILT_IN_CHANNEL_KINDS].map(([name, kind]) => [name, kind.kind, kind.secretFields]),
    ).toEqual([
      ['webhook', 'webhook', ['secret', 'headers']],
      ['slack', 'slack', ['url']],
      ['email', 'email', ['auth.pass']],
    ])
  })

  it('loads the example custom channel, which appends one JSON line per attempt', async () => {
    const loaded = await loadCustomChannelKind(EXAMPLE, process.cwd())
    expect(loaded.ok).toBe(true)
    if (!loaded.ok) return
    const kind: ChannelKind = loaded.kind
    expect([kind.kind, kind.secretFields]).toEqual(['append-file', []])
    expect(problemsOf(kind.parse, { module: EXAMPLE }).problems).toEqual([
      'path: is required: the file to append to, got nothing',
    ])
    const file = path.join(dir.path, 'out.jsonl')
    const { config, problems } = problemsOf(kind.parse, { path: file })
    expect(problems).toEqual([])
    const channel = kind.create('audit', config, { log: captureLogs().log })
    const n = notificationFixture()
    const signal = new AbortController().signal
    expect(await channel.deliver(n, 1, signal)).toEqual({ ok: true })
    expect(await channel.deliver(n, 2, signal)).toEqual({ ok: true })
    const lines = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; attempt: number; alerts: unknown[] })
    expect(lines.map((l) => [l.id, l.attempt])).toEqual([
      [n.id, 1],
      [n.id, 2],
    ])
    expect(lines[0]?.alerts).toEqual(n.alerts)
    // A directory is no file to append to: permanent, retrying cannot help.
    const intoDir = kind.create('audit', problemsOf(kind.parse, { path: dir.path }).config, {
      log: captureLogs().log,
    })
    const failed = await intoDir.deliver(n, 1, signal)
    expect(failed).toMatchObject({ ok: false, permanent: true })
    expect((failed as { error: string }).error).toMatch(/EISDIR/)
  })

  it('a module that is missing, fails, or exports no channel kind is a message, not a throw', async () => {
    const write = async (name: string, text: string) => {
      await writeFile(path.join(dir.path, name), text)
      return name
    }
    const cases: Array<[string, string]> = [
      [
        './nowhere.ts',
        `cannot load channel module "./nowhere.ts": no such file ${path.join(dir.path, 'nowhere.ts')} (paths are relative to ${dir.path})`,
      ],
      ['./x.yaml', 'must be a module path ending in .ts, .mts, .js or .mjs, got "./x.yaml"'],
      [
        await write('throws.mjs', "throw new Error('boom at import')\n"),
        'cannot load channel module "throws.mjs": boom at import',
      ],
      [
        await write('none.mjs', 'export const x = 1\n'),
        'channel module "none.mjs": default export must be a channel kind { kind, secretFields, parse, create }, got nothing',
      ],
      [
        await write(
          'taken.mjs',
          "export default { kind: 'webhook', secretFields: [], parse() {}, create() {} }\n",
        ),
        'channel module "taken.mjs": default export must be a channel kind { kind, secretFields, parse, create }: kind "webhook" is taken by a built-in kind',
      ],
      [
        await write(
          'nocreate.mjs',
          "export default { kind: 'pager', secretFields: [], parse() {} }\n",
        ),
        'channel module "nocreate.mjs": default export must be a channel kind { kind, secretFields, parse, create }: "create" must be a function, got nothing',
      ],
      [
        await write(
          'secrets.mjs',
          "export default { kind: 'pager', secretFields: 'token', parse() {}, create() {} }\n",
        ),
        'channel module "secrets.mjs": default export must be a channel kind { kind, secretFields, parse, create }: "secretFields" must be a list of field names (may be empty), got "token"',
      ],
    ]
    for (const [file, message] of cases) {
      expect(await loadCustomChannelKind(file, dir.path), file).toEqual({ ok: false, message })
    }
    await write(
      'pager.mjs',
      "export default { kind: 'pager', secretFields: ['token'], parse() { return {} }, create() {} }\n",
    )
    const good = await loadCustomChannelKind('pager.mjs', dir.path)
    expect(good.ok && good.kind.kind).toBe('pager')
  })
})
