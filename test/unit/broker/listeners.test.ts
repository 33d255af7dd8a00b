import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { connectAsync, type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  type BrokerHooks,
  type BrokerOptions,
  createMqttBroker,
  type MqttBroker,
} from '../../../src/broker/mqtt-broker.ts'
import {
  createPlaceholderMarker,
  placeholderAnnouncedBytes,
} from '../../../src/broker/packet-guard.ts'
import { certificateIdentity } from '../../../src/security/auth.ts'
import { makeTestCerts, type TestCerts } from '../../helpers/certs.ts'
import { captureLogs, type LogLine } from '../../helpers/log-capture.ts'
import { endAll } from '../../helpers/mqtt.ts'

/** A CONNECT packet (MQTT 3.1.1, clean session, keepalive 60 s) for a raw socket. */
function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId)
  const body = Buffer.concat([
    Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c]),
    Buffer.from([id.length >> 8, id.length & 0xff]),
    id,
  ])
  return Buffer.concat([Buffer.from([0x10, body.length]), body])
}

/** A QoS 2 PUBLISH with the given packet id, for a raw socket. */
function qos2Publish(topic: string, packetId: number): Buffer {
  const name = Buffer.from(topic)
  const body = Buffer.concat([
    Buffer.from([name.length >> 8, name.length & 0xff]),
    name,
    Buffer.from([packetId >> 8, packetId & 0xff]),
    Buffer.from('1'),
  ])
  return Buffer.concat([Buffer.from([0x34, body.length]), body])
}

/** A PUBLISH of `payloadBytes` bytes at the given QoS (packet id for QoS 1 and 2). */
function publishPacket(topic: string, qos: 0 | 1 | 2, packetId: number, payloadBytes: number) {
  const name = Buffer.from(topic)
  const body = Buffer.concat([
    Buffer.from([name.length >> 8, name.length & 0xff]),
    name,
    qos > 0 ? Buffer.from([packetId >> 8, packetId & 0xff]) : Buffer.alloc(0),
    Buffer.alloc(payloadBytes, 0x41),
  ])
  const length: number[] = []
  let rest = body.length
  do {
    length.push((rest % 128) | (rest >= 128 ? 0x80 : 0))
    rest = Math.floor(rest / 128)
  } while (rest > 0)
  return Buffer.concat([Buffer.from([0x30 | (qos << 1), ...length]), body])
}

/** Resolves when the socket is closed by the other end (or errors), whatever it received. */
async function closedByPeer(socket: Socket): Promise<void> {
  if (socket.destroyed) return
  socket.resume()
  await once(socket, 'close')
}

