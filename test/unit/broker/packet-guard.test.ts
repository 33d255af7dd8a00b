import { once } from 'node:events'
import { Duplex } from 'node:stream'
import { describe, expect, it } from 'vitest'
import {
  createPacketSizeScanner,
  createPlaceholderMarker,
  guardPacketSize,
  MAX_FIXED_HEADER_BYTES,
  MAX_HELD_TOPIC_BYTES,
  type PacketGuardRefusal,
  placeholderAnnouncedBytes,
} from '../../../src/broker/packet-guard.ts'

/** The remaining-length varint of MQTT 3.1.1 §2.2.3, written independently of the scanner. */
function varint(length: number): number[] {
  const bytes: number[] = []
  let rest = length
  do {
    let byte = rest % 128
    rest = Math.floor(rest / 128)
    if (rest > 0) byte |= 0x80
    bytes.push(byte)
  } while (rest > 0)
  return bytes
}

/** A packet's fixed header: type and flags byte, then the remaining length. */
function header(remaining: number, typeByte = 0x30): Buffer {
  return Buffer.from([typeByte, ...varint(remaining)])
}

/** A whole QoS 0 PUBLISH packet (topic, payload) as a client sends it. */
function publish(topic: string, payload: Buffer): Buffer {
  const topicBytes = Buffer.from(topic)
  const body = Buffer.concat([
    Buffer.from([topicBytes.length >> 8, topicBytes.length & 0xff]),
    topicBytes,
    payload,
  ])
  return Buffer.concat([header(body.length), body])
}

const PINGREQ = Buffer.from([0xc0, 0x00])

/** A PUBLISH with any flags (type byte), topic, packet id (QoS 1 and 2) and payload. */
function publishWith(typeByte: number, topic: string, packetId: number, payload: Buffer): Buffer {
  const topicBytes = Buffer.from(topic)
  const qos = (typeByte >> 1) & 3
  const body = Buffer.concat([
    Buffer.from([topicBytes.length >> 8, topicBytes.length & 0xff]),
    topicBytes,
    qos > 0 ? Buffer.from([packetId >> 8, packetId & 0xff]) : Buffer.alloc(0),
    payload,
  ])
  return Buffer.concat([header(body.length, typeByte), body])
}

/** What the scanner must put in an oversize publish's place, built from the spec by hand. */
function expectedPlaceholder(
  typeByte: number,
  topic: string,
  packetId: number,
  marker: Buffer,
  announcedBytes: number,
): Buffer {
  const size = Buffer.alloc(4)
  size.writeUInt32BE(announcedBytes)
  return publishWith(typeByte, topic, packetId, Buffer.concat([marker, size]))
}

/** Feeds `bytes` in the given chunk sizes (cycled); returns what was forwarded and the verdict. */
function filter(max: number, marker: Buffer, bytes: Buffer, sizes: number[]) {
  const scanner = createPacketSizeScanner(max, { marker })
  const out: Buffer[] = []
  let at = 0
  let k = 0
  let maxHeld = 0
  let verdict = scanner.push(Buffer.alloc(0), (b) => out.push(Buffer.from(b)))
  while (at < bytes.length && verdict.ok) {
    const size = sizes[k++ % sizes.length] as number
    verdict = scanner.push(bytes.subarray(at, at + size), (b) => out.push(Buffer.from(b)))
    at += size
    maxHeld = Math.max(maxHeld, scanner.heldBytes())
  }
  return { forwarded: Buffer.concat(out), verdict, scanner, maxHeld }
}

/** Feeds `bytes` in the given chunk sizes (cycled) and returns the first failing verdict. */
function scan(max: number, bytes: Buffer, sizes: number[]) {
  const scanner = createPacketSizeScanner(max)
  let at = 0
  let k = 0
  let maxHeld = 0
  while (at < bytes.length) {
    const size = sizes[k++ % sizes.length] as number
    const verdict = scanner.push(bytes.subarray(at, at + size))
    at += size
    maxHeld = Math.max(maxHeld, scanner.heldBytes())
    if (!verdict.ok) return { verdict, scanner, maxHeld }
  }
  return { verdict: { ok: true } as const, scanner, maxHeld }
}

