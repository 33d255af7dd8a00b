import type { AddressInfo } from 'node:net'
import { hostname } from 'node:os'
import path from 'node:path'
import type { AedesOptions } from 'aedes'
import { createAlertPublisher } from './alerts/alert-publisher.ts'
import { guardGatewayTopics } from './broker/gateway-topics-guard.ts'
import type { ListenerStats } from './broker/listeners.ts'
import { createMqttBroker } from './broker/mqtt-broker.ts'
import { createPlaceholderMarker } from './broker/packet-guard.ts'
import { attachMqttWebSocket, MQTT_WEBSOCKET_PATH } from './broker/websocket.ts'
import { createEventBus, type EventBus } from './bus/event-bus.ts'
import {
  createClusterAlertControls,
  forwardsAlertControls,
} from './cluster/cluster-alert-controls.ts'
import { createClusterOutbox } from './cluster/cluster-outbox.ts'
import { startClusterSync } from './cluster/cluster-sync.ts'
import { createInstanceLease } from './cluster/instance-lease.ts'
import { openRedisBackends } from './cluster/redis-backends.ts'
import { holdWhileRedisDown } from './cluster/redis-gate.ts'
import type { GatewayConfig } from './config/schema.ts'
import type { Alert, Reading } from './contract/types.ts'
import { listenError } from './errors.ts'
import { createHttpServer } from './http/http-server.ts'
import { createDeadLetters } from './ingest/dead-letters.ts'
import { createIngest } from './ingest/ingest.ts'
import { createOversizePublishes } from './ingest/oversize-publishes.ts'
import { DEFAULT_PARSE_OPTIONS } from './ingest/parse-publish.ts'
import { createSuppressedPublishes } from './ingest/suppressed-publishes.ts'
import { ALERT_CONTROLS_FILE, createAlertControls } from './notify/alert-controls.ts'
import {
  createGatewayNotifications,
  loadGatewayNotifications,
} from './notify/gateway-notifications.ts'
import { createPresence } from './presence/presence.ts'
import { createDeviceIdleSweeper, effectiveIdleReleaseMs } from './rules/device-idle.ts'
import { loadDeviceRegistry } from './rules/device-registry.ts'
import { loadRulesFile } from './rules/load-rules.ts'
import { createRuleEngine } from './rules/rule-engine.ts'
import { createRulesView } from './rules/rules-view.ts'
import { type RulesWatcher, watchRulesFile } from './rules/rules-watcher.ts'
import { browserAccessProblem } from './security/http-auth.ts'
import { createPublishRateLimiter } from './security/rate-limit.ts'
import { createGatewaySecurity } from './security/security.ts'
import { loadGatewayTls } from './security/tls.ts'
import { openStore } from './store/open-store.ts'
import type { ReadingStore } from './store/reading-store.ts'
import { openSpool, SPOOL_FILE } from './store/spool.ts'
import { createStoreWriter } from './store/store-writer.ts'
import type { Logger } from './telemetry/logger.ts'
import { createMetrics } from './telemetry/metrics.ts'
import { createReadinessCheck } from './telemetry/readiness.ts'
import { createStoreMonitor } from './telemetry/store-monitor.ts'

export interface GatewayAddresses {
  mqtt: AddressInfo
  http: AddressInfo
  /** MQTT over TLS, when TLS_CERT and TLS_KEY are set. */
  mqtts?: AddressInfo
}

export interface Gateway {
  /** Listens on the configured ports; resolves with the addresses actually bound. */
  start(): Promise<GatewayAddresses>
  /** Stops accepting, disconnects clients, flushes the store, closes everything. Idempotent. */
  stop(): Promise<void>
  addresses(): GatewayAddresses
  readonly bus: EventBus
  readonly store: ReadingStore
  stats(): GatewayStats
}

export interface GatewayStats {
  readingsAccepted: number
  publishesRejected: number
  rejectedByReason: Record<string, number>
  connectedClients: number
  /** MQTT connections: open, refused, oversize publishes discarded (broker/listeners.ts). */
  connections: ListenerStats
}