describe('MQTT listeners: connection and packet limits', () => {
  let certs: TestCerts
  let broker: MqttBroker | null = null
  let logs: LogLine[] = []
  const sockets = new Set<Socket>()
  const clients = new Set<MqttClient>()
  const servers = new Set<Server>()

  const start = async (options: BrokerOptions, hooks: Partial<BrokerHooks> = {}) => {
    const captured = captureLogs('info')
    logs = captured.lines
    broker = await createMqttBroker(
      { log: captured.log },
      { authorizePublish: (_client, _packet, callback) => callback(null), ...hooks },
      options,
    )
    const address = await broker.listen('127.0.0.1', 0)
    return address.port
  }
  const rawSocket = async (port: number) => {
    const socket = connect(port, '127.0.0.1')
    sockets.add(socket)
    socket.on('error', () => {})
    await once(socket, 'connect')
    return socket
  }
  const mqttClient = async (port: number, clientId: string) => {
    const client = await connectAsync(`mqtt://127.0.0.1:${port}`, {
      clientId,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    })
    clients.add(client)
    return client
  }

  beforeAll(async () => {
    certs = await makeTestCerts(['dev-tls'])
  })
  afterAll(async () => {
    await certs?.remove()
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    for (const socket of sockets) socket.destroy()
    sockets.clear()
    for (const server of servers) server.close()
    servers.clear()
    await broker?.close()
    broker = null
  })

  it('counts every transport together and closes a connection over MAX_CONNECTIONS at once', async () => {
    const port = await start({ maxConnections: 2 })
    // A second transport, as the WebSocket upgrade does: connections handed to handleConnection.
    const other = createServer((socket) => broker?.handleConnection(socket))
    servers.add(other)
    other.listen(0, '127.0.0.1')
    await once(other, 'listening')
    const otherPort = (other.address() as AddressInfo).port

    const first = await mqttClient(port, 'first')
    const second = await mqttClient(otherPort, 'second')
    expect(broker?.connectionStats().open).toBe(2)

    // The third, on either transport, is closed before anything is read: no CONNACK.
    for (const target of [port, otherPort]) {
      const third = await rawSocket(target)
      const received: Buffer[] = []
      third.on('data', (chunk: Buffer) => received.push(chunk))
      third.write(connectPacket('third'))
      await closedByPeer(third)
      expect(Buffer.concat(received)).toHaveLength(0)
    }
    expect(broker?.connectionStats()).toMatchObject({ open: 2, refusedAtLimit: 2 })
    // One warn line for the episode, not one per refusal.
    const warned = logs.filter((l) => String(l.msg).includes('MAX_CONNECTIONS'))
    expect(warned).toHaveLength(1)
    expect(warned[0]).toMatchObject({ level: 40, maxConnections: 2 })

    // A freed slot is usable again.
    await first.endAsync()
    clients.delete(first)
    await vi.waitFor(() => expect(broker?.connectionStats().open).toBe(1))
    const again = await mqttClient(port, 'again')
    expect(again.connected).toBe(true)
    expect(second.connected).toBe(true)
  })

  it('without a placeholder marker, closes a connection whose packet announces more than maxPacketBytes, from the header alone', async () => {
    const port = await start({ maxPacketBytes: 4_096 })
    const socket = await rawSocket(port)
    socket.write(connectPacket('big-sender'))
    // The fixed header of a 1 MiB PUBLISH and a few bytes of its body; the rest is never sent.
    socket.write(Buffer.from([0x30, 0x80, 0x80, 0x40]))
    socket.write(Buffer.alloc(16, 0x41))
    await closedByPeer(socket)
    // The server side's own 'close' may come a moment after the client saw it.
    await vi.waitFor(() =>
      expect(broker?.connectionStats()).toMatchObject({ open: 0, refusedPacketSize: 1 }),
    )
    const line = logs.find((l) => l.reason === 'packet_too_large')
    expect(line).toMatchObject({
      level: 40,
      transport: 'tcp',
      announcedBytes: 4 + 1024 * 1024,
      maxPacketBytes: 4_096,
    })
    // The gateway read the CONNECT and at most the chunk carrying the header: not the packet.
    expect(line?.bytesRead as number).toBeLessThan(200)

    // Packets within the limit, on another connection, go through.
    const client = await mqttClient(port, 'small-sender')
    await client.publishAsync('a/b', Buffer.alloc(4_000), { qos: 1 })
  })

  it('with a placeholder marker, answers a PUBLISH over maxPacketBytes per its QoS and keeps the connection', async () => {
    const marker = createPlaceholderMarker()
    const seen: { topic: string; qos: number; messageId?: number; announced: number | null }[] = []
    const port = await start(
      { maxPacketBytes: 4_096, oversizeMarker: marker },
      {
        authorizePublish: (_client, packet, callback) => {
          seen.push({
            topic: packet.topic,
            qos: packet.qos,
            messageId: packet.messageId,
            announced: placeholderAnnouncedBytes(marker, packet.payload),
          })
          callback(null)
        },
      },
    )
    const socket = await rawSocket(port)
    const received: Buffer[] = []
    socket.on('data', (chunk: Buffer) => received.push(chunk))
    const got = (bytes: number[]) => Buffer.concat(received).includes(Buffer.from(bytes))
    socket.write(connectPacket('big-sender'))
    // QoS 1, id 9, written in three pieces; then QoS 2, id 10; then QoS 0; then a small one.
    const q1 = publishPacket('sensors/dev-1/t', 1, 9, 100_000)
    socket.write(q1.subarray(0, 3))
    socket.write(q1.subarray(3, 5_000))
    socket.write(q1.subarray(5_000))
    const q2 = publishPacket('sensors/dev-1/t', 2, 10, 50_000)
    const q0 = publishPacket('sensors/dev-1/t', 0, 0, 20_000)
    socket.write(q2)
    socket.write(q0)
    socket.write(publishPacket('sensors/dev-1/t', 1, 11, 10))
    // PUBACK 9, PUBREC 10, PUBACK 11.
    await vi.waitFor(() => expect(got([0x40, 2, 0, 9]) && got([0x50, 2, 0, 10])).toBe(true))
    await vi.waitFor(() => expect(got([0x40, 2, 0, 11])).toBe(true))
    // The client's PUBREL for 10 is answered with PUBCOMP; a PINGREQ with PINGRESP.
    socket.write(Buffer.from([0x62, 2, 0, 10, 0xc0, 0]))
    await vi.waitFor(() => expect(got([0x70, 2, 0, 10]) && got([0xd0, 0])).toBe(true))
    expect(socket.destroyed).toBe(false)

    // Aedes saw placeholders, in order, with the sizes announced, then the real publish.
    expect(seen).toEqual([
      { topic: 'sensors/dev-1/t', qos: 1, messageId: 9, announced: q1.length },
      { topic: 'sensors/dev-1/t', qos: 2, messageId: 10, announced: q2.length },
      { topic: 'sensors/dev-1/t', qos: 0, messageId: undefined, announced: q0.length },
      { topic: 'sensors/dev-1/t', qos: 1, messageId: 11, announced: null },
    ])
    expect(broker?.connectionStats()).toMatchObject({
      open: 1,
      refusedPacketSize: 0,
      oversizePublishes: 3,
      oversizeBytesDiscarded: q1.length + q2.length + q0.length,
    })
    // Type byte, topic and packet id: all a guard held of them.
    expect(broker?.connectionStats().guardHeldBytesPeak).toBe(15 + 3)
  })

  it('keeps client.conn the TLS socket: a client certificate still identifies the device', async () => {
    const marker = createPlaceholderMarker()
    const identities = new Map<string, string | null>()
    await start(
      { maxPacketBytes: 4_096, oversizeMarker: marker },
      {
        authenticate: (client, _username, _password, done) => {
          identities.set(client.id, certificateIdentity(client))
          done(null, true)
        },
      },
    )
    const tls = await broker?.listenTls('127.0.0.1', 0, {
      cert: readFileSync(certs.certFile),
      key: readFileSync(certs.keyFile),
      ca: certs.ca,
      requestCert: true,
      rejectUnauthorized: true,
    })
    const device = await connectAsync(`mqtts://127.0.0.1:${tls?.port}`, {
      clientId: 'tls-big',
      ca: certs.ca,
      ...certs.device('dev-tls'),
      reconnectPeriod: 0,
    })
    clients.add(device)
    expect(identities.get('tls-big')).toBe('dev-tls')
    await device.publishAsync('sensors/dev-tls/t', Buffer.alloc(10_000), { qos: 1 })
    await device.publishAsync('sensors/dev-tls/t', '21', { qos: 1 })
    expect(device.connected).toBe(true)
    expect(broker?.connectionStats()).toMatchObject({ oversizePublishes: 1, refusedPacketSize: 0 })
  })

  it('passes CONNECT_TIMEOUT to Aedes: a socket that sends no CONNECT is closed', async () => {
    const port = await start({ connectTimeoutMs: 200 })
    const silent = await rawSocket(port)
    await closedByPeer(silent)
    await vi.waitFor(() =>
      expect(broker?.connectionStats()).toMatchObject({ open: 0, connectTimeouts: 1 }),
    )
    expect(logs.find((l) => String(l.msg).includes('CONNECT_TIMEOUT'))).toMatchObject({
      level: 40,
      connectTimeoutMs: 200,
    })
  })

  it('KEEPALIVE_LIMIT is not Aedes keepaliveLimit: a longer keepalive, or none, is accepted', async () => {
    // Aedes' keepaliveLimit answered these with CONNACK 6, a code MQTT 3.1.1 reserves (issue 14).
    // A longer keepalive is held to the limit instead: mqtt-conformance.test.ts shows it.
    const port = await start({ keepaliveLimitSec: 120 })
    for (const keepalive of [60, 600, 0]) {
      const accepted = await connectAsync(`mqtt://127.0.0.1:${port}`, {
        clientId: `keepalive-${keepalive}`,
        keepalive,
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      })
      clients.add(accepted)
      expect(accepted.connected).toBe(true)
    }
  })

  it('passes MAX_INFLIGHT_INBOUND to Aedes: a client withholding PUBREL is disconnected', async () => {
    const port = await start({ maxInflightInbound: 2 })
    const socket = await rawSocket(port)
    socket.write(connectPacket('withholder'))
    // Three QoS 2 publishes, never released: the third is one too many.
    socket.write(Buffer.concat([1, 2, 3].map((id) => qos2Publish('a/b', id))))
    await closedByPeer(socket)
    await vi.waitFor(() =>
      expect(logs.find((l) => String(l.msg).includes('MAX_INFLIGHT_INBOUND'))).toMatchObject({
        level: 40,
        clientId: 'withholder',
      }),
    )
  })

  it('counts mqtts connections too, refusing one over the limit before its TLS handshake', async () => {
    const port = await start({ maxConnections: 1 })
    const tls = await broker?.listenTls('127.0.0.1', 0, {
      cert: readFileSync(certs.certFile),
      key: readFileSync(certs.keyFile),
    })
    const url = `mqtts://127.0.0.1:${tls?.port}`
    const first = await connectAsync(url, { clientId: 'tls-1', ca: certs.ca, reconnectPeriod: 0 })
    clients.add(first)
    await expect(
      connectAsync(url, { clientId: 'tls-2', ca: certs.ca, reconnectPeriod: 0 }, false),
    ).rejects.toThrow()
    await expect(
      connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'tcp-2', reconnectPeriod: 0 }, false),
    ).rejects.toThrow("Couldn't connect to server")
    expect(broker?.connectionStats()).toMatchObject({
      open: 1,
      refusedAtLimit: 2,
      tlsHandshakeFailures: 0,
    })
    expect(first.connected).toBe(true)
  })
})