describe('packet size scanner', () => {
  it.each([
    [0, [0x00]],
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [16_383, [0xff, 0x7f]],
    [16_384, [0x80, 0x80, 0x01]],
    [2_097_151, [0xff, 0xff, 0x7f]],
    [2_097_152, [0x80, 0x80, 0x80, 0x01]],
    [268_435_455, [0xff, 0xff, 0xff, 0x7f]],
  ])('reads a remaining length of %i from %j (the spec table)', (length, bytes) => {
    expect(varint(length)).toEqual(bytes)
    // Announced size = type byte + length bytes + remaining length.
    const total = 1 + bytes.length + length
    const exact = createPacketSizeScanner(total)
    expect(exact.push(Buffer.from([0x30, ...bytes]))).toEqual({ ok: true })
    const under = createPacketSizeScanner(total - 1)
    expect(under.push(Buffer.from([0x30, ...bytes]))).toEqual({
      ok: false,
      reason: 'packet_too_large',
      announcedBytes: total,
    })
  })

  it('gives the same verdicts for every split of the same bytes into chunks', () => {
    const stream = Buffer.concat([
      publish('sensors/dev-1/temperature', Buffer.from('21.5')),
      PINGREQ,
      publish('sensors/dev-1', Buffer.alloc(300, 0x20)),
      publish('sensors/dev-1', Buffer.alloc(20_000, 0x20)),
      PINGREQ,
    ])
    for (const sizes of [[1], [2], [3], [7], [1, 2, 3, 5, 8], [64], [stream.length]]) {
      const { verdict, scanner, maxHeld } = scan(1_000_000, stream, sizes)
      expect(verdict).toEqual({ ok: true })
      expect(scanner.packets()).toBe(5)
      expect(scanner.bytesSeen()).toBe(stream.length)
      expect(scanner.heldBytes()).toBe(0)
      expect(maxHeld).toBeLessThanOrEqual(MAX_FIXED_HEADER_BYTES)
    }
  })

  it('refuses at the header of a too large packet, having seen nothing of its body', () => {
    const small = publish('sensors/dev-1/temperature', Buffer.from('21.5'))
    // A 1 MiB publish: only its first bytes are ever given to the scanner here.
    const bigHeader = header(1024 * 1024)
    const stream = Buffer.concat([small, bigHeader, Buffer.alloc(100, 0x41)])
    for (const sizes of [[1], [3], [small.length + 2], [stream.length]]) {
      const { verdict, scanner, maxHeld } = scan(64 * 1024, stream, sizes)
      expect(verdict).toEqual({
        ok: false,
        reason: 'packet_too_large',
        announcedBytes: bigHeader.length + 1024 * 1024,
      })
      // Counted up to the end of the offending header, whatever the chunking.
      expect(scanner.bytesSeen()).toBe(small.length + bigHeader.length)
      expect(scanner.packets()).toBe(2)
      expect(maxHeld).toBeLessThanOrEqual(MAX_FIXED_HEADER_BYTES)
    }
  })

  it('stays refused after the first bad packet', () => {
    const scanner = createPacketSizeScanner(1_024)
    expect(scanner.push(header(5_000)).ok).toBe(false)
    expect(scanner.push(PINGREQ).ok).toBe(false)
  })

  it('refuses a remaining length longer than 4 bytes as malformed', () => {
    const { verdict } = scan(268_435_460, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), [1])
    expect(verdict).toEqual({ ok: false, reason: 'malformed_length', announcedBytes: 0 })
  })

  it('holds at most the header while it is split across chunks', () => {
    const scanner = createPacketSizeScanner(268_435_460)
    scanner.push(Buffer.from([0x30]))
    expect(scanner.heldBytes()).toBe(1)
    scanner.push(Buffer.from([0xff]))
    scanner.push(Buffer.from([0xff]))
    scanner.push(Buffer.from([0xff]))
    expect(scanner.heldBytes()).toBe(4)
    scanner.push(Buffer.from([0x7f]))
    // The header is complete: the body is skipped, not held.
    expect(scanner.heldBytes()).toBe(0)
    scanner.push(Buffer.alloc(10_000))
    expect(scanner.heldBytes()).toBe(0)
  })
})

