import { InfluxDB } from 'influx'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { createFleet, type Fleet } from '../../devices/fleet.ts'
import { type RunningInfluxd, startInfluxd } from '../../scripts/influxd.ts'
import type { DeadLetter } from '../../src/contract/types.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'

/** The gateway with STORE=influx against a real influxd started for this file. */
describe('gateway on InfluxDB', () => {
  let influxd: RunningInfluxd
  const gateways: TestGateway[] = []
  const clients = new Set<MqttClient>()
  let fleet: Fleet | null = null
  let dbCount = 0

  const influxGateway = async (env: Record<string, string> = {}) => {
    const database = `gw_${process.pid}_${++dbCount}`
    const gw = await startTestGateway({
      STORE: 'influx',
      INFLUX_URL: `${influxd.url}/${database}`,
      ...env,
    })
    gateways.push(gw)
    return { gw, database }
  }
  const connect = async (url: string, clientId: string) => {
    const client = await connectClient(url, { clientId })
    clients.add(client)
    return client
  }
  const getJson = async (gw: TestGateway, path: string) =>
    (await fetch(`${gw.httpUrl}${path}`)).json()

  beforeAll(async () => {
    influxd = await startInfluxd()
  })
  afterEach(async () => {
    await fleet?.stop()
    fleet = null
    await endAll(clients)
    clients.clear()
    for (const gw of gateways.splice(0)) await gw.cleanup()
  })
  afterAll(async () => {
    await influxd?.stop()
  })

  it('stores every acknowledged reading of a 50-device simulator run', async () => {
    const { gw, database } = await influxGateway()
    fleet = createFleet({
      url: gw.mqttUrl,
      devices: 50,
      intervalMs: 100,
      qos: 1,
      form: 'metric',
      count: 2_000,
      seed: 3,
    })
    await fleet.start()
    await fleet.finished()
    const { acked, published } = fleet.stats()
    expect(acked).toBe(2_000)
    expect(published).toBe(2_000)
    const influx = new InfluxDB(`${influxd.url}/${database}`)
    const rows = await influx.query<{ count: number }>(
      'SELECT count("value") AS "count" FROM "reading"',
    )
    // QoS 1: acknowledged means committed to InfluxDB, so the count is there already.
    expect(rows[0]?.count).toBe(acked)
  })

  it('answers /api/readings and /api/readings/aggregate exactly as the SQLite gateway does', async () => {
    const { gw: influxGw } = await influxGateway()
    const sqliteGw = await startTestGateway()
    gateways.push(sqliteGw)
    const base = Date.now() - 30 * 60_000
    for (const gw of [influxGw, sqliteGw]) {
      const device = await connect(gw.mqttUrl, 'dev-same')
      for (let i = 0; i < 120; i++) {
        const payload = JSON.stringify({
          ts: base + i * 15_000,
          temperature: 20 + (i % 7),
          humidity: 40 + (i % 5),
        })
        await device.publishAsync('sensors/dev-same', payload, { qos: 1 })
      }
    }
    const queries = [
      '/api/readings?device=dev-same&from=-1h&limit=500',
      '/api/readings?device=dev-same&metric=humidity&from=-1h&order=desc&limit=50',
      '/api/readings/aggregate?device=dev-same&metric=temperature&from=-1h&every=5m&fn=mean',
      '/api/readings/aggregate?device=dev-same&metric=temperature&from=-1h&every=10m&fn=max',
      '/api/readings/aggregate?device=dev-same&metric=humidity&from=-1h&every=1m&fn=count',
      '/api/readings/aggregate?device=dev-same&metric=humidity&from=-1h&every=7m&fn=last',
    ]
    for (const query of queries) {
      // Relative times are resolved per request: pin them so both gateways answer the same question.
      const pinned = query.replace('from=-1h', `from=${base - 60_000}&to=${base + 3_600_000}`)
      const [fromInflux, fromSqlite] = await Promise.all([
        getJson(influxGw, pinned),
        getJson(sqliteGw, pinned),
      ])
      expect(fromInflux, pinned).toEqual(fromSqlite)
    }
    const devices = (await getJson(influxGw, '/api/devices')) as { devices: Array<{ id: string }> }
    expect(devices.devices.map((d) => d.id)).toContain('dev-same')
  })

  it('dead-letters a point InfluxDB refuses, with its reason, and stores its batch neighbours', async () => {
    // The shortest raw retention InfluxDB allows: a reading two hours old is beyond it.
    const { gw, database } = await influxGateway({ INFLUX_RAW_RETENTION: '1h' })
    const watcher = await connect(gw.mqttUrl, 'watcher')
    const letters = recordMessages(watcher)
    await watcher.subscribeAsync('gateway/deadletter/#', { qos: 0 })
    const device = await connect(gw.mqttUrl, 'dev-old')
    const nowS = Math.floor(Date.now() / 1000)
    // One SenML pack, so the three readings reach InfluxDB in one write; the pressure one is old.
    const pack = [
      { bn: 'dev-old:', bt: nowS, n: 'temperature', v: 21 },
      { n: 'humidity', v: 40 },
      { n: 'pressure', t: -7_200, v: 1013 },
    ]
    await device.publishAsync('sensors/dev-old', JSON.stringify(pack), { qos: 1 })
    await vi.waitFor(() => expect(letters).toHaveLength(1))
    const letter = JSON.parse(letters[0]?.payload ?? '{}') as DeadLetter
    expect(letter).toMatchObject({ topic: 'sensors/dev-old/pressure', reason: 'store_rejected' })
    expect(letter.detail).toContain('beyond retention policy')
    expect(JSON.parse(letter.payload)).toEqual({
      deviceId: 'dev-old',
      metric: 'pressure',
      value: 1013,
      ts: (nowS - 7_200) * 1000,
    })
    const influx = new InfluxDB(`${influxd.url}/${database}`)
    const rows = await influx.query<{ metric: string; value: number }>(
      `SELECT "value", "metric" FROM "reading" WHERE "device" = 'dev-old'`,
    )
    expect(rows.map((r) => [r.metric, r.value]).sort()).toEqual([
      ['humidity', 40],
      ['temperature', 21],
    ])
    expect(gw.gateway.stats().rejectedByReason).toEqual({ store_rejected: 1 })
  })
})
