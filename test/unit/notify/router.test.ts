import { describe, expect, it } from 'vitest'
import type { Alert } from '../../../src/contract/types.ts'
import { parseNotifications } from '../../../src/notify/load-notifications.ts'
import { type AlertMatchersLike, alertMatches, routeAlert } from '../../../src/notify/router.ts'
import type { NotificationsConfig } from '../../../src/notify/types.ts'
import { alert } from './alert-fixture.ts'
import { TEST_KINDS } from './test-kind.ts'

/** Routes as an operator writes them: through the loader, so the tests route what it builds. */
function config(routes: string): NotificationsConfig {
  const result = parseNotifications(
    `channels:
  - { name: ops, kind: hook, url: "http://h/ops" }
  - { name: mail, kind: hook, url: "http://h/mail" }
  - { name: chat, kind: hook, url: "http://h/chat" }
routes:
${routes}`,
    'notifications.yaml',
    TEST_KINDS,
  )
  if (!result.ok) throw new Error(result.errors.join('\n'))
  return result.config
}

function matchersOf(match: string): AlertMatchersLike {
  const route = config(`  - { name: r, channels: [ops], match: ${match} }\n`).routes[0]
  if (route === undefined) throw new Error('no route')
  return route.match
}

const NO_TAGS = {}

describe('alertMatches', () => {
  it('takes every alert when no matcher is set', () => {
    const any = matchersOf('{}')
    expect(alertMatches(any, alert(), NO_TAGS)).toBe(true)
    expect(
      alertMatches(any, alert({ severity: 'info', ruleId: 'x', deviceId: 'y' }), NO_TAGS),
    ).toBe(true)
  })

  it.each([
    ['a listed severity', '{ severity: [critical, major] }', { severity: 'major' }, true],
    ['a severity not listed', '{ severity: [critical, major] }', { severity: 'minor' }, false],
    ['a severity above a minimum', '{ severity: minor+ }', { severity: 'critical' }, true],
    ['the minimum itself', '{ severity: minor+ }', { severity: 'minor' }, true],
    ['a severity below a minimum', '{ severity: minor+ }', { severity: 'warning' }, false],
    ['a rule glob', "{ rule: 'high-*' }", { ruleId: 'high-humidity' }, true],
    ['a rule outside the glob', "{ rule: 'high-*' }", { ruleId: 'low-battery' }, false],
    ['a rule id in a list', '{ rule: [a, high-temp] }', {}, true],
    ['a device glob with ?', "{ device: 'gh-?' }", { deviceId: 'gh-7' }, true],
    ['a device the glob misses', "{ device: 'gh-?' }", { deviceId: 'gh-10' }, false],
    ['a device in a list of globs', "{ device: [x, 'gh-1*'] }", { deviceId: 'gh-12' }, true],
    ['a metric', '{ metric: temperature }', {}, true],
    ['another metric', '{ metric: temperature }', { metric: 'humidity' }, false],
    ['a metric glob', "{ metric: 'temp*' }", {}, true],
  ] as const)('%s: %s', (_name, match, overrides, want) => {
    expect(alertMatches(matchersOf(match), alert(overrides), NO_TAGS)).toBe(want)
  })

  it('needs every matcher to match', () => {
    const m = matchersOf(
      "{ severity: major+, rule: 'high-*', device: 'gh-*', metric: temperature }",
    )
    expect(alertMatches(m, alert(), NO_TAGS)).toBe(true)
    expect(alertMatches(m, alert({ severity: 'minor' }), NO_TAGS)).toBe(false)
    expect(alertMatches(m, alert({ ruleId: 'low-temp' }), NO_TAGS)).toBe(false)
    expect(alertMatches(m, alert({ deviceId: 'barn-1' }), NO_TAGS)).toBe(false)
    expect(alertMatches(m, alert({ metric: 'co2' }), NO_TAGS)).toBe(false)
  })

  it('matches device tags: every tag named, values as globs, a missing tag never matches', () => {
    const m = matchersOf("{ tags: { site: 'north-*', floor: 2 } }")
    expect(alertMatches(m, alert(), { site: 'north-3', floor: '2', owner: 'x' })).toBe(true)
    expect(alertMatches(m, alert(), { site: 'south-1', floor: '2' })).toBe(false)
    expect(alertMatches(m, alert(), { site: 'north-3', floor: '20' })).toBe(false)
    expect(alertMatches(m, alert(), { site: 'north-3' })).toBe(false)
    expect(alertMatches(m, alert(), NO_TAGS)).toBe(false)
  })

  it('takes a glob character in a tag value literally apart from * and ?', () => {
    const m = matchersOf("{ tags: { zone: 'a.b(c)*' } }")
    expect(alertMatches(m, alert(), { zone: 'a.b(c)-west' })).toBe(true)
    expect(alertMatches(m, alert(), { zone: 'aXb(c)-west' })).toBe(false)
  })

  it("takes a silence's matchers, which may leave metric out", () => {
    const silence: AlertMatchersLike = {
      severity: null,
      rule: ['high-temp'],
      device: null,
      tags: null,
    }
    expect(alertMatches(silence, alert({ metric: 'anything' }), NO_TAGS)).toBe(true)
    expect(alertMatches(silence, alert({ ruleId: 'other' }), NO_TAGS)).toBe(false)
  })
})