describe('packet filter: an oversize PUBLISH is cut out and replaced by a placeholder', () => {
  const marker = createPlaceholderMarker()
  const SPLITS = [[1], [2], [3], [5], [7], [1, 2, 3, 5, 8], [64], [1000], [1_000_000]]

  it('forwards every byte of packets within the limit unchanged, whatever the split', () => {
    const stream = Buffer.concat([
      publish('sensors/dev-1/temperature', Buffer.from('21.5')),
      PINGREQ,
      publishWith(0x32, 'sensors/dev-1', 7, Buffer.alloc(300, 0x20)),
      publish('sensors/dev-1', Buffer.alloc(20_000, 0x20)),
      PINGREQ,
    ])
    for (const sizes of SPLITS) {
      const { forwarded, verdict, scanner } = filter(1_000_000, marker, stream, sizes)
      expect(verdict).toEqual({ ok: true })
      expect(forwarded).toEqual(stream)
      expect(scanner.discarded()).toEqual({ publishes: 0, bytes: 0 })
    }
  })

  it.each([
    ['QoS 0', 0x30],
    ['QoS 1', 0x32],
    ['QoS 2, retained, dup', 0x3d],
  ])(
    '%s: the same flags, topic and packet id, the marker and the announced size; nothing of the body',
    (_name, typeByte) => {
      const small = publish('sensors/dev-1/temperature', Buffer.from('21.5'))
      const big = publishWith(typeByte, 'sensors/dev-1/t', 0x1234, Buffer.alloc(100_000, 0x41))
      const stream = Buffer.concat([small, big, PINGREQ, small])
      const expected = Buffer.concat([
        small,
        expectedPlaceholder(typeByte, 'sensors/dev-1/t', 0x1234, marker, big.length),
        PINGREQ,
        small,
      ])
      for (const sizes of SPLITS) {
        const { forwarded, verdict, scanner, maxHeld } = filter(1_024, marker, stream, sizes)
        expect(verdict).toEqual({ ok: true })
        expect(forwarded).toEqual(expected)
        expect(scanner.discarded()).toEqual({ publishes: 1, bytes: big.length })
        expect(scanner.packets()).toBe(4)
        // A header, or the type byte, topic and packet id of the big one: never its body.
        expect(maxHeld).toBeLessThanOrEqual(Math.max(MAX_FIXED_HEADER_BYTES, 15 + 3))
        expect(scanner.peakHeldBytes()).toBeLessThanOrEqual(15 + 3)
        expect(scanner.heldBytes()).toBe(0)
      }
    },
  )

  it('recognises its own placeholders by their marker only', () => {
    const size = Buffer.alloc(4)
    size.writeUInt32BE(123_456)
    expect(placeholderAnnouncedBytes(marker, Buffer.concat([marker, size]))).toBe(123_456)
    // Another process's marker, a payload of the same length, a longer one: real publishes.
    const other = createPlaceholderMarker()
    expect(placeholderAnnouncedBytes(marker, Buffer.concat([other, size]))).toBeNull()
    expect(placeholderAnnouncedBytes(marker, Buffer.alloc(20, 0x41))).toBeNull()
    expect(placeholderAnnouncedBytes(marker, Buffer.concat([marker, size, size]))).toBeNull()
    expect(placeholderAnnouncedBytes(marker, '21.5')).toBeNull()
  })

  it('still refuses what it cannot answer: another packet type, an over-long topic, a topic longer than the packet', () => {
    const subscribe = Buffer.concat([header(1024 * 1024, 0x82), Buffer.alloc(10)])
    expect(filter(1_024, marker, subscribe, [3]).verdict).toEqual({
      ok: false,
      reason: 'packet_too_large',
      announcedBytes: 1 + 3 + 1024 * 1024,
    })
    const longTopic = publishWith(
      0x32,
      `sensors/${'x'.repeat(MAX_HELD_TOPIC_BYTES)}`,
      1,
      Buffer.alloc(2_000),
    )
    const long = filter(1_024, marker, longTopic, [7])
    expect(long.verdict).toMatchObject({ ok: false, reason: 'topic_too_long' })
    expect(long.maxHeld).toBeLessThanOrEqual(MAX_FIXED_HEADER_BYTES)
    // Announces 2,000 bytes, then a topic of 60,000.
    const lying = Buffer.concat([header(2_000, 0x30), Buffer.from([0xea, 0x60])])
    expect(filter(1_024, marker, lying, [1]).verdict).toMatchObject({
      ok: false,
      reason: 'malformed_length',
    })
  })
})

