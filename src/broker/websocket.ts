import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { Server as TlsServer } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import { createWebSocketStream, type WebSocket, WebSocketServer } from 'ws'
import type { Logger } from '../telemetry/logger.ts'
import type { MqttBroker } from './mqtt-broker.ts'

export interface MqttWebSocketOptions {
  /** The one path upgrades are accepted on; every other path is refused with 404. */
  path: string
  /** How long stop waits for a client to answer the close frame before dropping its socket. */
  closeGraceMs?: number
  /**
   * Checks an upgrade before the handshake (src/security/http-auth.ts: Host and Origin while the
   * gateway is anonymous and loopback only); a message refuses it with a 403.
   */
  verifyUpgrade?: (req: IncomingMessage) => string | null
}

export interface MqttWebSocket {
  /** WebSocket connections open now (MQTT clients among the broker's connectedClients). */
  connections(): number
  /** Refuses new upgrades and closes every WebSocket connection; bounded by closeGraceMs. */
  close(): Promise<void>
}

export const MQTT_WEBSOCKET_PATH = '/mqtt'
/**
 * Subprotocols a client may ask for: `mqtt` (MQTT 3.1.1 and 5, what MQTT.js and browsers send)
 * and `mqttv3.1` (MQTT 3.1 clients).
 */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'] as const
/**
 * ws buffers a whole frame before handing it on, and its default cap is 100 MiB. MQTT packets
 * from sensors are small (readings over 64 KiB are dead-lettered anyway); 8 MiB leaves room for
 * large retained payloads of other apps and bounds what one connection can make us hold.
 */
const MAX_FRAME_BYTES = 8 * 1024 * 1024
const DEFAULT_CLOSE_GRACE_MS = 1_000
/** 1001 "going away": the server is shutting down (RFC 6455 §7.4.1). */
const GOING_AWAY = 1001

/**
 * MQTT over WebSocket on the HTTP server (DESIGN §1): upgrades on `path` become connections of
 * the same Aedes broker as the TCP listener, so the same authentication, authorisation and
 * ingest hooks apply to them. Upgrades anywhere else are answered 404, in the API's error shape.
 *
 * The HTTP server's close (Fastify's preClose hook) closes the WebSocket clients first: an
 * upgraded socket still counts as a connection of the HTTP server, whose close() would
 * otherwise wait for it forever.
 */
export function attachMqttWebSocket(
  deps: { http: FastifyInstance; broker: Pick<MqttBroker, 'handleConnection'>; log: Logger },
  options: MqttWebSocketOptions,
): MqttWebSocket {
  const log = deps.log.child({ module: 'mqtt-ws' })
  const { path } = options
  const closeGraceMs = options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES,
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  })
  let closing = false
  let closed: Promise<void> | undefined

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const requested = (req.url ?? '/').split('?')[0] ?? '/'
    if (closing) {
      // Stopping: a client that reconnects at once is turned away before any handshake.
      socket.destroy()
      return
    }
    if (requested !== path) {
      refuseNotFound(
        socket,
        `no WebSocket endpoint at ${requested.slice(0, 200)}; MQTT over WebSocket is at ${path}`,
      )
      return
    }
    const refused = options.verifyUpgrade?.(req) ?? null
    if (refused !== null) {
      log.warn(
        {
          origin: req.headers.origin,
          host: req.headers.host,
          remoteAddress: req.socket.remoteAddress,
        },
        'MQTT WebSocket upgrade refused',
      )
      refuseForbidden(socket, refused)
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (closing) {
        ws.close(GOING_AWAY, 'gateway stopping')
        return
      }
      log.debug(
        { remoteAddress: req.socket.remoteAddress, protocol: ws.protocol },
        'MQTT WebSocket connection',
      )
      const stream = createWebSocketStream(ws)
      // Aedes listens for errors on the stream it is given; this covers the moment before.
      stream.on('error', (err) => log.debug({ err: err.message }, 'MQTT WebSocket stream error'))
      deps.broker.handleConnection(stream, req)
    })
  }

  deps.http.server.on('upgrade', onUpgrade)
  deps.http.addHook('onListen', async function () {
    const address = this.server.address() as AddressInfo | null
    // HTTP_TLS: Fastify's server is an https.Server, a tls.Server.
    const scheme = this.server instanceof TlsServer ? 'wss' : 'ws'
    if (address)
      log.info(`MQTT over WebSocket on ${scheme}://${address.address}:${address.port}${path}`)
  })
  deps.http.addHook('preClose', async () => {
    await close()
  })

  function close(): Promise<void> {
    closed ??= (async () => {
      closing = true
      await Promise.all([...wss.clients].map((ws) => closeClient(ws, closeGraceMs)))
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      deps.http.server.off('upgrade', onUpgrade)
    })()
    return closed
  }

  return { connections: () => wss.clients.size, close }
}

/** A close frame first; a client that does not answer within the grace period is cut off. */
function closeClient(ws: WebSocket, graceMs: number): Promise<void> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => ws.terminate(), graceMs)
    ws.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
    ws.close(GOING_AWAY, 'gateway stopping')
  })
}

/** Answers an upgrade on an unknown path with a 404 in the API's error shape, then hangs up. */
function refuseNotFound(socket: Duplex, message: string): void {
  const body = JSON.stringify({ error: 'not_found', message, statusCode: 404 })
  socket.on('error', () => socket.destroy())
  socket.once('finish', () => socket.destroy())
  socket.end(
    'HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
}

/** Answers a refused upgrade (src/security/http-auth.ts) with a 403 in the API's error shape. */
function refuseForbidden(socket: Duplex, message: string): void {
  const body = JSON.stringify({ error: 'forbidden', message, statusCode: 403 })
  socket.on('error', () => socket.destroy())
  socket.once('finish', () => socket.destroy())
  socket.end(
    'HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
}
