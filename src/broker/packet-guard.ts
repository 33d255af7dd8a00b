import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'

/**
 * MQTT packet size limit, enforced on the bytes as they arrive (DESIGN §8).
 *
 * Aedes' parser (mqtt-packet) buffers a packet until all of it has arrived, so a client that
 * announces a 200 MiB PUBLISH makes the broker hold 200 MiB before anything can judge it. The
 * fixed header says the size up front: one byte of type and flags, then the remaining length,
 * a varint of 1 to 4 bytes (MQTT 3.1.1 §2.2.3). The scanner reads those headers as the bytes
 * flow past and passes each body through without keeping it.
 *
 * A PUBLISH over the limit is cut out of the stream: the scanner keeps its fixed header, topic
 * and packet id (a bounded few bytes), discards the rest as it arrives, and once the packet's last
 * byte has gone by, hands the parser a small placeholder in its place: the same flags, topic and
 * packet id, and as payload a marker (random per process, never sent to anyone) followed by the
 * announced size. Aedes handles the placeholder as the publish it stands for (PUBACK, or PUBREC
 * then PUBCOMP, in order with the client's other packets), and the authorizePublish chain knows it
 * by its marker (src/ingest/oversize-publishes.ts) and dead-letters it instead of publishing it.
 * The client keeps its connection: a message it would otherwise resend after every reconnect,
 * forever, costs it one acknowledged dead letter.
 *
 * Any other packet over the limit (a giant CONNECT or SUBSCRIBE: no device sends one by mistake),
 * a PUBLISH whose topic alone is over MAX_HELD_TOPIC_BYTES, or a malformed length ends the
 * connection as soon as its header has been seen.
 */

/** The largest remaining-length varint: 4 bytes, 268,435,455 ([MQTT-2.2.3]). */
const MAX_LENGTH_BYTES = 4
/** Type byte plus the longest varint: all the scanner ever holds of a header. */
export const MAX_FIXED_HEADER_BYTES = 1 + MAX_LENGTH_BYTES
/**
 * The longest topic of an oversize PUBLISH the scanner keeps to answer it (device topics are
 * `sensors/{id}/{metric}`, identifiers at most 64 characters); a longer one closes the connection.
 */
export const MAX_HELD_TOPIC_BYTES = 1_024
/** Bytes of the marker that ends a placeholder's payload... before the announced size. */
const MARKER_BYTES = 16
/** Marker plus the announced size (uint32, big-endian). */
const PLACEHOLDER_PAYLOAD_BYTES = MARKER_BYTES + 4
const PUBLISH = 3

export type RefusalReason = 'packet_too_large' | 'malformed_length' | 'topic_too_long'

export type ScanVerdict =
  | { ok: true }
  | {
      ok: false
      reason: RefusalReason
      /** Total size the packet announced (fixed header + remaining length); 0 if malformed. */
      announcedBytes: number
    }

/** One oversize PUBLISH that was cut out of the stream and replaced by a placeholder. */
export interface DiscardedPublish {
  announcedBytes: number
  qos: number
}

export interface PacketSizeScanner {
  /**
   * Feeds the next chunk of the connection's bytes; stops at the first packet it refuses. What
   * the reader should get of it is passed to `forward`, in order: slices of the chunk (no copy),
   * a header that was split across chunks, placeholders for discarded publishes.
   */
  push(chunk: Uint8Array, forward?: (bytes: Buffer) => void): ScanVerdict
  /** Bytes of the connection seen so far. */
  bytesSeen(): number
  /** Complete fixed headers seen so far (one per packet). */
  packets(): number
  /** Oversize publishes cut out so far, and the bytes of them that were discarded. */
  discarded(): { publishes: number; bytes: number }
  /**
   * Bytes the scanner is holding now: a header split across chunks (at most
   * MAX_FIXED_HEADER_BYTES), or the topic and packet id of an oversize PUBLISH. Bodies are
   * skipped, never kept.
   */
  heldBytes(): number
  /** The most `heldBytes` has been since the scanner was created. */
  peakHeldBytes(): number
}

export interface ScannerOptions {
  /**
   * The placeholder marker (`createPlaceholderMarker`). Without one an oversize PUBLISH is refused
   * like any other oversize packet: a broker whose publish chain does not recognise placeholders
   * would otherwise publish them.
   */
  marker?: Buffer
  onDiscarded?: (publish: DiscardedPublish) => void
}

/** Expecting the type-and-flags byte of the next packet. */
const TYPE = 0
/** Reading the remaining-length varint. */
const LENGTH = 1
/** Passing the variable header and payload through. */
const BODY = 2
/** Of an oversize PUBLISH: the topic's 2-byte length. */
const TOPIC_LENGTH = 3
/** ... its topic, kept. */
const TOPIC = 4
/** ... its packet id (QoS 1 and 2), kept. */
const PACKET_ID = 5
/** ... the rest, discarded. */
const DISCARD = 6
type State =
  | typeof TYPE
  | typeof LENGTH
  | typeof BODY
  | typeof TOPIC_LENGTH
  | typeof TOPIC
  | typeof PACKET_ID
  | typeof DISCARD

