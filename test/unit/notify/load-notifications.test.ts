import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { loadConfig } from '../../../src/config/load-config.ts'
import { ERROR_CODES, GatewayError } from '../../../src/errors.ts'
import { BUILT_IN_CHANNEL_KINDS } from '../../../src/notify/channel-kinds.ts'
import {
  DEFAULT_DELIVERY,
  type LoadCustomChannelKind,
  type LoadedNotifications,
  loadNotificationsFile,
  NO_NOTIFICATIONS,
  parseNotifications,
  watchNotificationsFile,
} from '../../../src/notify/load-notifications.ts'
import { DEFAULT_TEXT, DEFAULT_TITLE } from '../../../src/notify/templates.ts'
import type { ChannelKind } from '../../../src/notify/types.ts'
import type { RulesWatcher } from '../../../src/rules/rules-watcher.ts'
import { captureLogs } from '../../helpers/log-capture.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'
import { hookKind, TEST_KINDS } from './test-kind.ts'

const FILE = 'config/notifications.yaml'

function parse(text: string) {
  return parseNotifications(text, FILE, TEST_KINDS)
}

function errorsOf(text: string): string[] {
  const result = parse(text)
  if (result.ok) throw new Error('expected errors')
  return result.errors
}

const CHANNEL = 'channels:\n  - { name: ops, kind: hook, url: "http://127.0.0.1:9/x" }\n'

describe('parseNotifications: valid files', () => {
  it('applies the defaults: timeout 10s, concurrency 1, every alert and transition, no repeat, no grouping, default templates and delivery', () => {
    const result = parse(`${CHANNEL}routes:\n  - { name: all, channels: [ops] }\n`)
    expect(result.ok).toBe(true)
    if (!result.ok) return
    expect(result.config.channels).toEqual([
      {
        name: 'ops',
        kind: 'hook',
        timeoutMs: 10_000,
        concurrency: 1,
        config: { url: 'http://127.0.0.1:9/x' },
      },
    ])
    expect(result.config.routes).toEqual([
      {
        name: 'all',
        channels: ['ops'],
        match: { severity: null, rule: null, device: null, metric: null, tags: null },
        on: ['firing', 'resolved', 'flapping'],
        repeatIntervalMs: 0,
        groupWindowMs: 0,
        template: { title: DEFAULT_TITLE, text: DEFAULT_TEXT },
      },
    ])
    expect(result.config.delivery).toEqual({
      maxAttempts: 20,
      maxAgeMs: 86_400_000,
      retryBaseMs: 1_000,
      retryMaxMs: 300_000,
    })
    expect(result.config.kinds.get('hook')).toBe(hookKind)
    expect(Object.isFrozen(result.config.routes[0]?.match)).toBe(true)
    expect(Object.isFrozen(result.config.channels)).toBe(true)
  })

  it('reads every field of channels, routes and delivery', () => {
    const result = parse(`channels:
  - name: ops
    kind: hook
    timeout: 2s
    concurrency: 4
    url: https://example.org/hook
    secret: 0123456789abcdef
routes:
  - name: greenhouse
    channels: ops
    match:
      severity: minor+
      rule: 'high-*'
      device: [gh-1, 'gh-2?']
      metric: temperature
      tags: { site: 'north-*', floor: 2 }
    on: [resolved, firing]
    repeat: 4h
    group: 30s
    title: '{count} x {ruleId}'
    text: '{deviceId} {message}'
delivery:
  maxAttempts: 5
  maxAge: 1h
  retryBase: 500ms
  retryMax: 30s
`)
    expect(result.ok, result.ok ? '' : result.errors.join('\n')).toBe(true)
    if (!result.ok) return
    expect(result.config.channels[0]).toMatchObject({
      timeoutMs: 2_000,
      concurrency: 4,
      config: { url: 'https://example.org/hook', secret: '0123456789abcdef' },
    })
    expect(result.config.routes[0]).toEqual({
      name: 'greenhouse',
      channels: ['ops'],
      match: {
        severity: ['critical', 'major', 'minor'],
        rule: ['high-*'],
        device: ['gh-1', 'gh-2?'],
        metric: ['temperature'],
        tags: { site: 'north-*', floor: '2' },
      },
      // In the contract's order, whatever the file's.
      on: ['firing', 'resolved'],
      repeatIntervalMs: 4 * 3_600_000,
      groupWindowMs: 30_000,
      template: { title: '{count} x {ruleId}', text: '{deviceId} {message}' },
    })
    expect(result.config.delivery).toEqual({
      maxAttempts: 5,
      maxAgeMs: 3_600_000,
      retryBaseMs: 500,
      retryMaxMs: 30_000,
    })
  })

  it.each([
    ['one severity', 'major', ['major']],
    ['a list', '[info, critical]', ['critical', 'info']],
    ['a minimum', 'major+', ['critical', 'major']],
    ['the lowest minimum', 'info+', ['critical', 'major', 'minor', 'warning', 'info']],
    ['a minimum and one more', '[critical+, info]', ['critical', 'info']],
  ])('takes severity as %s', (_name, severity, want) => {
    const result = parse(
      `${CHANNEL}routes:\n  - { name: r, channels: [ops], match: { severity: ${severity} } }\n`,
    )
    expect(result.ok && result.config.routes[0]?.match.severity).toEqual(want)
  })

  it.each([
    ['an empty file', ''],
    ['only comments', '# channels:\n#  - name: ops\n'],
    ['empty lists', 'channels: []\nroutes: []\n'],
    ['every entry commented out', 'channels:\n#  - name: ops\nroutes:\n'],
  ])('accepts %s as nothing to notify', (_name, text) => {
    const result = parse(text)
    expect(result.ok).toBe(true)
    if (!result.ok) return
    expect(result.config.channels).toEqual([])
    expect(result.config.routes).toEqual([])
    expect(result.config.delivery).toEqual(DEFAULT_DELIVERY)
  })
})

