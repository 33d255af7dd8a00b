import type { Duplex } from 'node:stream'
import { CONNACK_UNACCEPTABLE_PROTOCOL, connackBytes } from './connect-policy.ts'

/**
 * CONNACK 1 for a protocol level nobody here speaks ([MQTT-3.1.2-2]).
 *
 * mqtt-packet knows levels 3, 4 and 5 only: for any other level its parser fails on the CONNECT,
 * and Aedes closes the connection without an answer, so the client cannot tell "wrong protocol
 * version" from a network fault. MQTT 3.1.1 says the server answers CONNACK 1 and closes. The
 * parser fails before any hook of Aedes runs, so this reads the first bytes of the connection
 * as they arrive (the same way as packet-guard.ts, before Aedes' parser gets them) and writes the
 * CONNACK as soon as it sees such a level. The parser's failure then closes the connection; the
 * write has already reached the socket (Node hands a write on an idle socket to the OS at once).
 */

/** What the first CONNECT's first bytes say; `unknown`: not enough bytes yet. */
export type LevelVerdict =
  | { kind: 'unknown' }
  | { kind: 'supported' }
  /** Not a CONNECT, or a protocol name mqtt-packet rejects: the parser closes, no answer due. */
  | { kind: 'not-ours' }
  | { kind: 'unsupported'; level: number }

const CONNECT_TYPE = 0x10
/** Fixed header (at most 5 bytes), name length (2), "MQIsdp" (6), level (1). */
const MAX_PREFIX_BYTES = 14
const NAMES = new Set(['MQTT', 'MQIsdp'])
/** The levels mqtt-packet parses: 3.1, 3.1.1 and 5 (Aedes answers CONNACK 1 to 5 itself). */
const KNOWN_LEVELS = new Set([3, 4, 5])
/** mqtt-packet's bridge-mode bit (Mosquitto bridges set it), stripped before the level is read. */
const BRIDGE_BIT = 0x80

/** Reads the protocol level from the start of a connection's bytes. Pure. */
export function readConnectLevel(prefix: Uint8Array): LevelVerdict {
  if (prefix.length === 0) return { kind: 'unknown' }
  if (prefix[0] !== CONNECT_TYPE) return { kind: 'not-ours' }
  // Remaining length: 1 to 4 bytes, the high bit says "more" (§2.2.3).
  let i = 1
  for (;;) {
    if (i >= prefix.length) return { kind: 'unknown' }
    if (i > 4) return { kind: 'not-ours' }
    const byte = prefix[i] as number
    i++
    if ((byte & 0x80) === 0) break
  }
  if (i + 2 > prefix.length) return { kind: 'unknown' }
  const nameLength = ((prefix[i] as number) << 8) | (prefix[i + 1] as number)
  i += 2
  if (nameLength !== 4 && nameLength !== 6) return { kind: 'not-ours' }
  if (i + nameLength + 1 > prefix.length) return { kind: 'unknown' }
  const name = Buffer.from(prefix.subarray(i, i + nameLength)).toString('latin1')
  if (!NAMES.has(name)) return { kind: 'not-ours' }
  const level = (prefix[i + nameLength] as number) & ~BRIDGE_BIT
  return KNOWN_LEVELS.has(level) ? { kind: 'supported' } : { kind: 'unsupported', level }
}

/**
 * Watches the first bytes Aedes reads from `stream` and answers CONNACK 1 to a CONNECT whose
 * level mqtt-packet cannot parse. Call it after `aedes.handle(stream)` (see packet-guard.ts).
 * Detaches itself after at most MAX_PREFIX_BYTES: later packets cost nothing.
 */
export function guardConnectLevel(stream: Duplex, onUnsupported: (level: number) => void): void {
  let prefix = Buffer.alloc(0)
  const onData = (chunk: Buffer | string) => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    prefix = Buffer.concat([prefix, bytes.subarray(0, MAX_PREFIX_BYTES - prefix.length)])
    const verdict = readConnectLevel(prefix)
    if (verdict.kind === 'unknown' && prefix.length < MAX_PREFIX_BYTES) return
    stream.off('data', onData)
    if (verdict.kind !== 'unsupported') return
    onUnsupported(verdict.level)
    // [MQTT-3.1.2-2] Aedes' parser fails on this same chunk, right after, and closes.
    if (stream.writable) stream.write(connackBytes(CONNACK_UNACCEPTABLE_PROTOCOL))
  }
  stream.on('data', onData)
}
