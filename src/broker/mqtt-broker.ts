import type { IncomingMessage } from 'node:http'
import { type AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TlsOptions } from 'node:tls'
import { Aedes, type AedesOptions, type Client } from 'aedes'
import type { Logger } from '../telemetry/logger.ts'
import { guardConnectLevel } from './connect-level-guard.ts'
import { createConnectPolicy } from './connect-policy.ts'
import {
  type ConnectionLimits,
  createMqttListeners,
  type ListenerStats,
  limitedWarn,
} from './listeners.ts'
import { guardPackets } from './packet-policy.ts'
import { createStackSafeEmitter } from './stack-safe-emitter.ts'
import { dollarTopicSubscribed } from './topic-policy.ts'

/** Aedes' default: messages dispatched to subscribers at once before the next ones queue. */
const AEDES_CONCURRENCY = 100
/** '$': topics the broker keeps from subscriptions that start with a wildcard. */
const DOLLAR = 36

/**
 * Idle time before TCP keepalive probes a connection's socket. It is what notices a dead peer of
 * a client that asked for no MQTT keepalive (0); README "Limits" says how long that takes.
 */
export const TCP_KEEPALIVE_IDLE_MS = 60_000

export interface PublishOptions {
  qos: 0 | 1
  retain: boolean
}

/** Aedes' Client has its subscriptions (filter -> options) as a field its typings leave out. */
type AedesClient = Client & { subscriptions: Record<string, unknown> }

/** What modules that publish need of the broker: nothing more, so they stay testable. */
export interface MqttPublisher {
  publish(topic: string, payload: string, options: PublishOptions): Promise<void>
}

export interface BrokerHooks {
  authorizePublish: NonNullable<AedesOptions['authorizePublish']>
  /** Credentials check at CONNECT (src/security/auth.ts); absent: everyone is let in. */
  authenticate?: AedesOptions['authenticate']
  /** Subscription ACL; absent: every subscription is granted. */
  authorizeSubscribe?: AedesOptions['authorizeSubscribe']
  /** Delivery ACL, before each message goes out; absent: everything is delivered. */
  authorizeForward?: NonNullable<AedesOptions['authorizeForward']>
  onClientReady?: (clientId: string) => void
  onClientDisconnect?: (clientId: string) => void
}

/** Connection and delivery limits (DESIGN §8; README "Limits"). Absent: Aedes' own defaults. */
export interface BrokerOptions extends Partial<ConnectionLimits> {
  /** KEEPALIVE_LIMIT: a client asking for more is held to this (connect-policy.ts); 0: none. */
  keepaliveLimitSec?: number
  maxInflightInbound?: number
  drainTimeoutMs?: number
  /** False for a publish nobody may receive (refused, rate-limited); checked before authorizeForward. */
  forwards?: (packet: { topic: string; payload: unknown }) => boolean
  /**
   * Marks the placeholders that replace PUBLISH packets over maxPacketBytes (packet-guard.ts);
   * the authorizePublish hook must recognise them (src/ingest/oversize-publishes.ts). Absent: a
   * PUBLISH over the limit closes the connection like any other packet over it.
   */
  oversizeMarker?: Buffer
  /** The broker's id: `$SYS/{id}/...`, and `brokerId` of its messages between instances. */
  id?: string
  /** Shared emitter and persistence (Redis, src/cluster/); absent: Aedes' in-memory ones. */
  mq?: AedesOptions['mq']
  persistence?: AedesOptions['persistence']
}

/** The part of Aedes' persistence the broker uses directly. */
interface RetainedStore {
  storeRetained(packet: {
    cmd: 'publish'
    topic: string
    payload: Buffer
    qos: 0 | 1
    retain: true
    dup: false
  }): Promise<void>
}

/** No limit on connections or packet size beyond MQTT's own when none is configured. */
const UNLIMITED: ConnectionLimits = {
  maxConnections: Number.POSITIVE_INFINITY,
  maxPacketBytes: 268_435_460,
  connectTimeoutMs: 30_000,
}

