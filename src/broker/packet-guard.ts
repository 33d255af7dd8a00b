import type { Duplex } from 'node:stream'

/**
 * MQTT packet size limit, enforced on the bytes as they arrive (DESIGN §8).
 *
 * Aedes' parser (mqtt-packet) buffers a packet until all of it has arrived, so a client that
 * announces a 200 MiB PUBLISH makes the broker hold 200 MiB before anything can judge it. The
 * fixed header says the size up front: one byte of type and flags, then the remaining length,
 * a varint of 1 to 4 bytes (MQTT 3.1.1 §2.2.3). The scanner reads those headers as the bytes
 * flow past and skips over each body without keeping it; a packet that announces more than the
 * limit ends the connection as soon as its header has been seen.
 */

/** The largest remaining-length varint: 4 bytes, 268,435,455 ([MQTT-2.2.3]). */
const MAX_LENGTH_BYTES = 4
/** Type byte plus the longest varint: all the scanner ever holds of a header. */
export const MAX_FIXED_HEADER_BYTES = 1 + MAX_LENGTH_BYTES

export type ScanVerdict =
  | { ok: true }
  | {
      ok: false
      reason: 'packet_too_large' | 'malformed_length'
      /** Total size the packet announced (fixed header + remaining length); 0 if malformed. */
      announcedBytes: number
    }

export interface PacketSizeScanner {
  /** Feeds the next chunk of the connection's bytes; stops at the first bad packet. */
  push(chunk: Uint8Array): ScanVerdict
  /** Bytes of the connection seen so far. */
  bytesSeen(): number
  /** Complete fixed headers seen so far (one per packet). */
  packets(): number
  /**
   * Header bytes the scanner is holding now (a header split across chunks). Never more than
   * MAX_FIXED_HEADER_BYTES: bodies are skipped, never kept.
   */
  heldBytes(): number
}

/** Expecting the type-and-flags byte of the next packet. */
const TYPE = 0
/** Reading the remaining-length varint. */
const LENGTH = 1
/** Skipping the variable header and payload. */
const BODY = 2

/**
 * A scanner for one connection. Pure and incremental: any split of the same bytes into chunks
 * gives the same verdicts. `maxPacketBytes` bounds the whole packet, header included, as MQTT 5's
 * Maximum Packet Size does.
 */
export function createPacketSizeScanner(maxPacketBytes: number): PacketSizeScanner {
  let state: typeof TYPE | typeof LENGTH | typeof BODY = TYPE
  let lengthBytes = 0
  let remaining = 0
  let multiplier = 1
  let toSkip = 0
  let seen = 0
  let packets = 0
  let failed: ScanVerdict | null = null

  return {
    push(chunk) {
      if (failed) return failed
      const end = chunk.length
      let i = 0
      while (i < end) {
        if (state === BODY) {
          const step = Math.min(toSkip, end - i)
          i += step
          toSkip -= step
          if (toSkip === 0) state = TYPE
          continue
        }
        const byte = chunk[i] as number
        i++
        if (state === TYPE) {
          state = LENGTH
          lengthBytes = 0
          remaining = 0
          multiplier = 1
          continue
        }
        // LENGTH: 7 bits per byte, least significant first; the high bit says "more".
        remaining += (byte & 0x7f) * multiplier
        lengthBytes++
        if (byte & 0x80) {
          if (lengthBytes === MAX_LENGTH_BYTES) {
            // A fifth length byte is a protocol violation ([MQTT-2.2.3]): nothing to wait for.
            seen += i
            failed = { ok: false, reason: 'malformed_length', announcedBytes: 0 }
            return failed
          }
          multiplier *= 128
          continue
        }
        packets++
        const total = 1 + lengthBytes + remaining
        if (total > maxPacketBytes) {
          seen += i
          failed = { ok: false, reason: 'packet_too_large', announcedBytes: total }
          return failed
        }
        toSkip = remaining
        state = toSkip === 0 ? TYPE : BODY
      }
      seen += end
      return { ok: true }
    },
    bytesSeen: () => seen,
    packets: () => packets,
    heldBytes: () => (state === LENGTH ? 1 + lengthBytes : 0),
  }
}

export interface PacketGuardRefusal {
  reason: 'packet_too_large' | 'malformed_length'
  announcedBytes: number
  maxPacketBytes: number
  /** Bytes of the connection the gateway had read when it refused: the header, not the body. */
  bytesRead: number
}

/**
 * Watches the bytes Aedes reads from `stream` and destroys the stream at the first packet that
 * announces more than `maxPacketBytes`.
 *
 * It observes rather than wraps: Aedes reads the stream with `'readable'` and `read()`, and Node
 * emits `'data'` from inside each `read()` (with a `'readable'` listener present the stream stays
 * paused, so this listener does not start a flow of its own). Every chunk is therefore scanned
 * just before Aedes' parser gets it, and the stream Aedes holds as `client.conn` stays the real
 * socket: its TLS peer certificate, remote address and write back-pressure (which the drain
 * timeout relies on) are the socket's own, with no second buffer in between. Call it after
 * `aedes.handle(stream)`, so Aedes' `'readable'` listener is in place first.
 */
export function guardPacketSize(
  stream: Duplex,
  maxPacketBytes: number,
  onRefused: (refusal: PacketGuardRefusal) => void,
): PacketSizeScanner {
  const scanner = createPacketSizeScanner(maxPacketBytes)
  const onData = (chunk: Buffer | string) => {
    const verdict = scanner.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)
    if (verdict.ok) return
    stream.off('data', onData)
    // The rest of the packet is never read: the socket goes, and the client sees it close.
    stream.destroy()
    onRefused({
      reason: verdict.reason,
      announcedBytes: verdict.announcedBytes,
      maxPacketBytes,
      bytesRead: scanner.bytesSeen(),
    })
  }
  stream.on('data', onData)
  return scanner
}
