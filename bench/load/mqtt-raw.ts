/**
 * Just enough MQTT 3.1.1 on a bare TCP socket for the two loads MQTT.js is too heavy for: a flood
 * that writes PUBLISH packets back to back without waiting for PUBACKs (no in-flight window), and
 * thousands of idle connections. Encoders for CONNECT, PUBLISH and DISCONNECT; a reader that
 * counts what comes back (CONNACK, PUBACK).
 */
import { connect, type Socket } from 'node:net'

function remainingLength(n: number): number[] {
  const bytes: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    bytes.push(byte)
  } while (n > 0)
  return bytes
}

/** CONNECT, clean session, no credentials. */
export function encodeConnect(clientId: string, keepaliveSec: number): Buffer {
  const id = Buffer.from(clientId, 'utf8')
  const variable = Buffer.from([
    0,
    4,
    0x4d,
    0x51,
    0x54,
    0x54,
    4,
    0x02,
    keepaliveSec >> 8,
    keepaliveSec & 0xff,
  ])
  const body = Buffer.concat([variable, Buffer.from([id.length >> 8, id.length & 0xff]), id])
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(body.length)]), body])
}

export const DISCONNECT = Buffer.from([0xe0, 0])

/** SUBSCRIBE to one topic filter. */
export function encodeSubscribe(packetId: number, filter: string, qos: 0 | 1): Buffer {
  const topic = Buffer.from(filter, 'utf8')
  const body = Buffer.concat([
    Buffer.from([packetId >> 8, packetId & 0xff, topic.length >> 8, topic.length & 0xff]),
    topic,
    Buffer.from([qos]),
  ])
  return Buffer.concat([Buffer.from([0x82, ...remainingLength(body.length)]), body])
}

/** Bytes one PUBLISH takes (header included), so a batch can be written into one buffer. */
export function publishSize(topicBytes: number, payloadBytes: number, qos: 0 | 1): number {
  const rest = 2 + topicBytes + (qos > 0 ? 2 : 0) + payloadBytes
  return 1 + remainingLength(rest).length + rest
}

/** Writes one PUBLISH at `at` in `buf`; returns the offset after it. */
export function writePublish(
  buf: Buffer,
  at: number,
  topic: Buffer,
  payload: string,
  qos: 0 | 1,
  packetId: number,
): number {
  const payloadBytes = Buffer.byteLength(payload)
  const rest = 2 + topic.length + (qos > 0 ? 2 : 0) + payloadBytes
  buf[at++] = 0x30 | (qos << 1)
  for (const b of remainingLength(rest)) buf[at++] = b
  buf[at++] = topic.length >> 8
  buf[at++] = topic.length & 0xff
  at += topic.copy(buf, at)
  if (qos > 0) {
    buf[at++] = packetId >> 8
    buf[at++] = packetId & 0xff
  }
  at += buf.write(payload, at, 'utf8')
  return at
}

/**
 * Splits what the server sends into packets and reports each packet's type (upper nibble of the
 * first byte) and, for CONNACK, its return code. Keeps at most one partial packet between chunks.
 */
export function packetReader(
  onPacket: (type: number, firstBodyByte: number, body: Buffer) => void,
) {
  let pending: Buffer | null = null
  return (chunk: Buffer) => {
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk
    pending = null
    let at = 0
    for (;;) {
      if (buf.length - at < 2) break
      let length = 0
      let multiplier = 1
      let i = at + 1
      let complete = false
      while (i < buf.length) {
        const byte = buf[i++] as number
        length += (byte & 0x7f) * multiplier
        multiplier *= 128
        if ((byte & 0x80) === 0) {
          complete = true
          break
        }
      }
      if (!complete || buf.length - i < length) break
      onPacket((buf[at] as number) >> 4, buf[i + 1] ?? 0, buf.subarray(i, i + length))
      at = i + length
    }
    if (at < buf.length) pending = Buffer.from(buf.subarray(at))
    buf = Buffer.alloc(0)
  }
}

export const PACKET = { connack: 2, publish: 3, puback: 4 } as const

/**
 * Opens a TCP connection and sends CONNECT; resolves with the socket once the CONNACK accepts it
 * (rejects on a refusal, an error, a close or the timeout).
 */
export function rawConnect(
  host: string,
  port: number,
  clientId: string,
  keepaliveSec: number,
  timeoutMs: number,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port })
    const fail = (err: Error) => {
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    const timer = setTimeout(() => fail(new Error('CONNACK timeout')), timeoutMs)
    socket.once('error', fail)
    socket.once('close', () => fail(new Error('closed before CONNACK')))
    let got = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk])
      if (got.length < 4) return
      socket.off('data', onData)
      socket.removeAllListeners('error')
      socket.removeAllListeners('close')
      clearTimeout(timer)
      if (got[0] !== 0x20 || got[3] !== 0) {
        socket.destroy()
        reject(new Error(`CONNACK refused (code ${got[3]})`))
        return
      }
      resolve(socket)
    }
    socket.on('data', onData)
    socket.write(encodeConnect(clientId, keepaliveSec))
  })
}