export interface MqttBroker extends MqttPublisher {
  readonly aedes: Aedes
  /** Starts the TCP listener; port 0 lets the OS choose, the address is returned and logged. */
  listen(host: string, port: number): Promise<AddressInfo>
  /** Starts the MQTT over TLS listener (mqtts), the same way. */
  listenTls(host: string, port: number, options: TlsOptions): Promise<AddressInfo>
  /** Stops accepting new connections at once; clients already connected stay until close(). */
  stopAccepting(): Promise<void>
  /** Disconnects every client and stops the broker. */
  close(): Promise<void>
  connectedClients(): number
  /**
   * Serves one MQTT connection arriving on another transport (WebSocket): the same broker, so the
   * same hooks. `req` is the HTTP upgrade request. After close() the stream is destroyed.
   */
  handleConnection(stream: Duplex, req?: IncomingMessage): void
  /** True while the TCP listener accepts connections. */
  isListening(): boolean
  /** Message counts since start; read when metrics are scraped. */
  messageCounts(): MqttMessageCounts
  /** Connections open, and refused by the connection and packet limits, since start. */
  connectionStats(): ListenerStats
}

export interface MqttMessageCounts {
  /** PUBLISH packets from clients that the broker accepted (authorizePublish let through). */
  in: number
  /**
   * PUBLISH packets the broker forwarded to subscribing clients: live, retained at subscribe,
   * and queued while offline. Counted when Aedes authorises the forward, just before the write.
   */
  out: number
}

