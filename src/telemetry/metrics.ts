import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { MqttBroker } from '../broker/mqtt-broker.ts'
import type { EventBus } from '../bus/event-bus.ts'
import { type AlertState, REJECT_REASONS, SEVERITIES } from '../contract/types.ts'
import type { RuleEngine } from '../rules/rule-engine.ts'
import type { StoreWriter } from '../store/store-writer.ts'
import type { StoreMonitor } from './store-monitor.ts'

export interface MetricsDeps {
  bus: EventBus
  writer: Pick<StoreWriter, 'stats'>
  broker: Pick<MqttBroker, 'connectedClients' | 'messageCounts'>
  engine: Pick<RuleEngine, 'stats' | 'rules' | 'firingCounts'>
  /** Idle-device release (src/rules/device-idle.ts); absent: no gateway_devices_tracked. */
  devices?: { stats(): { tracked: number; released: number } }
  storeMonitor: Pick<StoreMonitor, 'onWrite' | 'check'>
  /** This instance's name (several instances on Redis); default: unset, no info metric. */
  instanceId?: string
  /** Present with REDIS_URL: gateway_redis_up is exported. */
  redis?: { isUp(): boolean }
  /** The per-connection publish rate limit (src/security/rate-limit.ts); absent: no rate metrics. */
  rateLimiter?: {
    stats(): {
      droppedQos0: number
      pacedQos1: number
      pacedQos2: number
      waiting: number
      disconnected: number
    }
  }
  /** The notification outbox (src/notify/notifier.ts); absent (no notifications file): no metrics. */
  notifications?: {
    stats(): {
      channels: readonly string[]
      outcomes: ReadonlyMap<string, Readonly<Record<NotificationOutcome, number>>>
      pending: ReadonlyMap<string, number>
      oldestPendingSeconds: number
    }
    onDelivered(listener: (channel: string, seconds: number) => void): void
  }
}

type NotificationOutcome = 'delivered' | 'retried' | 'failed'
const NOTIFICATION_OUTCOMES: readonly NotificationOutcome[] = ['delivered', 'retried', 'failed']
/** From a local receiver's few milliseconds to retries over minutes and hours. */
const NOTIFICATION_SECONDS_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
]

export interface MetricsOptions {
  /** Append the Node.js process metrics (CPU, memory, event-loop lag, GC); default true. */
  processMetrics?: boolean
}

export interface GatewayMetrics {
  /** This gateway's metrics only (`gateway_*`); the process metrics live in their own registry. */
  readonly registry: Registry
  /** Content-Type of render()'s text (Prometheus text format 0.0.4). */
  readonly contentType: string
  /** The Prometheus text of a scrape: the gateway's metrics, then the process's. */
  render(): Promise<string>
  /** Unsubscribes from the bus. */
  stop(): void
}

const OWNER = 'metrics'
const ALERT_STATES: readonly AlertState[] = ['firing', 'resolved']
/** From well under a millisecond (SQLite group commit) to the InfluxDB write timeout. */
const WRITE_SECONDS_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]
const EVENT_LOOP_MONITORING_PRECISION_MS = 10

/**
 * Prometheus metrics of one gateway (DESIGN §6, GET /metrics), in a registry of its own so that
 * several gateways in one process (tests) never share or clash.
 *
 * Nothing here sits on the reading path beyond what it must: rare events (rejections, alerts) are
 * counted from the bus as they happen, readings with a plain integer in a bus listener, and
 * everything the modules already count (writer batches and errors, broker clients and messages,
 * engine evaluations) is read from their stats when Prometheus scrapes, in `collect` callbacks.
 * Store write latency comes from the StoreMonitor wrapped around the store the writer uses.
 */