describe('parseNotifications: errors name file, channel or route, and field', () => {
  const route = (extra: string) =>
    `${CHANNEL}routes:\n  - { name: r1, channels: [ops], ${extra} }\n`
  const channel = (extra: string) =>
    `channels:\n  - { name: ops, kind: hook, url: "http://h/", ${extra} }\n`

  it.each([
    {
      name: 'YAML syntax error with line and column',
      text: 'channels:\n  - name: a\n    name: b\n',
      want: `${FILE}:3:5: Map keys must be unique`,
    },
    {
      name: 'not a mapping',
      text: '- a\n',
      want: `${FILE}: must be a mapping of channels, routes, delivery, got a list of 1`,
    },
    {
      name: 'unknown top-level field',
      text: 'route: []\n',
      want: `${FILE}: field "route": unknown top-level field (did you mean "routes"?); known: channels, routes, delivery`,
    },
    {
      name: 'channels not a list',
      text: 'channels: { name: ops }\n',
      want: `${FILE}: field "channels": must be a list of channels, got a mapping`,
    },
    {
      name: 'routes not a list',
      text: 'routes: all\n',
      want: `${FILE}: field "routes": must be a list of routes, got "all"`,
    },
    {
      name: 'channel not a mapping',
      text: 'channels:\n  - ops\n',
      want: `${FILE}: channels[0]: must be a mapping, got "ops"`,
    },
    {
      name: 'channel without a name',
      text: 'channels:\n  - { kind: hook, url: "http://h/" }\n',
      want: `${FILE}: channels[0]: field "name": is required`,
    },
    {
      name: 'channel name not an identifier: named by index',
      text: 'channels:\n  - { name: "ops team", kind: hook, url: "http://h/" }\n',
      want: `${FILE}: channels[0]: field "name": must be an identifier ([A-Za-z0-9_.-]{1,64}), got "ops team"`,
    },
    {
      name: 'duplicate channel name',
      text: `${CHANNEL}  - { name: ops, kind: hook, url: "http://h/" }\n`,
      want: `${FILE}: channel "ops" (channels[1]): field "name": duplicate name, already used by channels[0]`,
    },
    {
      name: 'channel without a kind',
      text: 'channels:\n  - { name: ops, url: "http://h/" }\n',
      want: `${FILE}: channel "ops": field "kind": is required; known kinds: hook, custom`,
    },
    {
      name: 'unknown kind (typo)',
      text: 'channels:\n  - { name: ops, kind: hoook, url: "http://h/" }\n',
      want: `${FILE}: channel "ops": field "kind": unknown kind "hoook" (did you mean "hook"?); known kinds: hook, custom`,
    },
    {
      name: 'kind not a text',
      text: 'channels:\n  - { name: ops, kind: 3 }\n',
      want: `${FILE}: channel "ops": field "kind": must be one of hook, custom, got 3`,
    },
    {
      name: 'bad timeout',
      text: channel('timeout: soon'),
      want: `${FILE}: channel "ops": field "timeout": must be a duration like 30s, 5m, 1h or a number of milliseconds, above 0 and at most 10m, got "soon"`,
    },
    {
      name: 'timeout 0',
      text: channel('timeout: 0'),
      want: `${FILE}: channel "ops": field "timeout": must be a duration like 30s, 5m, 1h or a number of milliseconds, above 0 and at most 10m, got 0`,
    },
    {
      name: 'timeout too long',
      text: channel('timeout: 1h'),
      want: `${FILE}: channel "ops": field "timeout": must be a duration like 30s, 5m, 1h or a number of milliseconds, above 0 and at most 10m, got "1h"`,
    },
    {
      name: 'concurrency 0',
      text: channel('concurrency: 0'),
      want: `${FILE}: channel "ops": field "concurrency": must be an integer from 1 to 64, got 0`,
    },
    {
      name: 'concurrency not an integer',
      text: channel('concurrency: 1.5'),
      want: `${FILE}: channel "ops": field "concurrency": must be an integer from 1 to 64, got 1.5`,
    },
    {
      name: "the kind's own problem",
      text: 'channels:\n  - { name: ops, kind: hook, url: ftp://h }\n',
      want: `${FILE}: channel "ops": field "url": must be an http(s) URL, got "ftp://h"`,
    },
    {
      name: "a field the kind does not know (the loader's own are not passed on)",
      text: channel('timeout: 1s, urls: x'),
      want: `${FILE}: channel "ops": field "urls": is not a field of hook`,
    },
    {
      name: 'module on a built-in kind',
      text: channel('module: ./x.ts'),
      want: `${FILE}: channel "ops": field "module": is only for kind "custom"`,
    },
    {
      name: 'custom without module',
      text: 'channels:\n  - { name: pager, kind: custom }\n',
      want: `${FILE}: channel "pager": field "module": is required for kind "custom": a module path like ./config/channels/x.ts`,
    },
    {
      name: 'custom module not a module path',
      text: 'channels:\n  - { name: pager, kind: custom, module: ./pager.py }\n',
      want: `${FILE}: channel "pager": field "module": must be a module path ending in .ts, .mts, .js or .mjs, got "./pager.py"`,
    },
    {
      name: 'custom module not loaded (pure parse)',
      text: 'channels:\n  - { name: pager, kind: custom, module: ./pager.ts }\n',
      want: `${FILE}: channel "pager": field "module": module "./pager.ts" is not loaded (custom channels need loadNotificationsFile, which imports them)`,
    },
    {
      name: 'route not a mapping',
      text: `${CHANNEL}routes:\n  - r1\n`,
      want: `${FILE}: routes[0]: must be a mapping, got "r1"`,
    },
    {
      name: 'route without a name',
      text: `${CHANNEL}routes:\n  - { channels: [ops] }\n`,
      want: `${FILE}: routes[0]: field "name": is required`,
    },
    {
      name: 'duplicate route name',
      text: `${CHANNEL}routes:\n  - { name: r1, channels: [ops] }\n  - { name: r1, channels: [ops] }\n`,
      want: `${FILE}: route "r1" (routes[1]): field "name": duplicate name, already used by routes[0]`,
    },
    {
      name: 'route without channels',
      text: `${CHANNEL}routes:\n  - { name: r1 }\n`,
      want: `${FILE}: route "r1": field "channels": is required: must be a list of channel names of this file`,
    },
    {
      name: 'empty channel list',
      text: `${CHANNEL}routes:\n  - { name: r1, channels: [] }\n`,
      want: `${FILE}: route "r1": field "channels": must be a list of channel names of this file, got a list of 0`,
    },
    {
      name: 'unknown channel (typo)',
      text: `${CHANNEL}routes:\n  - { name: r1, channels: [ops, opz, mail] }\n`,
      want: `${FILE}: route "r1": field "channels[1]": unknown channel "opz" (did you mean "ops"?); channels of this file: ops`,
    },
    {
      name: 'unknown channel with no channels at all',
      text: 'routes:\n  - { name: r1, channels: ops }\n',
      want: `${FILE}: route "r1": field "channels": unknown channel "ops"; channels of this file: none`,
    },
    {
      name: 'channel named twice',
      text: `${CHANNEL}routes:\n  - { name: r1, channels: [ops, ops] }\n`,
      want: `${FILE}: route "r1": field "channels[1]": channel "ops" is named twice`,
    },
    {
      name: 'unknown route field (typo)',
      text: route('repaet: 1h'),
      want: `${FILE}: route "r1": field "repaet": unknown field (did you mean "repeat"?); known fields of a route: name, channels, match, on, repeat, group, title, text`,
    },
    {
      name: 'match not a mapping',
      text: route('match: critical'),
      want: `${FILE}: route "r1": field "match": must be a mapping of severity, rule, device, metric, tags (leave it out to take every alert), got "critical"`,
    },
    {
      name: 'unknown match field (typo)',
      text: route('match: { devices: x }'),
      want: `${FILE}: route "r1": field "match.devices": unknown field (did you mean "device"?); known: severity, rule, device, metric, tags`,
    },
    {
      name: 'unknown severity (typo)',
      text: route('match: { severity: majr }'),
      want: `${FILE}: route "r1": field "match.severity": must be a severity (critical, major, minor, warning, info), one with + for it and above (major+), or a list of them, got "majr" (did you mean "major"?)`,
    },
    {
      name: 'unknown severity minimum in a list',
      text: route('match: { severity: [critical, urgent+] }'),
      want: `${FILE}: route "r1": field "match.severity[1]": must be a severity (critical, major, minor, warning, info), one with + for it and above (major+), or a list of them, got "urgent+"`,
    },
    {
      name: 'empty severity list',
      text: route('match: { severity: [] }'),
      want: `${FILE}: route "r1": field "match.severity": must be a severity (critical, major, minor, warning, info), one with + for it and above (major+), or a list of them, got an empty list`,
    },
    {
      name: 'bad rule glob',
      text: route('match: { rule: "high temp" }'),
      want: `${FILE}: route "r1": field "match.rule": must be a rule id, a glob (* and ?) or a list of them, got "high temp"`,
    },
    {
      name: 'bad device glob in a list',
      text: route('match: { device: [gh-1, "gh/2"] }'),
      want: `${FILE}: route "r1": field "match.device[1]": must be a device id, a glob (* and ?) or a list of them, got "gh/2"`,
    },
    {
      name: 'empty device list',
      text: route('match: { device: [] }'),
      want: `${FILE}: route "r1": field "match.device": must be a device id, a glob (* and ?) or a list of them, got an empty list`,
    },
    {
      name: 'bad metric',
      text: route('match: { metric: 12 }'),
      want: `${FILE}: route "r1": field "match.metric": must be a metric id, a glob (* and ?) or a list of them, got 12`,
    },
    {
      name: 'tags not a mapping',
      text: route('match: { tags: [a] }'),
      want: `${FILE}: route "r1": field "match.tags": must be a mapping of tag name to value, got a list of 1`,
    },
    {
      name: 'empty tags',
      text: route('match: { tags: {} }'),
      want: `${FILE}: route "r1": field "match.tags": must name at least one tag (leave it out to match any tags)`,
    },
    {
      name: 'bad tag value',
      text: route('match: { tags: { site: [a] } }'),
      want: `${FILE}: route "r1": field "match.tags.site": must be a text of 1-128 characters, a number or a boolean, got a list of 1`,
    },
    {
      name: 'unknown transition (typo)',
      text: route('on: [firing, resolvd]'),
      want: `${FILE}: route "r1": field "on[1]": must be one of firing, resolved, flapping or a list of them (reminders: "repeat"), got "resolvd" (did you mean "resolved"?)`,
    },
    {
      name: 'repeat in on',
      text: route('on: repeat'),
      want: `${FILE}: route "r1": field "on": must be one of firing, resolved, flapping or a list of them (reminders: "repeat"), got "repeat"`,
    },
    {
      name: 'empty on',
      text: route('on: []'),
      want: `${FILE}: route "r1": field "on": must be one of firing, resolved, flapping or a list of them (reminders: "repeat"), got an empty list (a route that notifies nothing)`,
    },
    {
      name: 'bad repeat',
      text: route('repeat: often'),
      want: `${FILE}: route "r1": field "repeat": must be a duration like 30s, 5m, 1h or a number of milliseconds (0: no reminders), got "often"`,
    },
    {
      name: 'negative repeat',
      text: route('repeat: -5'),
      want: `${FILE}: route "r1": field "repeat": must be a duration like 30s, 5m, 1h or a number of milliseconds (0: no reminders), got -5`,
    },
    {
      name: 'group window too long',
      text: route('group: 2h'),
      want: `${FILE}: route "r1": field "group": must be a duration like 30s, 5m, 1h or a number of milliseconds, at most 1h (0: each alert alone, at once), got "2h"`,
    },
    {
      name: 'unknown placeholder in title',
      text: route('title: "{device}"'),
      want: `${FILE}: route "r1": field "title": unknown placeholder {device}; known: {deviceId} {metric} {value} {threshold} {ruleId} {state} {severity} {kind} {count} {message} {transition}`,
    },
    {
      name: 'empty text',
      text: route('text: ""'),
      want: `${FILE}: route "r1": field "text": must be a non-empty text, got ""`,
    },
    {
      name: 'delivery not a mapping',
      text: 'delivery: 5\n',
      want: `${FILE}: field "delivery": must be a mapping of maxAttempts, maxAge, retryBase, retryMax, got 5`,
    },
    {
      name: 'unknown delivery field (typo)',
      text: 'delivery: { maxAttempt: 3 }\n',
      want: `${FILE}: field "delivery.maxAttempt": unknown field (did you mean "maxAttempts"?); known: maxAttempts, maxAge, retryBase, retryMax`,
    },
    {
      name: 'maxAttempts 0',
      text: 'delivery: { maxAttempts: 0 }\n',
      want: `${FILE}: field "delivery.maxAttempts": must be an integer from 1 to 1000, got 0`,
    },
    {
      name: 'bad maxAge',
      text: 'delivery: { maxAge: forever }\n',
      want: `${FILE}: field "delivery.maxAge": must be a duration like 30s, 5m, 1h or a number of milliseconds, above 0, got "forever"`,
    },
    {
      name: 'retryBase 0',
      text: 'delivery: { retryBase: 0 }\n',
      want: `${FILE}: field "delivery.retryBase": must be a duration like 30s, 5m, 1h or a number of milliseconds, above 0, got 0`,
    },
    {
      name: 'retryMax below retryBase',
      text: 'delivery: { retryBase: 10s, retryMax: 1s }\n',
      want: `${FILE}: field "delivery.retryMax": must be at least delivery.retryBase (10000 ms), got 1000 ms`,
    },
  ])('$name', ({ text, want }) => {
    const errors = errorsOf(text)
    expect(errors, errors.join('\n')).toContain(want)
  })

  it('reports every problem of every channel, route and delivery at once', () => {
    const errors = errorsOf(`channels:
  - { name: ops, kind: hook, url: ftp://x, timeout: soon }
  - { name: ops, kind: hoook }
  - { name: "bad name", kind: hook, url: "http://h/", concurrency: 0 }
routes:
  - name: r1
    channels: [ops, mail]
    match: { severity: majr, device: "a b" }
    on: [firing, resolvd]
    title: "{foo}"
  - { name: r2, channels: [ops], group: 2h }
delivery: { maxAttempts: 0 }
`)
    expect(errors).toEqual([
      `${FILE}: channel "ops": field "timeout": must be a duration like 30s, 5m, 1h or a number of milliseconds, above 0 and at most 10m, got "soon"`,
      `${FILE}: channel "ops": field "url": must be an http(s) URL, got "ftp://x"`,
      `${FILE}: channel "ops" (channels[1]): field "name": duplicate name, already used by channels[0]`,
      `${FILE}: channel "ops" (channels[1]): field "kind": unknown kind "hoook" (did you mean "hook"?); known kinds: hook, custom`,
      `${FILE}: channels[2]: field "name": must be an identifier ([A-Za-z0-9_.-]{1,64}), got "bad name"`,
      `${FILE}: channels[2]: field "concurrency": must be an integer from 1 to 64, got 0`,
      `${FILE}: route "r1": field "channels[1]": unknown channel "mail"; channels of this file: ops`,
      `${FILE}: route "r1": field "match.severity": must be a severity (critical, major, minor, warning, info), one with + for it and above (major+), or a list of them, got "majr" (did you mean "major"?)`,
      `${FILE}: route "r1": field "match.device": must be a device id, a glob (* and ?) or a list of them, got "a b"`,
      `${FILE}: route "r1": field "on[1]": must be one of firing, resolved, flapping or a list of them (reminders: "repeat"), got "resolvd" (did you mean "resolved"?)`,
      `${FILE}: route "r1": field "title": unknown placeholder {foo}; known: {deviceId} {metric} {value} {threshold} {ruleId} {state} {severity} {kind} {count} {message} {transition}`,
      `${FILE}: route "r2": field "group": must be a duration like 30s, 5m, 1h or a number of milliseconds, at most 1h (0: each alert alone, at once), got "2h"`,
      `${FILE}: field "delivery.maxAttempts": must be an integer from 1 to 1000, got 0`,
    ])
  })

  it('never shows a secret, not even when the kind quotes it back, whole or cut', () => {
    const short = 'hunter2-secret'
    const long = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwverylongsecretvalue"quoted'
    const text = `channels:
  - { name: a, kind: hook, url: "http://h/", secret: ${JSON.stringify(short)} }
  - { name: b, kind: hook, url: 7, secret: ${JSON.stringify(long)}, timeout: x }
`
    const errors = errorsOf(text)
    // The kind quotes both secrets back, as a careless custom kind would: no message carries
    // either, whole or cut.
    expect(errors).toContain(
      `${FILE}: channel "a": field "secret": must be 16 characters or more, got "[redacted]"`,
    )
    // describeValue cuts a long value at 40 characters: the cut form is redacted too.
    expect(errors).toContain(
      `${FILE}: channel "b": field "secret": must not hold quotes, got "[redacted]..."`,
    )
    const all = errors.join('\n')
    expect(all).not.toContain('hunter2')
    expect(all).not.toContain(long.slice(0, 20))
    expect(errors.length).toBe(4)
  })
})

