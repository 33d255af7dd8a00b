import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { type AddressInfo, createServer, type Server } from 'node:net'
import type { Duplex } from 'node:stream'
import { Aedes, type AedesOptions } from 'aedes'
import { listenError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'

export interface PublishOptions {
  qos: 0 | 1
  retain: boolean
}

/** What modules that publish need of the broker: nothing more, so they stay testable. */
export interface MqttPublisher {
  publish(topic: string, payload: string, options: PublishOptions): Promise<void>
}

export interface BrokerHooks {
  authorizePublish: NonNullable<AedesOptions['authorizePublish']>
  onClientReady?: (clientId: string) => void
  onClientDisconnect?: (clientId: string) => void
}

export interface MqttBroker extends MqttPublisher {
  readonly aedes: Aedes
  /** Starts the TCP listener; port 0 lets the OS choose, the address is returned and logged. */
  listen(host: string, port: number): Promise<AddressInfo>
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
): Promise<MqttBroker> {
  const log = deps.log.child({ module: 'broker' })
  const counts: MqttMessageCounts = { in: 0, out: 0 }
  const aedes = await Aedes.createBroker({
    authorizePublish: hooks.authorizePublish,
    // Aedes' own default returns the packet as is; this one only counts it.
    authorizeForward: (_client, packet) => {
      counts.out++
      return packet
    },
  })
  let server: Server | null = null
  let serverClosed: Promise<void> = Promise.resolve()

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
    async listen(host, port) {
      const tcp = createServer(aedes.handle)
      tcp.listen(port, host)
      try {
        await once(tcp, 'listening')
      } catch (err) {
        throw listenError('MQTT', 'MQTT_PORT', err as NodeJS.ErrnoException, host, port)
      }
      tcp.on('error', (err) => log.error({ err }, 'MQTT listener error'))
      server = tcp
      const address = tcp.address() as AddressInfo
      log.info(
        { host: address.address, port: address.port },
        `MQTT listening on ${address.address}:${address.port}`,
      )
      return address
    },
    async stopAccepting() {
      const tcp = server
      server = null
      if (!tcp?.listening) return
      // close() stops listening at once, but its callback waits for every connection to end:
      // that happens in close(), when Aedes disconnects the clients.
      serverClosed = new Promise<void>((resolve) => {
        tcp.close(() => resolve())
      })
    },
    async close() {
      await broker.stopAccepting()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await serverClosed
    },
    publish(topic, payload, options) {
      return new Promise((resolve, reject) => {
        aedes.publish(
          {
            cmd: 'publish',
            topic,
            payload: Buffer.from(payload),
            qos: options.qos,
            retain: options.retain,
            dup: false,
          },
          (err) => (err ? reject(err) : resolve()),
        )
      })
    },
    connectedClients() {
      return aedes.connectedClients
    },
    handleConnection(stream, req) {
      if (aedes.closed) {
        stream.destroy()
        return
      }
      aedes.handle(stream, req)
    },
    isListening() {
      return server?.listening === true
    },
    messageCounts() {
      return { ...counts }
    },
  }
  return broker
}