export function createMetrics(deps: MetricsDeps, options: MetricsOptions = {}): GatewayMetrics {
  const { bus, writer, broker, engine, storeMonitor } = deps
  const registry = new Registry()
  const registers = [registry]
  let readingsAccepted = 0

  bus.on(OWNER, 'reading', () => {
    readingsAccepted++
  })

  new Counter({
    name: 'gateway_readings_accepted_total',
    help: 'Readings validated and committed to the store (each is then evaluated by the rules).',
    registers,
    collect() {
      this.reset()
      this.inc(readingsAccepted)
    },
  })

  const rejected = new Counter({
    name: 'gateway_publishes_rejected_total',
    help: 'Publishes on sensors/... that were dead-lettered, by reason (store_rejected: refused by the store).',
    labelNames: ['reason'],
    registers,
  })
  for (const reason of REJECT_REASONS) rejected.inc({ reason }, 0)
  bus.on(OWNER, 'reading.rejected', ({ deadLetter }) => {
    rejected.inc({ reason: deadLetter.reason })
  })

  const alerts = new Counter({
    name: 'gateway_alerts_total',
    help: 'Alert transitions published, by state and severity (flapping notices included).',
    labelNames: ['state', 'severity'],
    registers,
  })
  for (const state of ALERT_STATES) {
    for (const severity of SEVERITIES) alerts.inc({ state, severity }, 0)
  }
  bus.on(OWNER, 'alert', ({ state, severity }) => {
    alerts.inc({ state, severity })
  })

  new Counter({
    name: 'gateway_store_batches_total',
    help: 'Write calls (batches of readings or alerts) the store committed.',
    registers,
    collect() {
      this.reset()
      this.inc(writer.stats().batchesWritten)
    },
  })

  new Counter({
    name: 'gateway_store_write_errors_total',
    help: 'Write calls that failed and were retried (store unreachable, timeout, 5xx, locked file).',
    registers,
    collect() {
      this.reset()
      this.inc(writer.stats().writeErrors)
    },
  })

  const writeSeconds = new Histogram({
    name: 'gateway_store_write_seconds',
    help: 'Duration of one write call to the store, by kind (readings, alerts) and outcome (ok, refused, error).',
    labelNames: ['kind', 'outcome'],
    buckets: WRITE_SECONDS_BUCKETS,
    registers,
  })
  storeMonitor.onWrite(({ kind, outcome, seconds }) => {
    writeSeconds.observe({ kind, outcome }, seconds)
  })

  new Gauge({
    name: 'gateway_spool_items',
    help: 'Readings and alert transitions in the on-disk spool, acknowledged and waiting for the store.',
    registers,
    collect() {
      this.set(writer.stats().spooledItems)
    },
  })

  new Gauge({
    name: 'gateway_spool_bytes',
    help: 'Bytes of spooled batches (bounded by SPOOL_MAX_BYTES).',
    registers,
    collect() {
      this.set(writer.stats().spoolBytes)
    },
  })

  new Gauge({
    name: 'gateway_spool_full',
    help: '1 while the spool cannot take the next batch: QoS 1 publishes are not acknowledged.',
    registers,
    collect() {
      this.set(writer.stats().spoolFull ? 1 : 0)
    },
  })

  new Counter({
    name: 'gateway_spool_replayed_total',
    help: 'Readings and alert transitions written to the store from the spool.',
    registers,
    collect() {
      this.reset()
      this.inc(writer.stats().replayedItems)
    },
  })

  new Counter({
    name: 'gateway_qos0_dropped_total',
    help: 'QoS 0 readings dropped because STORE_QUEUE_LIMIT readings were already waiting in memory.',
    registers,
    collect() {
      this.reset()
      this.inc(writer.stats().droppedQos0)
    },
  })

  new Gauge({
    name: 'gateway_store_pending_readings',
    help: 'Readings accepted but not yet durable (in memory; QoS 1 devices wait for these).',
    registers,
    collect() {
      this.set(writer.stats().pendingReadings)
    },
  })

  new Gauge({
    name: 'gateway_store_up',
    help: '1 when the store answers a probe read in time and the last write succeeded, else 0.',
    registers,
    async collect() {
      this.set((await storeMonitor.check()).up ? 1 : 0)
    },
  })

  if (deps.instanceId !== undefined) {
    // The Prometheus "info" convention: a constant 1 carrying the identity as a label.
    new Gauge({
      name: 'gateway_instance_info',
      help: 'This gateway instance (INSTANCE_ID, or hostname-pid) as a label; always 1.',
      labelNames: ['instance'],
      registers,
    }).set({ instance: deps.instanceId }, 1)
  }
  const { redis } = deps
  if (redis) {
    new Gauge({
      name: 'gateway_redis_up',
      help: '1 while every Redis connection (messages, sessions) is ready; QoS 1 acks wait while 0.',
      registers,
      collect() {
        this.set(redis.isUp() ? 1 : 0)
      },
    })
  }

  const { rateLimiter } = deps
  if (rateLimiter) {
    new Counter({
      name: 'gateway_publishes_rate_limited_total',
      help: 'Publishes over PUBLISH_RATE, by QoS: QoS 0 ones dropped (not stored, not forwarded), QoS 1 and 2 ones held until a token came (paced, then stored and acknowledged).',
      labelNames: ['qos'],
      registers,
      collect() {
        const stats = rateLimiter.stats()
        this.reset()
        this.inc({ qos: '0' }, stats.droppedQos0)
        this.inc({ qos: '1' }, stats.pacedQos1)
        this.inc({ qos: '2' }, stats.pacedQos2)
      },
    })
    new Gauge({
      name: 'gateway_publishes_rate_waiting',
      help: 'QoS 1 and 2 publishes waiting now for a token of their connection (PUBLISH_RATE).',
      registers,
      collect() {
        this.set(rateLimiter.stats().waiting)
      },
    })
    new Counter({
      name: 'gateway_rate_limit_disconnects_total',
      help: 'Connections closed for getting RATE_DISCONNECT_AFTER publishes ahead of their PUBLISH_RATE.',
      registers,
      collect() {
        this.reset()
        this.inc(rateLimiter.stats().disconnected)
      },
    })
  }

  const { notifications } = deps
  if (notifications) {
    new Counter({
      name: 'gateway_notifications_total',
      help: 'Notification delivery attempts by channel and outcome: delivered, retried (failed, tried again later), failed (dead-lettered).',
      labelNames: ['channel', 'outcome'],
      registers,
      collect() {
        this.reset()
        const { channels, outcomes } = notifications.stats()
        for (const channel of new Set([...channels, ...outcomes.keys()])) {
          const counts = outcomes.get(channel)
          for (const outcome of NOTIFICATION_OUTCOMES)
            this.inc({ channel, outcome }, counts?.[outcome] ?? 0)
        }
      },
    })
    new Gauge({
      name: 'gateway_notifications_pending',
      help: 'Notifications in the outbox waiting for delivery (first try or retry), by channel.',
      labelNames: ['channel'],
      registers,
      collect() {
        this.reset()
        for (const [channel, count] of notifications.stats().pending) this.set({ channel }, count)
      },
    })
    new Gauge({
      name: 'gateway_notifications_oldest_pending_seconds',
      help: 'Age of the oldest notification waiting for delivery; 0 when none is.',
      registers,
      collect() {
        this.set(notifications.stats().oldestPendingSeconds)
      },
    })
    const deliverySeconds = new Histogram({
      name: 'gateway_notification_delivery_seconds',
      help: 'Time from a notification being written to the outbox to its delivery (retries included), by channel.',
      labelNames: ['channel'],
      buckets: NOTIFICATION_SECONDS_BUCKETS,
      registers,
    })
    notifications.onDelivered((channel, seconds) => deliverySeconds.observe({ channel }, seconds))
  }

  new Gauge({
    name: 'gateway_mqtt_clients_connected',
    help: 'MQTT clients connected now, over TCP and WebSocket.',
    registers,
    collect() {
      this.set(broker.connectedClients())
    },
  })

  new Counter({
    name: 'gateway_mqtt_messages_in_total',
    help: 'PUBLISH packets received from clients and accepted by the broker.',
    registers,
    collect() {
      this.reset()
      this.inc(broker.messageCounts().in)
    },
  })

  new Counter({
    name: 'gateway_mqtt_messages_out_total',
    help: 'PUBLISH packets forwarded to subscribers (live, retained on subscribe, queued offline), one per subscriber.',
    registers,
    collect() {
      this.reset()
      this.inc(broker.messageCounts().out)
    },
  })

  new Gauge({
    name: 'gateway_rules_loaded',
    help: 'Rules in force.',
    registers,
    collect() {
      this.set(engine.rules().length)
    },
  })

  new Gauge({
    name: 'gateway_alerts_firing',
    help: 'Alerts (rule, device) whose current state is firing.',
    registers,
    collect() {
      let firing = 0
      for (const count of engine.firingCounts().values()) firing += count
      this.set(firing)
    },
  })

  new Gauge({
    name: 'gateway_rule_keys',
    help: 'Alert keys (rule, device) held in memory by the rule engine.',
    registers,
    collect() {
      this.set(engine.stats().keys)
    },
  })

  if (deps.devices !== undefined) {
    const devices = deps.devices
    new Gauge({
      name: 'gateway_devices_tracked',
      help: 'Devices whose state is held in memory: heard from within DEVICE_IDLE_RELEASE, or kept by a connection, a firing alert or an armed deadman.',
      registers,
      collect() {
        this.set(devices.stats().tracked)
      },
    })
    new Counter({
      name: 'gateway_devices_released_total',
      help: 'Idle devices whose state was released (DEVICE_IDLE_RELEASE).',
      registers,
      collect() {
        this.reset()
        this.inc(devices.stats().released)
      },
    })
  }

  new Counter({
    name: 'gateway_rule_evaluations_total',
    help: 'Rule handler evaluations (a reading times each rule and metric it matches).',
    registers,
    collect() {
      this.reset()
      this.inc(engine.stats().evaluations)
    },
  })

  new Counter({
    name: 'gateway_rule_handler_errors_total',
    help: 'Rule handler evaluations that threw (the reading is kept; the rule skipped it).',
    registers,
    collect() {
      this.reset()
      this.inc(engine.stats().handlerErrors)
    },
  })

  const includeProcess = options.processMetrics ?? true
  // Started now, so the first scrape's event-loop lag covers the time since.
  if (includeProcess) processRegistry()

  return {
    registry,
    contentType: registry.contentType,
    async render() {
      const own = await registry.metrics()
      if (!includeProcess) return own
      return `${own}\n${await processRegistry().metrics()}`
    },
    stop() {
      bus.removeOwner(OWNER)
    },
  }
}

let sharedProcessRegistry: Registry | undefined

/**
 * The Node.js process metrics (prom-client's default metrics: CPU, memory, handles, event-loop
 * lag, GC), collected once per process into a registry of their own and appended to every
 * gateway's scrape. They describe the process, not a gateway, and prom-client's collectors cannot
 * be stopped (an event-loop delay histogram and a GC observer per call), so collecting them per
 * gateway would leak one of each for every gateway a test starts.
 */
function processRegistry(): Registry {
  if (sharedProcessRegistry === undefined) {
    sharedProcessRegistry = new Registry()
    collectDefaultMetrics({
      register: sharedProcessRegistry,
      eventLoopMonitoringPrecision: EVENT_LOOP_MONITORING_PRECISION_MS,
    })
  }
  return sharedProcessRegistry
}
