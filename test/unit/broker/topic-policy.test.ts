import { describe, expect, it } from 'vitest'
import {
  checkTopicFilter,
  checkTopicName,
  dollarTopicSubscribed,
  topicMatches,
} from '../../../src/broker/topic-policy.ts'

describe('topic names (MQTT 3.1.1 §4.7)', () => {
  it.each([['sensors/dev-1/temperature'], ['/'], ['a//b'], ['$SYS/x'], ['ünïcode/ok']])(
    'accepts %j',
    (topic) => {
      expect(checkTopicName(topic)).toBeNull()
    },
  )

  it.each([
    ['', 'MQTT-4.7.3-1'],
    ['a\u0000b', 'MQTT-4.7.3-2'],
    ['a/+', 'MQTT-4.7.1-1'],
    ['a/#', 'MQTT-4.7.1-1'],
    ['a+b', 'MQTT-4.7.1-1'],
  ])('refuses %j (%s)', (topic, spec) => {
    expect(checkTopicName(topic)?.spec).toBe(spec)
  })
})

describe('topic filters (MQTT 3.1.1 §4.7)', () => {
  it.each([
    ['#'],
    ['+'],
    ['+/+'],
    ['/+'],
    ['+/'],
    ['a/+/b'],
    ['a/#'],
    ['+/#'],
    ['a//+'],
    ['sport/tennis/player1'],
    ['$SYS/#'],
  ])('accepts %j', (filter) => {
    expect(checkTopicFilter(filter)).toBeNull()
  })

  it.each([
    ['', 'MQTT-4.7.3-1'],
    ['a/\u0000', 'MQTT-4.7.3-2'],
    // Aedes' validateTopic lets these three through; the gateway must not.
    ['a#', 'MQTT-4.7.1-2'],
    ['+a', 'MQTT-4.7.1-3'],
    ['a+', 'MQTT-4.7.1-3'],
    ['a/#/b', 'MQTT-4.7.1-2'],
    ['a/b#', 'MQTT-4.7.1-2'],
    ['##', 'MQTT-4.7.1-2'],
    ['#/', 'MQTT-4.7.1-2'],
    ['a/+b', 'MQTT-4.7.1-3'],
    ['a/b+/c', 'MQTT-4.7.1-3'],
    ['++', 'MQTT-4.7.1-3'],
  ])('refuses %j (%s)', (filter, spec) => {
    expect(checkTopicFilter(filter)?.spec).toBe(spec)
  })
})

describe('topicMatches (§4.7.1)', () => {
  it.each([
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['#', 'a/b', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a', false],
    ['a/+', 'a/b/c', false],
    ['+/+', '/finance', true],
    ['/+', '/finance', true],
    ['+', '/finance', false],
    ['a/b', 'a/b', true],
    ['a/b', 'A/b', false],
  ])('%j against %j: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected)
  })
})

describe('dollarTopicSubscribed ([MQTT-4.7.2-1])', () => {
  it('only a filter that does not start with a wildcard delivers a $ topic', () => {
    expect(dollarTopicSubscribed(['#'], '$SYS/x')).toBe(false)
    expect(dollarTopicSubscribed(['+/x'], '$SYS/x')).toBe(false)
    expect(dollarTopicSubscribed(['#', '$SYS/#'], '$SYS/x')).toBe(true)
    expect(dollarTopicSubscribed(['$SYS/+'], '$SYS/x')).toBe(true)
    expect(dollarTopicSubscribed(['$OTHER/#'], '$SYS/x')).toBe(false)
  })
})
