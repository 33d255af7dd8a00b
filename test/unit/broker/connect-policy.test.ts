import { describe, expect, it } from 'vitest'
import {
  type ConnectFields,
  checkConnect,
  connackBytes,
  effectiveKeepaliveSec,
} from '../../../src/broker/connect-policy.ts'

const base: ConnectFields = {
  protocolId: 'MQTT',
  protocolVersion: 4,
  clientId: 'dev-1',
  clean: true,
}

describe('checkConnect (MQTT 3.1.1 §3.1)', () => {
  it('accepts an ordinary CONNECT, a zero-length id with clean session, MQTT 3.1 and 5', () => {
    expect(checkConnect(base)).toEqual({ ok: true })
    expect(checkConnect({ ...base, clientId: '' })).toEqual({ ok: true })
    expect(checkConnect({ ...base, protocolId: 'MQIsdp', protocolVersion: 3 })).toEqual({
      ok: true,
    })
    expect(checkConnect({ ...base, protocolVersion: 5, clientId: '', clean: false })).toEqual({
      ok: true,
    })
    expect(
      checkConnect({ ...base, username: 'u', password: Buffer.from('p'), will: willOn('a/b') }),
    ).toEqual({ ok: true })
  })

  it.each([
    ['zero-length id, clean session 0', { clientId: '', clean: false }, 'MQTT-3.1.3-8', 2],
    [
      'zero-length id on MQTT 3.1',
      { protocolId: 'MQIsdp', protocolVersion: 3, clientId: '' },
      'MQTT-3.1',
      2,
    ],
    ['MQTT with level 3', { protocolVersion: 3 }, 'MQTT-3.1.2-2', 1],
    ['MQIsdp with level 4', { protocolId: 'MQIsdp' }, 'MQTT-3.1.2-2', 1],
    ['will QoS 3', { will: { ...willOn('a/b'), qos: 3 } }, 'MQTT-3.1.2-14', null],
    ['will topic with #', { will: willOn('a/#') }, 'MQTT-4.7.1-1', null],
    ['empty will topic', { will: willOn('') }, 'MQTT-4.7.3-1', null],
    ['password without user name', { password: Buffer.from('p') }, 'MQTT-3.1.2-22', null],
    ['U+0000 in the client id', { clientId: 'a\u0000' }, 'MQTT-1.5.3-2', null],
    ['U+0000 in the user name', { username: 'a\u0000' }, 'MQTT-1.5.3-2', null],
  ] as Array<[string, Partial<ConnectFields>, string, number | null]>)(
    'refuses %s',
    (_name, fields, spec, returnCode) => {
      expect(checkConnect({ ...base, ...fields })).toMatchObject({ ok: false, spec, returnCode })
    },
  )
})

describe('effectiveKeepaliveSec', () => {
  it('holds a longer keepalive to the limit, keeps 0 and shorter ones, and 0 means no limit', () => {
    expect(effectiveKeepaliveSec(3600, 1200)).toBe(1200)
    expect(effectiveKeepaliveSec(60, 1200)).toBe(60)
    expect(effectiveKeepaliveSec(0, 1200)).toBe(0)
    expect(effectiveKeepaliveSec(65535, 0)).toBe(65535)
  })
})

describe('connackBytes', () => {
  it('is a CONNACK with session present 0 and the code', () => {
    expect(connackBytes(2)).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x02]))
  })
})

function willOn(topic: string): NonNullable<ConnectFields['will']> {
  return { topic, payload: Buffer.from('gone'), qos: 0, retain: false }
}
