import { once } from 'node:events'
import { connect as connectTcp, type Socket } from 'node:net'
import mqtt, { connectAsync, type MqttClient } from 'mqtt'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { parsePrometheusText } from '../helpers/prometheus.ts'
import { allReadings } from '../helpers/store.ts'

/**
 * The limits of DESIGN §8 against a real gateway over real sockets: each test sets the limit
 * small through the environment, pushes one client past it, and checks both what that client
 * sees and that well-behaved devices lost nothing meanwhile.
 */

const T0 = Date.now() - 60_000

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

/** A SUBSCRIBE packet (packet id 1, QoS 0) for a raw socket. */
function subscribePacket(filter: string): Buffer {
  const topic = Buffer.from(filter)
  const body = Buffer.concat([
    Buffer.from([0x00, 0x01, topic.length >> 8, topic.length & 0xff]),
    topic,
    Buffer.from([0x00]),
  ])
  return Buffer.concat([Buffer.from([0x82, body.length]), body])
}

/** Resolves on 'close' only: events.once would reject on the 'error' that often comes first. */
function closeOf(emitter: MqttClient | Socket): Promise<void> {
  return new Promise((resolve) => emitter.once('close', () => resolve()))
}

describe('limits (DESIGN §8): what a client over a limit sees, and that nobody else loses data', () => {
  let gw: TestGateway | null = null
  const clients = new Set<MqttClient>()
  const sockets = new Set<Socket>()

  const start = async (env: Record<string, string>) => {
    gw = await startTestGateway(env)
    return gw
  }
  const connect = async (clientId: string, url = gw?.mqttUrl ?? '') => {
    const client = await connectClient(url, { clientId })
    // A client the gateway drops emits 'error' (ECONNRESET); the test watches 'close' instead.
    client.on('error', () => {})
    clients.add(client)
    return client
  }
  const rawSocket = async () => {
    const url = new URL(gw?.mqttUrl ?? '')
    const socket = connectTcp(Number(url.port), '127.0.0.1')
    socket.on('error', () => {})
    sockets.add(socket)
    await once(socket, 'connect')
    return socket
  }
  /** A device that behaves: `count` QoS 1 readings, each with its own timestamp. */
  const behave = async (client: MqttClient, deviceId: string, count: number, from = 0) => {
    for (let i = from; i < from + count; i++) {
      await client.publishAsync(
        `sensors/${deviceId}/temperature`,
        JSON.stringify({ value: i, ts: T0 + i }),
        { qos: 1 },
      )
    }
  }
  const storedValues = async (deviceId: string) =>
    (await allReadings((gw as TestGateway).gateway.store, deviceId)).map((r) => r.value)
  const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i)
  const scrape = async () =>
    parsePrometheusText(await (await fetch(`${gw?.httpUrl}/metrics`)).text())
  const warnings = (text: string) =>
    (gw?.logs ?? []).filter((l) => l.level === 40 && String(l.msg).includes(text))

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    for (const socket of sockets) socket.destroy()
    sockets.clear()
    await gw?.cleanup()
    gw = null
  })

  it('discards a publish over MAX_PACKET_BYTES unread, acknowledges it and keeps the connection', async () => {
    await start({ MAX_PACKET_BYTES: '65536' })
    const watcher = await connect('watcher')
    const letters = recordMessages(watcher)
    await watcher.subscribeAsync('gateway/deadletter/#', { qos: 0 })
    const calm = await connect('dev-calm')
    const big = await connect('dev-big')
    let closed = false
    big.on('close', () => {
      closed = true
    })
    await behave(big, 'dev-big', 3)
    await behave(calm, 'dev-calm', 3)

    // 1 MiB: a publish that would otherwise be buffered whole before anything could judge it.
    // It used to close the connection; the device sent it again after every reconnect, forever.
    await big.publishAsync('sensors/dev-big/temperature', Buffer.alloc(1024 * 1024, 0x20), {
      qos: 1,
    })
    await behave(big, 'dev-big', 3, 3)
    await behave(calm, 'dev-calm', 3, 3)
    expect(closed).toBe(false)
    expect(await storedValues('dev-big')).toEqual(range(0, 6))
    expect(await storedValues('dev-calm')).toEqual(range(0, 6))
    await vi.waitFor(() => expect(letters).toHaveLength(1))
    expect(JSON.parse(letters[0]?.payload ?? '{}')).toMatchObject({
      topic: 'sensors/dev-big/temperature',
      reason: 'payload_too_large',
      payload: '',
    })
    const stats = gw?.gateway.stats().connections
    expect(stats).toMatchObject({ oversizePublishes: 1, refusedPacketSize: 0 })
    expect(stats?.oversizeBytesDiscarded).toBeGreaterThan(1024 * 1024)
    // Read and dropped as it came: the guard held a header and a topic, never the body.
    expect(stats?.guardHeldBytesPeak).toBeLessThan(64)
  })

  it('applies the same packet limit to MQTT over WebSocket', async () => {
    await start({ MAX_PACKET_BYTES: '65536' })
    const wsUrl = `${gw?.httpUrl.replace('http://', 'ws://')}/mqtt`
    const big = await connect('dev-ws-big', wsUrl)
    let closed = false
    big.on('close', () => {
      closed = true
    })
    await behave(big, 'dev-ws-big', 2)
    await big.publishAsync('sensors/dev-ws-big/temperature', Buffer.alloc(512 * 1024, 0x20), {
      qos: 1,
    })
    await behave(big, 'dev-ws-big', 2, 2)
    expect(closed).toBe(false)
    expect(await storedValues('dev-ws-big')).toEqual(range(0, 4))
    expect(gw?.gateway.stats().rejectedByReason.payload_too_large).toBe(1)
    expect(gw?.gateway.stats().connections.oversizePublishes).toBe(1)
  })

  it('paces QoS 1 publishes over PUBLISH_RATE: every one acknowledged is stored, none dead-lettered', async () => {
    await start({ PUBLISH_RATE: '40', PUBLISH_BURST: '10' })
    const watcher = await connect('watcher')
    const letters = recordMessages(watcher)
    await watcher.subscribeAsync('gateway/deadletter/#', { qos: 0 })
    const subscriber = await connect('subscriber')
    const forwarded = recordMessages(subscriber)
    await subscriber.subscribeAsync('sensors/dev-fast/#', { qos: 1 })
    const calm = await connect('dev-calm')
    // MQTT.js keeps no in-flight limit: all 100 are sent at once, far faster than 40/s.
    const fast = await connect('dev-fast')

    const t0 = performance.now()
    const ackedAtMs: number[] = []
    const acks = range(0, 100).map((i) =>
      fast
        .publishAsync('sensors/dev-fast/temperature', JSON.stringify({ value: i, ts: T0 + i }), {
          qos: 1,
        })
        .then(() => {
          ackedAtMs[i] = performance.now() - t0
        }),
    )
    // While the 90 over the burst wait for tokens, they are neither stored nor acknowledged.
    await vi.waitFor(async () =>
      expect((await scrape()).value('gateway_publishes_rate_waiting')).toBeGreaterThan(50),
    )
    expect((await storedValues('dev-fast')).length).toBeLessThan(100)
    await behave(calm, 'dev-calm', 5)
    await Promise.all(acks)
    expect(fast.connected).toBe(true)

    // Every PUBACK came, and every acknowledged reading is stored, in order.
    expect(await storedValues('dev-fast')).toEqual(range(0, 100))
    // Paced by the bucket: the k-th PUBACK (from 1) needs k - 10 refilled tokens at 40/s. The
    // bucket starts when the first publish arrives, after t0.
    for (const [i, at] of ackedAtMs.entries()) {
      expect(at).toBeGreaterThanOrEqual(((i + 1 - 10) / 40) * 1_000 - 1)
    }
    const metrics = await scrape()
    expect(metrics.value('gateway_publishes_rate_limited_total', { qos: '1' })).toBe(90)
    expect(metrics.value('gateway_publishes_rate_limited_total', { qos: '0' })).toBe(0)
    expect(metrics.value('gateway_publishes_rate_waiting')).toBe(0)
    expect(metrics.value('gateway_publishes_rejected_total', { reason: 'rate_limited' })).toBe(0)
    expect(gw?.gateway.stats().rejectedByReason).toEqual({})
    // Paced publishes are forwarded like any other, in order; nothing was dead-lettered.
    await vi.waitFor(() => expect(forwarded).toHaveLength(100))
    expect(forwarded.map((m) => JSON.parse(m.payload).value)).toEqual(range(0, 100))
    await watcher.publishAsync('probe/done', 'x', { qos: 1 })
    expect(letters).toEqual([])
    expect(await storedValues('dev-calm')).toEqual(range(0, 5))
  })

  it('drops QoS 0 publishes over PUBLISH_RATE: counted in /metrics, not forwarded, no dead letter each', async () => {
    await start({ PUBLISH_RATE: '5', PUBLISH_BURST: '5' })
    const watcher = await connect('watcher')
    const letters = recordMessages(watcher)
    await watcher.subscribeAsync('gateway/deadletter/#', { qos: 0 })
    const subscriber = await connect('subscriber')
    const forwarded = recordMessages(subscriber)
    await subscriber.subscribeAsync(['sensors/dev-flood/#', 'probe/#'], { qos: 0 })
    const calm = await connect('dev-calm')
    const flood = await connect('dev-flood')

    // 200 QoS 0 readings at once (under RATE_DISCONNECT_AFTER, 1000): five within the burst.
    const t0 = performance.now()
    for (const i of range(0, 200)) {
      flood.publish('sensors/dev-flood/temperature', JSON.stringify({ value: i, ts: T0 + i }), {
        qos: 0,
      })
    }
    await vi.waitFor(async () =>
      expect(
        (await scrape()).value('gateway_publishes_rate_limited_total', { qos: '0' }),
      ).toBeGreaterThanOrEqual(190),
    )
    const elapsedSec = (performance.now() - t0) / 1_000
    // At most what the bucket allowed in that time passed; every other one was dropped.
    const allowed = Math.floor(5 + 5 * elapsedSec)
    await behave(calm, 'dev-calm', 5)
    const stored = await storedValues('dev-flood')
    const dropped = (await scrape()).value('gateway_publishes_rate_limited_total', { qos: '0' })
    expect(stored.length).toBeGreaterThanOrEqual(5)
    expect(stored.length).toBeLessThanOrEqual(allowed)
    expect(stored.length + (dropped as number)).toBe(200)
    expect(stored.slice(0, 5)).toEqual(range(0, 5))

    // Not forwarded: a probe sent now arrives after anything the flood could have delivered.
    await subscriber.publishAsync('probe/done', 'x', { qos: 1 })
    await vi.waitFor(() => expect(forwarded.map((m) => m.topic)).toContain('probe/done'))
    expect(forwarded.filter((m) => m.topic.startsWith('sensors/')).length).toBe(stored.length)
    // Dropped and counted, not dead-lettered one by one: one warn line says so, not 195.
    expect(letters).toEqual([])
    expect(gw?.gateway.stats().rejectedByReason).toEqual({})
    expect(warnings('publishes over PUBLISH_RATE')).toEqual([
      expect.objectContaining({ clientId: 'dev-flood' }),
    ])
    expect(flood.connected).toBe(true)
    expect(await storedValues('dev-calm')).toEqual(range(0, 5))
  })

  it('RATE_DISCONNECT_AFTER closes a QoS 0 client far over its rate though tokens come in between', async () => {
    await start({ PUBLISH_RATE: '100', PUBLISH_BURST: '10', RATE_DISCONNECT_AFTER: '200' })
    const calm = await connect('dev-calm')
    const flood = await connect('dev-runaway')
    const closed = closeOf(flood)
    let gone = false
    void closed.then(() => {
      gone = true
    })
    // A runaway loop: 10 readings every 10 ms (1000/s, ten times the rate), for 10 s at most.
    // A token comes every 10 ms, between the bursts: "limited in a row" never got to 200.
    let sent = 0
    const deadline = performance.now() + 10_000
    while (!gone && performance.now() < deadline) {
      for (let k = 0; k < 10; k++, sent++) {
        flood.publish(
          'sensors/dev-runaway/temperature',
          JSON.stringify({ value: sent, ts: T0 + sent }),
          {
            qos: 0,
          },
        )
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    expect(gone).toBe(true)
    await behave(calm, 'dev-calm', 5)

    const warned = warnings('RATE_DISCONNECT_AFTER')
    expect(warned).toHaveLength(1)
    expect(warned[0]).toMatchObject({ clientId: 'dev-runaway' })
    expect(warned[0]?.aheadOfBucket as number).toBeGreaterThanOrEqual(200)
    // Tokens were taken between the drops (more than the burst got through), and it was closed.
    await vi.waitFor(async () =>
      expect((await storedValues('dev-runaway')).length).toBeGreaterThan(10),
    )
    const metrics = await scrape()
    expect(metrics.value('gateway_rate_limit_disconnects_total')).toBe(1)
    expect(await storedValues('dev-calm')).toEqual(range(0, 5))
  })

  it('RATE_DISCONNECT_AFTER closes a QoS 1 client with more publishes waiting; the waiting are released', async () => {
    await start({ PUBLISH_RATE: '20', PUBLISH_BURST: '10', RATE_DISCONNECT_AFTER: '50' })
    const calm = await connect('dev-calm')
    const greedy = await connect('dev-greedy')
    const closed = closeOf(greedy)
    // 200 at once: 10 within the burst, 49 waiting, and the 50th ahead of the bucket closes it.
    for (const i of range(0, 200)) {
      greedy.publish('sensors/dev-greedy/temperature', JSON.stringify({ value: i, ts: T0 + i }), {
        qos: 1,
      })
    }
    await closed
    // Released at once, not passed on later: nothing waits, only the burst is stored.
    expect((await scrape()).value('gateway_publishes_rate_waiting')).toBe(0)
    await behave(calm, 'dev-calm', 5)
    expect(await storedValues('dev-greedy')).toEqual(range(0, 10))
    expect(warnings('RATE_DISCONNECT_AFTER')[0]).toMatchObject({
      clientId: 'dev-greedy',
      aheadOfBucket: 50,
    })
    expect(await storedValues('dev-calm')).toEqual(range(0, 5))

    // A client that goes away while its publishes wait: they are released, not stored later.
    const leaving = await connect('dev-leaving')
    for (const i of range(0, 40)) {
      leaving.publish('sensors/dev-leaving/temperature', JSON.stringify({ value: i, ts: T0 + i }), {
        qos: 1,
      })
    }
    await vi.waitFor(async () =>
      expect((await scrape()).value('gateway_publishes_rate_waiting')).toBeGreaterThan(20),
    )
    clients.delete(leaving)
    leaving.end(true)
    await vi.waitFor(async () =>
      expect((await scrape()).value('gateway_publishes_rate_waiting')).toBe(0),
    )
    const kept = await storedValues('dev-leaving')
    expect(kept.length).toBeLessThan(40)
    expect(kept).toEqual(range(0, kept.length))
    await behave(calm, 'dev-calm', 5, 5)
    expect(await storedValues('dev-calm')).toEqual(range(0, 10))
  })

  it('disconnects a subscriber that stops reading after DRAIN_TIMEOUT; the others get every message', async () => {
    await start({ DRAIN_TIMEOUT: '300ms', PUBLISH_RATE: '100000', PUBLISH_BURST: '100000' })
    // A subscriber that subscribes to every reading and then never reads its socket again.
    const slow = await rawSocket()
    const handshake: Buffer[] = []
    const acked = new Promise<void>((resolve) => {
      slow.on('data', (chunk: Buffer) => {
        handshake.push(chunk)
        // CONNACK (4 bytes) and SUBACK (5 bytes): subscribed.
        if (Buffer.concat(handshake).length >= 9) resolve()
      })
    })
    slow.write(Buffer.concat([connectPacket('slow-reader'), subscribePacket('sensors/#')]))
    await acked
    slow.pause()
    const slowGone = () => warnings('DRAIN_TIMEOUT').length > 0

    const normal = await connect('normal-reader')
    const received = recordMessages(normal)
    await normal.subscribeAsync('sensors/#', { qos: 0 })
    const device = await connect('dev-steady')

    // 32 KiB readings (a number padded with whitespace, still valid) fill the slow reader's
    // socket buffers within a few MiB; publish until the gateway has dropped it, then some more.
    const pad = ' '.repeat(32 * 1024)
    let published = 0
    const send = async () => {
      await device.publishAsync(
        'sensors/dev-steady/temperature',
        JSON.stringify({ value: published, ts: T0 + published }) + pad,
        { qos: 1 },
      )
      published++
    }
    while (!slowGone() && published < 3_000) await send()
    expect(slowGone()).toBe(true)
    for (let i = 0; i < 20; i++) await send()

    await vi.waitFor(() => expect(received).toHaveLength(published), { timeout: 10_000 })
    expect(warnings('DRAIN_TIMEOUT')[0]).toMatchObject({ clientId: 'slow-reader' })
    // The slow reader's socket was closed by the gateway: reading it now reaches the end.
    slow.resume()
    if (!slow.destroyed) await closeOf(slow)
    expect(await storedValues('dev-steady')).toEqual(range(0, published))
  })

  it('refuses a connection over MAX_CONNECTIONS (TCP and WebSocket together) by closing it', async () => {
    await start({ MAX_CONNECTIONS: '2' })
    const wsUrl = `${gw?.httpUrl.replace('http://', 'ws://')}/mqtt`
    const tcpDevice = await connect('dev-tcp')
    const wsDevice = await connect('dev-ws', wsUrl)

    // The third is closed before any CONNACK, over either transport.
    for (const url of [gw?.mqttUrl ?? '', wsUrl]) {
      const third = mqtt.connect(url, { clientId: 'dev-third', reconnectPeriod: 0 })
      third.on('error', () => {})
      let connacked = false
      third.on('connect', () => {
        connacked = true
      })
      await closeOf(third)
      expect(connacked).toBe(false)
      third.end(true)
    }
    await expect(
      connectAsync(gw?.mqttUrl ?? '', { clientId: 'dev-third', reconnectPeriod: 0 }, false),
    ).rejects.toThrow("Couldn't connect to server")
    expect(warnings('MAX_CONNECTIONS')).toHaveLength(1)

    await behave(tcpDevice, 'dev-tcp', 3)
    await behave(wsDevice, 'dev-ws', 3)
    // A slot freed is a slot again.
    await tcpDevice.endAsync()
    clients.delete(tcpDevice)
    await vi.waitFor(async () => {
      const client = await connectAsync(
        gw?.mqttUrl ?? '',
        { clientId: 'dev-late', reconnectPeriod: 0 },
        false,
      )
      clients.add(client)
    })
    const late = [...clients].find((c) => c.options.clientId === 'dev-late') as MqttClient
    await behave(late, 'dev-late', 3)
    expect(await storedValues('dev-tcp')).toEqual(range(0, 3))
    expect(await storedValues('dev-ws')).toEqual(range(0, 3))
    expect(await storedValues('dev-late')).toEqual(range(0, 3))
  })

  it('closes a connection that sends no CONNECT within CONNECT_TIMEOUT', async () => {
    await start({ CONNECT_TIMEOUT: '300ms' })
    const device = await connect('dev-calm')
    const silent = await rawSocket()
    silent.resume()
    await closeOf(silent)
    expect(warnings('CONNECT_TIMEOUT')).toHaveLength(1)
    // A client that does send CONNECT in time is not affected, nor is one already connected.
    await behave(device, 'dev-calm', 3)
    const later = await connect('dev-later')
    await behave(later, 'dev-later', 3)
    expect(await storedValues('dev-calm')).toEqual(range(0, 3))
    expect(await storedValues('dev-later')).toEqual(range(0, 3))
  })
})
