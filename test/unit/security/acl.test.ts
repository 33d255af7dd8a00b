import { describe, expect, it } from 'vitest'
import {
  filterWithinGrant,
  mayPublish,
  mayReceive,
  maySubscribe,
  metricAllowed,
  type Principal,
  type Role,
  subscribeGrants,
  topicMatchesFilter,
} from '../../../src/security/acl.ts'

const device = (id: string, metrics: string[] | null = null): Principal => ({
  kind: 'device',
  id,
  metrics: metrics ? new Set(metrics) : null,
})
const app = (...roles: Role[]): Principal => ({ kind: 'app', id: 'app', roles: new Set(roles) })

describe('filterWithinGrant', () => {
  it.each([
    // filter, grant, within
    ['sensors/dev-1/temperature', 'sensors/dev-1/#', true],
    ['sensors/dev-1/+', 'sensors/dev-1/#', true],
    ['sensors/dev-1/#', 'sensors/dev-1/#', true],
    ['sensors/dev-1', 'sensors/dev-1/#', true], // `#` covers its parent level [MQTT-4.7.1-2]
    ['sensors/dev-1/a/b/c', 'sensors/dev-1/#', true],
    ['sensors/#', 'sensors/dev-1/#', false],
    ['sensors/+/temperature', 'sensors/dev-1/#', false],
    ['sensors/+', 'sensors/dev-1/#', false],
    ['sensors/dev-10/temperature', 'sensors/dev-1/#', false],
    ['sensors/dev-1x', 'sensors/dev-1/#', false],
    ['#', 'sensors/dev-1/#', false],
    ['+/dev-1/temperature', 'sensors/dev-1/#', false],
    ['sensors', 'sensors/dev-1/#', false],
    ['sensors/dev-1', 'sensors/dev-1', true],
    ['sensors/dev-1/temperature', 'sensors/dev-1', false],
    ['sensors/+', 'sensors/dev-1', false],
    ['devices/dev-1/status', 'devices/+/status', true],
    ['devices/+/status', 'devices/+/status', true],
    ['devices/#', 'devices/+/status', false],
    ['devices/+/+', 'devices/+/status', false],
    ['devices/dev-1/status/x', 'devices/+/status', false],
    ['devices/dev-1', 'devices/+/status', false],
    ['alerts/critical/dev-1/high-temp', 'alerts/#', true],
    ['alerts/+/dev-1/#', 'alerts/#', true],
    ['alerts', 'alerts/#', true],
    ['alertsx/critical', 'alerts/#', false],
    ['#', '#', true],
    ['anything/at/all', '#', true],
    ['+/+', '+/#', true],
    ['$SYS/#', '#', false], // a leading wildcard never covers $-topics [MQTT-4.7.2-1]
    ['$SYS/broker/uptime', '+/#', false],
    ['$SYS/broker/uptime', '$SYS/#', true],
    ['sensors//temperature', 'sensors/+/temperature', true],
    ['', 'sensors/#', false],
  ])('%s within %s: %s', (filter, grant, within) => {
    expect(filterWithinGrant(filter, grant)).toBe(within)
  })
})

describe('topicMatchesFilter', () => {
  it.each([
    ['sensors/dev-1/temperature', 'sensors/#', true],
    ['sensors', 'sensors/#', true],
    ['sensors/dev-1/temperature', 'sensors/+/temperature', true],
    ['sensors/dev-1/humidity', 'sensors/+/temperature', false],
    ['sensors/dev-1', 'sensors/dev-1/#', true],
    ['sensors/dev-10/t', 'sensors/dev-1/#', false],
    ['devices/dev-1/status', 'devices/+/status', true],
    ['devices/dev-1/status/x', 'devices/+/status', false],
    ['$SYS/broker/uptime', '#', false],
    ['$SYS/broker/uptime', '$SYS/#', true],
  ])('%s matches %s: %s', (topic, filter, matches) => {
    expect(topicMatchesFilter(topic, filter)).toBe(matches)
  })
})