export async function createMqttBroker(
  deps: { log: Logger },
  hooks: BrokerHooks,
  options: BrokerOptions = {},
): Promise<MqttBroker> {
  const log = deps.log.child({ module: 'broker' })
  const counts: MqttMessageCounts = { in: 0, out: 0 }
  const warnLimited = limitedWarn(log, Date.now)
  // What Aedes and mqtt-packet leave of MQTT 3.1.1 (README "MQTT 3.1.1 conformance").
  const connectPolicy = createConnectPolicy(
    {
      log,
      onRefused: (verdict, clientId) =>
        warnLimited(
          `connect_${verdict.spec}`,
          { clientId, reason: verdict.reason, spec: verdict.spec, returnCode: verdict.returnCode },
          'MQTT CONNECT refused: it breaks MQTT 3.1.1',
        ),
    },
    { keepaliveLimitSec: options.keepaliveLimitSec ?? 0 },
  )
  const aedes = await Aedes.createBroker({
    ...(options.id === undefined ? {} : { id: options.id }),
    mq: options.mq ?? createStackSafeEmitter(AEDES_CONCURRENCY),
    ...(options.persistence === undefined ? {} : { persistence: options.persistence }),
    // Not Aedes' keepaliveLimit: it answers CONNACK 6, which MQTT 3.1.1 reserves.
    preConnect: connectPolicy.preConnect,
    authorizePublish: hooks.authorizePublish,
    ...(hooks.authenticate ? { authenticate: hooks.authenticate } : {}),
    ...(hooks.authorizeSubscribe ? { authorizeSubscribe: hooks.authorizeSubscribe } : {}),
    // Aedes' own default returns the packet as is; this one counts what is delivered.
    authorizeForward: (client, packet) => {
      if (options.forwards && !options.forwards(packet)) return null
      // [MQTT-4.7.2-1] A retained `$` message offered at SUBSCRIBE to a `#` or `+/...` filter.
      if (
        packet.topic.charCodeAt(0) === DOLLAR &&
        !dollarTopicSubscribed(Object.keys((client as AedesClient).subscriptions), packet.topic)
      ) {
        return null
      }
      const forwarded = hooks.authorizeForward ? hooks.authorizeForward(client, packet) : packet
      if (forwarded) counts.out++
      return forwarded
    },
    ...(options.connectTimeoutMs === undefined ? {} : { connectTimeout: options.connectTimeoutMs }),
    ...(options.maxInflightInbound === undefined
      ? {}
      : { maxInflightInbound: options.maxInflightInbound }),
    // One subscriber that stops reading must not stall delivery to everyone (Aedes.md).
    ...(options.drainTimeoutMs === undefined ? {} : { drainTimeout: options.drainTimeoutMs }),
  })
  // Aedes' types do not declare the persistence it always has (its own in-memory one, or ours).
  const retainedStore = (aedes as unknown as { persistence: RetainedStore }).persistence
  // TCP, TLS and WebSocket connections all pass through here: one count, one packet guard.
  const listeners = createMqttListeners(
    {
      aedes,
      log,
      ...(options.oversizeMarker ? { oversizeMarker: options.oversizeMarker } : {}),
      onConnection: (stream, req) => {
        // A WebSocket's stream is not a socket: its TCP socket is the upgrade request's.
        const socket = stream instanceof Socket ? stream : req?.socket
        socket?.setKeepAlive(true, TCP_KEEPALIVE_IDLE_MS)
        guardConnectLevel(stream, (level) =>
          warnLimited(
            'connect_level',
            { level, spec: 'MQTT-3.1.2-2' },
            'MQTT CONNECT refused with CONNACK 1: unsupported protocol level',
          ),
        )
        const client = (stream as Duplex & { client?: Client }).client
        const guarded =
          client !== undefined &&
          guardPackets(client, (problem, cmd) =>
            warnLimited(
              `packet_${problem.spec}`,
              { clientId: client.id ?? undefined, cmd, reason: problem.reason, spec: problem.spec },
              'MQTT client disconnected: its packet breaks MQTT 3.1.1',
            ),
          )
        if (!guarded) {
          warnLimited(
            'packet_policy_missing',
            {},
            'MQTT packet checks not installed: Aedes is not the version they were written for',
          )
        }
      },
    },
    {
      maxConnections: options.maxConnections ?? UNLIMITED.maxConnections,
      maxPacketBytes: options.maxPacketBytes ?? UNLIMITED.maxPacketBytes,
      connectTimeoutMs: options.connectTimeoutMs ?? UNLIMITED.connectTimeoutMs,
    },
  )

  aedes.on('publish', (_packet, client) => {
    // client is null for the broker's own publishes (alerts, status, dead letters, $SYS).
    if (client) counts.in++
  })

  aedes.on('clientReady', (client) => {
    log.debug({ clientId: client.id }, 'client connected')
    hooks.onClientReady?.(client.id)
  })
  aedes.on('clientDisconnect', (client) => {
    log.debug({ clientId: client.id }, 'client disconnected')
    hooks.onClientDisconnect?.(client.id)
  })
  aedes.on('clientError', (client, err) => {
    log.debug({ clientId: client.id, err: err.message }, 'client error')
  })
  aedes.on('connectionError', (client, err) => {
    log.debug({ clientId: client?.id, err: err.message }, 'connection error')
  })

  const broker: MqttBroker = {
    aedes,
    listen: (host, port) => listeners.listenTcp(host, port),
    listenTls: (host, port, tlsOptions) => listeners.listenTls(host, port, tlsOptions),
    async stopAccepting() {
      // The listeners' close callbacks wait for their connections: those end in close().
      listeners.stopAccepting()
    },
    async close() {
      await broker.stopAccepting()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await listeners.closed()
    },
    publish(topic, payload, options) {
      const body = Buffer.from(payload)
      // A retained message goes out live without the retain flag (as MQTT delivers a retained
      // publish to subscribers already there) and is stored for later subscribers beside it.
      // Through Aedes' own retain path it would reach the emitter only after the store's round
      // trip, behind readings published meanwhile; Aedes numbers its messages when they are
      // published and drops, per subscriber, one numbered lower than one already delivered
      // (its duplicate guard), so that alert would be lost to a subscriber of sensors/# too.
      const live = new Promise<void>((resolve, reject) => {
        aedes.publish(
          { cmd: 'publish', topic, payload: body, qos: options.qos, retain: false, dup: false },
          (err) => (err ? reject(err) : resolve()),
        )
      })
      if (!options.retain) return live
      const stored = retainedStore.storeRetained({
        cmd: 'publish',
        topic,
        payload: body,
        qos: options.qos,
        retain: true,
        dup: false,
      })
      return Promise.all([live, stored]).then(() => undefined)
    },
    connectedClients() {
      return aedes.connectedClients
    },
    handleConnection(stream, req) {
      // Destroys the stream once the broker is closed, or over MAX_CONNECTIONS.
      listeners.handle(stream, 'ws', req)
    },
    isListening() {
      return listeners.isListening()
    },
    messageCounts() {
      return { ...counts }
    },
    connectionStats: () => listeners.stats(),
  }
  return broker
}
