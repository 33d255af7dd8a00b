import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createMqttBroker, type MqttBroker } from '../../../src/broker/mqtt-broker.ts'
import { checkPacket } from '../../../src/broker/packet-policy.ts'
import { captureLogs, type LogLine } from '../../helpers/log-capture.ts'
import { connectClient, endAll, recordMessages } from '../../helpers/mqtt.ts'
import {
  connack,
  connectPacket,
  destroyAll,
  openRaw,
  publishPacket,
  type RawConnection,
  subscribePacket,
} from '../../helpers/raw-mqtt.ts'

describe('checkPacket', () => {
  it('passes ordinary packets and packets it has no rule for', () => {
    expect(checkPacket({ cmd: 'publish', topic: 'sensors/a/t' })).toBeNull()
    expect(checkPacket({ cmd: 'subscribe', subscriptions: [{ topic: 'a/+' }] })).toBeNull()
    expect(checkPacket({ cmd: 'unsubscribe', unsubscriptions: ['a'] })).toBeNull()
    expect(checkPacket({ cmd: 'pingreq' })).toBeNull()
  })

  it.each([
    [{ cmd: 'publish', topic: 'a/\u0000' }, 'MQTT-4.7.3-2'],
    [{ cmd: 'publish', topic: 'a/+' }, 'MQTT-4.7.1-1'],
    [{ cmd: 'publish', topic: '' }, 'MQTT-4.7.3-1'],
    [{ cmd: 'subscribe', subscriptions: [] }, 'MQTT-3.8.3-3'],
    [{ cmd: 'subscribe', subscriptions: [{ topic: 'ok' }, { topic: 'a#' }] }, 'MQTT-4.7.1-2'],
    [{ cmd: 'unsubscribe', unsubscriptions: [] }, 'MQTT-3.10.3-2'],
  ])('refuses %j (%s)', (packet, spec) => {
    expect(checkPacket(packet)?.spec).toBe(spec)
  })
})

/** The checks installed on a bare broker (no gateway), over real sockets. */
describe('the broker layer enforces the checks', () => {
  let broker: MqttBroker | null = null
  let logs: LogLine[] = []
  const raws = new Set<RawConnection>()
  const clients = new Set<MqttClient>()

  const start = async () => {
    const captured = captureLogs('debug')
    logs = captured.lines
    broker = await createMqttBroker(
      { log: captured.log },
      // Everything may be published, $ topics included: only the broker layer is under test.
      { authorizePublish: (_client, _packet, callback) => callback(null) },
      { keepaliveLimitSec: 1200 },
    )
    const address = await broker.listen('127.0.0.1', 0)
    return address.port
  }
  afterEach(async () => {
    destroyAll(raws)
    raws.clear()
    await endAll(clients)
    clients.clear()
    await broker?.close()
    broker = null
  })

  it('guardPackets finds Aedes parser: a SUBSCRIBE without filters closes the connection', async () => {
    const port = await start()
    const connection = await openRaw(port)
    raws.add(connection)
    connection.socket.write(connectPacket({ clientId: 'empty-sub' }))
    expect(await connection.bytes(4)).toEqual(connack(0))
    connection.socket.write(subscribePacket([]))
    await connection.closed
    expect(connection.received()).toEqual(connack(0))
    expect(logs).toContainEqual(
      expect.objectContaining({ clientId: 'empty-sub', spec: 'MQTT-3.8.3-3', level: 40 }),
    )
    expect(logs.filter((l) => String(l.msg).includes('not installed'))).toEqual([])
  })

  it('a packet that passes still reaches Aedes (PUBACK)', async () => {
    const port = await start()
    const connection = await openRaw(port)
    raws.add(connection)
    connection.socket.write(
      Buffer.concat([connectPacket({ clientId: 'ok-pub' }), publishPacket('a/b', '1', 1)]),
    )
    expect(await connection.bytes(8)).toEqual(
      Buffer.concat([connack(0), Buffer.from([0x40, 2, 0, 1])]),
    )
  })

  it('MQTT-4.7.2-1: a retained $ message is not sent at SUBSCRIBE to # or +/..., only to $ filters', async () => {
    const port = await start()
    const url = `mqtt://127.0.0.1:${port}`
    const pub = await connectClient(url, { clientId: 'dollar-pub' })
    clients.add(pub)
    await pub.publishAsync('$conformance/x', 'dollar', { qos: 1, retain: true })
    await pub.publishAsync('conformance/x', 'plain', { qos: 1, retain: true })
    const wild = await connectClient(url, { clientId: 'wild' })
    clients.add(wild)
    const wildGot = recordMessages(wild)
    await wild.subscribeAsync(['#', '+/x'], { qos: 1 })
    const direct = await connectClient(url, { clientId: 'direct' })
    clients.add(direct)
    const directGot = recordMessages(direct)
    await direct.subscribeAsync('$conformance/#', { qos: 1 })
    await vi.waitFor(() => expect(directGot.map((m) => m.payload)).toEqual(['dollar']))
    // Both of wild's filters match conformance/x: it arrives once per filter, and nothing else.
    await vi.waitFor(() => expect(wildGot.map((m) => m.payload)).toContain('plain'))
    await wild.publishAsync('conformance/marker', 'm', { qos: 1 })
    await vi.waitFor(() => expect(wildGot.map((m) => m.topic)).toContain('conformance/marker'))
    expect(wildGot.filter((m) => m.topic.startsWith('$'))).toEqual([])
  })
})
