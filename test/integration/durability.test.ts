import path from 'node:path'
import { InfluxDB } from 'influx'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningInfluxd, startInfluxd } from '../../scripts/influxd.ts'
import type { Alert } from '../../src/contract/types.ts'
import { createSqliteStore } from '../../src/store/sqlite-store.ts'
import { type Acked, type AckPublisher, startAckPublisher } from '../helpers/ack-publisher.ts'
import { SHIPPED_RULES, startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { type RunningProcess, startProcess } from '../helpers/processes.ts'
import { parsePrometheusText } from '../helpers/prometheus.ts'
import { allReadings } from '../helpers/store.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/**
 * "Nothing lost" (README, Guarantees): what a QoS 1 device was acknowledged is stored exactly
 * once, through a kill -9 of the gateway, an InfluxDB outage, and a full spool.
 */

/** The rate limiter would dead-letter this load; these tests are about the store, not limits. */
const UNLIMITED = { PUBLISH_RATE: '1000000', PUBLISH_BURST: '1000000' }
const PROCESS_ENV = {
  LOG_PRETTY: 'false',
  LOG_LEVEL: 'info',
  MQTT_PORT: '0',
  HTTP_PORT: '0',
  RULES_FILE: SHIPPED_RULES,
  ...UNLIMITED,
}
const WAIT = { timeout: 20_000, interval: 50 }

function startGatewayProcess(env: Record<string, string>): RunningProcess {
  return startProcess('node', ['--import', 'tsx', 'src/main.ts'], { ...PROCESS_ENV, ...env })
}

/** The port a gateway process logged for `MQTT listening` or `HTTP listening`. */
async function loggedPort(proc: RunningProcess, what: 'MQTT' | 'HTTP'): Promise<number> {
  return vi.waitFor(() => {
    const line = proc.logLines().find((l) => String(l.msg).startsWith(`${what} listening`))
    expect(line, proc.stderr()).toBeDefined()
    return line?.port as number
  }, WAIT)
}

/** Acked readings grouped by device: the ts of each, to compare with what a store holds. */
function ackedByDevice(acked: readonly Acked[]): Map<string, number[]> {
  const byDevice = new Map<string, number[]>()
  for (const reading of acked) {
    const list = byDevice.get(reading.deviceId) ?? []
    list.push(reading.ts)
    byDevice.set(reading.deviceId, list)
  }
  return byDevice
}

async function metricsOf(httpUrl: string) {
  return parsePrometheusText(await (await fetch(`${httpUrl}/metrics`)).text())
}

describe('durability: kill -9, store outages, a full spool', () => {
  const processes: RunningProcess[] = []
  const dirs: TempDir[] = []
  const clients = new Set<MqttClient>()
  const loads: AckPublisher[] = []
  const gateways: TestGateway[] = []
  let influxd: RunningInfluxd
  let databases = 0

  const influxGateway = async (env: Record<string, string> = {}) => {
    const database = `durable_${process.pid}_${++databases}`
    const gw = await startTestGateway({
      STORE: 'influx',
      INFLUX_URL: `${influxd.url}/${database}`,
      ...UNLIMITED,
      // Retries come quickly, so the outage ends soon after influxd is back.
      STORE_RETRY_MAX: '200ms',
      ...env,
    })
    gateways.push(gw)
    return { gw, database }
  }

  /** Every reading of the database, as (device -> ts list), read straight from InfluxDB. */
  const influxReadings = async (database: string) => {
    const influx = new InfluxDB({ host: '127.0.0.1', port: influxd.httpPort, database })
    const rows = await influx.query<{ device: string; time: { getNanoTime(): string } }>(
      'SELECT "value", "device" FROM "raw"."reading"',
      { precision: 'ms' },
    )
    const byDevice = new Map<string, number[]>()
    for (const row of rows) {
      const list = byDevice.get(row.device) ?? []
      list.push(Number(BigInt(row.time.getNanoTime()) / 1_000_000n))
      byDevice.set(row.device, list)
    }
    return byDevice
  }

  beforeAll(async () => {
    influxd = await startInfluxd()
  }, 30_000)
  afterEach(async () => {
    for (const load of loads.splice(0)) await load.stop()
    await endAll(clients)
    clients.clear()
    for (const gw of gateways.splice(0)) await gw.cleanup()
    for (const proc of processes.splice(0)) {
      proc.signal('SIGKILL')
      await proc.exited
    }
    for (const dir of dirs.splice(0)) await dir.remove()
    // A test that failed mid-outage must not leave the next one without its store.
    if (influxd && !(await pingInflux())) await influxd.restart()
  })
  afterAll(async () => {
    await influxd?.stop()
  })

  const pingInflux = async () => {
    try {
      return (await fetch(`${influxd.url}/ping`)).status === 204
    } catch {
      return false
    }
  }

  it('kill -9 mid-stream on SQLite: every acknowledged reading is stored once, the firing alert restored', async () => {
    const dir = await createTempDir('gw-crash-')
    dirs.push(dir)
    const first = startGatewayProcess({ DATA_DIR: dir.path })
    processes.push(first)
    const url = `mqtt://127.0.0.1:${await loggedPort(first, 'MQTT')}`

    const watcher = await connectClient(url, { clientId: 'crash-watcher' })
    clients.add(watcher)
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('alerts/#', { qos: 1 })
    const hot = await connectClient(url, { clientId: 'crash-hot' })
    clients.add(hot)
    await hot.publishAsync('sensors/crash-hot/temperature', '35', { qos: 1 })
    await vi.waitFor(() => expect(seen.map((m) => m.topic)).toContain(HOT_TOPIC), WAIT)

    const startTs = Date.now() - 60_000
    const load = await startAckPublisher({ url, devices: 8, prefix: 'crash', startTs })
    loads.push(load)
    await load.waitForAcks(3_000)
    // Mid-stream: every device has a reading in flight.
    first.signal('SIGKILL')
    expect(await first.exited).toBe('SIGKILL')
    await load.stop()
    const acked = [...load.acked]
    await endAll(clients)
    clients.clear()

    const second = startGatewayProcess({ DATA_DIR: dir.path })
    processes.push(second)
    const url2 = `mqtt://127.0.0.1:${await loggedPort(second, 'MQTT')}`
    const httpUrl = `http://127.0.0.1:${await loggedPort(second, 'HTTP')}`
    // The firing alert is back, retained, for a subscriber that arrives after the restart.
    const late = await connectClient(url2, { clientId: 'crash-late' })
    clients.add(late)
    const retained = recordMessages(late)
    await late.subscribeAsync('alerts/#', { qos: 1 })
    await vi.waitFor(() => expect(retained.map((m) => m.topic)).toContain(HOT_TOPIC), WAIT)
    const restored = JSON.parse(
      retained.find((m) => m.topic === HOT_TOPIC)?.payload ?? '{}',
    ) as Alert
    expect(restored).toMatchObject({ state: 'firing', deviceId: 'crash-hot', value: 35 })
    // Still firing, not fired again: a hotter reading adds no transition.
    const hot2 = await connectClient(url2, { clientId: 'crash-hot' })
    clients.add(hot2)
    await hot2.publishAsync('sensors/crash-hot/temperature', '36', { qos: 1 })
    const history = (await (
      await fetch(`${httpUrl}/api/alerts?device=crash-hot&rule=high-temperature`)
    ).json()) as { alerts: Alert[] }
    expect(history.alerts.map((a) => a.state)).toEqual(['firing'])
    await endAll(clients)
    clients.clear()

    second.signal('SIGTERM')
    expect(await second.exited).toBe(0)

    const store = createSqliteStore({ file: path.join(dir.path, 'gateway.db') })
    try {
      for (const [deviceId, ackedTs] of ackedByDevice(acked)) {
        const stored = await allReadings(store, deviceId)
        const storedTs = stored.map((r) => r.ts)
        // Each acknowledged reading is there; the store holds each (device, metric, ts) once.
        expect(storedTs).toEqual(expect.arrayContaining(ackedTs))
        expect(new Set(storedTs).size).toBe(storedTs.length)
        // Anything beyond the acked ones was in flight at the kill: published, then lost its ack.
        expect(storedTs.length - ackedTs.length).toBeLessThanOrEqual(1)
        for (const reading of stored) expect(reading.value).toBe(reading.ts - startTs)
      }
    } finally {
      await store.close()
    }
    expect(acked.length).toBeGreaterThanOrEqual(3_000)
  }, 90_000)

  it('InfluxDB stopped under load, then started: acks go on from the spool, every acked reading arrives once', async () => {
    const { gw, database } = await influxGateway()
    const startTs = Date.now() - 60_000
    const load = await startAckPublisher({
      url: gw.mqttUrl,
      devices: 6,
      prefix: 'outage',
      startTs,
    })
    loads.push(load)
    await load.waitForAcks(500)

    await influxd.halt()
    // The outage: devices keep being acknowledged, from the spool.
    await load.waitForAcks(2_000)
    await vi.waitFor(async () => {
      const ready = await fetch(`${gw.httpUrl}/readyz`)
      expect(ready.status).toBe(503)
      expect(((await ready.json()) as { checks: { store: string } }).checks.store).toBe('down')
      const metrics = await metricsOf(gw.httpUrl)
      expect(metrics.value('gateway_store_up')).toBe(0)
      expect(metrics.value('gateway_spool_items')).toBeGreaterThan(0)
    }, WAIT)

    await influxd.restart()
    await load.waitForAcks(500)
    await load.stop({ drain: true })
    const acked = [...load.acked]
    await vi.waitFor(async () => {
      const metrics = await metricsOf(gw.httpUrl)
      expect(metrics.value('gateway_spool_items')).toBe(0)
      expect(metrics.value('gateway_store_pending_readings')).toBe(0)
      expect((await fetch(`${gw.httpUrl}/readyz`)).status).toBe(200)
    }, WAIT)
    await gw.stop()

    const stored = await influxReadings(database)
    const byDevice = ackedByDevice(acked)
    expect([...stored.keys()].sort()).toEqual([...byDevice.keys()].sort())
    for (const [deviceId, ackedTs] of byDevice) {
      // Exactly the acknowledged readings: none missing, none extra, none twice.
      expect((stored.get(deviceId) ?? []).sort((a, b) => a - b)).toEqual(ackedTs)
    }
    expect(gw.gateway.bus).toBeDefined()
    // One log line per change of state, however many batches failed during the outage.
    const writerLines = gw.logs.filter((l) => l.module === 'store-writer').map((l) => l.msg)
    expect(writerLines).toEqual([
      'store write failed; spooling to disk and retrying with backoff until it recovers',
      'spooling to disk until the store recovers',
      'store writes recovered; retried batch committed',
      'spool replayed: writing to the store directly again',
      'store writer closed',
    ])
  }, 90_000)

  it('withholds PUBACKs once the spool is full, and acknowledges them when InfluxDB is back', async () => {
    const { gw, database } = await influxGateway({ SPOOL_MAX_BYTES: '20000' })
    const device = await connectClient(gw.mqttUrl, { clientId: 'full-1' })
    clients.add(device)
    const ts0 = Date.now() - 60_000
    await device.publishAsync('sensors/full-1/temperature', JSON.stringify({ value: 0, ts: ts0 }), {
      qos: 1,
    })
    await influxd.halt()

    // ~60 bytes per spooled reading: 20 kB fill up within a few hundred one-reading batches.
    const acked: number[] = []
    const pending: Array<Promise<void>> = []
    let i = 1
    for (; i <= 2_000; i++) {
      const ts = ts0 + i
      const sent = device
        .publishAsync('sensors/full-1/temperature', JSON.stringify({ value: i, ts }), { qos: 1 })
        .then(() => {
          acked.push(ts)
        })
      pending.push(sent)
      if (i % 50 === 0) {
        const metrics = await metricsOf(gw.httpUrl)
        if (metrics.value('gateway_spool_full') === 1) break
      }
    }
    await vi.waitFor(async () => {
      expect((await metricsOf(gw.httpUrl)).value('gateway_spool_full')).toBe(1)
    }, WAIT)
    const ackedWhileFull = acked.length
    // Not everything sent was acknowledged: the device holds the rest and waits.
    expect(ackedWhileFull).toBeLessThan(i)
    expect(
      gw.logs.filter((l) => String(l.msg).startsWith('spool full: QoS 1 publishes')),
    ).toHaveLength(1)

    await influxd.restart()
    await Promise.all(pending)
    expect(acked.length).toBe(i)
    await vi.waitFor(async () => {
      const metrics = await metricsOf(gw.httpUrl)
      expect(metrics.value('gateway_spool_items')).toBe(0)
      expect(metrics.value('gateway_spool_full')).toBe(0)
    }, WAIT)
    await gw.stop()
    const stored = (await influxReadings(database)).get('full-1') ?? []
    expect(stored.sort((a, b) => a - b)).toEqual([ts0, ...acked.sort((a, b) => a - b)])
  }, 90_000)

  it('kill -9 while spooling: the spool survives and is replayed at the next start, once', async () => {
    const dir = await createTempDir('gw-crash-spool-')
    dirs.push(dir)
    const database = `durable_${process.pid}_${++databases}`
    const env = {
      DATA_DIR: dir.path,
      STORE: 'influx',
      INFLUX_URL: `${influxd.url}/${database}`,
      STORE_RETRY_MAX: '200ms',
    }
    const first = startGatewayProcess(env)
    processes.push(first)
    const url = `mqtt://127.0.0.1:${await loggedPort(first, 'MQTT')}`
    const load = await startAckPublisher({
      url,
      devices: 4,
      prefix: 'spooled',
      startTs: Date.now() - 60_000,
    })
    loads.push(load)
    await load.waitForAcks(200)
    await influxd.halt()
    // Acknowledged from the spool only: the store is down.
    await load.waitForAcks(1_000)
    first.signal('SIGKILL')
    expect(await first.exited).toBe('SIGKILL')
    await load.stop()
    const acked = [...load.acked]

    await influxd.restart()
    const second = startGatewayProcess(env)
    processes.push(second)
    const httpUrl = `http://127.0.0.1:${await loggedPort(second, 'HTTP')}`
    await vi.waitFor(async () => {
      expect((await metricsOf(httpUrl)).value('gateway_spool_items')).toBe(0)
    }, WAIT)
    expect(second.logLines().some((l) => String(l.msg).startsWith('spool holds batches'))).toBe(
      true,
    )
    second.signal('SIGTERM')
    expect(await second.exited).toBe(0)

    const stored = await influxReadings(database)
    for (const [deviceId, ackedTs] of ackedByDevice(acked)) {
      const storedTs = (stored.get(deviceId) ?? []).sort((a, b) => a - b)
      expect(storedTs).toEqual(expect.arrayContaining(ackedTs))
      // At most the one reading per device that was in flight at the kill.
      expect(storedTs.length - ackedTs.length).toBeLessThanOrEqual(1)
    }
  }, 90_000)
})

const HOT_TOPIC = 'alerts/major/crash-hot/high-temperature'