describe('custom channel kinds', () => {
  let dir: TempDir
  let file: string
  const pagerKind: ChannelKind = {
    ...hookKind,
    kind: 'pager',
    create: hookKind.create as ChannelKind['create'],
  }
  const loadCustom: LoadCustomChannelKind = async (modulePath, baseDir) => {
    if (modulePath === './pager.ts' && baseDir === dir.path) return pagerKind
    if (modulePath === './junk.ts') return { kind: 'junk' } as unknown as ChannelKind
    if (modulePath === './webhook.ts') return { ...pagerKind, kind: 'hook' }
    throw new Error(`no such file ${path.join(baseDir, modulePath)}`)
  }

  beforeAll(async () => {
    dir = await createTempDir('notifications-custom-')
    file = path.join(dir.path, 'notifications.yaml')
  })
  afterAll(() => dir.remove())

  it('loads a kind: custom module through the loader it is given, and creates by its kind name', async () => {
    await writeFile(
      file,
      'channels:\n  - { name: p, kind: custom, module: ./pager.ts, url: "http://h/" }\nroutes:\n  - { name: r, channels: [p] }\n',
    )
    const config = await loadNotificationsFile(file, {
      kinds: TEST_KINDS,
      loadCustom,
      baseDir: dir.path,
    })
    expect(config.channels[0]).toMatchObject({
      name: 'p',
      kind: 'pager',
      config: { url: 'http://h/' },
    })
    expect(config.kinds.get('pager')).toBe(pagerKind)
    expect(config.kinds.get('hook')).toBe(hookKind)
  })

  it('names every module that cannot be used', async () => {
    await writeFile(
      file,
      `channels:
  - { name: a, kind: custom, module: ./missing.ts }
  - { name: b, kind: custom, module: ./junk.ts }
  - { name: c, kind: custom, module: ./webhook.ts, url: "http://h/" }
`,
    )
    const error = await loadNotificationsFile(file, {
      kinds: TEST_KINDS,
      loadCustom,
      baseDir: dir.path,
    }).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(GatewayError)
    expect((error as GatewayError).code).toBe(ERROR_CODES.notifications)
    expect((error as GatewayError).message.split('\n')).toEqual([
      `${file}: channel "a": field "module": cannot load channel module "./missing.ts": no such file ${path.join(dir.path, 'missing.ts')}`,
      `${file}: channel "b": field "module": channel module "./junk.ts": default export must be a channel kind { kind, secretFields, parse, create }: "secretFields" must be a list of field names (may be empty), got nothing`,
      `${file}: channel "c": field "module": channel module "./webhook.ts": default export must be a channel kind { kind, secretFields, parse, create }: kind "hook" is taken by a built-in kind`,
    ])
  })

  it('imports modules with loadCustomChannelKind by default: the shipped example kind, a module of the folder', async () => {
    await writeFile(
      path.join(dir.path, 'null-kind.mjs'),
      "export default { kind: 'null-kind', secretFields: [], parse: () => ({}), create: (name) => ({ name, kind: 'null-kind', deliver: async () => ({ ok: true }), close: async () => {} }) }\n",
    )
    await writeFile(
      file,
      `channels:
  - { name: audit, kind: custom, module: ${JSON.stringify(path.resolve('config/channels/append-file.ts'))}, path: ./x.jsonl }
  - { name: nothing, kind: custom, module: ./null-kind.mjs }
routes:
  - { name: r, channels: [audit, nothing] }
`,
    )
    const config = await loadNotificationsFile(file, { kinds: TEST_KINDS, baseDir: dir.path })
    expect(config.channels.map((c) => [c.name, c.kind])).toEqual([
      ['audit', 'append-file'],
      ['nothing', 'null-kind'],
    ])
    expect(config.kinds.get('append-file')?.secretFields).toEqual([])
    await writeFile(file, 'channels:\n  - { name: p, kind: custom, module: ./nope.ts }\n')
    await expect(
      loadNotificationsFile(file, { kinds: TEST_KINDS, baseDir: dir.path }),
    ).rejects.toThrow(
      `${file}: channel "p": field "module": cannot load channel module "./nope.ts": no such file ${path.join(dir.path, 'nope.ts')}`,
    )
  })

  it('refuses two modules that claim one kind name', async () => {
    await writeFile(
      file,
      'channels:\n  - { name: a, kind: custom, module: ./pager.ts, url: "http://h/" }\n  - { name: b, kind: custom, module: ./pager2.ts, url: "http://h/" }\n',
    )
    const twin = { ...pagerKind }
    const error = await loadNotificationsFile(file, {
      kinds: TEST_KINDS,
      baseDir: dir.path,
      loadCustom: async (p, base) => (p === './pager2.ts' ? twin : loadCustom(p, base)),
    }).catch((e: Error) => e)
    expect((error as Error).message).toBe(
      `${file}: channel "b": field "module": module "./pager2.ts" names its kind "pager", as another module of this file does`,
    )
  })
})

