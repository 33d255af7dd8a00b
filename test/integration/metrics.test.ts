import { once } from 'node:events'
import { createServer } from 'node:net'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningInfluxd, startInfluxd } from '../../scripts/influxd.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { parsePrometheusText, type Scrape } from '../helpers/prometheus.ts'

describe('operations endpoints of a running gateway', () => {
  const gateways: TestGateway[] = []
  const clients = new Set<MqttClient>()

  const start = async (env: Record<string, string> = {}) => {
    const gw = await startTestGateway(env)
    gateways.push(gw)
    return gw
  }
  const connect = async (url: string, clientId: string) => {
    const client = await connectClient(url, { clientId })
    clients.add(client)
    return client
  }
  const scrape = async (gw: TestGateway): Promise<Scrape> => {
    const res = await fetch(`${gw.httpUrl}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    return parsePrometheusText(await res.text())
  }
  const readyz = async (gw: TestGateway) => {
    const res = await fetch(`${gw.httpUrl}/readyz`)
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    for (const gw of gateways.splice(0)) await gw.cleanup()
  })

  describe('GET /metrics', () => {
    it('counts what went through: readings, rejections, alerts, store writes, MQTT traffic', async () => {
      const gw = await start()
      const watcher = await connect(gw.mqttUrl, 'metrics-watcher')
      const seen = recordMessages(watcher)
      await watcher.subscribeAsync('sensors/#', { qos: 0 })
      const device = await connect(gw.mqttUrl, 'dev-m')
      await device.publishAsync('sensors/dev-m/temperature', '25', { qos: 1 })
      await device.publishAsync('sensors/dev-m/temperature', '35', { qos: 1 })
      await device.publishAsync('sensors/dev-m/temperature', 'twenty', { qos: 1 })
      await vi.waitFor(() => expect(seen).toHaveLength(3))

      await vi.waitFor(async () => {
        const s = await scrape(gw)
        expect(s.value('gateway_readings_accepted_total')).toBe(2)
        expect(s.value('gateway_publishes_rejected_total', { reason: 'bad_value' })).toBe(1)
        expect(s.value('gateway_alerts_total', { state: 'firing', severity: 'major' })).toBe(1)
        expect(s.value('gateway_alerts_firing')).toBe(1)
        // Two reading batches (one per QoS 1 publish) and the alert.
        expect(s.value('gateway_store_batches_total')).toBe(3)
        expect(
          s.value('gateway_store_write_seconds_count', { kind: 'alerts', outcome: 'ok' }),
        ).toBe(1)
      })
      const s = await scrape(gw)
      expect(
        s.value('gateway_store_write_seconds_count', { kind: 'readings', outcome: 'ok' }),
      ).toBe(2)
      expect(s.value('gateway_store_write_errors_total')).toBe(0)
      expect(s.value('gateway_store_pending_readings')).toBe(0)
      expect(s.value('gateway_store_up')).toBe(1)
      expect(s.value('gateway_mqtt_clients_connected')).toBe(2)
      // The three publishes of the device; the gateway's own (status, alerts) are not "in".
      expect(s.value('gateway_mqtt_messages_in_total')).toBe(3)
      // Each of them forwarded to the one subscriber of sensors/#.
      expect(s.value('gateway_mqtt_messages_out_total')).toBe(3)
      expect(s.value('gateway_rules_loaded')).toBeGreaterThan(0)
      expect(s.value('gateway_rule_evaluations_total')).toBeGreaterThanOrEqual(2)
      // The process metrics ride along, event-loop lag included.
      expect(s.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge')
      expect(s.types.get('process_resident_memory_bytes')).toBe('gauge')
    })

    it('keeps the counts of two gateways in one process apart', async () => {
      const a = await start()
      const b = await start()
      const devA = await connect(a.mqttUrl, 'dev-a')
      const devB = await connect(b.mqttUrl, 'dev-b')
      await devA.publishAsync('sensors/dev-a/humidity', '40', { qos: 1 })
      for (const v of [1, 2, 3])
        await devB.publishAsync('sensors/dev-b/humidity', String(v), { qos: 1 })
      const [sa, sb] = await Promise.all([scrape(a), scrape(b)])
      expect(sa.value('gateway_readings_accepted_total')).toBe(1)
      expect(sb.value('gateway_readings_accepted_total')).toBe(3)
      expect(sa.value('gateway_mqtt_clients_connected')).toBe(1)
    })
  })

  describe('GET /readyz', () => {
    it('SQLite: ready, store up, MQTT listening', async () => {
      const gw = await start()
      expect(await readyz(gw)).toEqual({
        status: 200,
        body: { status: 'ready', checks: { store: 'up', mqtt: 'listening' } },
      })
    })

    it('starts on an InfluxDB nothing listens on: alive, not ready, naming the store', async () => {
      const probe = createServer().listen(0, '127.0.0.1')
      await once(probe, 'listening')
      const { port } = probe.address() as { port: number }
      await new Promise((resolve) => probe.close(resolve))
      // README, Guarantees: the gateway runs on the spool until InfluxDB answers.
      const gw = await start({ STORE: 'influx', INFLUX_URL: `http://127.0.0.1:${port}/sensors` })
      expect((await fetch(`${gw.httpUrl}/healthz`)).status).toBe(200)
      expect(await readyz(gw)).toEqual({
        status: 503,
        body: { status: 'not_ready', checks: { store: 'down', mqtt: 'listening' } },
      })
    })

    describe('on InfluxDB', () => {
      let influxd: RunningInfluxd

      beforeAll(async () => {
        influxd = await startInfluxd()
      })
      afterAll(async () => {
        await influxd?.stop()
      })

      it('is 503 naming the store while InfluxDB hangs or is gone, ready again when it answers', async () => {
        const gw = await start({
          STORE: 'influx',
          INFLUX_URL: `${influxd.url}/gw_ready_${process.pid}`,
        })
        expect(await readyz(gw)).toEqual({
          status: 200,
          body: { status: 'ready', checks: { store: 'up', mqtt: 'listening' } },
        })

        // A server that accepts connections but answers nothing: the probe times out (2 s).
        process.kill(influxd.pid, 'SIGSTOP')
        try {
          const hung = await readyz(gw)
          expect(hung).toEqual({
            status: 503,
            body: { status: 'not_ready', checks: { store: 'down', mqtt: 'listening' } },
          })
          expect((await scrape(gw)).value('gateway_store_up')).toBe(0)
        } finally {
          process.kill(influxd.pid, 'SIGCONT')
        }
        await vi.waitFor(async () => expect((await readyz(gw)).status).toBe(200), {
          timeout: 10_000,
          interval: 100,
        })

        // Gone for good: connections are refused, so the probe fails rather than times out.
        await influxd.stop()
        expect(await readyz(gw)).toEqual({
          status: 503,
          body: { status: 'not_ready', checks: { store: 'down', mqtt: 'listening' } },
        })
        const warned = gw.logs.filter((l) => l.msg === 'gateway not ready')
        expect(warned.map((l) => l.reasons)).toEqual([
          [expect.stringMatching(/^store: probe query took longer/)],
          [expect.stringMatching(/^store: probe query failed/)],
        ])
      })
    })
  })
})