/** A random marker for one process's placeholders: a client cannot forge one it never sees. */
export function createPlaceholderMarker(): Buffer {
  return randomBytes(MARKER_BYTES)
}

/**
 * The size an oversize publish announced, if `payload` is a placeholder carrying `marker`; null
 * for every real publish.
 */
export function placeholderAnnouncedBytes(marker: Buffer, payload: unknown): number | null {
  if (!Buffer.isBuffer(payload) || payload.length !== PLACEHOLDER_PAYLOAD_BYTES) return null
  if (!marker.equals(payload.subarray(0, MARKER_BYTES))) return null
  return payload.readUInt32BE(MARKER_BYTES)
}

/**
 * A scanner for one connection. Pure and incremental: any split of the same bytes into chunks
 * gives the same verdicts and forwards the same bytes. `maxPacketBytes` bounds the whole packet,
 * header included, as MQTT 5's Maximum Packet Size does.
 */
export function createPacketSizeScanner(
  maxPacketBytes: number,
  options: ScannerOptions = {},
): PacketSizeScanner {
  const { marker } = options
  let state: State = TYPE
  let typeByte = 0
  let lengthBytes = 0
  let remaining = 0
  let multiplier = 1
  let toSkip = 0
  let seen = 0
  let packets = 0
  let failed: ScanVerdict | null = null
  // A fixed header split across chunks: forwarded once it is known to be within the limit.
  const header = Buffer.alloc(MAX_FIXED_HEADER_BYTES)
  let headerHeld = 0
  // The oversize PUBLISH being discarded.
  let announced = 0
  let topicLength = 0
  let topic: Buffer | null = null
  let topicHeld = 0
  let packetId = 0
  let idBytes = 0
  const discarded = { publishes: 0, bytes: 0 }
  let peakHeld = 0

  const placeholder = (): Buffer => {
    const qos = (typeByte >> 1) & 3
    const body = 2 + topicLength + (qos > 0 ? 2 : 0) + PLACEHOLDER_PAYLOAD_BYTES
    const out = Buffer.alloc(1 + varintLength(body) + body)
    let at = 0
    out[at++] = typeByte
    let rest = body
    do {
      out[at++] = (rest % 128) | (rest >= 128 ? 0x80 : 0)
      rest = Math.floor(rest / 128)
    } while (rest > 0)
    at = out.writeUInt16BE(topicLength, at)
    at += (topic as Buffer).copy(out, at)
    if (qos > 0) at = out.writeUInt16BE(packetId, at)
    at += (marker as Buffer).copy(out, at)
    out.writeUInt32BE(announced, at)
    discarded.publishes++
    discarded.bytes += announced
    options.onDiscarded?.({ announcedBytes: announced, qos })
    topic = null
    return out
  }

  const fail = (reason: RefusalReason, announcedBytes: number, at: number): ScanVerdict => {
    seen += at
    failed = { ok: false, reason, announcedBytes }
    return failed
  }

  return {
    push(chunk, forward) {
      if (failed) return failed
      const end = chunk.length
      let i = 0
      // Bytes [runStart, i) of this chunk are to be forwarded; a header in progress starts at
      // headerStart (0 when it began in an earlier chunk).
      let runStart = 0
      let headerStart = 0
      const flush = (to: number) => {
        if (forward && to > runStart) {
          forward(
            runStart === 0 && to === end && Buffer.isBuffer(chunk)
              ? chunk
              : Buffer.from(chunk.buffer, chunk.byteOffset + runStart, to - runStart),
          )
        }
        runStart = to
      }
      while (i < end) {
        if (state === BODY) {
          const step = Math.min(toSkip, end - i)
          i += step
          toSkip -= step
          if (toSkip === 0) state = TYPE
          continue
        }
        if (state === DISCARD) {
          const step = Math.min(toSkip, end - i)
          i += step
          toSkip -= step
          if (toSkip === 0) {
            forward?.(placeholder())
            runStart = i
            state = TYPE
          }
          continue
        }
        const byte = chunk[i] as number
        i++
        if (state === TYPE) {
          headerStart = i - 1
          typeByte = byte
          state = LENGTH
          lengthBytes = 0
          remaining = 0
          multiplier = 1
          continue
        }
        if (state === LENGTH) {
          // 7 bits per byte, least significant first; the high bit says "more".
          remaining += (byte & 0x7f) * multiplier
          lengthBytes++
          if (byte & 0x80) {
            // A fifth length byte is a protocol violation ([MQTT-2.2.3]): nothing to wait for.
            if (lengthBytes === MAX_LENGTH_BYTES) return fail('malformed_length', 0, i)
            multiplier *= 128
            continue
          }
          packets++
          const total = 1 + lengthBytes + remaining
          if (total <= maxPacketBytes) {
            // Within the limit: a header begun in an earlier chunk goes first, then this chunk.
            if (headerHeld > 0) {
              forward?.(Buffer.from(header.subarray(0, headerHeld)))
              headerHeld = 0
            }
            toSkip = remaining
            state = toSkip === 0 ? TYPE : BODY
            continue
          }
          if (typeByte >> 4 !== PUBLISH || marker === undefined) {
            return fail('packet_too_large', total, i)
          }
          // An oversize PUBLISH: its header is dropped with the rest of it.
          flush(headerStart)
          headerHeld = 0
          announced = total
          toSkip = remaining
          topicLength = 0
          idBytes = 0
          packetId = 0
          state = TOPIC_LENGTH
          continue
        }
        // The variable header of an oversize PUBLISH ([MQTT-3.3.2]): topic, then packet id.
        toSkip--
        if (state === TOPIC_LENGTH) {
          topicLength = topicLength * 256 + byte
          if (++idBytes < 2) continue
          idBytes = 0
          const qos = (typeByte >> 1) & 3
          if (topicLength + (qos > 0 ? 2 : 0) > toSkip) return fail('malformed_length', 0, i)
          if (topicLength > MAX_HELD_TOPIC_BYTES) return fail('topic_too_long', announced, i)
          topic = Buffer.alloc(topicLength)
          topicHeld = 0
          // Type byte, topic, packet id: what is kept of the packet while its body is discarded.
          peakHeld = Math.max(peakHeld, topicLength + 3)
          state = topicLength > 0 ? TOPIC : qos > 0 ? PACKET_ID : DISCARD
        } else if (state === TOPIC) {
          ;(topic as Buffer)[topicHeld++] = byte
          if (topicHeld === topicLength) state = (typeByte >> 1) & 3 ? PACKET_ID : DISCARD
        } else {
          packetId = packetId * 256 + byte
          if (++idBytes === 2) state = DISCARD
        }
        if (state === DISCARD && toSkip === 0) {
          forward?.(placeholder())
          runStart = i
          state = TYPE
        }
      }
      seen += end
      if (state === LENGTH) {
        // A header split across chunks: held until its length says whether it is forwarded.
        flush(headerStart)
        const part = end - headerStart
        header.set(chunk.subarray(headerStart, end), headerHeld)
        headerHeld += part
        peakHeld = Math.max(peakHeld, headerHeld)
        runStart = end
      } else if (state === BODY || state === TYPE) {
        flush(end)
      }
      return { ok: true }
    },
    bytesSeen: () => seen,
    packets: () => packets,
    discarded: () => ({ ...discarded }),
    heldBytes: () => headerHeld + (topic === null ? 0 : topic.length + 3),
    peakHeldBytes: () => peakHeld,
  }
}