/** Wiring only: every behaviour lives in the modules, which know the bus, not each other. */
export async function createGateway(
  config: GatewayConfig,
  deps: { log: Logger },
): Promise<Gateway> {
  const instanceId = config.cluster.instanceId || `${hostname()}-${process.pid}`
  const clustered = config.cluster.redisUrl !== ''
  // With several instances, every log line says which one wrote it.
  const log = clustered ? deps.log.child({ instance: instanceId }) : deps.log
  // Certificate files are read and checked first: a bad one stops the start naming its variable.
  const tls = loadGatewayTls(config)
  const bus = createEventBus(log.child({ module: 'bus' }))
  const registry = await loadDeviceRegistry(config.devicesFile)
  const parseOptions = {
    ...DEFAULT_PARSE_OPTIONS,
    maxPayloadBytes: config.ingest.maxPayloadBytes,
    maxFutureSkewMs: config.ingest.maxFutureSkewMs,
  }
  // Before anything is opened or bound: an unsafe configuration (no credentials, not loopback)
  // refuses to start here (DESIGN §8).
  const security = createGatewaySecurity(config, { registry, bus, log, parseOptions })
  const rules = await loadRulesFile(config.rulesFile)
  // A bad notifications file stops the start, naming every problem (README, Notifications).
  const loadedNotifications =
    config.notificationsFile === ''
      ? undefined
      : await loadGatewayNotifications(config.notificationsFile)
  // InfluxDB unreachable at start does not stop the start: the store's part of the restore waits.
  const opened = await openStore(config, log)
  const { store } = opened
  // The writer's store is timed (write latency, outcome) for metrics and readiness.
  const storeMonitor = createStoreMonitor(store)
  const spool =
    config.store.spoolMaxBytes > 0
      ? openSpool({
          file: path.resolve(config.dataDir, SPOOL_FILE),
          maxBytes: config.store.spoolMaxBytes,
        })
      : undefined
  const writer = createStoreWriter(
    { store: storeMonitor.store, bus, log, ...(spool ? { spool } : {}) },
    {
      maxBatchSize: config.store.maxBatchSize,
      retryBaseMs: config.store.retryBaseMs,
      retryMaxMs: config.store.retryMaxMs,
      spoolAfterMs: config.store.spoolAfterMs,
      queueLimit: config.store.queueLimit,
    },
  )
  // Over PUBLISH_RATE, QoS 1/2 publishes wait for a token (paced), QoS 0 ones are dropped and
  // counted (README Limits).
  const rateLimiter = createPublishRateLimiter(
    { log },
    {
      ratePerSec: config.limits.publishRatePerSec,
      burst: config.limits.publishBurst,
      disconnectAfter: config.limits.disconnectAfterRejected,
    },
  )
  // Several instances share the broker's messages, sessions and retained topics on Redis.
  const redis = clustered ? openRedisBackends(config.cluster.redisUrl, { log }) : undefined
  const ingestPublish: NonNullable<AedesOptions['authorizePublish']> = (client, packet, callback) =>
    ingest.authorizePublish(client, packet, callback)
  // Refused publishes (ACL, gateway topics, over MAX_PACKET_BYTES) are acknowledged, dead-lettered
  // and never published; each still takes a rate-limit token on its way (README Security, Limits).
  const suppressed = createSuppressedPublishes({ bus })
  const oversizeMarker = createPlaceholderMarker()
  const oversize = createOversizePublishes(
    { suppressed, principalIdOf: (client) => security.mqtt.principalOf(client)?.id },
    { marker: oversizeMarker, maxPacketBytes: config.limits.maxPacketBytes },
  )
  // The hooks run only once the broker listens, by which time presence and ingest exist.
  const broker = await createMqttBroker(
    { log },
    {
      authenticate: security.mqtt.authenticate,
      authorizePublish: oversize.authorizePublish(
        security.mqtt.authorizePublish(
          guardGatewayTopics(
            rateLimiter.authorizePublish(
              suppressed.authorizePublish(
                redis ? holdWhileRedisDown(redis, ingestPublish) : ingestPublish,
              ),
            ),
            suppressed,
          ),
          suppressed,
        ),
      ),
      authorizeSubscribe: security.mqtt.authorizeSubscribe,
      authorizeForward: security.mqtt.authorizeForward,
      onClientReady: (clientId) => presence.clientConnected(clientId),
      onClientDisconnect: (clientId) => presence.clientGone(clientId),
    },
    {
      maxConnections: config.limits.maxConnections,
      maxPacketBytes: config.limits.maxPacketBytes,
      connectTimeoutMs: config.limits.connectTimeoutMs,
      keepaliveLimitSec: config.limits.keepaliveLimitSec,
      maxInflightInbound: config.limits.maxInflightInbound,
      drainTimeoutMs: config.limits.drainTimeoutMs,
      forwards: (packet) =>
        suppressed.forwards(packet) &&
        rateLimiter.forwards(packet) &&
        forwardsAlertControls(packet),
      oversizeMarker,
      id: instanceId,
      ...(redis ? { mq: redis.mq, persistence: redis.persistence } : {}),
    },
  )
  const presence = createPresence({ bus, publisher: broker, log })
  const ingest = createIngest({ bus, sink: writer, log, onDeviceSeen: presence.seen }, parseOptions)
  const deadLetters = createDeadLetters(
    { bus, publisher: broker, log },
    { logIntervalMs: config.ingest.deadLetterLogIntervalMs },
  )
  // Acknowledgements and silences (README, Notifications): the publisher puts an alert's
  // acknowledgement in its retained message; the ack route asks the engine for the alert.
  // With Redis they are shared by every instance (README, Scale-out): written to Redis hashes and
  // announced on the shared emitter; each instance keeps them in memory and in its file too.
  const alertControls = createAlertControls(
    {
      bus,
      log,
      alertById: (id) => engine.alerts().find((alert) => alert.id === id),
      onChange: (change) => clusterControls?.changed(change),
    },
    { file: path.resolve(config.dataDir, ALERT_CONTROLS_FILE) },
  )
  const clusterControls = redis
    ? createClusterAlertControls({
        redisUrl: config.cluster.redisUrl,
        mq: redis.mq,
        instanceId,
        controls: alertControls,
        log,
      })
    : undefined
  const alertPublisher = createAlertPublisher({
    bus,
    publisher: broker,
    log,
    withAck: alertControls.withAck,
  })
  const engine = createRuleEngine({ bus, log, registry }, rules)
  // Notifications (README, Notifications): the outbox in DATA_DIR and the notifier on the bus,
  // only with a notifications file; without one nothing is opened and nothing listens.
  // With Redis, pending notifications are mirrored in the lease's namespace: a crashed
  // instance's are delivered by the survivor that takes it over (README, Scale-out).
  const clusterOutbox =
    clustered && loadedNotifications
      ? createClusterOutbox({
          redisUrl: config.cluster.redisUrl,
          log,
          member: (): string | undefined => lease?.member,
          kick: () => notifications?.notifier.kick(),
        })
      : undefined
  const notifications = loadedNotifications
    ? createGatewayNotifications(
        {
          bus,
          log,
          controls: alertControls,
          tagsOf: registry.tagsOf,
          ...(clusterOutbox ? { wrapOutbox: clusterOutbox.wrap } : {}),
        },
        { file: config.notificationsFile, dataDir: config.dataDir, loaded: loadedNotifications },
      )
    : undefined
  // Memory follows the devices around, not every id ever seen (README, Limits: idle devices).
  const registered = new Set(registry.ids())
  const deviceIdle = createDeviceIdleSweeper(
    {
      bus,
      log,
      holders: [
        { name: 'rule-engine', releaseDevice: engine.forgetDevice },
        {
          name: 'presence',
          isActive: presence.isConnected,
          releaseDevice: (id) =>
            presence.forget(id, {
              // Retained statuses live in this process only without Redis.
              clearStatus: !clustered && !registered.has(id),
              keepKnown: registered.has(id),
            })
              ? 'released'
              : 'kept',
        },
        // After presence: a device it forgot leaves this instance's device set in Redis.
        { name: 'instance-lease', releaseDevice: (id) => lease?.forget(id) ?? 'released' },
      ],
    },
    { idleMs: effectiveIdleReleaseMs(config.deviceIdleReleaseMs, rules) },
  )
  // A crashed instance's devices are reported offline by a survivor (README, Scale-out).
  const lease = clustered
    ? createInstanceLease(
        {
          redisUrl: config.cluster.redisUrl,
          bus,
          publisher: broker,
          presence,
          log,
          ...(clusterOutbox ? { outbox: clusterOutbox } : {}),
        },
        { instanceId, ttlMs: config.cluster.leaseTtlMs },
      )
    : undefined
  const clusterSync = redis
    ? startClusterSync({
        mq: redis.mq,
        instanceId,
        engine,
        presence,
        ...(lease ? { lease } : {}),
        ...(clusterOutbox ? { notifications: clusterOutbox } : {}),
        log,
      })
    : undefined
  const metrics = createMetrics({
    bus,
    writer,
    broker,
    engine,
    devices: deviceIdle,
    storeMonitor,
    instanceId,
    rateLimiter,
    ...(redis ? { redis } : {}),
    ...(notifications ? { notifications: notifications.notifier } : {}),
  })
  const http = createHttpServer(
    {
      store,
      log,
      rules: createRulesView(engine, { registry }),
      metrics,
      readiness: createReadinessCheck({ storeMonitor, broker, log, ...(redis ? { redis } : {}) }),
      security: security.http,
      ...(notifications ? { notifications: notifications.notifier } : {}),
      alertControls,
    },
    {
      ...(tls?.https ? { https: tls.https } : {}),
      limits: {
        requestTimeoutMs: config.http.requestTimeoutMs,
        headersTimeoutMs: config.http.headersTimeoutMs,
        maxConnections: config.http.maxConnections,
        maxConnectionsPerAddress: config.http.maxConnectionsPerAddress,
      },
    },
  )
  // MQTT over WebSocket on the HTTP port; http.close() closes its clients first.
  attachMqttWebSocket(
    { http, broker, log },
    {
      path: MQTT_WEBSOCKET_PATH,
      verifyUpgrade: (req) => browserAccessProblem(req.headers, security.http, 'websocket'),
    },
  )
  let rulesWatcher: RulesWatcher | null = null

  /**
   * Rule state, retained alerts and presence from stored alert transitions and latest readings:
   * at start, and again once an InfluxDB unreachable at start answers (restoreFromStore).
   */
  const applyStoredState = async (
    alerts: readonly Alert[],
    latest: readonly Reading[],
    message: string,
  ) => {
    const restored = engine.restore(alerts)
    presence.addKnown(latest.map((r) => r.deviceId))
    // Every device known from the store gets one full release time from now.
    const nowMs = Date.now()
    for (const { deviceId } of [...latest, ...alerts]) deviceIdle.touch(deviceId, nowMs)
    if (clustered) {
      // Retained alerts and statuses live in Redis, kept by the instances still running; a
      // starting instance must not mark their devices offline. Deadman deadlines are armed by the
      // readings this instance receives itself (README, Scale-out: what each instance knows).
      for (const alert of alerts) engine.release(alert.deviceId)
    } else {
      const resolvedIds = new Set(restored.resolved.map((a) => a.id))
      await alertPublisher.republish(alerts.filter((a) => !resolvedIds.has(a.id)))
      engine.watch(
        latest.map((r) => ({ deviceId: r.deviceId, metric: r.metric, lastSeenMs: r.ts })),
      )
      presence.publishAllOffline()
    }
    // An acknowledged firing that the store says is over (or fired anew) ends here.
    alertControls.reconcile(engine.alerts())
    log.info(
      { alerts: restored.restored, devices: new Set(latest.map((r) => r.deviceId)).size },
      message,
    )
  }

  /**
   * Brings rule state, retained topics and presence back to what the store says. With InfluxDB
   * unreachable at start, from the spool only; restoreFromStore does the rest once it answers.
   */
  const restoreState = async () => {
    const [stored, latest] = opened.readyAtOpen
      ? await Promise.all([store.latestAlerts(), store.latest()])
      : [[], []]
    presence.addKnown(registry.ids())
    // Transitions still in the spool (acknowledged, not yet replayed) are newer than the store's.
    const alerts = latestPerAlert([...stored, ...writer.spooledAlerts()])
    await applyStoredState(alerts, latest, 'state restored')
  }

  /**
   * The store's part of a start on an unreachable InfluxDB (README, Guarantees), once it answers.
   * What this run did meanwhile wins: a key whose transition is at least as new as the stored one
   * keeps it, and only the alerts taken from the store are re-published.
   */
  const restoreFromStore = async () => {
    const [stored, latest] = await Promise.all([store.latestAlerts(), store.latest()])
    if (stopping) return
    const known = new Map(engine.alerts().map((a) => [a.id, a.ts]))
    await applyStoredState(
      latestPerAlert(stored).filter((a) => !((known.get(a.id) ?? -1) >= a.ts)),
      latest,
      'state restored from the store',
    )
  }
  const restoreWhenStoreAnswers = async () => {
    if (!(await opened.ready)) return
    writer.retryNow()
    while (!stopping) {
      try {
        return await restoreFromStore()
      } catch (err) {
        log.warn({ err }, 'restoring state from the store failed; trying again in 5 s')
        await new Promise((resolve) => setTimeout(resolve, 5_000).unref())
      }
    }
  }

  const listenHttp = async (): Promise<AddressInfo> => {
    try {
      await http.listen({ host: config.http.host, port: config.http.port })
    } catch (err) {
      throw listenError(
        'HTTP',
        'HTTP_PORT',
        err as NodeJS.ErrnoException,
        config.http.host,
        config.http.port,
      )
    }
    const address = http.server.address() as AddressInfo
    log.info(
      { host: address.address, port: address.port },
      `HTTP listening on ${tls?.https ? 'https' : 'http'}://${address.address}:${address.port}`,
    )
    return address
  }

  let bound: GatewayAddresses | null = null
  let stopping: Promise<void> | null = null

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      rulesWatcher?.close()
      // Before the broker closes the shared emitter it listens on.
      await clusterSync?.stop()
      await clusterControls?.stop()
      redis?.shuttingDown()
      await broker.stopAccepting()
      await http.close()
      await broker.close()
      // Readings already accepted are written and evaluated first; the alerts that raises are
      // still queued by the writer, whose close() then writes them too.
      await writer.flush()
      await writer.close()
      engine.stop()
      // After the flush: the alerts it raised are in the outbox. Pending ones wait for the next start.
      await notifications?.stop()
      // The outbox's mirror written to the end, then the lease: the broker's close reported this
      // instance's devices offline itself, and pending notifications stay for a survivor.
      await clusterOutbox?.close()
      await lease?.stop()
      deviceIdle.stop()
      alertPublisher.stop()
      deadLetters.stop()
      presence.stop()
      metrics.stop()
      await store.close()
      spool?.close()
      alertControls.close()
      await redis?.close()
      log.info({ ...ingest.stats(), rejectedByReason: deadLetters.counts() }, 'gateway stopped')
    })()
    return stopping
  }

  return {
    bus,
    store,
    async start() {
      try {
        await restoreState()
        // After the restore's reconcile, which judges acks by this instance's own store.
        await clusterControls?.start()
        engine.start()
        deviceIdle.start()
        notifications?.start({ watch: config.rulesWatch })
        if (!opened.readyAtOpen) void restoreWhenStoreAnswers()
        if (config.rulesWatch) {
          rulesWatcher = watchRulesFile(
            {
              log,
              load: () => loadRulesFile(config.rulesFile),
              apply: (next) => {
                engine.setRules(next)
                deviceIdle.setIdleMs(effectiveIdleReleaseMs(config.deviceIdleReleaseMs, next))
              },
            },
            { file: config.rulesFile },
          )
        }
        const mqtt = await broker.listen(config.mqtt.host, config.mqtt.port)
        const mqtts = tls
          ? await broker.listenTls(config.mqtt.host, config.mqtt.tlsPort, tls.mqtts)
          : undefined
        const httpAddress = await listenHttp()
        bound = { mqtt, http: httpAddress, ...(mqtts ? { mqtts } : {}) }
        return bound
      } catch (err) {
        // Release what was opened (store file, listener) so a caller may try again.
        await stop().catch(() => {})
        throw err
      }
    },
    stop,
    addresses() {
      if (!bound) throw new Error('gateway not started')
      return bound
    },
    stats() {
      const { accepted, rejected } = ingest.stats()
      return {
        readingsAccepted: accepted,
        publishesRejected: rejected,
        rejectedByReason: deadLetters.counts(),
        connectedClients: broker.connectedClients(),
        connections: broker.connectionStats(),
      }
    },
  }
}

/** The newest transition of each alert (greatest ts), newest first, as ReadingStore.latestAlerts. */
function latestPerAlert(transitions: readonly Alert[]): Alert[] {
  const byId = new Map<string, Alert>()
  for (const alert of transitions) {
    const known = byId.get(alert.id)
    if (known === undefined || alert.ts > known.ts) byId.set(alert.id, alert)
  }
  return [...byId.values()].sort((a, b) => b.ts - a.ts)
}
