import { connect, type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import WebSocket from 'ws'
import { makeTestCerts, type TestCerts } from '../helpers/certs.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { runToEnd } from '../helpers/processes.ts'
import {
  connack,
  connectPacket,
  destroyAll,
  mqttPacket,
  mqttString,
  openRaw,
  publishPacket,
  type RawConnection,
  subscribePacket,
} from '../helpers/raw-mqtt.ts'

/**
 * MQTT 3.1.1 conformance of the gateway's broker (README "MQTT 3.1.1 conformance"): the
 * normative statements of §3.1, §3.2, §3.3, §3.8 and §4.7, each over a real socket. Malformed
 * packets are written by hand (MQTT.js will not send them); the rest uses MQTT.js and Mosquitto's
 * clients. Test names start with the statement id the README table points at.
 */

const CONNACK_ACCEPTED = connack(0)

describe('MQTT 3.1.1 conformance (default configuration)', () => {
  let gw: TestGateway
  let port: number
  const raws = new Set<RawConnection>()
  const clients = new Set<MqttClient>()

  beforeAll(async () => {
    gw = await startTestGateway()
    port = Number(new URL(gw.mqttUrl).port)
  })
  afterEach(async () => {
    destroyAll(raws)
    raws.clear()
    await endAll(clients)
    clients.clear()
  })
  afterAll(async () => {
    await gw.cleanup()
  })

  const raw = async (...packets: Buffer[]) => {
    const connection = await openRaw(port)
    raws.add(connection)
    if (packets.length > 0) connection.socket.write(Buffer.concat(packets))
    return connection
  }
  /** The gateway closed the connection; the bytes it sent before are returned. */
  const closedAfter = async (connection: RawConnection) => {
    await connection.closed
    return connection.received()
  }
  const client = async (options: Parameters<typeof connectClient>[1] = {}) => {
    const c = await connectClient(gw.mqttUrl, options)
    clients.add(c)
    return c
  }
  const connectedRaw = async (clientId: string) => {
    const connection = await raw(connectPacket({ clientId }))
    expect(await connection.bytes(4)).toEqual(CONNACK_ACCEPTED)
    return connection
  }

  describe('keepalive (KEEPALIVE_LIMIT 1200, issue 14)', () => {
    it('MQTT-3.2.2-6: keepalive 0 is accepted with CONNACK 0, never the reserved code 6', async () => {
      const connection = await raw(connectPacket({ clientId: 'ka-zero', keepaliveSec: 0 }))
      expect(await connection.bytes(4)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-3.2.2-6: keepalive over the limit (3600) is accepted with CONNACK 0', async () => {
      const connection = await raw(connectPacket({ clientId: 'ka-long', keepaliveSec: 3600 }))
      expect(await connection.bytes(4)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT.js with keepalive 0 connects and publishes', async () => {
      const c = await client({ clientId: 'mqttjs-ka-zero', keepalive: 0 })
      expect(c.connected).toBe(true)
      await c.publishAsync('conformance/ka', 'x', { qos: 1 })
    })

    it('TCP keepalive is on for MQTT sockets (what watches a keepalive-0 client)', async () => {
      await connectedRaw('tcp-ka')
      // ss shows the server side's keepalive timer: "timer:(keepalive,59sec,0)".
      await vi.waitFor(async () => {
        const { stdout } = await runToEnd('ss', [
          '-tnoH',
          'state',
          'established',
          `sport = :${port}`,
        ])
        expect(stdout).toMatch(/timer:\(keepalive,/)
      })
    })

    it('mosquitto_sub asking keepalive 65535 (over the limit) is accepted and receives', async () => {
      // mosquitto_sub itself refuses -k 0 ("must be between 5 and 65535"), so the longest it has.
      const pub = await client({ clientId: 'ka-retainer' })
      await pub.publishAsync('conformance/mosquitto-ka', 'kept', { qos: 1, retain: true })
      const result = await runToEnd('mosquitto_sub', [
        ...['-h', '127.0.0.1', '-p', String(port), '-k', '65535'],
        ...['-t', 'conformance/mosquitto-ka', '-C', '1', '-W', '10'],
      ])
      expect(result.code, result.stderr).toBe(0)
      expect(result.stdout.trim()).toBe('kept')
    })
  })

  describe('CONNECT (§3.1) and CONNACK (§3.2)', () => {
    it('MQTT-3.1.3-8: zero-length client id with clean session 0 gets CONNACK 2 and is closed', async () => {
      const connection = await raw(connectPacket({ clientId: '', clean: false }))
      expect(await closedAfter(connection)).toEqual(connack(2))
    })

    it('MQTT-3.1.4-5: nothing sent after a refused CONNECT is processed', async () => {
      // The QoS 1 PUBLISH arrives with the CONNECT: processed, it would get a PUBACK.
      const connection = await raw(
        connectPacket({ clientId: '', clean: false }),
        publishPacket('conformance/after-refusal', '1', 1),
      )
      expect(await closedAfter(connection)).toEqual(connack(2))
    })

    it('MQTT-3.1.2-2, MQTT-3.1.3-8: the CONNACK 1 and 2 refusals reach a WebSocket client too', async () => {
      const { http } = gw.gateway.addresses()
      for (const [fields, code] of [
        [{ level: 6 }, 1],
        [{ clientId: '', clean: false }, 2],
      ] as const) {
        const ws = new WebSocket(`ws://127.0.0.1:${http.port}/mqtt`, 'mqtt')
        const got: Buffer[] = []
        ws.on('message', (data: Buffer) => got.push(data))
        const closed = new Promise((resolve) => ws.once('close', resolve))
        await new Promise((resolve) => ws.once('open', resolve))
        ws.send(connectPacket(fields))
        await closed
        expect(Buffer.concat(got), JSON.stringify(fields)).toEqual(connack(code))
      }
    })

    it('MQTT-3.1.3-6: zero-length client id with clean session 1 is accepted', async () => {
      const connection = await raw(connectPacket({ clientId: '', clean: true }))
      expect(await connection.bytes(4)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-3.1.3-5: a 23-character alphanumeric client id, and a longer one, are accepted', async () => {
      for (const clientId of ['abcdefghijklmnopqrstuvw', 'x'.repeat(200)]) {
        const connection = await raw(connectPacket({ clientId }))
        expect(await connection.bytes(4)).toEqual(CONNACK_ACCEPTED)
      }
    })

    it('MQTT-3.1.2-2: an unknown protocol level gets CONNACK 1 and is closed', async () => {
      for (const level of [2, 6, 0x7f]) {
        const connection = await raw(connectPacket({ level }))
        expect(await closedAfter(connection), `level ${level}`).toEqual(connack(1))
      }
    })

    it('MQTT-3.1.2-2: level 5 (not served by Aedes 1.2) gets CONNACK 1 and is closed', async () => {
      const body = Buffer.concat([
        mqttString('MQTT'),
        Buffer.from([5, 0x02, 0, 60, 0]), // level, flags, keepalive, no properties
        mqttString('v5-client'),
      ])
      const connection = await raw(mqttPacket(0x10, body))
      expect(await closedAfter(connection)).toEqual(connack(1))
    })

    it('MQTT-3.1.2-2: protocol name and level that do not pair get CONNACK 1', async () => {
      for (const [protocolName, level] of [
        ['MQTT', 3],
        ['MQIsdp', 4],
      ] as const) {
        const connection = await raw(connectPacket({ protocolName, level }))
        expect(await closedAfter(connection), `${protocolName} ${level}`).toEqual(connack(1))
      }
    })

    it('MQTT 3.1 (MQIsdp, level 3) is served; its zero-length client id gets CONNACK 2', async () => {
      const c = await client({ clientId: 'mqtt31', protocolVersion: 3, protocolId: 'MQIsdp' })
      expect(c.connected).toBe(true)
      const empty = await raw(connectPacket({ protocolName: 'MQIsdp', level: 3, clientId: '' }))
      expect(await closedAfter(empty)).toEqual(connack(2))
    })

    it('MQTT-3.1.2-1: another protocol name is closed without CONNACK', async () => {
      const connection = await raw(connectPacket({ protocolName: 'MQTX' }))
      expect(await closedAfter(connection)).toEqual(Buffer.alloc(0))
    })

    it('MQTT-3.1.2-3: the reserved connect flag set is closed without CONNACK', async () => {
      const connection = await raw(connectPacket({ extraFlags: 0x01 }))
      expect(await closedAfter(connection)).toEqual(Buffer.alloc(0))
    })

    it('MQTT-3.1.2-11/13/15: will QoS or will retain without the will flag is closed', async () => {
      for (const extraFlags of [0x08, 0x10, 0x20]) {
        const connection = await raw(connectPacket({ extraFlags }))
        expect(await closedAfter(connection), `flags ${extraFlags}`).toEqual(Buffer.alloc(0))
      }
    })

    it('MQTT-3.1.2-14: will QoS 3 is closed without CONNACK', async () => {
      const connection = await raw(connectPacket({ will: { topic: 'conformance/will', qos: 3 } }))
      expect(await closedAfter(connection)).toEqual(Buffer.alloc(0))
    })

    it('MQTT-3.1.3-10: a will topic with a wildcard, U+0000 or empty is closed', async () => {
      for (const topic of ['conformance/#', 'conformance/+/x', 'a\u0000b', '']) {
        const connection = await raw(connectPacket({ will: { topic } }))
        expect(await closedAfter(connection), JSON.stringify(topic)).toEqual(Buffer.alloc(0))
      }
    })

    it('MQTT-3.1.2-22: password flag without user name flag is closed', async () => {
      const connection = await raw(connectPacket({ password: 'secret' }))
      expect(await closedAfter(connection)).toEqual(Buffer.alloc(0))
    })

    it('MQTT-1.5.3-2: a client id containing U+0000 is closed', async () => {
      const connection = await raw(connectPacket({ clientId: 'dev\u0000ice' }))
      expect(await closedAfter(connection)).toEqual(Buffer.alloc(0))
    })

    it('MQTT-3.1.2-8/10: the will is published when the connection drops, not after DISCONNECT', async () => {
      const watcher = await client({ clientId: 'will-watcher' })
      const got = recordMessages(watcher)
      await watcher.subscribeAsync('conformance/will/#', { qos: 1 })
      const polite = await raw(
        connectPacket({ clientId: 'will-polite', will: { topic: 'conformance/will/polite' } }),
      )
      expect(await polite.bytes(4)).toEqual(CONNACK_ACCEPTED)
      polite.socket.end(Buffer.from([0xe0, 0x00])) // DISCONNECT
      await polite.closed
      const dropped = await raw(
        connectPacket({ clientId: 'will-dropped', will: { topic: 'conformance/will/dropped' } }),
      )
      expect(await dropped.bytes(4)).toEqual(CONNACK_ACCEPTED)
      dropped.socket.destroy()
      await vi.waitFor(() => expect(got.map((m) => m.topic)).toContain('conformance/will/dropped'))
      expect(got.map((m) => m.topic)).not.toContain('conformance/will/polite')
    })

    it('MQTT-3.1.0-1: a first packet other than CONNECT is closed', async () => {
      const connection = await raw(Buffer.from([0xc0, 0x00])) // PINGREQ
      expect(await closedAfter(connection)).toEqual(Buffer.alloc(0))
    })

    it('MQTT-3.1.0-2: a second CONNECT is closed', async () => {
      const connection = await connectedRaw('twice')
      connection.socket.write(connectPacket({ clientId: 'twice' }))
      expect(await closedAfter(connection)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-3.1.4-2: a second connection with the same client id takes over', async () => {
      const first = await connectedRaw('same-id')
      await connectedRaw('same-id')
      expect(await closedAfter(first)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-3.2.2-1/2: session present is 0 for a clean session, 1 when one is resumed', async () => {
      const sessionPresent = async (options: IClientOptions) => {
        const c = connect(gw.mqttUrl, { reconnectPeriod: 0, connectTimeout: 5_000, ...options })
        clients.add(c)
        const ack = await new Promise<IConnackPacket>((resolve) => c.once('connect', resolve))
        return { c, present: ack.sessionPresent }
      }
      expect((await sessionPresent({ clientId: 'session-a', clean: true })).present).toBe(false)
      const first = await sessionPresent({ clientId: 'session-b', clean: false })
      expect(first.present).toBe(false)
      await first.c.subscribeAsync('conformance/session', { qos: 1 })
      await first.c.endAsync()
      expect((await sessionPresent({ clientId: 'session-b', clean: false })).present).toBe(true)
    })
  })

  describe('PUBLISH (§3.3) and topic names (§4.7)', () => {
    it('MQTT-3.3.2-2: a topic name with + or # is closed', async () => {
      for (const topic of ['conformance/+', 'conformance/#']) {
        const connection = await connectedRaw(`pub-wild-${topic.length}`)
        connection.socket.write(publishPacket(topic, '1'))
        expect(await closedAfter(connection), topic).toEqual(CONNACK_ACCEPTED)
      }
    })

    it('MQTT-4.7.3-1: an empty topic name is closed', async () => {
      const connection = await connectedRaw('pub-empty')
      connection.socket.write(publishPacket('', '1'))
      expect(await closedAfter(connection)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-4.7.3-2: a topic name containing U+0000 is closed and not delivered', async () => {
      const sub = await client({ clientId: 'nul-watcher' })
      const got = recordMessages(sub)
      await sub.subscribeAsync('conformance/#')
      const connection = await connectedRaw('pub-nul')
      connection.socket.write(publishPacket('conformance/a\u0000b', 'bad', 1))
      expect(await closedAfter(connection)).toEqual(CONNACK_ACCEPTED) // no PUBACK
      await sub.publishAsync('conformance/after', 'ok', { qos: 1 })
      await vi.waitFor(() => expect(got.map((m) => m.topic)).toContain('conformance/after'))
      expect(got.map((m) => m.topic)).not.toContain('conformance/a\u0000b')
    })

    it('MQTT-3.3.1-4: QoS 3 is closed', async () => {
      const connection = await connectedRaw('pub-qos3')
      connection.socket.write(publishPacket('conformance/q', '1', 3))
      expect(await closedAfter(connection)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-3.3.4-1: QoS 1 is answered with PUBACK carrying its packet id', async () => {
      const connection = await connectedRaw('pub-qos1')
      connection.socket.write(publishPacket('conformance/q', '1', 1))
      expect((await connection.bytes(8)).subarray(4)).toEqual(Buffer.from([0x40, 2, 0, 1]))
    })

    it('MQTT-3.3.1-5/6/8/9: retained kept for new subscribers (retain 1), live ones get retain 0', async () => {
      const pub = await client({ clientId: 'retainer' })
      const live = await client({ clientId: 'live-sub' })
      const liveGot = recordMessages(live)
      await live.subscribeAsync('conformance/retained', { qos: 1 })
      await pub.publishAsync('conformance/retained', 'r1', { qos: 1, retain: true })
      await vi.waitFor(() => expect(liveGot).toHaveLength(1))
      expect(liveGot[0]).toMatchObject({ payload: 'r1', retain: false })
      const late = await client({ clientId: 'late-sub' })
      const lateGot = recordMessages(late)
      await late.subscribeAsync('conformance/retained', { qos: 1 })
      await vi.waitFor(() => expect(lateGot).toHaveLength(1))
      expect(lateGot[0]).toMatchObject({ payload: 'r1', retain: true })
    })

    it('MQTT-3.3.1-10/11: a zero-byte retained message clears the retained one', async () => {
      const pub = await client({ clientId: 'clearer' })
      await pub.publishAsync('conformance/cleared', 'old', { qos: 1, retain: true })
      await pub.publishAsync('conformance/cleared', '', { qos: 1, retain: true })
      const late = await client({ clientId: 'cleared-sub' })
      const got = recordMessages(late)
      await late.subscribeAsync(['conformance/cleared', 'conformance/cleared-marker'], { qos: 1 })
      await pub.publishAsync('conformance/cleared-marker', 'm', { qos: 1 })
      await vi.waitFor(() =>
        expect(got.map((m) => m.topic)).toContain('conformance/cleared-marker'),
      )
      expect(got.map((m) => m.topic)).not.toContain('conformance/cleared')
    })

    it('MQTT-4.7.2-1: # and + at the first level do not match $ topics', async () => {
      // Clients may not publish on $ topics here (the ACL refuses them): Aedes' own $SYS messages
      // are the $ topics there are. `$SYS/{id}/new/clients` is published on each connection.
      const wild = await client({ clientId: 'dollar-wild' })
      const wildGot = recordMessages(wild)
      await wild.subscribeAsync(['#', '+/+/new/clients'], { qos: 0 })
      const direct = await client({ clientId: 'dollar-direct' })
      const directGot = recordMessages(direct)
      await direct.subscribeAsync('$SYS/+/new/clients', { qos: 0 })
      await client({ clientId: 'dollar-trigger' })
      await vi.waitFor(() => expect(directGot.map((m) => m.payload)).toContain('dollar-trigger'))
      await direct.publishAsync('conformance/dollar-marker', 'm', { qos: 1 })
      await vi.waitFor(() =>
        expect(wildGot.map((m) => m.topic)).toContain('conformance/dollar-marker'),
      )
      expect(wildGot.filter((m) => m.topic.startsWith('$'))).toEqual([])
    })
  })

  describe('SUBSCRIBE (§3.8) and topic filters (§4.7)', () => {
    it('MQTT-3.8.3-3: a SUBSCRIBE without a topic filter is closed', async () => {
      const connection = await connectedRaw('sub-empty')
      connection.socket.write(subscribePacket([]))
      expect(await closedAfter(connection)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-3.10.3-2: an UNSUBSCRIBE without a topic filter is closed', async () => {
      const connection = await connectedRaw('unsub-empty')
      connection.socket.write(mqttPacket(0xa2, Buffer.from([0x00, 0x01])))
      expect(await closedAfter(connection)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-3.8.1-1: SUBSCRIBE with reserved header flags other than 0010 is closed', async () => {
      const connection = await connectedRaw('sub-flags')
      connection.socket.write(subscribePacket([{ topic: 'conformance/f' }], 1, 0x80))
      expect(await closedAfter(connection)).toEqual(CONNACK_ACCEPTED)
    })

    it('MQTT-3.8.3-4: reserved option bits or QoS 3 in a SUBSCRIBE are closed', async () => {
      for (const options of [0x04, 0x80, 0x03]) {
        const connection = await connectedRaw(`sub-options-${options}`)
        connection.socket.write(subscribePacket([{ topic: 'conformance/o', options }]))
        expect(await closedAfter(connection), `options ${options}`).toEqual(CONNACK_ACCEPTED)
      }
    })

    it('MQTT-3.8.4-1/2/5: SUBACK carries the packet id and one code per filter', async () => {
      const connection = await connectedRaw('sub-ack')
      connection.socket.write(
        subscribePacket(
          [
            { topic: 'conformance/a', options: 0 },
            { topic: 'conformance/+/b', options: 1 },
            { topic: '#', options: 2 },
          ],
          0x1234,
        ),
      )
      expect((await connection.bytes(11)).subarray(4)).toEqual(
        Buffer.from([0x90, 5, 0x12, 0x34, 0, 1, 2]),
      )
    })

    it('MQTT-4.7.1-2/3: wildcards that are not whole levels are closed', async () => {
      const bad = ['a#', '+a', 'a+', 'a/#/b', 'a/b#', 'a/+b', 'a/b+/c', '##', '+#']
      for (const topic of bad) {
        const connection = await connectedRaw(`sub-bad-${bad.indexOf(topic)}`)
        connection.socket.write(subscribePacket([{ topic }]))
        expect(await closedAfter(connection), topic).toEqual(CONNACK_ACCEPTED)
      }
    })

    it('MQTT-4.7.1-2/3: whole-level wildcards are granted', async () => {
      const good = ['#', '+', '+/+', '/+', 'a/+/b', 'a/#', '+/#', 'a//+']
      const connection = await connectedRaw('sub-good')
      connection.socket.write(subscribePacket(good.map((topic) => ({ topic }))))
      const suback = (await connection.bytes(4 + 4 + good.length)).subarray(4)
      expect(suback).toEqual(Buffer.from([0x90, 2 + good.length, 0, 1, ...good.map(() => 0)]))
    })

    it('MQTT-4.7.3-1/2: an empty filter or one containing U+0000 is closed', async () => {
      for (const topic of ['', 'a/\u0000']) {
        const connection = await connectedRaw(`sub-nul-${topic.length}`)
        connection.socket.write(subscribePacket([{ topic }]))
        expect(await closedAfter(connection), JSON.stringify(topic)).toEqual(CONNACK_ACCEPTED)
      }
    })
  })
})

describe('KEEPALIVE_LIMIT holds a client asking for more (KEEPALIVE_LIMIT=1)', () => {
  let gw: TestGateway
  const clients = new Set<MqttClient>()

  beforeAll(async () => {
    gw = await startTestGateway({ KEEPALIVE_LIMIT: '1', LOG_LEVEL: 'debug' })
  })
  afterAll(async () => {
    await endAll(clients)
    await gw.cleanup()
  })

  it('MQTT-3.1.2-24: keepalive 3600 is accepted, then closed after 1.5 x the limit of silence; keepalive 0 stays', async () => {
    const silentForever = await connectClient(gw.mqttUrl, { clientId: 'ka-none', keepalive: 0 })
    clients.add(silentForever)
    const sleepy = await connectClient(gw.mqttUrl, { clientId: 'ka-3600', keepalive: 3600 })
    clients.add(sleepy)
    expect(sleepy.connected).toBe(true)
    // MQTT.js would ping only after 3600 s: the client says nothing, the broker closes it.
    await new Promise<void>((resolve) => sleepy.once('close', () => resolve()))
    await vi.waitFor(() =>
      expect(gw.logs).toContainEqual(
        expect.objectContaining({ clientId: 'ka-3600', err: 'keep alive timeout' }),
      ),
    )
    expect(gw.logs).toContainEqual(
      expect.objectContaining({ clientId: 'ka-3600', requestedSec: 3600, appliedSec: 1 }),
    )
    // The keepalive-0 client was just as silent for as long, and is still served.
    expect(silentForever.connected).toBe(true)
    const got = recordMessages(silentForever)
    await silentForever.subscribeAsync('conformance/still-here')
    await silentForever.publishAsync('conformance/still-here', 'yes', { qos: 1 })
    await vi.waitFor(() => expect(got.map((m) => m.payload)).toEqual(['yes']))
  })
})

describe('TCP keepalive on every MQTT transport (what watches a keepalive-0 client)', () => {
  let certs: TestCerts
  let gw: TestGateway
  const clients = new Set<MqttClient>()

  beforeAll(async () => {
    certs = await makeTestCerts(['dev-tls'])
    gw = await startTestGateway({
      MQTTS_PORT: '0',
      TLS_CERT: certs.certFile,
      TLS_KEY: certs.keyFile,
    })
  })
  afterAll(async () => {
    await endAll(clients)
    await gw?.cleanup()
    await certs?.remove()
  })

  /** The keepalive timer ss shows on the gateway's side of connections to `port`. */
  const keepaliveTimers = async (port: number) => {
    const { stdout } = await runToEnd('ss', ['-tnoH', 'state', 'established', `sport = :${port}`])
    return stdout.match(/timer:\(keepalive,/g)?.length ?? 0
  }

  it('mqtts and MQTT over WebSocket sockets have TCP keepalive on, with keepalive 0', async () => {
    const { mqtts, http } = gw.gateway.addresses()
    const overTls = await connectClient(`mqtts://127.0.0.1:${mqtts?.port}`, {
      clientId: 'tls-ka-zero',
      keepalive: 0,
      ca: certs.ca,
      servername: 'localhost',
    })
    clients.add(overTls)
    const overWs = await connectClient(`ws://127.0.0.1:${http.port}/mqtt`, {
      clientId: 'ws-ka-zero',
      keepalive: 0,
    })
    clients.add(overWs)
    await vi.waitFor(async () => expect(await keepaliveTimers(mqtts?.port ?? 0)).toBe(1))
    await vi.waitFor(async () => expect(await keepaliveTimers(http.port)).toBe(1))
  })
})
