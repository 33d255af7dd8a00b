import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { MqttClient } from 'mqtt'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { WebSocket } from 'ws'
import type { Alert } from '../../src/contract/types.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { allReadings } from '../helpers/store.ts'

describe('MQTT over WebSocket on the HTTP port (/mqtt)', () => {
  let gw: TestGateway
  const clients = new Set<MqttClient>()
  const sockets = new Set<WebSocket>()

  const wsUrl = (path = '/mqtt') => `${gw.httpUrl.replace(/^http/, 'ws')}${path}`
  const connectWs = async (clientId: string) => {
    const client = await connectClient(wsUrl(), { clientId })
    clients.add(client)
    return client
  }
  const connectTcp = async (clientId: string) => {
    const client = await connectClient(gw.mqttUrl, { clientId })
    clients.add(client)
    return client
  }
  const closeOf = (client: MqttClient) =>
    new Promise<void>((resolve) => client.once('close', () => resolve()))
  /** A raw WebSocket (no MQTT on it), to look at the handshake itself. */
  const rawSocket = (path: string, protocols?: string[]) => {
    const ws = new WebSocket(wsUrl(path), protocols)
    ws.on('error', () => {})
    sockets.add(ws)
    return ws
  }

  beforeEach(async () => {
    gw = await startTestGateway()
  })
  afterEach(async () => {
    for (const ws of sockets) ws.terminate()
    sockets.clear()
    await endAll(clients)
    clients.clear()
    await gw.cleanup()
  })

  it('delivers to a WebSocket subscriber what a TCP device publishes: readings and alerts', async () => {
    const dashboard = await connectWs('ws-dashboard')
    const received = recordMessages(dashboard)
    await dashboard.subscribeAsync(['alerts/#', 'sensors/#'], { qos: 1 })

    const device = await connectTcp('dev-ws-1')
    await device.publishAsync('sensors/dev-ws-1/temperature', '25', { qos: 1 })
    await device.publishAsync('sensors/dev-ws-1/temperature', '35', { qos: 1 })

    await vi.waitFor(() =>
      expect(received.map((m) => m.topic)).toContain('alerts/major/dev-ws-1/high-temperature'),
    )
    const readings = received.filter((m) => m.topic === 'sensors/dev-ws-1/temperature')
    expect(readings.map((m) => m.payload)).toEqual(['25', '35'])
    const alert = received.find((m) => m.topic.startsWith('alerts/'))
    expect(JSON.parse(alert?.payload ?? '{}')).toMatchObject<Partial<Alert>>({
      ruleId: 'high-temperature',
      deviceId: 'dev-ws-1',
      state: 'firing',
      value: 35,
    })
  })

  it('stores readings a WebSocket client publishes, acknowledging QoS 1 after the commit', async () => {
    const device = await connectWs('dev-ws-2')
    await device.publishAsync(
      'sensors/dev-ws-2',
      JSON.stringify({ temperature: 21.5, humidity: 40 }),
      {
        qos: 1,
      },
    )
    // The PUBACK came after the commit: the readings are in the store already.
    const stored = await allReadings(gw.gateway.store, 'dev-ws-2')
    expect(stored.map((r) => [r.metric, r.value]).sort()).toEqual([
      ['humidity', 40],
      ['temperature', 21.5],
    ])
    const res = await fetch(`${gw.httpUrl}/api/readings?device=dev-ws-2&from=-1h`)
    expect(((await res.json()) as { count: number }).count).toBe(2)
    expect(gw.gateway.stats().connectedClients).toBe(1)
  })

  it('applies the broker hooks to WebSocket clients: a publish on a gateway topic is refused', async () => {
    const intruder = await connectWs('ws-intruder')
    // Acknowledged and dead-lettered; the connection stays (README, Security).
    await intruder.publishAsync('alerts/critical/dev-x/fake', '{"state":"firing"}', {
      qos: 1,
      retain: true,
    })
    expect(intruder.connected).toBe(true)
    expect(gw.gateway.stats().rejectedByReason.not_authorized).toBe(1)
    const watcher = await connectTcp('watcher')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('alerts/critical/dev-x/#', { qos: 1 })
    // Nothing was retained there: the publish was refused, not passed on.
    await watcher.publishAsync('probe/done', 'x', { qos: 1 })
    expect(seen).toEqual([])
  })

  it('answers with the mqtt subprotocol, and refuses other paths with a 404 in the API error shape', async () => {
    const ok = rawSocket('/mqtt', ['mqtt'])
    await once(ok, 'open')
    expect(ok.protocol).toBe('mqtt')

    const bad = rawSocket('/not-mqtt', ['mqtt'])
    const [, response] = (await once(bad, 'unexpected-response')) as [unknown, IncomingMessage]
    expect(response.statusCode).toBe(404)
    let body = ''
    for await (const chunk of response) body += String(chunk)
    expect(JSON.parse(body)).toEqual({
      error: 'not_found',
      message: 'no WebSocket endpoint at /not-mqtt; MQTT over WebSocket is at /mqtt',
      statusCode: 404,
    })

    // The HTTP API shares the port and is unaffected.
    expect((await fetch(`${gw.httpUrl}/healthz`)).status).toBe(200)
    const port = new URL(gw.httpUrl).port
    expect(gw.logs.map((l) => l.msg)).toContain(
      `MQTT over WebSocket on ws://127.0.0.1:${port}/mqtt`,
    )
  })

  it('stop closes WebSocket clients, MQTT or idle, and does not wait for them', async () => {
    const subscriber = await connectWs('ws-stop')
    const mqttClosed = closeOf(subscriber)
    // A socket that never sends CONNECT: Aedes would wait connectTimeout (30 s) for it.
    const idle = rawSocket('/mqtt', ['mqtt'])
    await once(idle, 'open')
    const idleClosed = once(idle, 'close')

    // Waiting for the idle socket would take Aedes' 30 s connectTimeout, past this test's own
    // timeout: stop() returning at all is the check.
    await gw.stop()
    await mqttClosed
    const [code] = (await idleClosed) as [number]
    expect(code).toBe(1001)
    expect(subscriber.connected).toBe(false)

    // Nothing listens any more.
    const late = rawSocket('/mqtt', ['mqtt'])
    await expect(once(late, 'open')).rejects.toThrow()
  })
})
