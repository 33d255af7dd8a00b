import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createMqttBroker, type MqttBroker } from '../../../src/broker/mqtt-broker.ts'
import { createEventBus, type EventBus } from '../../../src/bus/event-bus.ts'
import type { Reading, RejectReason } from '../../../src/contract/types.ts'
import { createRuleEngine, type RuleEngine } from '../../../src/rules/rule-engine.ts'
import { createSqliteStore, type SqliteStore } from '../../../src/store/sqlite-store.ts'
import { createStoreWriter, type StoreWriter } from '../../../src/store/store-writer.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { createMetrics, type GatewayMetrics } from '../../../src/telemetry/metrics.ts'
import { createStoreMonitor, type StoreMonitor } from '../../../src/telemetry/store-monitor.ts'
import { connectClient, endAll, recordMessages } from '../../helpers/mqtt.ts'
import { parsePrometheusText, type Scrape } from '../../helpers/prometheus.ts'
import { accepted } from '../../helpers/store.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'
import { rulesFrom } from '../rules/harness.ts'

/** Every gateway metric and its type: what the README lists. */
const GATEWAY_METRICS: Record<string, string> = {
  gateway_readings_accepted_total: 'counter',
  gateway_publishes_rejected_total: 'counter',
  gateway_alerts_total: 'counter',
  gateway_store_batches_total: 'counter',
  gateway_store_write_errors_total: 'counter',
  gateway_store_write_seconds: 'histogram',
  gateway_spool_items: 'gauge',
  gateway_spool_bytes: 'gauge',
  gateway_spool_full: 'gauge',
  gateway_spool_replayed_total: 'counter',
  gateway_qos0_dropped_total: 'counter',
  gateway_store_pending_readings: 'gauge',
  gateway_store_up: 'gauge',
  gateway_mqtt_clients_connected: 'gauge',
  gateway_mqtt_messages_in_total: 'counter',
  gateway_mqtt_messages_out_total: 'counter',
  gateway_rules_loaded: 'gauge',
  gateway_alerts_firing: 'gauge',
  gateway_rule_evaluations_total: 'counter',
  gateway_rule_handler_errors_total: 'counter',
  gateway_rule_keys: 'gauge',
}

const T0 = Date.UTC(2026, 10, 26, 12, 0, 0)
const log = createSilentLogger()

interface Parts {
  bus: EventBus
  store: SqliteStore
  monitor: StoreMonitor
  writer: StoreWriter
  broker: MqttBroker
  engine: RuleEngine
  metrics: GatewayMetrics
}

