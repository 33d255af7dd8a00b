import { once } from 'node:events'
import { connect, type Socket } from 'node:net'

/**
 * Hand-made MQTT packets over a plain socket, for what a real client library will not send
 * (malformed or edge-case packets). Builders take the fields as the wire has them, unchecked.
 */

/** A UTF-8 string (or raw bytes) with its 2-byte length prefix (MQTT 3.1.1 §1.5.3). */
export function mqttString(value: string | Buffer): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes])
}

/** A packet: type and flags byte, remaining length varint, body. */
export function mqttPacket(typeAndFlags: number, body: Buffer): Buffer {
  const length: number[] = []
  let remaining = body.length
  do {
    let byte = remaining % 128
    remaining = Math.floor(remaining / 128)
    if (remaining > 0) byte |= 0x80
    length.push(byte)
  } while (remaining > 0)
  return Buffer.concat([Buffer.from([typeAndFlags, ...length]), body])
}

export interface ConnectFields {
  protocolName?: string
  level?: number
  clientId?: string | Buffer
  clean?: boolean
  keepaliveSec?: number
  will?: { topic: string; payload?: string; qos?: number; retain?: boolean }
  username?: string
  password?: string
  /** Bits OR-ed into the connect flags as they are (reserved bit, will QoS without a will...). */
  extraFlags?: number
}

/** A CONNECT; by default MQTT 3.1.1, clean session, keepalive 60 s. */
export function connectPacket(fields: ConnectFields = {}): Buffer {
  const will = fields.will
  let flags = fields.extraFlags ?? 0
  if (fields.clean ?? true) flags |= 0x02
  if (will) flags |= 0x04 | ((will.qos ?? 0) << 3) | (will.retain ? 0x20 : 0)
  if (fields.password !== undefined) flags |= 0x40
  if (fields.username !== undefined) flags |= 0x80
  const keepalive = fields.keepaliveSec ?? 60
  const parts: Buffer[] = [
    mqttString(fields.protocolName ?? 'MQTT'),
    Buffer.from([fields.level ?? 4, flags, keepalive >> 8, keepalive & 0xff]),
    mqttString(fields.clientId ?? 'raw-client'),
  ]
  if (will) parts.push(mqttString(will.topic), mqttString(will.payload ?? 'gone'))
  if (fields.username !== undefined) parts.push(mqttString(fields.username))
  if (fields.password !== undefined) parts.push(mqttString(fields.password))
  return mqttPacket(0x10, Buffer.concat(parts))
}

/** A PUBLISH with the given QoS (packet id 1 when QoS > 0). */
export function publishPacket(topic: string | Buffer, payload: string, qos = 0): Buffer {
  const parts: Buffer[] = [mqttString(topic)]
  if (qos > 0) parts.push(Buffer.from([0x00, 0x01]))
  parts.push(Buffer.from(payload))
  return mqttPacket(0x30 | (qos << 1), Buffer.concat(parts))
}

/** A SUBSCRIBE (packet id `packetId`) with one options byte per filter. */
export function subscribePacket(
  filters: Array<{ topic: string | Buffer; options?: number }>,
  packetId = 1,
  typeAndFlags = 0x82,
): Buffer {
  const parts: Buffer[] = [Buffer.from([packetId >> 8, packetId & 0xff])]
  for (const f of filters) parts.push(mqttString(f.topic), Buffer.from([f.options ?? 0]))
  return mqttPacket(typeAndFlags, Buffer.concat(parts))
}

/** CONNACK with session present 0 and the given return code, as the gateway sends it. */
export function connack(returnCode: number): Buffer {
  return Buffer.from([0x20, 0x02, 0x00, returnCode])
}

export interface RawConnection {
  socket: Socket
  /** Every byte received so far. */
  received(): Buffer
  /** Resolves once the gateway has closed the connection (or it failed). */
  closed: Promise<void>
  /** Resolves once at least `count` bytes have arrived; rejects if the connection closes first. */
  bytes(count: number): Promise<Buffer>
}

/** Opens a plain TCP connection; the caller destroys it (see `destroyAll`). */
export async function openRaw(port: number): Promise<RawConnection> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  const waiters = new Set<() => void>()
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    for (const wake of waiters) wake()
  })
  socket.on('error', () => {})
  const closed = once(socket, 'close').then(() => {
    for (const wake of waiters) wake()
  })
  const received = () => Buffer.concat(chunks)
  return {
    socket,
    received,
    closed,
    bytes(count) {
      return new Promise<Buffer>((resolve, reject) => {
        const check = () => {
          const all = received()
          if (all.length >= count) {
            waiters.delete(check)
            resolve(all)
          } else if (socket.destroyed) {
            waiters.delete(check)
            reject(new Error(`connection closed after ${all.length} of ${count} bytes`))
          }
        }
        waiters.add(check)
        check()
      })
    },
  }
}

export function destroyAll(connections: Iterable<RawConnection>): void {
  for (const c of connections) c.socket.destroy()
}
