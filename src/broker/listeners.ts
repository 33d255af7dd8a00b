import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls'
import type { Aedes } from 'aedes'
import { listenError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'
import { guardPacketSize, type PacketGuardRefusal } from './packet-guard.ts'

/** How a connection reached the broker. */
export type Transport = 'tcp' | 'tls' | 'ws'

export interface ConnectionLimits {
  /** Connections open at once, every transport together; more are closed on arrival. */
  maxConnections: number
  /**
   * Largest MQTT packet, fixed header included. A larger PUBLISH is discarded as it arrives and
   * acknowledged (with `oversizeMarker`); any other larger packet closes the connection.
   */
  maxPacketBytes: number
  /** Also bounds a TLS handshake: a socket that neither handshakes nor sends CONNECT goes. */
  connectTimeoutMs: number
}

export interface MqttListeners {
  /**
   * Serves one connection: counted against maxConnections, its packets guarded for size, then
   * handed to Aedes. Over the limit, or once the broker is closed, the stream is destroyed.
   */
  handle(stream: Duplex, transport: Transport, req?: IncomingMessage): void
  /** MQTT over TCP; port 0 lets the OS choose. The address is returned and logged. */
  listenTcp(host: string, port: number): Promise<AddressInfo>
  /** MQTT over TLS (mqtts) with the given server options (certificates, client certificates). */
  listenTls(host: string, port: number, options: TlsOptions): Promise<AddressInfo>
  /** Stops accepting new connections at once; connections already open stay. */
  stopAccepting(): void
  /** Resolves once every stopped listener's connections have ended (Aedes closes them). */
  closed(): Promise<void>
  /** True while the TCP listener accepts connections. */
  isListening(): boolean
  stats(): ListenerStats
}

export interface ListenerStats {
  /** Connections open now, every transport. */
  open: number
  /** Connections closed on arrival because maxConnections were open. */
  refusedAtLimit: number
  /**
   * Connections closed for a packet over maxPacketBytes that is not a PUBLISH that can be
   * discarded (or for a malformed length).
   */
  refusedPacketSize: number
  /** PUBLISH packets over maxPacketBytes discarded unread (acknowledged and dead-lettered). */
  oversizePublishes: number
  /** Bytes those publishes announced: read off the socket and dropped, never buffered. */
  oversizeBytesDiscarded: number
  /** The most bytes one connection's packet guard held at once (headers, an oversize topic). */
  guardHeldBytesPeak: number
  /** TLS handshakes that failed (bad or missing client certificate, wrong protocol, timeout). */
  tlsHandshakeFailures: number
  /** Connections closed for sending no CONNECT within connectTimeoutMs (Aedes). */
  connectTimeouts: number
  /** Subscribers disconnected because their socket did not drain in time (Aedes). */
  drainTimeouts: number
}

/** At most one warn line per kind of refusal in this interval: a flood must not flood the log. */
const REFUSAL_LOG_INTERVAL_MS = 10_000

/**
 * The broker's front door, shared by TCP, TLS and WebSocket (which calls `handle` from the HTTP
 * upgrade): one connection count and one packet-size guard for all of them.
 *
 * Over MAX_CONNECTIONS a new connection is closed at once, before the broker reads a byte of it
 * (and, on mqtts, before the TLS handshake): the client sees the connection close without a
 * CONNACK. Answering CONNACK 3 "server unavailable" instead would mean reading and parsing a
 * CONNECT from every connection over the limit, which is the work the limit exists to refuse;
 * Mosquitto's max_connections closes the socket the same way. Clients retry with their usual
 * reconnect back-off.
 */
export function createMqttListeners(
  deps: {
    aedes: Aedes
    log: Logger
    now?: () => number
    /** Runs for each connection right after Aedes takes it (socket options, protocol checks). */
    onConnection?: (stream: Duplex, req?: IncomingMessage) => void
    /** With it, an oversize PUBLISH is replaced by a placeholder rather than closing (packet-guard.ts). */
    oversizeMarker?: Buffer
  },
  limits: ConnectionLimits,
): MqttListeners {
  const { aedes } = deps
  const log = deps.log.child({ module: 'listeners' })
  const now = deps.now ?? Date.now
  const stats: ListenerStats = {
    open: 0,
    refusedAtLimit: 0,
    refusedPacketSize: 0,
    oversizePublishes: 0,
    oversizeBytesDiscarded: 0,
    guardHeldBytesPeak: 0,
    tlsHandshakeFailures: 0,
    connectTimeouts: 0,
    drainTimeouts: 0,
  }
  const servers: Server[] = []
  /** Per open connection: folds its guard's peak into stats.guardHeldBytesPeak. */
  const heldPeaks = new Set<() => void>()
  let tcp: Server | null = null
  let serversClosed: Promise<void> = Promise.resolve()
  const warnLimited = limitedWarn(log, now)

  const atLimit = () => stats.open >= limits.maxConnections

  // Aedes enforces these limits itself (CONNECT_TIMEOUT, DRAIN_TIMEOUT, MAX_INFLIGHT_INBOUND);
  // the operator should hear of it once, not once per client.
  aedes.on('connectionError', (_client, err) => {
    if (err.message === 'connect did not arrive in time') {
      stats.connectTimeouts++
      warnLimited(
        'connect_timeout',
        { connectTimeoutMs: limits.connectTimeoutMs },
        'MQTT connection closed: no CONNECT within CONNECT_TIMEOUT',
      )
    }
  })
  aedes.on('clientError', (client, err) => {
    if (err.message === 'drain timeout') {
      stats.drainTimeouts++
      warnLimited(
        'drain_timeout',
        { clientId: client.id },
        'slow subscriber disconnected: its socket did not drain within DRAIN_TIMEOUT',
      )
    } else if (err.message.startsWith('maxInflightInbound exceeded')) {
      warnLimited(
        'max_inflight_inbound',
        { clientId: client.id, err: err.message },
        'client disconnected: MAX_INFLIGHT_INBOUND QoS 2 messages awaiting PUBREL',
      )
    }
  })

  const refuseAtLimit = (stream: Duplex, transport: Transport, remoteAddress?: string) => {
    stats.refusedAtLimit++
    stream.destroy()
    warnLimited(
      'max_connections',
      { transport, remoteAddress, maxConnections: limits.maxConnections },
      'MQTT connection refused: MAX_CONNECTIONS connections are open',
    )
  }

  const onPacketRefused = (
    stream: Duplex,
    transport: Transport,
    remoteAddress: string | undefined,
    refusal: PacketGuardRefusal,
  ) => {
    stats.refusedPacketSize++
    const clientId = (stream as Duplex & { client?: { id?: string | null } }).client?.id
    warnLimited(
      refusal.reason,
      { ...refusal, transport, remoteAddress, clientId: clientId ?? undefined },
      refusal.reason === 'packet_too_large'
        ? 'MQTT packet (not a PUBLISH) over MAX_PACKET_BYTES: connection closed before the packet was read'
        : refusal.reason === 'topic_too_long'
          ? 'MQTT PUBLISH over MAX_PACKET_BYTES with a topic too long to answer it: connection closed'
          : 'MQTT packet with a malformed length: connection closed',
    )
  }

  const listeners: MqttListeners = {
    handle(stream, transport, req) {
      const remoteAddress =
        (stream as Partial<Socket>).remoteAddress ?? req?.socket.remoteAddress ?? undefined
      if (aedes.closed) {
        stream.destroy()
        return
      }
      if (atLimit()) {
        refuseAtLimit(stream, transport, remoteAddress)
        return
      }
      stats.open++
      stream.once('close', () => {
        stats.open--
      })
      // Before aedes.handle: no byte may reach Aedes' parser unscanned (packet-guard.ts).
      const scanner = guardPacketSize(
        stream,
        limits.maxPacketBytes,
        (refusal) => onPacketRefused(stream, transport, remoteAddress, refusal),
        {
          ...(deps.oversizeMarker ? { marker: deps.oversizeMarker } : {}),
          onDiscarded: (discarded) => {
            stats.oversizePublishes++
            stats.oversizeBytesDiscarded += discarded.announcedBytes
          },
        },
      )
      // Read when stats are read, and when the connection goes.
      const notePeak = () => {
        stats.guardHeldBytesPeak = Math.max(stats.guardHeldBytesPeak, scanner.peakHeldBytes())
      }
      stream.once('close', notePeak)
      heldPeaks.add(notePeak)
      stream.once('close', () => heldPeaks.delete(notePeak))
      aedes.handle(stream, req)
      deps.onConnection?.(stream, req)
    },

    async listenTcp(host, port) {
      const server = createServer((socket) => listeners.handle(socket, 'tcp'))
      const address = await listen(server, host, port, 'MQTT', 'MQTT_PORT')
      server.on('error', (err) => log.error({ err }, 'MQTT listener error'))
      tcp = server
      servers.push(server)
      log.info(
        { host: address.address, port: address.port },
        `MQTT listening on ${address.address}:${address.port}`,
      )
      return address
    },

    async listenTls(host, port, options) {
      const server = createTlsServer(
        { handshakeTimeout: limits.connectTimeoutMs, ...options },
        (socket: TLSSocket) => listeners.handle(socket, 'tls'),
      )
      // Refused before the handshake: a full gateway spends no CPU on key exchange.
      const refusedRaw = new WeakSet<Socket>()
      server.on('connection', (raw: Socket) => {
        if (!atLimit()) return
        refusedRaw.add(raw)
        refuseAtLimit(raw, 'tls', raw.remoteAddress)
      })
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
        // A socket refused above fails its handshake too; it was counted and logged as refused.
        // `_parent` is the TCP socket a server-side TLSSocket wraps (not in Node's typings).
        const raw = (socket as TLSSocket & { _parent?: Socket })._parent
        if (raw && refusedRaw.has(raw)) return
        stats.tlsHandshakeFailures++
        warnLimited(
          'tls_handshake',
          {
            err: err.message,
            code: err.code,
            // Why a client certificate was refused (UNABLE_TO_VERIFY_LEAF_SIGNATURE: another
            // CA). Node drops the connection without a TLS alert, so err is only "hang up".
            certificateError: socket.authorizationError?.toString(),
            remoteAddress: socket.remoteAddress,
          },
          'MQTT TLS handshake failed',
        )
      })
      const address = await listen(server, host, port, 'MQTT', 'MQTTS_PORT')
      server.on('error', (err) => log.error({ err }, 'MQTTS listener error'))
      servers.push(server)
      log.info(
        { host: address.address, port: address.port, tls: true },
        `MQTT over TLS listening on ${address.address}:${address.port}`,
      )
      return address
    },

    stopAccepting() {
      const closing = servers.splice(0)
      tcp = null
      // close() stops listening at once, but its callback waits for every connection to end:
      // that happens when Aedes disconnects the clients.
      const previous = serversClosed
      serversClosed = Promise.all([
        previous,
        ...closing
          .filter((server) => server.listening)
          .map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
      ]).then(() => {})
    },

    closed: () => serversClosed,

    isListening() {
      return tcp?.listening === true
    },

    stats() {
      for (const notePeak of heldPeaks) notePeak()
      return { ...stats }
    },
  }

  return listeners
}

async function listen(
  server: Server,
  host: string,
  port: number,
  service: 'MQTT',
  portVariable: string,
): Promise<AddressInfo> {
  server.listen(port, host)
  try {
    await once(server, 'listening')
  } catch (err) {
    throw listenError(service, portVariable, err as NodeJS.ErrnoException, host, port)
  }
  return server.address() as AddressInfo
}

/** warn(kind, fields, msg) logs the first of a kind, then at most one line per interval. */
export function limitedWarn(log: Logger, now: () => number) {
  const last = new Map<string, { at: number; suppressed: number }>()
  return (kind: string, fields: Record<string, unknown>, msg: string) => {
    const at = now()
    const seen = last.get(kind)
    if (seen && at - seen.at < REFUSAL_LOG_INTERVAL_MS) {
      seen.suppressed++
      return
    }
    log.warn({ ...fields, suppressed: seen?.suppressed ?? 0 }, msg)
    last.set(kind, { at, suppressed: 0 })
  }
}