describe('with the built-in channel kinds', () => {
  const EXAMPLE = 'config/notifications.example.yaml'

  it('the shipped example is valid, and nothing reads it by default', async () => {
    const config = await loadNotificationsFile(EXAMPLE, { kinds: BUILT_IN_CHANNEL_KINDS })
    expect(config.channels.map((c) => [c.name, c.kind])).toEqual([
      ['ops-webhook', 'webhook'],
      ['greenhouse-chat', 'slack'],
      ['ops-email', 'email'],
    ])
    expect(config.routes.map((r) => [r.name, r.channels])).toEqual([
      ['major-to-ops', ['ops-webhook', 'ops-email']],
      ['greenhouse-storms', ['greenhouse-chat']],
    ])
    expect(config.delivery).toEqual(DEFAULT_DELIVERY)
    expect(loadConfig({}).notificationsFile).toBe('')
  })

  it('never shows a webhook header, a Slack URL or an SMTP password in a problem', () => {
    const token = 'Bearer tok-9f8e7d6c5b4a'
    const slackUrl = 'https://hooks.slack.com/services/T0/B0/abcdefghijklmnop'
    const password = 'pa55-w0rd-xyz'
    const result = parseNotifications(
      `channels:
  - { name: w, kind: webhook, url: "http://h/", headers: { Authorization: ${JSON.stringify(`${token}\n`)} }, timeout: x }
  - { name: s, kind: slack, url: ${JSON.stringify(slackUrl)}, concurrency: 0 }
  - { name: e, kind: email, host: h, from: a@b.example, to: [c@d.example], auth: { user: u, pass: ${JSON.stringify(password)}, extra: ${JSON.stringify(password)} } }
`,
      FILE,
      BUILT_IN_CHANNEL_KINDS,
    )
    expect(result.ok).toBe(false)
    if (result.ok) return
    expect(result.errors.length).toBeGreaterThanOrEqual(4)
    const all = result.errors.join('\n')
    for (const secret of ['tok-9f8e7d6c5b4a', 'abcdefghijklmnop', password]) {
      expect(all).not.toContain(secret)
    }
  })
})

