import { InfluxDB } from 'influx'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningInfluxd, startInfluxd } from '../../scripts/influxd.ts'
import type { Alert } from '../../src/contract/types.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { runToEnd } from '../helpers/processes.ts'

const READINGS = 300
/** Bounds every wait on InfluxDB's arrival: it starts in about a second here. */
const WAIT = { timeout: 30_000, interval: 100 }

/**
 * The gateway with STORE=influx started while nothing listens at INFLUX_URL (README, Guarantees):
 * influxd is started once to own a port and a data folder, halted (by PID) before the gateway
 * starts, and restarted on the same port later.
 */
describe('gateway started while InfluxDB is unreachable', () => {
  let influxd: RunningInfluxd
  const gateways: TestGateway[] = []
  const clients = new Set<MqttClient>()
  let dbCount = 0

  const connect = async (url: string, clientId: string) => {
    const client = await connectClient(url, { clientId })
    clients.add(client)
    return client
  }
  const status = async (gw: TestGateway, path: string) => {
    const res = await fetch(`${gw.httpUrl}${path}`)
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }
  const influxGateway = async (database: string) => {
    const gw = await startTestGateway({
      STORE: 'influx',
      INFLUX_URL: `${influxd.url}/${database}`,
    })
    gateways.push(gw)
    return gw
  }

  beforeAll(async () => {
    influxd = await startInfluxd()
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    for (const gw of gateways.splice(0)) await gw.cleanup()
  })
  afterAll(async () => {
    await influxd?.stop()
  })

  it('starts not ready, acknowledges and spools QoS 1 readings, creates the schema when InfluxDB comes, and stores every acknowledged reading', {
    timeout: 120_000,
  }, async () => {
    await influxd.halt()
    const database = `gw_outage_${process.pid}_${++dbCount}`
    const gw = await influxGateway(database)

    // Alive, not ready, and the reads say the store is unavailable (503), as for a later outage.
    expect((await status(gw, '/healthz')).status).toBe(200)
    const notReady = await status(gw, '/readyz')
    expect(notReady.status).toBe(503)
    expect(notReady.body).toMatchObject({ status: 'not_ready', checks: { store: 'down' } })
    const read = await status(gw, '/api/readings?device=dev-out&from=-1h')
    expect(read).toMatchObject({ status: 503, body: { error: 'store_unavailable' } })
    const warnings = gw.logs.filter((l) =>
      String(l.msg).startsWith('InfluxDB is unreachable at start-up'),
    )
    expect(warnings).toHaveLength(1)
    expect(warnings[0]?.level).toBe(40)

    const watcher = await connect(gw.mqttUrl, 'watcher')
    const letters = recordMessages(watcher)
    await watcher.subscribeAsync('gateway/deadletter/#', { qos: 1 })
    const device = await connect(gw.mqttUrl, 'dev-out')
    const base = Date.now() - 10 * 60_000
    // publishAsync resolves on the PUBACK: every one of these is acknowledged while influxd is down.
    const acked = await Promise.all(
      Array.from({ length: READINGS }, (_, i) =>
        device.publishAsync(
          'sensors/dev-out/temperature',
          JSON.stringify({ ts: base + i * 1_000, value: 20 + (i % 5) }),
          { qos: 1 },
        ),
      ),
    )
    expect(acked).toHaveLength(READINGS)
    // Mosquitto's client too: it exits 0 only once its QoS 1 publish is acknowledged.
    const mosquitto = await runToEnd('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      new URL(gw.mqttUrl).port,
      '-q',
      '1',
      '-i',
      'dev-mosq',
      '-t',
      'sensors/dev-mosq/temperature',
      '-m',
      JSON.stringify({ ts: base, value: 21.5 }),
    ])
    expect(mosquitto, mosquitto.stderr).toMatchObject({ code: 0 })
    const spooled = await status(gw, '/readyz')
    expect(spooled.status).toBe(503)

    await influxd.restart()
    const influx = new InfluxDB(`${influxd.url}/${database}`)
    await vi.waitFor(async () => {
      expect((await influx.getDatabaseNames()).includes(database)).toBe(true)
    }, WAIT)
    await vi.waitFor(async () => {
      const policies = await influx.showRetentionPolicies(database)
      expect(policies.map((p) => p.name)).toEqual(
        expect.arrayContaining(['alerts', 'downsampled', 'raw']),
      )
      expect(policies.find((p) => p.name === 'raw')?.default).toBe(true)
    }, WAIT)
    await vi.waitFor(async () => {
      const queries = await influx.showContinousQueries(database)
      expect(queries.map((q) => q.name)).toEqual(['reading_1m'])
    }, WAIT)
    await vi.waitFor(async () => {
      const rows = await influx.query<{ count: number }>(
        `SELECT count("value") AS "count" FROM "raw"."reading" WHERE "device" = 'dev-out'`,
      )
      expect(rows[0]?.count).toBe(READINGS)
    }, WAIT)
    await vi.waitFor(async () => {
      const fromMosquitto = await influx.query<{ value: number }>(
        `SELECT "value" FROM "raw"."reading" WHERE "device" = 'dev-mosq'`,
      )
      expect(fromMosquitto.map((r) => r.value)).toEqual([21.5])
    }, WAIT)
    await vi.waitFor(async () => expect((await status(gw, '/readyz')).status).toBe(200), WAIT)
    expect(
      gw.logs.filter((l) =>
        String(l.msg).startsWith('InfluxDB answered: database, retention policies'),
      ),
    ).toHaveLength(1)
    const stored = await status(gw, `/api/readings?device=dev-out&from=${base}&limit=1000`)
    expect(stored.status).toBe(200)
    expect((stored.body as { readings: unknown[] }).readings).toHaveLength(READINGS)
    // Not one reading was refused (a write into a missing database must never read as a refusal).
    expect(letters).toEqual([])
    expect(gw.gateway.stats().rejectedByReason).toEqual({})
  })

  it('restores a firing alert from InfluxDB once it answers: re-published retained, no duplicate transition', {
    timeout: 120_000,
  }, async () => {
    const database = `gw_outage_${process.pid}_${++dbCount}`
    // A first run with InfluxDB up leaves a firing alert in the store.
    const first = await influxGateway(database)
    const hot = await connect(first.mqttUrl, 'dev-hot')
    await hot.publishAsync('sensors/dev-hot/temperature', JSON.stringify({ value: 35 }), { qos: 1 })
    const influx = new InfluxDB(`${influxd.url}/${database}`)
    await vi.waitFor(async () => {
      const rows = await influx.query(`SELECT "state" FROM "alerts"."alert"`)
      expect(rows.map((r) => (r as { state?: string }).state)).toEqual(['firing'])
    }, WAIT)
    await endAll([hot])
    clients.delete(hot)
    await first.cleanup()
    gateways.splice(gateways.indexOf(first), 1)

    await influxd.halt()
    const gw = await influxGateway(database)
    const watcher = await connect(gw.mqttUrl, 'alert-watcher')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('alerts/#', { qos: 1 })
    // The store's part of the restore waits for InfluxDB: nothing retained yet.
    expect((await status(gw, '/readyz')).status).toBe(503)
    expect(seen).toEqual([])

    await influxd.restart()
    await vi.waitFor(() => expect(seen).toHaveLength(1), WAIT)
    const restored = JSON.parse(seen[0]?.payload ?? '{}') as Alert
    expect(restored).toMatchObject({ ruleId: 'high-temperature', deviceId: 'dev-hot' })
    expect(restored.state).toBe('firing')
    await vi.waitFor(
      () => expect(gw.logs.map((l) => l.msg)).toContain('state restored from the store'),
      WAIT,
    )

    // Restored as firing: a breaching reading is no new transition, a clearing one resolves it.
    const device = await connect(gw.mqttUrl, 'dev-hot')
    await device.publishAsync('sensors/dev-hot/temperature', JSON.stringify({ value: 36 }), {
      qos: 1,
    })
    await device.publishAsync('sensors/dev-hot/temperature', JSON.stringify({ value: 20 }), {
      qos: 1,
    })
    await vi.waitFor(() => expect(seen).toHaveLength(2), WAIT)
    expect(JSON.parse(seen[1]?.payload ?? '{}')).toMatchObject({ state: 'resolved' })
    await vi.waitFor(async () => {
      const rows = await influx.query(`SELECT "state" FROM "alerts"."alert"`)
      expect(rows.map((r) => (r as { state?: string }).state)).toEqual(['firing', 'resolved'])
    }, WAIT)
  })
})
