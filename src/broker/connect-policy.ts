import type { Duplex } from 'node:stream'
import type { AedesOptions } from 'aedes'
import { logSafe } from '../security/log-safe.ts'
import type { Logger } from '../telemetry/logger.ts'
import { checkTopicName } from './topic-policy.ts'

type PreConnect = NonNullable<AedesOptions['preConnect']>
type ConnectPacket = Parameters<PreConnect>[1]

/**
 * The CONNECT rules of MQTT 3.1.1 §3.1 that Aedes 1.2 and mqtt-packet leave to the broker, and
 * the keepalive limit (README "Limits", "MQTT 3.1.1 conformance").
 *
 * Already enforced below us, so not repeated here: a protocol name other than MQTT/MQIsdp and the
 * reserved flag bit (mqtt-packet closes), will QoS/retain set without the will flag (mqtt-packet
 * closes), protocol level 5 (Aedes answers CONNACK 1), a second CONNECT (Aedes closes). A level
 * mqtt-packet does not know at all is answered by `connect-level-guard.ts`.
 */

/** CONNACK return codes this module answers with (MQTT 3.1.1 §3.2.2.3). */
export const CONNACK_UNACCEPTABLE_PROTOCOL = 1
export const CONNACK_IDENTIFIER_REJECTED = 2

export type ConnectVerdict =
  | { ok: true }
  | {
      ok: false
      spec: string
      reason: string
      /** Answer this CONNACK return code, then close; null: close without a CONNACK [MQTT-3.1.4-1]. */
      returnCode: typeof CONNACK_UNACCEPTABLE_PROTOCOL | typeof CONNACK_IDENTIFIER_REJECTED | null
    }

/** The fields of a parsed CONNECT the rules read (mqtt-packet's packet, any version). */
export type ConnectFields = Pick<
  ConnectPacket,
  'protocolId' | 'protocolVersion' | 'clientId' | 'clean' | 'username' | 'password' | 'will'
>

const ACCEPT: ConnectVerdict = { ok: true }
const NUL = '\u0000'

function refuse(
  spec: string,
  reason: string,
  returnCode: 1 | 2 | null,
): Extract<ConnectVerdict, { ok: false }> {
  return { ok: false, spec, reason, returnCode }
}

/** Judges one parsed CONNECT. Pure: the same packet always gets the same verdict. */
export function checkConnect(packet: ConnectFields): ConnectVerdict {
  const level = packet.protocolVersion
  // MQTT 5 is not served by Aedes 1.2: it answers CONNACK 1 itself.
  if (level !== 3 && level !== 4) return ACCEPT
  // "MQIsdp" is MQTT 3.1's name (level 3), "MQTT" 3.1.1's (level 4): another pairing is a level
  // this name does not have. Mosquitto answers CONNACK 1 here too.
  if ((packet.protocolId === 'MQTT') !== (level === 4)) {
    return refuse(
      'MQTT-3.1.2-2',
      `protocol level ${level} with protocol name ${packet.protocolId}`,
      CONNACK_UNACCEPTABLE_PROTOCOL,
    )
  }
  if (packet.will) {
    // mqtt-packet reads the two will QoS bits as they are: 3 arrives as qos 3.
    if ((packet.will.qos as number) > 2) {
      return refuse('MQTT-3.1.2-14', 'will QoS 3', null) // [MQTT-3.1.2-14]
    }
    const problem = checkTopicName(packet.will.topic) // [MQTT-3.1.3-10], §4.7
    if (problem) return refuse(problem.spec, `will topic: ${problem.reason}`, null)
  }
  if (packet.password !== undefined && packet.username === undefined) {
    return refuse('MQTT-3.1.2-22', 'password flag set without the user name flag', null) // [MQTT-3.1.2-22]
  }
  if (packet.clientId.includes(NUL) || packet.username?.includes(NUL)) {
    return refuse('MQTT-1.5.3-2', 'client id or user name contains U+0000', null) // [MQTT-1.5.3-2]
  }
  if (packet.clientId.length === 0) {
    // MQTT 3.1 has no zero-length client id at all (its §3.1: 1 to 23 characters).
    if (level === 3) {
      return refuse('MQTT-3.1', 'zero-length client id (MQTT 3.1)', CONNACK_IDENTIFIER_REJECTED)
    }
    // A server-assigned id names no session to resume: clean session 0 asks for the impossible.
    if (packet.clean !== true) {
      return refuse(
        'MQTT-3.1.3-8',
        'zero-length client id with clean session 0',
        CONNACK_IDENTIFIER_REJECTED, // [MQTT-3.1.3-8]
      )
    }
  }
  return ACCEPT
}