describe('loadNotificationsFile', () => {
  let dir: TempDir
  beforeAll(async () => {
    dir = await createTempDir('notifications-load-')
  })
  afterAll(() => dir.remove())

  it('treats an empty NOTIFICATIONS_FILE, the default, as no notifications', async () => {
    expect(loadConfig({}).notificationsFile).toBe('')
    const config = await loadNotificationsFile('', { kinds: TEST_KINDS })
    expect(config).toBe(NO_NOTIFICATIONS)
    expect(config.channels).toEqual([])
    expect(config.routes).toEqual([])
  })

  it('throws GW_ERR_NOTIFICATIONS naming a file it cannot read', async () => {
    const missing = path.join(dir.path, 'nope.yaml')
    const error = await loadNotificationsFile(missing, { kinds: TEST_KINDS }).catch((e) => e)
    expect(error).toBeInstanceOf(GatewayError)
    expect(error).toMatchObject({ code: 'GW_ERR_NOTIFICATIONS' })
    expect((error as Error).message).toMatch(`${missing}: cannot read notifications file: ENOENT`)
  })

  it('throws every problem in one error, with the YAML position of a syntax error', async () => {
    const file = path.join(dir.path, 'bad.yaml')
    await writeFile(file, 'routes:\n  - { name: r1, channels: [x] }\n  - { name: r1 }\n')
    const error = (await loadNotificationsFile(file, { kinds: TEST_KINDS }).catch(
      (e) => e,
    )) as Error
    expect(error.message.split('\n')).toEqual([
      `${file}: route "r1": field "channels[0]": unknown channel "x"; channels of this file: none`,
      `${file}: route "r1" (routes[1]): field "name": duplicate name, already used by routes[0]`,
      `${file}: route "r1" (routes[1]): field "channels": is required: must be a list of channel names of this file`,
    ])
    await writeFile(file, 'routes: [\n')
    await expect(loadNotificationsFile(file, { kinds: TEST_KINDS })).rejects.toMatchObject({
      code: 'GW_ERR_NOTIFICATIONS',
      message: expect.stringMatching(new RegExp(`^${file}:2:1: `)),
    })
  })
})