describe('roles: what each principal may subscribe to', () => {
  const cases: Array<[string, Principal, string, boolean]> = [
    ['device', device('dev-1'), 'sensors/dev-1', true],
    ['device', device('dev-1'), 'sensors/dev-1/#', true],
    ['device', device('dev-1'), 'sensors/dev-1/+', true],
    ['device', device('dev-1'), 'devices/dev-1/#', true],
    ['device', device('dev-1'), 'devices/dev-1/status', true],
    ['device', device('dev-1'), 'gateway/deadletter/dev-1', true],
    ['device', device('dev-1'), 'sensors/dev-2/#', false],
    ['device', device('dev-1'), 'sensors/#', false],
    ['device', device('dev-1'), 'sensors/+/temperature', false],
    ['device', device('dev-1'), '#', false],
    ['device', device('dev-1'), 'alerts/#', false],
    ['device', device('dev-1'), 'devices/+/status', false],
    ['device', device('dev-1'), 'gateway/deadletter/#', false],
    ['device', device('dev-1'), '$SYS/#', false],
    ['read-alerts', app('read-alerts'), 'alerts/#', true],
    ['read-alerts', app('read-alerts'), 'alerts/critical/#', true],
    ['read-alerts', app('read-alerts'), 'alerts/+/dev-1/+', true],
    ['read-alerts', app('read-alerts'), 'devices/+/status', true],
    ['read-alerts', app('read-alerts'), 'devices/dev-1/status', true],
    ['read-alerts', app('read-alerts'), 'sensors/#', false],
    ['read-alerts', app('read-alerts'), '#', false],
    ['read-alerts', app('read-alerts'), 'gateway/deadletter/#', false],
    ['read-readings', app('read-readings'), 'sensors/#', true],
    ['read-readings', app('read-readings'), 'sensors/+/temperature', true],
    ['read-readings', app('read-readings'), 'alerts/#', false],
    ['read-readings', app('read-readings'), 'devices/+/status', false],
    ['both reads', app('read-alerts', 'read-readings'), 'sensors/#', true],
    ['both reads', app('read-alerts', 'read-readings'), 'alerts/#', true],
    ['both reads', app('read-alerts', 'read-readings'), '#', false],
    ['admin', app('admin'), '#', true],
    ['admin', app('admin'), 'gateway/#', true],
    ['admin', app('admin'), '$SYS/#', true],
  ]
  it.each(cases)('%s subscribing to %s: %s', (_name, principal, filter, allowed) => {
    expect(maySubscribe(principal, filter)).toBe(allowed)
  })

  it('grants of each kind, as documented', () => {
    expect(subscribeGrants(device('d'))).toEqual([
      'sensors/d',
      'sensors/d/#',
      'devices/d/#',
      'gateway/deadletter/d',
    ])
    expect(subscribeGrants(app('read-alerts'))).toEqual(['alerts/#', 'devices/+/status'])
    expect(subscribeGrants(app('read-readings'))).toEqual(['sensors/#'])
    expect(subscribeGrants(app('admin', 'read-alerts'))).toBe('all')
    expect(subscribeGrants(app())).toEqual([])
  })
})

describe('roles: what each principal may receive', () => {
  it.each([
    [device('dev-1'), 'sensors/dev-1/temperature', true],
    [device('dev-1'), 'devices/dev-1/status', true],
    [device('dev-1'), 'sensors/dev-2/temperature', false],
    [device('dev-1'), 'alerts/critical/dev-1/high-temp', false],
    [app('read-alerts'), 'alerts/critical/dev-1/high-temp', true],
    [app('read-alerts'), 'sensors/dev-1/temperature', false],
    [app('read-readings'), 'sensors/dev-1/temperature', true],
    [app('read-readings'), 'gateway/deadletter/dev-1', false],
    [app('admin'), '$SYS/x/heartbeat', true],
  ])('%o receiving %s: %s', (principal, topic, allowed) => {
    expect(mayReceive(principal, topic)).toBe(allowed)
  })
})

describe('roles: what each principal may publish', () => {
  it.each([
    [device('dev-1'), 'sensors/dev-1', true, undefined],
    [device('dev-1'), 'sensors/dev-1/temperature', true, undefined],
    [device('dev-1'), 'sensors/dev-1/a/b', true, undefined], // ingest dead-letters the shape
    [device('dev-1'), 'sensors/dev-2/temperature', false, 'other_device'],
    [device('dev-1'), 'sensors/dev-10/temperature', false, 'other_device'],
    [device('dev-1'), 'sensors', false, 'not_a_sensor_topic'],
    [device('dev-1'), 'devices/dev-1/config', false, 'not_a_sensor_topic'],
    [device('dev-1'), 'alerts/critical/dev-1/x', false, 'gateway_topic'],
    [device('dev-1'), 'devices/dev-1/status', false, 'gateway_topic'],
    [device('dev-1'), 'gateway/deadletter/dev-1', false, 'gateway_topic'],
    [device('dev-1'), '$SYS/x', false, 'gateway_topic'],
    [app('read-alerts', 'read-readings'), 'sensors/dev-1/temperature', false, 'read_only_app'],
    [app('admin'), 'sensors/dev-1/temperature', true, undefined],
    [app('admin'), 'site/commands', true, undefined],
    [app('admin'), 'alerts/critical/dev-1/x', false, 'gateway_topic'],
    [app('admin'), 'devices/dev-1/status', false, 'gateway_topic'],
    [app('admin'), '$SYS/x', false, 'gateway_topic'],
  ])('%o publishing on %s: %s', (principal, topic, ok, reason) => {
    const decision = mayPublish(principal, topic)
    expect(decision.ok).toBe(ok)
    if (!decision.ok) expect(decision.reason).toBe(reason)
  })

  it('a metric allow-list restricts devices that have one, and only them', () => {
    expect(metricAllowed(device('d', ['temperature']), 'temperature')).toBe(true)
    expect(metricAllowed(device('d', ['temperature']), 'humidity')).toBe(false)
    expect(metricAllowed(device('d'), 'humidity')).toBe(true)
    expect(metricAllowed(app('admin'), 'humidity')).toBe(true)
  })
})