/**
 * The keepalive the broker holds a client to: what it asked for, at most `limitSec` (0: no
 * limit). 0 stays 0: the client asked for no keepalive and TCP keepalive watches its socket.
 */
export function effectiveKeepaliveSec(requestedSec: number, limitSec: number): number {
  return limitSec > 0 && requestedSec > limitSec ? limitSec : requestedSec
}

/** A CONNACK with session present 0 and the given return code (MQTT 3.1.1 §3.2). */
export function connackBytes(returnCode: number): Buffer {
  return Buffer.from([0x20, 0x02, 0x00, returnCode])
}

export interface ConnectPolicyOptions {
  /** KEEPALIVE_LIMIT: longest keepalive the broker holds a client to; 0: none. */
  keepaliveLimitSec: number
}

export interface ConnectPolicy {
  /** Aedes' preConnect hook: runs on each CONNECT before Aedes reads it. */
  preConnect: PreConnect
}

/**
 * Aedes' preConnect hook: refuses a CONNECT that breaks a rule of `checkConnect` and lowers a
 * keepalive over the limit.
 *
 * A refusal with a return code writes the CONNACK itself and then fails the hook, which makes
 * Aedes close the connection without touching any session state ([MQTT-3.2.2-5]; Aedes'
 * authenticate hook can only answer codes 2 to 5, and authenticating is the security module's
 * job). The keepalive is lowered on the packet Aedes goes on to read: its `setKeepAlive` then
 * arms its timer for 1.5 times the limit ([MQTT-3.1.2-24]), and the spec lets a server close a
 * client it finds inactive at any time (§3.1.2.10). Aedes' own `keepaliveLimit` would instead
 * answer CONNACK 6, a code MQTT 3.1.1 reserves, to every client asking for more, or for none.
 */
export function createConnectPolicy(
  deps: {
    log: Logger
    /** Called once per refused CONNECT (the caller rate-limits its warning). */
    onRefused?: (verdict: Extract<ConnectVerdict, { ok: false }>, clientId: string) => void
  },
  options: ConnectPolicyOptions,
): ConnectPolicy {
  const log = deps.log.child({ module: 'connect-policy' })
  return {
    preConnect(client, packet, callback) {
      const verdict = checkConnect(packet)
      if (!verdict.ok) {
        // The client id is the sender's, up to 64 KB: logged cut to 128 characters with its length.
        deps.onRefused?.(verdict, logSafe(packet.clientId) ?? '')
        const err = new Error(`CONNECT refused: ${verdict.reason} [${verdict.spec}]`)
        if (verdict.returnCode === null) return callback(err, false)
        // The hook's error closes the connection: only once the CONNACK is written.
        return writeThen(client.conn, connackBytes(verdict.returnCode), () => callback(err, false))
      }
      const requested = packet.keepalive ?? 0
      const applied = effectiveKeepaliveSec(requested, options.keepaliveLimitSec)
      if (applied !== requested) {
        packet.keepalive = applied
        log.debug(
          { clientId: packet.clientId, requestedSec: requested, appliedSec: applied },
          'keepalive over KEEPALIVE_LIMIT: the broker holds the client to the limit',
        )
      }
      callback(null, true)
    },
  }
}

/** Writes bytes and calls `then` once they are handed to the OS (or the stream failed). */
function writeThen(stream: Duplex, bytes: Buffer, then: () => void): void {
  if (stream.destroyed || !stream.writable) then()
  else stream.write(bytes, () => then())
}