/** The rules file's watcher, reused: a real file in a temp folder, edited as an operator would. */
describe('watchNotificationsFile', () => {
  let dir: TempDir
  let file: string
  let watcher: RulesWatcher | null = null
  const applied: LoadedNotifications[] = []
  const { log, lines } = captureLogs('info')
  const SECRET = 'short-secret'
  const routes = (...names: string[]) =>
    `${CHANNEL}routes:\n${names.map((n) => `  - { name: ${n}, channels: [ops] }\n`).join('')}`

  beforeEach(async () => {
    dir = await createTempDir('notifications-watch-')
    file = path.join(dir.path, 'notifications.yaml')
    await writeFile(file, routes('first'))
    applied.length = 0
    lines.length = 0
  })
  afterEach(async () => {
    watcher?.close()
    watcher = null
    await dir.remove()
  })

  it('applies an edit, and keeps the config in force when an edit is invalid, secrets redacted in the log', async () => {
    watcher = watchNotificationsFile(
      { log, kinds: TEST_KINDS, apply: (config) => applied.push(config) },
      { file, debounceMs: 50 },
    )
    expect(await watcher.reload()).toBe(true)
    expect(applied.map((c) => c.routes.map((r) => r.name))).toEqual([['first']])

    await writeFile(file, routes('first', 'second'))
    await vi.waitFor(() => expect(applied).toHaveLength(2), { timeout: 2_000, interval: 10 })
    expect(applied[1]?.routes.map((r) => r.name)).toEqual(['first', 'second'])
    expect(lines).toContainEqual(
      expect.objectContaining({ module: 'notifications-watcher', msg: 'notifications reloaded' }),
    )

    await writeFile(
      file,
      `channels:\n  - { name: ops, kind: hook, url: "http://h/", secret: ${SECRET} }\nroutes:\n  - { name: r, channels: [mail] }\n`,
    )
    await vi.waitFor(
      () =>
        expect(lines.map((l) => l.msg)).toContain(
          'notifications file rejected; the notifications in force are kept',
        ),
      { timeout: 2_000, interval: 10 },
    )
    const rejected = lines.find((l) => l.level === 50)
    expect(rejected).toMatchObject({ module: 'notifications-watcher', file })
    expect(String(rejected?.problems).split('\n')).toEqual([
      `${file}: channel "ops": field "secret": must be 16 characters or more, got "[redacted]"`,
      `${file}: route "r": field "channels[0]": unknown channel "mail"; channels of this file: ops`,
    ])
    expect(JSON.stringify(lines)).not.toContain(SECRET)
    expect(applied).toHaveLength(2)
  })
})
