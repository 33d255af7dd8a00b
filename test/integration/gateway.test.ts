import type { MqttClient } from 'mqtt'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Alert, DeadLetter, DeviceStatus } from '../../src/contract/types.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { allReadings } from '../helpers/store.ts'

const T0 = Date.UTC(2026, 10, 26, 12, 0, 0)

describe('gateway end to end (in-process, real MQTT over TCP, SQLite file)', () => {
  let gw: TestGateway
  const clients = new Set<MqttClient>()

  const connect = async (clientId: string) => {
    const client = await connectClient(gw.mqttUrl, { clientId })
    clients.add(client)
    return client
  }
  const getJson = async (path: string) => {
    const res = await fetch(`${gw.httpUrl}${path}`)
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  beforeEach(async () => {
    gw = await startTestGateway()
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await gw.cleanup()
  })

  it('stores every payload form of DESIGN §3 and serves it over HTTP', async () => {
    const device = await connect('dev-forms')
    const iso = new Date(T0 + 4_000).toISOString()
    await device.publishAsync('sensors/dev-forms/temperature', '21.5', { qos: 1 })
    await device.publishAsync(
      'sensors/dev-forms/temperature',
      JSON.stringify({ value: 22, ts: T0 + 1_000, unit: 'Cel' }),
      { qos: 1 },
    )
    await device.publishAsync(
      'sensors/dev-forms',
      JSON.stringify({ ts: T0 + 2_000, temperature: 23, humidity: 40 }),
      { qos: 1 },
    )
    await device.publishAsync(
      'sensors/dev-forms',
      JSON.stringify([{ bn: 'dev-forms:', bt: (T0 + 3_000) / 1_000, n: 'co2', u: 'ppm', v: 650 }]),
      { qos: 1 },
    )
    await device.publishAsync(
      'sensors/dev-forms/humidity',
      JSON.stringify({ value: 41, ts: iso }),
      { qos: 1 },
    )

    // QoS 1: the PUBACK came after the commit, so the readings are queryable at once.
    const { status, body } = await getJson(
      `/api/readings?device=dev-forms&from=${T0 - 1}&to=now&order=asc`,
    )
    expect(status).toBe(200)
    const readings = body.readings as Array<{
      metric: string
      value: number
      ts: number
      unit?: string
    }>
    const byTs = readings
      .filter((r) => r.ts >= T0 && r.ts < T0 + 10_000)
      .map(({ metric, value, ts, unit }) => ({ metric, value, ts, unit }))
    expect(byTs).toEqual(
      [
        { metric: 'temperature', value: 22, ts: T0 + 1_000, unit: 'Cel' },
        { metric: 'humidity', value: 40, ts: T0 + 2_000, unit: undefined },
        { metric: 'temperature', value: 23, ts: T0 + 2_000, unit: undefined },
        { metric: 'co2', value: 650, ts: T0 + 3_000, unit: 'ppm' },
        { metric: 'humidity', value: 41, ts: T0 + 4_000, unit: undefined },
      ].sort((a, b) => a.ts - b.ts || a.metric.localeCompare(b.metric)),
    )
    // The bare number has no ts: it is stamped with the receive time.
    const bare = readings.find((r) => r.value === 21.5)
    expect(bare?.ts).toBeGreaterThan(Date.now() - 60_000)

    const devices = await getJson('/api/devices')
    const listed = (
      devices.body.devices as Array<{ id: string; metrics: Record<string, { value: number }> }>
    ).find((d) => d.id === 'dev-forms')
    expect(listed?.metrics.temperature?.value).toBe(21.5)
    expect(listed?.metrics.co2?.value).toBe(650)
  })

  it('fires and resolves high-temperature, retained for late subscribers, only on transitions', async () => {
    const device = await connect('dev-hot')
    for (const value of [25, 35, 36, 37]) {
      await device.publishAsync('sensors/dev-hot/temperature', String(value), { qos: 1 })
    }
    const late = await connect('late-firing')
    const firing = recordMessages(late)
    await late.subscribeAsync('alerts/#', { qos: 1 })
    await vi.waitFor(() => expect(firing).toHaveLength(1))
    expect(firing[0]?.topic).toBe('alerts/major/dev-hot/high-temperature')
    expect(firing[0]?.retain).toBe(true)
    const alert = JSON.parse(firing[0]?.payload ?? '{}') as Alert
    expect(alert).toMatchObject({
      ruleId: 'high-temperature',
      deviceId: 'dev-hot',
      metric: 'temperature',
      severity: 'major',
      state: 'firing',
      value: 35,
      threshold: 30,
    })

    // Hysteresis 1: 29.5 is not far enough back; 20 resolves.
    await device.publishAsync('sensors/dev-hot/temperature', '29.5', { qos: 1 })
    await device.publishAsync('sensors/dev-hot/temperature', '20', { qos: 1 })
    await vi.waitFor(() => expect(firing).toHaveLength(2))
    expect(JSON.parse(firing[1]?.payload ?? '{}')).toMatchObject({ state: 'resolved', value: 20 })

    const late2 = await connect('late-resolved')
    const resolved = recordMessages(late2)
    await late2.subscribeAsync('alerts/#', { qos: 1 })
    await vi.waitFor(() => expect(resolved).toHaveLength(1))
    expect(resolved[0]).toMatchObject({
      topic: 'alerts/major/dev-hot/high-temperature',
      retain: true,
    })
    expect(JSON.parse(resolved[0]?.payload ?? '{}')).toMatchObject({ state: 'resolved' })

    const history = await getJson('/api/alerts?device=dev-hot')
    expect((history.body.alerts as Alert[]).map((a) => a.state)).toEqual(['resolved', 'firing'])
  })

  it('dead-letters a malformed publish with its reason and keeps the device connected', async () => {
    const watcher = await connect('watcher')
    const letters = recordMessages(watcher)
    await watcher.subscribeAsync('gateway/deadletter/#', { qos: 0 })
    const device = await connect('dev-bad')
    await device.publishAsync('sensors/dev-bad/temperature', 'twenty', { qos: 1 })
    await device.publishAsync('sensors/dev-bad', '{"temperature": 21', { qos: 1 })
    await vi.waitFor(() => expect(letters).toHaveLength(2))
    const [first, second] = letters.map((m) => ({
      topic: m.topic,
      letter: JSON.parse(m.payload) as DeadLetter,
    }))
    expect(first).toMatchObject({
      topic: 'gateway/deadletter/dev-bad',
      letter: { topic: 'sensors/dev-bad/temperature', reason: 'bad_value', payload: 'twenty' },
    })
    expect(second?.letter.reason).toBe('not_json')

    // Still connected, still accepted.
    expect(device.connected).toBe(true)
    await device.publishAsync('sensors/dev-bad/temperature', '21', { qos: 1 })
    const { body } = await getJson('/api/readings?device=dev-bad&metric=temperature')
    expect((body.readings as Array<{ value: number }>).map((r) => r.value)).toEqual([21])
    expect(gw.gateway.stats().rejectedByReason).toEqual({ bad_value: 1, not_json: 1 })
    const warn = gw.logs.filter((l) => l.msg === 'publish rejected')
    expect(warn.map((l) => l.reason)).toEqual(['bad_value', 'not_json'])
  })

  it('dead-letters every bad publish but logs a flood of them once per device and reason', async () => {
    const watcher = await connect('flood-watcher')
    const letters = recordMessages(watcher)
    await watcher.subscribeAsync('gateway/deadletter/#', { qos: 0 })
    const device = await connect('dev-garbage')
    for (let i = 0; i < 50; i++) {
      await device.publishAsync('sensors/dev-garbage/temperature', `garbage ${i}`, { qos: 1 })
    }
    await device.publishAsync('sensors/dev-garbage/bad metric', '1', { qos: 1 })
    await vi.waitFor(() => expect(letters).toHaveLength(51))
    expect(gw.gateway.stats().rejectedByReason).toEqual({ bad_value: 50, bad_identifier: 1 })
    const warn = gw.logs.filter((l) => l.msg === 'publish rejected' && l.deviceId === 'dev-garbage')
    // The default interval is 10 s: one line for the 50 bad values, one for the other reason.
    expect(warn.map((l) => l.reason)).toEqual(['bad_value', 'bad_identifier'])
    expect(device.connected).toBe(true)
  })

  it('publishes device status online and offline, retained', async () => {
    const device = await connect('dev-presence')
    await device.publishAsync('sensors/dev-presence/temperature', '20', { qos: 1 })
    const watcher = await connect('status-watcher')
    const received = recordMessages(watcher)
    // Devices of the shipped registry are announced offline too; this test follows its own.
    const statuses = () => received.filter((m) => m.topic === 'devices/dev-presence/status')
    await watcher.subscribeAsync('devices/+/status', { qos: 1 })
    await vi.waitFor(() => expect(statuses()).toHaveLength(1))
    expect(statuses()[0]?.retain).toBe(true)
    expect((JSON.parse(statuses()[0]?.payload ?? '{}') as DeviceStatus).state).toBe('online')
    await device.endAsync()
    clients.delete(device)
    await vi.waitFor(() => expect(statuses()).toHaveLength(2))
    expect((JSON.parse(statuses()[1]?.payload ?? '{}') as DeviceStatus).state).toBe('offline')
  })

  it('keeps the readings of a QoS 0 flood and stores them all', async () => {
    const device = await connect('dev-flood')
    const base = Date.now() - 10_000
    for (let i = 0; i < 500; i++) {
      device.publish(
        'sensors/dev-flood/humidity',
        JSON.stringify({ value: i % 100, ts: base + i }),
        { qos: 0 },
      )
    }
    await vi.waitFor(async () => {
      const { body } = await getJson('/api/readings?device=dev-flood&limit=1000&from=-1h')
      expect(body.count).toBe(500)
    })
  })
})

describe('gateway start-up and shutdown', () => {
  it('refuses to start when the HTTP port is taken, naming the port and the variable', async () => {
    const { createServer } = await import('node:net')
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    try {
      await expect(startTestGateway({ HTTP_PORT: String(port) })).rejects.toMatchObject({
        code: 'GW_ERR_PORT_IN_USE',
        message: `HTTP port ${port} on 127.0.0.1 is already in use: set HTTP_PORT to a free port (0 lets the OS choose)`,
      })
    } finally {
      blocker.close()
    }
  })

  it('writes readings accepted just before stop, and the alerts they raise', async () => {
    const gw = await startTestGateway()
    try {
      const device = await connectClient(gw.mqttUrl, { clientId: 'dev-last' })
      const stopped = new Promise<void>((resolve) => {
        // Stop from inside the pipeline, while the valid reading sent just before is still queued.
        gw.gateway.bus.on('test', 'reading.rejected', () => {
          gw.stop().then(resolve, resolve)
        })
      })
      device.publish('sensors/dev-last/temperature', '35', { qos: 0 })
      device.publish('sensors/dev-last/temperature', 'not a number', { qos: 0 })
      await stopped
      await device.endAsync(true)

      const { createSqliteStore } = await import('../../src/store/sqlite-store.ts')
      const store = createSqliteStore({ file: `${gw.dataDir}/gateway.db` })
      try {
        const readings = await allReadings(store, 'dev-last')
        expect(readings.map((r) => r.value)).toEqual([35])
        const alerts = await store.queryAlerts({ deviceId: 'dev-last', limit: 10 })
        expect(alerts.map((a) => [a.ruleId, a.state])).toEqual([['high-temperature', 'firing']])
      } finally {
        await store.close()
      }
    } finally {
      await gw.cleanup()
    }
  })
})
