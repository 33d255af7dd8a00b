import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { connect as connectTcp, type Socket } from 'node:net'
import path from 'node:path'
import type { IClientOptions, MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import type { DeadLetter } from '../../src/contract/types.ts'
import { generateSecret, hashSecret } from '../../src/security/credentials.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, type ReceivedMessage, recordMessages } from '../helpers/mqtt.ts'
import { runToEnd } from '../helpers/processes.ts'
import { allReadings } from '../helpers/store.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/**
 * Issue 14, point 3: one bad message must never lock a device out. A PUBLISH over
 * MAX_PACKET_BYTES, or one the ACL refuses, is acknowledged per its QoS, dead-lettered with its
 * reason, never delivered or retained, and the connection stays: later readings are stored.
 */

const T0 = Date.now() - 60_000
const MAX_PACKET_BYTES = 4_096
/** Longer than any topic this file publishes on: what a guard may hold is bounded by it. */
const LONGEST_TOPIC_BYTES = 40
/** A fixed header (5 bytes at most), a topic, a packet id and the type byte. */
const HELD_BOUND = 5 + LONGEST_TOPIC_BYTES + 3

/** The size a client announces for a PUBLISH: fixed header + topic + packet id + payload. */
function announcedSize(topic: string, payloadBytes: number, qos: number): number {
  const remaining = 2 + Buffer.byteLength(topic) + (qos > 0 ? 2 : 0) + payloadBytes
  const lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4
  return 1 + lengthBytes + remaining
}

function varint(length: number): Buffer {
  const bytes: number[] = []
  let rest = length
  do {
    bytes.push((rest % 128) | (rest >= 128 ? 0x80 : 0))
    rest = Math.floor(rest / 128)
  } while (rest > 0)
  return Buffer.from(bytes)
}

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

/** Watches a client for any sign of losing its connection. */
function watchConnection(client: MqttClient) {
  const events: string[] = []
  for (const event of ['close', 'offline', 'disconnect', 'error'] as const) {
    client.on(event, () => events.push(event))
  }
  return events
}

const letters = (received: ReceivedMessage[]) =>
  received
    .filter((m) => m.topic.startsWith('gateway/deadletter/'))
    .map((m) => ({ ...(JSON.parse(m.payload) as DeadLetter), to: m.topic }))

describe('publishes over MAX_PACKET_BYTES: discarded unread, acknowledged, dead-lettered', () => {
  let gw: TestGateway
  const clients = new Set<MqttClient>()
  const sockets = new Set<Socket>()

  const connect = async (clientId: string, url = gw.mqttUrl, options: IClientOptions = {}) => {
    const client = await connectClient(url, { clientId, ...options })
    clients.add(client)
    return client
  }
  const storedValues = async (deviceId: string) =>
    (await allReadings(gw.gateway.store, deviceId)).map((r) => r.value)
  /** `count` QoS 1 readings, each with its own timestamp. */
  const behave = async (client: MqttClient, deviceId: string, count: number, from = 0) => {
    for (let i = from; i < from + count; i++) {
      await client.publishAsync(
        `sensors/${deviceId}/temperature`,
        JSON.stringify({ value: i, ts: T0 + i }),
        { qos: 1 },
      )
    }
  }

  beforeAll(async () => {
    gw = await startTestGateway({ MAX_PACKET_BYTES: String(MAX_PACKET_BYTES) })
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    for (const socket of sockets) socket.destroy()
    sockets.clear()
  })
  afterAll(async () => {
    await gw.cleanup()
  })

  it.each([
    [1, 'tcp'],
    [0, 'tcp'],
    [2, 'tcp'],
    [1, 'ws'],
  ] as const)(
    'QoS %i over %s: acknowledged, connection kept, later readings stored, dead letter with the size',
    async (qos, transport) => {
      const deviceId = `dev-big-${qos}-${transport}`
      const topic = `sensors/${deviceId}/temperature`
      const watcher = await connect(`watcher-${deviceId}`)
      const seen = recordMessages(watcher)
      await watcher.subscribeAsync([`gateway/deadletter/${deviceId}`, `sensors/${deviceId}/#`], {
        qos: 1,
      })
      const before = gw.gateway.stats()
      const url = transport === 'ws' ? `${gw.httpUrl.replace('http://', 'ws://')}/mqtt` : gw.mqttUrl
      const device = await connect(deviceId, url)
      const events = watchConnection(device)
      await behave(device, deviceId, 2)

      // MQTT.js resolves a QoS 1 publish on its PUBACK, a QoS 2 one on PUBCOMP (after PUBREC and
      // PUBREL): the oversize message is answered like any other.
      const payload = Buffer.alloc(10_000, 0x41)
      await device.publishAsync(topic, payload, { qos })
      await behave(device, deviceId, 3, 2)

      expect(events).toEqual([])
      expect(device.connected).toBe(true)
      expect(await storedValues(deviceId)).toEqual([0, 1, 2, 3, 4])
      await vi.waitFor(() => expect(letters(seen)).toHaveLength(1))
      const [letter] = letters(seen)
      const announced = announcedSize(topic, payload.length, qos)
      expect(letter).toMatchObject({
        to: `gateway/deadletter/${deviceId}`,
        topic,
        reason: 'payload_too_large',
        payload: '',
      })
      expect(letter?.detail).toContain(`${announced} bytes`)
      expect(letter?.detail).toContain(`MAX_PACKET_BYTES (${MAX_PACKET_BYTES})`)
      // Subscribers of the device's topic got its five readings, and nothing else.
      await vi.waitFor(() =>
        expect(
          seen.filter((m) => m.topic === topic).map((m) => JSON.parse(m.payload).value),
        ).toEqual([0, 1, 2, 3, 4]),
      )
      const after = gw.gateway.stats()
      expect(after.rejectedByReason.payload_too_large ?? 0).toBe(
        (before.rejectedByReason.payload_too_large ?? 0) + 1,
      )
      expect(after.connections.oversizePublishes).toBe(before.connections.oversizePublishes + 1)
      expect(after.connections.refusedPacketSize).toBe(before.connections.refusedPacketSize)
    },
  )

  it.each([1, 2])(
    'mosquitto_pub at QoS %i: its oversize message is acknowledged (exit 0) and dead-lettered',
    async (qos) => {
      const deviceId = `dev-mosq-${qos}`
      const watcher = await connect(`watcher-${deviceId}`)
      const seen = recordMessages(watcher)
      await watcher.subscribeAsync(`gateway/deadletter/${deviceId}`, { qos: 1 })
      const pub = (message: string) =>
        runToEnd('mosquitto_pub', [
          ...['-h', '127.0.0.1', '-p', new URL(gw.mqttUrl).port, '-q', String(qos)],
          ...['-i', deviceId, '-t', `sensors/${deviceId}/temperature`, '-m', message],
        ])
      const big = await pub('7'.repeat(10_000))
      expect(big, big.stderr).toMatchObject({ code: 0 })
      const small = await pub('21.5')
      expect(small, small.stderr).toMatchObject({ code: 0 })
      expect(await storedValues(deviceId)).toEqual([21.5])
      await vi.waitFor(() =>
        expect(letters(seen).map((l) => l.reason)).toEqual(['payload_too_large']),
      )
    },
  )

  it('keeps the retained message a refused oversize retained publish would have replaced', async () => {
    const publisher = await connect('retainer')
    await publisher.publishAsync('lab/notice', 'keep me', { qos: 1, retain: true })
    await publisher.publishAsync('lab/notice', Buffer.alloc(8_000, 0x42), { qos: 1, retain: true })
    expect(publisher.connected).toBe(true)
    const reader = await connect('notice-reader')
    const got = recordMessages(reader)
    await reader.subscribeAsync('lab/notice', { qos: 1 })
    await vi.waitFor(() => expect(got).toHaveLength(1))
    expect(got[0]).toMatchObject({ payload: 'keep me', retain: true })
  })

  it('reads a 200 MiB publish off a raw socket holding only its header, then answers its PUBACK', async () => {
    const before = gw.gateway.stats().connections
    const socket = connectTcp(Number(new URL(gw.mqttUrl).port), '127.0.0.1')
    sockets.add(socket)
    socket.on('error', () => {})
    await once(socket, 'connect')
    const received: Buffer[] = []
    socket.on('data', (chunk: Buffer) => received.push(chunk))
    socket.write(connectPacket('raw-dev'))
    await vi.waitFor(() =>
      expect(Buffer.concat(received).subarray(0, 4)).toEqual(Buffer.from([0x20, 2, 0, 0])),
    )

    const topic = Buffer.from('sensors/raw-dev/temperature')
    const total = 200 * 1024 * 1024
    // Fixed header (QoS 1), topic, packet id 0x0107; the payload fills the announced size.
    const variable = Buffer.concat([Buffer.from([0, topic.length]), topic, Buffer.from([1, 7])])
    const remaining = total - 1 - 4
    const head = Buffer.concat([Buffer.from([0x32]), varint(remaining), variable])
    expect(head.length - variable.length).toBe(5)
    socket.write(head)
    // The body in 1 MiB writes of one reused buffer, each after the last has drained.
    const block = Buffer.alloc(1024 * 1024, 0x20)
    let left = remaining - variable.length
    let checkedMidway = false
    while (left > 0) {
      const piece = left >= block.length ? block : block.subarray(0, left)
      left -= piece.length
      if (!socket.write(piece)) await once(socket, 'drain')
      if (!checkedMidway && left < total / 2) {
        // Half-way through (100 MiB read): every guard so far has held a header and a topic at
        // most, and this packet is not done yet.
        checkedMidway = true
        const midway = gw.gateway.stats().connections
        expect(midway.guardHeldBytesPeak).toBeLessThanOrEqual(HELD_BOUND)
        expect(midway.oversizePublishes).toBe(before.oversizePublishes)
      }
    }
    // PUBACK for packet id 0x0107, and the connection still serves: a PINGREQ gets its PINGRESP.
    await vi.waitFor(
      () => expect(Buffer.concat(received).includes(Buffer.from([0x40, 2, 1, 7]))).toBe(true),
      { timeout: 20_000 },
    )
    socket.write(Buffer.from([0xc0, 0]))
    await vi.waitFor(() =>
      expect(Buffer.concat(received).includes(Buffer.from([0xd0, 0]))).toBe(true),
    )
    expect(socket.destroyed).toBe(false)
    const after = gw.gateway.stats().connections
    expect(after.oversizePublishes).toBe(before.oversizePublishes + 1)
    expect(after.oversizeBytesDiscarded - before.oversizeBytesDiscarded).toBe(total)
    expect(after.guardHeldBytesPeak).toBeLessThanOrEqual(HELD_BOUND)
  }, 60_000)

  it('still closes a connection for a SUBSCRIBE over MAX_PACKET_BYTES (not a publish)', async () => {
    const before = gw.gateway.stats().connections
    const socket = connectTcp(Number(new URL(gw.mqttUrl).port), '127.0.0.1')
    sockets.add(socket)
    socket.on('error', () => {})
    await once(socket, 'connect')
    socket.write(connectPacket('giant-subscriber'))
    // The header of a 1 MiB SUBSCRIBE, and a little of it.
    socket.write(Buffer.concat([Buffer.from([0x82]), varint(1024 * 1024), Buffer.alloc(64, 0x61)]))
    socket.resume()
    await once(socket, 'close')
    await vi.waitFor(() =>
      expect(gw.gateway.stats().connections.refusedPacketSize).toBe(before.refusedPacketSize + 1),
    )
  })
})

/** Every principal of the test registry, with the secret only the test knows. */
const SECRETS = {
  'dev-a': generateSecret(),
  'dev-b': generateSecret(),
  'admin-app': generateSecret(),
} as const
type Principal = keyof typeof SECRETS

describe('publishes the ACL refuses: acknowledged, dead-lettered, never delivered nor retained', () => {
  let dir: TempDir
  let gw: TestGateway
  const clients = new Set<MqttClient>()

  const connectAs = async (who: Principal, clientId: string = who) => {
    const client = await connectClient(gw.mqttUrl, {
      clientId,
      username: who,
      password: SECRETS[who],
    })
    clients.add(client)
    return client
  }
  const stored = async (deviceId: string) =>
    (await allReadings(gw.gateway.store, deviceId)).map((r) => `${r.metric}=${r.value}`)

  beforeAll(async () => {
    dir = await createTempDir('gw-refused-')
    const file = path.join(dir.path, 'devices.yaml')
    const h = async (id: Principal) => hashSecret(SECRETS[id])
    await writeFile(
      file,
      [
        'devices:',
        '  - id: dev-a',
        `    secret: ${await h('dev-a')}`,
        '  - id: dev-b',
        `    secret: ${await h('dev-b')}`,
        'apps:',
        '  - id: admin-app',
        `    secret: ${await h('admin-app')}`,
        '    roles: [admin]',
        '',
      ].join('\n'),
    )
    // A small burst, so that a test can show refused publishes take rate-limit tokens.
    gw = await startTestGateway({ DEVICES_FILE: file, PUBLISH_RATE: '1', PUBLISH_BURST: '5' })
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
  })
  afterAll(async () => {
    await gw.cleanup()
    await dir.remove()
  })

  it.each([
    [
      'sensors/dev-b/temperature',
      "another device's topic",
      'device dev-a may not publish on sensors/dev-b/temperature',
    ],
    [
      'alerts/critical/dev-a/fake',
      'an alert topic',
      'only the gateway publishes on alerts/critical/dev-a/fake',
    ],
    [
      'devices/dev-a/status',
      'its status topic',
      'only the gateway publishes on devices/dev-a/status',
    ],
    ['$SYS/x', 'a $ topic', '$SYS/x: topics starting with $ are the broker'],
    ['other/topic', 'a topic outside sensors/', 'device dev-a may publish only on sensors/dev-a/'],
  ])(
    '%s (%s): PUBACK, connection kept, not delivered, not retained, dead letter',
    async (topic, _what, detail) => {
      const admin = await connectAs('admin-app', `admin-${topic.replace(/[^a-z]/g, '')}`)
      const seen = recordMessages(admin)
      await admin.subscribeAsync(['#', '$SYS/x', 'gateway/deadletter/dev-a'], { qos: 1 })
      const before = gw.gateway.stats().rejectedByReason.not_authorized ?? 0
      const a = await connectAs('dev-a')
      const events = watchConnection(a)

      await a.publishAsync(topic, '{"state":"firing","value":99}', { qos: 1, retain: true })
      // Connection kept: the device's next reading is stored.
      await a.publishAsync('sensors/dev-a/temperature', '21', { qos: 1 })
      expect(events).toEqual([])
      expect(a.connected).toBe(true)
      await vi.waitFor(() => expect(letters(seen)).toHaveLength(1))
      expect(letters(seen)[0]).toMatchObject({
        to: 'gateway/deadletter/dev-a',
        topic,
        reason: 'not_authorized',
        payload: '{"state":"firing","value":99}',
      })
      expect(letters(seen)[0]?.detail).toContain(detail)
      expect(gw.gateway.stats().rejectedByReason.not_authorized).toBe(before + 1)
      await vi.waitFor(() =>
        expect(seen.map((m) => m.topic)).toContain('sensors/dev-a/temperature'),
      )
      // Not delivered to the admin subscribed to everything, on its topic or any other.
      expect(
        seen.filter((m) => m.payload.includes('"value":99') && !m.topic.startsWith('gateway/')),
      ).toEqual([])

      // Not retained: a new subscriber to the topic gets nothing of it.
      const late = await connectAs('admin-app', `late-${topic.replace(/[^a-z]/g, '')}`)
      const lateSeen = recordMessages(late)
      await late.subscribeAsync(topic, { qos: 1 })
      await late.subscribeAsync('sensors/dev-a/temperature', { qos: 1 })
      await a.publishAsync('sensors/dev-a/temperature', '22', { qos: 1 })
      await vi.waitFor(() => expect(lateSeen.map((m) => m.payload)).toContain('22'))
      expect(lateSeen.filter((m) => m.payload.includes('"value":99'))).toEqual([])
      expect(await stored('dev-b')).toEqual([])
    },
  )

  it('a device that keeps publishing where it may not meets the rate limit, not a reconnect loop', async () => {
    const before = gw.gateway.stats().rejectedByReason.not_authorized ?? 0
    const a = await connectAs('dev-a', 'dev-a-persistent')
    const events = watchConnection(a)
    // Eight refused publishes in a row (QoS 0) take the five tokens of the burst and more; the
    // valid reading after them finds the bucket empty and is not stored.
    for (let i = 0; i < 8; i++) a.publish('sensors/dev-b/temperature', String(i), { qos: 0 })
    a.publish('sensors/dev-a/humidity', '41', { qos: 0 })
    // Answered after those (one client's publishes are authorised in order): paced or limited.
    await a.publishAsync('sensors/dev-a/humidity', '42', { qos: 1 })
    expect(events).toEqual([])
    expect(a.connected).toBe(true)
    // The five within the burst were dead-lettered; the three over it met the rate limit instead.
    await vi.waitFor(() =>
      expect(gw.gateway.stats().rejectedByReason.not_authorized).toBe(before + 5),
    )
    expect(await stored('dev-a')).not.toContain('humidity=41')
    expect(await stored('dev-b')).toEqual([])
  })
})