function varintLength(value: number): number {
  return value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4
}

export interface PacketGuardRefusal {
  reason: RefusalReason
  announcedBytes: number
  maxPacketBytes: number
  /** Bytes of the connection the gateway had read when it refused: the header, not the body. */
  bytesRead: number
}

/**
 * Puts the scanner between `stream` and whoever reads it (Aedes): every chunk the stream receives
 * is scanned before it enters the stream's read buffer, and only what the scanner forwards does.
 * A refused packet destroys the stream (the client sees it close) and calls `onRefused`.
 *
 * It filters the stream in place rather than wrapping it: the stream's own `push`, through which
 * the socket (net and TLS: Node's onStreamRead) and ws' createWebSocketStream hand over what they
 * receive, is replaced for this one stream. The stream Aedes holds as `client.conn` stays the real
 * socket: its TLS peer certificate (certificate authentication), remote address and write side,
 * with its back-pressure (which the drain timeout relies on), are the socket's own, and Aedes
 * writes its packets straight to it. While a discarded body arrives nothing enters the read
 * buffer and `push` answers "more", so the socket goes on reading and dropping it. Call it before
 * `aedes.handle(stream)`, so that no byte reaches Aedes' parser unscanned.
 */
export function guardPacketSize(
  stream: Duplex,
  maxPacketBytes: number,
  onRefused: (refusal: PacketGuardRefusal) => void,
  options: ScannerOptions = {},
): PacketSizeScanner {
  const scanner = createPacketSizeScanner(maxPacketBytes, options)
  const push = stream.push.bind(stream)
  let more = true
  const forward = (bytes: Buffer) => {
    more = push(bytes)
  }
  const scan = (chunk: Buffer): boolean => {
    more = true
    const verdict = scanner.push(chunk, forward)
    if (verdict.ok) return more
    stream.push = push
    // The rest of the packet is never read: the socket goes, and the client sees it close.
    stream.destroy()
    onRefused({
      reason: verdict.reason,
      announcedBytes: verdict.announcedBytes,
      maxPacketBytes,
      bytesRead: scanner.bytesSeen(),
    })
    return false
  }
  // Bytes that arrived before the guard (none for a fresh socket) are scanned first.
  const early = stream.readableLength > 0 ? (stream.read() as Buffer | string | null) : null
  stream.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (chunk === null || chunk === undefined) return push(chunk)
    if (typeof chunk === 'string') return scan(Buffer.from(chunk, encoding))
    return scan(chunk as Buffer)
  }
  if (early !== null) stream.push(early)
  return scanner
}