describe('gateway metrics', () => {
  let dir: TempDir
  const built: Parts[] = []
  const clients = new Set<MqttClient>()

  /** The real modules a gateway wires, on one bus, with a real SQLite file. */
  const build = async (processMetrics = false): Promise<Parts> => {
    const bus = createEventBus(log)
    const store = createSqliteStore({ file: join(dir.path, `gateway-${built.length}.db`) })
    const monitor = createStoreMonitor(store)
    const writer = createStoreWriter(
      { store: monitor.store, bus, log },
      { maxBatchSize: 100, retryBaseMs: 10, retryMaxMs: 20, closeMaxAttempts: 1 },
    )
    const broker = await createMqttBroker(
      { log },
      { authorizePublish: (_client, _packet, callback) => callback(null) },
    )
    const engine = createRuleEngine(
      { bus, log, tickMs: 0 },
      rulesFrom({
        id: 'high-temperature',
        kind: 'threshold',
        match: { metric: 'temperature' },
        above: 30,
        severity: 'major',
      }),
    )
    engine.start()
    const metrics = createMetrics(
      { bus, writer, broker, engine, storeMonitor: monitor },
      { processMetrics },
    )
    const parts = { bus, store, monitor, writer, broker, engine, metrics }
    built.push(parts)
    return parts
  }
  const scrape = async (metrics: GatewayMetrics): Promise<Scrape> =>
    parsePrometheusText(await metrics.render())
  /** What ingest does with a stored reading: commit it, then put it on the bus. */
  const ingest = async ({ writer, bus }: Parts, readings: Reading[]) => {
    await accepted(writer, readings)
    for (const r of readings) bus.emit('reading', r)
  }
  const reject = ({ bus }: Parts, reason: RejectReason) =>
    bus.emit('reading.rejected', {
      deviceId: 'dev-1',
      clientId: 'dev-1',
      deadLetter: {
        topic: 'sensors/dev-1/temperature',
        reason,
        detail: 'test',
        payload: 'x',
        payloadEncoding: 'utf8',
        ts: T0,
      },
    })

  beforeEach(async () => {
    dir = await createTempDir('metrics-')
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    for (const { writer, broker, engine, metrics, store } of built.splice(0)) {
      metrics.stop()
      engine.stop()
      await writer.close().catch(() => {})
      await broker.close()
      await store.close()
    }
    await dir.remove()
  })

  it('exposes every gateway metric with its type, label sets at zero from the start', async () => {
    const { metrics } = await build()
    const s = await scrape(metrics)
    expect(Object.fromEntries(s.types)).toEqual(GATEWAY_METRICS)
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(s.value('gateway_publishes_rejected_total', { reason: 'bad_value' })).toBe(0)
    expect(s.value('gateway_publishes_rejected_total', { reason: 'store_rejected' })).toBe(0)
    expect(s.value('gateway_alerts_total', { state: 'resolved', severity: 'critical' })).toBe(0)
    expect(s.value('gateway_store_up')).toBe(1)
    expect(s.value('gateway_rules_loaded')).toBe(1)
  })

  it('counts readings, rejections, alerts and store writes from the bus and the modules', async () => {
    const parts = await build()
    await ingest(parts, [
      { deviceId: 'dev-1', metric: 'temperature', value: 25, ts: T0 },
      { deviceId: 'dev-1', metric: 'temperature', value: 35, ts: T0 + 1_000 },
    ])
    reject(parts, 'bad_value')
    reject(parts, 'bad_value')
    reject(parts, 'not_json')
    await parts.writer.flush()

    const s = await scrape(parts.metrics)
    expect(s.value('gateway_readings_accepted_total')).toBe(2)
    expect(s.value('gateway_publishes_rejected_total', { reason: 'bad_value' })).toBe(2)
    expect(s.value('gateway_publishes_rejected_total', { reason: 'not_json' })).toBe(1)
    expect(s.value('gateway_alerts_total', { state: 'firing', severity: 'major' })).toBe(1)
    expect(s.value('gateway_alerts_total', { state: 'resolved', severity: 'major' })).toBe(0)
    expect(s.value('gateway_alerts_firing')).toBe(1)
    // One rule, one device: one alert key held.
    expect(s.value('gateway_rule_keys')).toBe(1)
    expect(s.value('gateway_rule_evaluations_total')).toBe(2)
    expect(s.value('gateway_rule_handler_errors_total')).toBe(0)
    // One batch of readings, then the alert the second reading raised.
    expect(s.value('gateway_store_batches_total')).toBe(2)
    expect(s.value('gateway_store_write_errors_total')).toBe(0)
    expect(s.value('gateway_store_pending_readings')).toBe(0)
    expect(s.value('gateway_spool_items')).toBe(0)
    expect(s.value('gateway_spool_full')).toBe(0)
    expect(s.value('gateway_qos0_dropped_total')).toBe(0)
    const ok = (kind: string) => ({ kind, outcome: 'ok' })
    expect(s.value('gateway_store_write_seconds_count', ok('readings'))).toBe(1)
    expect(s.value('gateway_store_write_seconds_count', ok('alerts'))).toBe(1)
    expect(s.value('gateway_store_write_seconds_bucket', { ...ok('readings'), le: '+Inf' })).toBe(1)
    expect(s.value('gateway_store_write_seconds_sum', ok('readings'))).toBeGreaterThan(0)
  })

  it('shows a failing store: write errors, the queue waiting, store down', async () => {
    const parts = await build()
    // A real failure of the real store: SQLite refuses the NULL a NaN binds as. The writer retries.
    const pending = accepted(parts.writer, [
      { deviceId: 'dev-1', metric: 'temperature', value: Number.NaN, ts: T0 },
    ])
    pending.catch(() => {})
    await vi.waitFor(async () => {
      const s = await scrape(parts.metrics)
      expect(s.value('gateway_store_write_errors_total')).toBeGreaterThanOrEqual(2)
      expect(s.value('gateway_store_pending_readings')).toBe(1)
      expect(s.value('gateway_store_up')).toBe(0)
      expect(
        s.value('gateway_store_write_seconds_count', { kind: 'readings', outcome: 'error' }),
      ).toBeGreaterThanOrEqual(2)
      expect(s.value('gateway_store_batches_total')).toBe(0)
    })
  })

  it('counts MQTT clients and messages in and out of the broker', async () => {
    const parts = await build()
    const { port } = await parts.broker.listen('127.0.0.1', 0)
    const url = `mqtt://127.0.0.1:${port}`
    const subscriber = await connectClient(url, { clientId: 'sub' })
    const publisher = await connectClient(url, { clientId: 'pub' })
    clients.add(subscriber).add(publisher)
    const received = recordMessages(subscriber)
    await subscriber.subscribeAsync('x/#', { qos: 1 })
    await publisher.publishAsync('x/1', 'a', { qos: 1 })
    await publisher.publishAsync('x/2', 'b', { qos: 0 })
    await publisher.publishAsync('y/1', 'nobody listens', { qos: 0 })
    // The broker's own publishes are neither in nor, without a subscriber, out.
    await parts.broker.publish('z/1', 'from the gateway', { qos: 0, retain: false })
    await vi.waitFor(() => expect(received).toHaveLength(2))

    const s = await scrape(parts.metrics)
    expect(s.value('gateway_mqtt_clients_connected')).toBe(2)
    expect(s.value('gateway_mqtt_messages_in_total')).toBe(3)
    expect(s.value('gateway_mqtt_messages_out_total')).toBe(2)
  })

  it('keeps each gateway in its own registry, and the process metrics once per scrape', async () => {
    const a = await build(true)
    const b = await build(true)
    await ingest(a, [{ deviceId: 'dev-a', metric: 'humidity', value: 40, ts: T0 }])
    reject(b, 'bad_senml')
    expect(a.metrics.registry).not.toBe(b.metrics.registry)

    const [sa, sb] = await Promise.all([scrape(a.metrics), scrape(b.metrics)])
    expect(sa.value('gateway_readings_accepted_total')).toBe(1)
    expect(sb.value('gateway_readings_accepted_total')).toBe(0)
    expect(sa.value('gateway_publishes_rejected_total', { reason: 'bad_senml' })).toBe(0)
    expect(sb.value('gateway_publishes_rejected_total', { reason: 'bad_senml' })).toBe(1)
    for (const s of [sa, sb]) {
      // Node.js process metrics, event-loop lag included, each family once.
      expect(s.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge')
      expect(s.types.get('nodejs_eventloop_lag_p99_seconds')).toBe('gauge')
      expect(s.types.get('process_cpu_user_seconds_total')).toBe('counter')
      expect(s.types.get('nodejs_heap_size_used_bytes')).toBe('gauge')
      expect(s.samples.filter((x) => x.name === 'process_start_time_seconds')).toHaveLength(1)
    }
  })

  it('stops counting bus events once stopped', async () => {
    const parts = await build()
    parts.metrics.stop()
    reject(parts, 'bad_value')
    parts.bus.emit('reading', { deviceId: 'dev-1', metric: 'temperature', value: 1, ts: T0 })
    const s = await scrape(parts.metrics)
    expect(s.value('gateway_publishes_rejected_total', { reason: 'bad_value' })).toBe(0)
    expect(s.value('gateway_readings_accepted_total')).toBe(0)
  })
})
