import { describe, expect, it } from 'vitest'
import {
  DEFAULT_TEXT,
  DEFAULT_TITLE,
  NOTIFICATION_PLACEHOLDERS,
  renderNotification,
} from '../../../src/notify/templates.ts'
import { templateProblems } from '../../../src/rules/alert-message.ts'
import { describeValue } from '../../../src/rules/describe-value.ts'
import { alert } from './alert-fixture.ts'

const defaults = { template: { title: DEFAULT_TITLE, text: DEFAULT_TEXT } }
const custom = (title: string, text: string) => ({ template: { title, text } })

describe('renderNotification: one alert', () => {
  it.each([
    ['firing', {}, '[major] high-temp on gh-1: firing', '31.5 above 30'],
    [
      'resolved',
      { state: 'resolved', message: '29 no longer above 30' },
      '[major] high-temp on gh-1: resolved',
      '29 no longer above 30',
    ],
    ['flapping', { flapping: true }, '[major] high-temp on gh-1: flapping', '31.5 above 30'],
    ['repeat', {}, '[major] high-temp on gh-1: still firing', '31.5 above 30'],
  ] as const)(
    'the default templates say severity, rule, device and the %s transition',
    (kind, overrides, title, text) => {
      expect(renderNotification(defaults, kind, [alert(overrides)])).toEqual({ title, text })
    },
  )

  it('fills every placeholder, numbers as people read them', () => {
    const every = NOTIFICATION_PLACEHOLDERS.map((p) => `${p}={${p}}`).join(' ')
    const rendered = renderNotification(custom(every, every), 'firing', [
      alert({ value: 26.1 - 21, threshold: 5 }),
    ])
    const want =
      'deviceId=gh-1 metric=temperature value=5.1 threshold=5 ruleId=high-temp state=firing severity=major kind=threshold count=1 message=31.5 above 30 transition=firing'
    expect(rendered).toEqual({ title: want, text: want })
  })

  it("keeps {state} the alert's state, as in rule messages, and {transition} what is notified", () => {
    const rendered = renderNotification(custom('{state}/{transition}', '{state}'), 'flapping', [
      alert({ flapping: true }),
    ])
    expect(rendered).toEqual({ title: 'firing/flapping', text: 'firing' })
  })

  it('makes the title one line (an email subject), the text keeps its lines', () => {
    const rendered = renderNotification(
      custom('{ruleId}\n  on {deviceId}', 'a\nb: {message}'),
      'firing',
      [alert({ message: 'line 1\nline 2' })],
    )
    expect(rendered).toEqual({
      title: 'high-temp on gh-1',
      text: 'a\nb: line 1\nline 2',
    })
  })

  it('refuses to render nothing', () => {
    expect(() => renderNotification(defaults, 'firing', [])).toThrow(RangeError)
  })
})

describe('renderNotification: a group', () => {
  const storm = Array.from({ length: 200 }, (_, i) =>
    alert({
      id: `high-temp:gh-${i + 1}`,
      deviceId: `gh-${i + 1}`,
      value: 31 + i / 10,
      message: `${31 + i / 10} above 30`,
    }),
  )

  it('is one message for a storm: the default title counts, the text has a line per alert', () => {
    const { title, text } = renderNotification(defaults, 'firing', storm)
    expect(title).toBe('[major] high-temp: 200 alerts firing')
    const lines = text.split('\n')
    expect(lines).toHaveLength(200)
    expect(lines[0]).toBe('gh-1: 31 above 30')
    expect(lines[199]).toBe('gh-200: 50.9 above 30')
  })

  it('says the most severe severity, and the rules, devices and values the group spans', () => {
    const group = [
      alert(),
      alert({ deviceId: 'gh-2', severity: 'critical', ruleId: 'very-high-temp', value: 40 }),
      alert({ deviceId: 'gh-3', value: 32 }),
      alert({ deviceId: 'gh-4', value: 33 }),
      alert({ deviceId: 'gh-5', value: 31.5 }),
    ]
    expect(renderNotification(defaults, 'resolved', group).title).toBe(
      '[critical] high-temp, very-high-temp: 5 alerts resolved',
    )
    expect(
      renderNotification(custom('{deviceId} | {value} | {metric} | {count}', '-'), 'firing', group)
        .title,
    ).toBe('gh-1, gh-2, gh-3 +2 more | 31.5, 40, 32 +1 more | temperature | 5')
  })

  it("renders a route's own text once per alert, each on its line, {count} the group's size", () => {
    const group = [alert(), alert({ deviceId: 'gh-2', value: 35 })]
    expect(
      renderNotification(custom('{count} hot', '{deviceId}={value} ({count})'), 'repeat', group),
    ).toEqual({ title: '2 hot', text: 'gh-1=31.5 (2)\ngh-2=35 (2)' })
  })
})

describe('template validation', () => {
  it('knows {count}, {message} and {transition} in notifications, and not in rule messages', () => {
    const template = '{count} {message} {transition} {deviceId}'
    expect(templateProblems(template, describeValue, NOTIFICATION_PLACEHOLDERS)).toEqual([])
    expect(templateProblems(template, describeValue)).toEqual([
      'unknown placeholder {count}; known: {deviceId} {metric} {value} {threshold} {ruleId} {state} {severity} {kind}',
      'unknown placeholder {message}; known: {deviceId} {metric} {value} {threshold} {ruleId} {state} {severity} {kind}',
      'unknown placeholder {transition}; known: {deviceId} {metric} {value} {threshold} {ruleId} {state} {severity} {kind}',
    ])
  })
})
