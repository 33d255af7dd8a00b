import { describe, expect, it } from 'vitest'
import { readConnectLevel } from '../../../src/broker/connect-level-guard.ts'
import { connectPacket } from '../../helpers/raw-mqtt.ts'

describe('readConnectLevel', () => {
  it.each([
    [3, 'MQIsdp', 'supported'],
    [4, 'MQTT', 'supported'],
    [5, 'MQTT', 'supported'],
    [0x84, 'MQTT', 'supported'], // bridge bit
    [2, 'MQTT', 'unsupported'],
    [6, 'MQTT', 'unsupported'],
    [0, 'MQIsdp', 'unsupported'],
  ] as const)('level %i with %s: %s', (level, protocolName, kind) => {
    expect(readConnectLevel(connectPacket({ level, protocolName })).kind).toBe(kind)
  })

  it('needs the level byte before it judges, whatever the split', () => {
    const bytes = connectPacket({ level: 6 })
    // 0x10, length, 0x00 0x04 "MQTT", level: the 9th byte.
    for (let n = 0; n < 9; n++) expect(readConnectLevel(bytes.subarray(0, n)).kind).toBe('unknown')
    expect(readConnectLevel(bytes.subarray(0, 9))).toEqual({ kind: 'unsupported', level: 6 })
  })

  it('reads a multi-byte remaining length', () => {
    const long = connectPacket({ level: 7, clientId: 'x'.repeat(300) })
    expect(long[2]).toBe(0x02) // 2-byte remaining length
    expect(readConnectLevel(long)).toEqual({ kind: 'unsupported', level: 7 })
  })

  it('leaves anything but a CONNECT with a known name to the parser', () => {
    expect(readConnectLevel(Buffer.from([0xc0, 0x00])).kind).toBe('not-ours')
    expect(readConnectLevel(connectPacket({ protocolName: 'MQTX', level: 9 })).kind).toBe(
      'not-ours',
    )
    expect(readConnectLevel(connectPacket({ protocolName: 'MQ', level: 9 })).kind).toBe('not-ours')
  })
})