/**
 * A duplex that reads like a socket does for Aedes: a 'readable' listener that calls read(). The
 * guard must see every chunk that reader gets, and must not start a flow of its own.
 */
function socketLike() {
  const stream = new Duplex({
    read() {},
    write(_chunk, _encoding, done) {
      done()
    },
  })
  const consumed: Buffer[] = []
  stream.on('readable', () => {
    let chunk: Buffer | null = stream.read() as Buffer | null
    while (chunk !== null) {
      consumed.push(chunk)
      chunk = stream.read() as Buffer | null
    }
  })
  return { stream, consumed }
}

describe('guardPacketSize on a stream read the way Aedes reads it', () => {
  it('lets packets within the limit through to the reader untouched', async () => {
    const { stream, consumed } = socketLike()
    const refusals: PacketGuardRefusal[] = []
    const scanner = guardPacketSize(stream, 1_024, (r) => refusals.push(r))
    const bytes = Buffer.concat([publish('a/b', Buffer.from('1')), PINGREQ])
    stream.push(bytes.subarray(0, 4))
    stream.push(bytes.subarray(4))
    await new Promise((resolve) => setImmediate(resolve))
    expect(Buffer.concat(consumed)).toEqual(bytes)
    expect(scanner.packets()).toBe(2)
    expect(refusals).toEqual([])
    expect(stream.destroyed).toBe(false)
    stream.destroy()
  })

  it('hands the reader a placeholder instead of an oversize publish, and keeps the stream', async () => {
    const { stream, consumed } = socketLike()
    const marker = createPlaceholderMarker()
    const refusals: PacketGuardRefusal[] = []
    const scanner = guardPacketSize(stream, 1_024, (r) => refusals.push(r), { marker })
    const big = publishWith(0x32, 'a/b', 5, Buffer.alloc(50_000, 0x41))
    for (let at = 0; at < big.length; at += 4_096) stream.push(big.subarray(at, at + 4_096))
    stream.push(PINGREQ)
    await new Promise((resolve) => setImmediate(resolve))
    expect(Buffer.concat(consumed)).toEqual(
      Buffer.concat([expectedPlaceholder(0x32, 'a/b', 5, marker, big.length), PINGREQ]),
    )
    expect(refusals).toEqual([])
    expect(stream.destroyed).toBe(false)
    expect(scanner.discarded()).toEqual({ publishes: 1, bytes: big.length })
    // Nothing of the body ever sat in the stream's read buffer.
    expect(stream.readableLength).toBe(0)
    stream.destroy()
  })

  it('destroys the stream at the header of a packet over the limit', async () => {
    const { stream } = socketLike()
    const refusals: PacketGuardRefusal[] = []
    guardPacketSize(stream, 1_024, (r) => refusals.push(r))
    const closed = once(stream, 'close')
    stream.push(header(1024 * 1024))
    await closed
    expect(stream.destroyed).toBe(true)
    expect(refusals).toEqual([
      {
        reason: 'packet_too_large',
        announcedBytes: 1 + 3 + 1024 * 1024,
        maxPacketBytes: 1_024,
        bytesRead: 4,
      },
    ])
  })
})
