import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GatewayError } from '../../../../src/errors.ts'
import {
  BUILT_IN_CHANNEL_KINDS,
  loadCustomChannelKind,
} from '../../../../src/notify/channel-kinds.ts'
import {
  loadNotificationsFile,
  type NotificationsDeps,
} from '../../../../src/notify/load-notifications.ts'
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
    const kind: ChannelKind = await loadCustomChannelKind(EXAMPLE, process.cwd())
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

  it('a module that is missing, fails, or exports no channel kind: rejected saying why', async () => {
    const write = async (name: string, text: string) => {
      await writeFile(path.join(dir.path, name), text)
      return name
    }
    const cases: Array<[string, string]> = [
      [
        './nowhere.ts',
        `no such file ${path.join(dir.path, 'nowhere.ts')} (paths are relative to ${dir.path})`,
      ],
      ['./x.yaml', 'must be a module path ending in .ts, .mts, .js or .mjs, got "./x.yaml"'],
      [
        await write('throws.mjs', "throw new Error('boom at import')\n"),
        'import failed: boom at import',
      ],
      [
        await write('none.mjs', 'export const x = 1\n'),
        'default export must be a channel kind { kind, secretFields, parse, create }, got nothing',
      ],
      [
        await write(
          'taken.mjs',
          "export default { kind: 'webhook', secretFields: [], parse() {}, create() {} }\n",
        ),
        'default export must be a channel kind { kind, secretFields, parse, create }: kind "webhook" is taken by a built-in kind',
      ],
      [
        await write(
          'nocreate.mjs',
          "export default { kind: 'pager', secretFields: [], parse() {} }\n",
        ),
        'default export must be a channel kind { kind, secretFields, parse, create }: "create" must be a function, got nothing',
      ],
      [
        await write(
          'secrets.mjs',
          "export default { kind: 'pager', secretFields: 'token', parse() {}, create() {} }\n",
        ),
        'default export must be a channel kind { kind, secretFields, parse, create }: "secretFields" must be a list of field names (may be empty), got "token"',
      ],
    ]
    for (const [file, message] of cases) {
      const error = await loadCustomChannelKind(file, dir.path).catch((err: unknown) => err)
      expect(error, file).toBeInstanceOf(Error)
      expect((error as Error).message, file).toBe(message)
    }
    await write(
      'pager.mjs',
      "export default { kind: 'pager', secretFields: ['token'], parse() { return {} }, create() {} }\n",
    )
    expect((await loadCustomChannelKind('pager.mjs', dir.path)).kind).toBe('pager')
  })

  it('with the notifications loader: every built-in kind and the example module, every problem named, no secret quoted', async () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
    const file = path.join(dir.path, 'notifications.yaml')
    const deps: NotificationsDeps = {
      kinds: BUILT_IN_CHANNEL_KINDS,
      loadCustom: loadCustomChannelKind,
      baseDir: process.cwd(),
    }
    await writeFile(
      file,
      `channels:
  - { name: hook, kind: webhook, url: "https://ops.example/hook", secret: "${secret}", headers: { Authorization: "Bearer t0k3n-abc" } }
  - { name: chat, kind: slack, url: "https://hooks.slack.com/services/T1/B2/s3cr3tp4th" }
  - { name: mail, kind: email, host: smtp.example, auth: { user: u, pass: "p4ss-w0rd" }, from: gw@x.example, to: [ops@x.example] }
  - { name: audit, kind: custom, module: ${EXAMPLE}, path: ${path.join(dir.path, 'audit.jsonl')} }
routes:
  - { name: all, channels: [hook, chat, mail, audit] }
`,
    )
    const loaded = await loadNotificationsFile(file, deps)
    expect(loaded.channels.map((c) => [c.name, c.kind])).toEqual([
      ['hook', 'webhook'],
      ['chat', 'slack'],
      ['mail', 'email'],
      ['audit', 'append-file'],
    ])
    await writeFile(
      file,
      `channels:
  - { name: hook, kind: webhook, url: "https://ops.example/hook", secret: "whsec_t00-sh0rt" }
  - { name: chat, kind: slack, url: "hooks.slack.com/services/T1/B2/s3cr3tp4th" }
  - { name: mail, kind: email, host: smtp.example, port: 0, auth: { user: u, pass: "p4ss-w0rd" }, from: gw@x.example, to: [] }
  - { name: audit, kind: custom, module: ./config/channels/nowhere.ts }
routes:
  - { name: all, channels: [hook, chat, mail, audit] }
`,
    )
    const error = await loadNotificationsFile(file, deps).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(GatewayError)
    const lines = (error as GatewayError).message.split('\n')
    expect(lines.map((l) => l.replace(`${file}: `, '').replace(/: .*$/, ''))).toEqual([
      'channel "hook"',
      'channel "chat"',
      'channel "mail"',
      'channel "mail"',
      'channel "audit"',
    ])
    const text = lines.join('\n')
    for (const hidden of ['t00-sh0rt', 's3cr3tp4th', 'p4ss-w0rd'])
      expect(text).not.toContain(hidden)
    expect(text).toContain('field "secret"')
    expect(text).toContain('field "port"')
    expect(text).toContain('no such file')
  })
})