describe('routeAlert', () => {
  const targets = (c: NotificationsConfig, a: Alert, tags = NO_TAGS) =>
    routeAlert(c, a, tags).map((t) => [t.route.name, t.channel, t.kind])

  it('sends a matching alert to each channel of each matching route, in file order', () => {
    const c = config(`  - { name: critical, channels: [ops, mail], match: { severity: critical } }
  - { name: greenhouse, channels: [chat], match: { device: 'gh-*' } }
  - { name: barn, channels: [mail], match: { device: 'barn-*' } }
`)
    expect(targets(c, alert({ severity: 'critical' }))).toEqual([
      ['critical', 'ops', 'firing'],
      ['critical', 'mail', 'firing'],
      ['greenhouse', 'chat', 'firing'],
    ])
    expect(targets(c, alert())).toEqual([['greenhouse', 'chat', 'firing']])
    expect(targets(c, alert({ deviceId: 'field-1' }))).toEqual([])
  })

  it.each([
    ['firing', { state: 'firing' }, [['fire', 'ops', 'firing']]],
    [
      'resolved',
      { state: 'resolved' },
      [
        ['resolve', 'mail', 'resolved'],
        ['all', 'chat', 'resolved'],
      ],
    ],
    // A flapping notice carries the state it flaps in: it is routed as flapping, not as that state.
    ['flapping', { state: 'firing', flapping: true }, [['all', 'chat', 'flapping']]],
    [
      'flapping while resolved',
      { state: 'resolved', flapping: true },
      [['all', 'chat', 'flapping']],
    ],
  ] as const)('routes a %s transition only by routes whose on lists it', (_n, overrides, want) => {
    const c = config(`  - { name: fire, channels: [ops], on: firing }
  - { name: resolve, channels: [mail], on: [resolved] }
  - { name: all, channels: [chat], on: [resolved, flapping] }
`)
    expect(targets(c, alert(overrides))).toEqual(want)
  })

  it('notifies a channel once per alert: the first matching route that names it wins', () => {
    const c = config(`  - { name: only-resolved, channels: [ops], on: resolved }
  - { name: critical, channels: [ops, mail], match: { severity: critical }, group: 1m }
  - { name: everything, channels: [mail, chat, ops] }
`)
    const firing = routeAlert(c, alert({ severity: 'critical' }), NO_TAGS)
    expect(firing.map((t) => [t.route.name, t.channel])).toEqual([
      ['critical', 'ops'],
      ['critical', 'mail'],
      ['everything', 'chat'],
    ])
    expect(firing[0]?.route.groupWindowMs).toBe(60_000)
    expect(targets(c, alert({ severity: 'critical', state: 'resolved' }))).toEqual([
      ['only-resolved', 'ops', 'resolved'],
      ['critical', 'mail', 'resolved'],
      ['everything', 'chat', 'resolved'],
    ])
  })

  it('routes by device tags', () => {
    const c = config(`  - { name: north, channels: [ops], match: { tags: { site: north } } }\n`)
    expect(targets(c, alert(), { site: 'north' })).toEqual([['north', 'ops', 'firing']])
    expect(targets(c, alert(), { site: 'south' })).toEqual([])
  })

  it('routes nothing with no routes', () => {
    expect(routeAlert({ routes: [] }, alert(), NO_TAGS)).toEqual([])
  })
})
