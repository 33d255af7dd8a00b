import type { AedesOptions } from 'aedes'
import type { EventBus } from '../bus/event-bus.ts'
import type { ReadingRejected } from '../bus/events.ts'
import { isIdentifier } from '../contract/identifiers.ts'
import { SENSOR_ROOT, UNKNOWN_DEVICE_ID } from '../contract/topics.ts'
import type { RejectReason } from '../contract/types.ts'
import { toDeadLetter } from './parse-publish.ts'

type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>
type PublishPacket = Parameters<AuthorizePublish>[1]

/**
 * Where a refused publish goes once it is acknowledged: a topic no subscriber can receive
 * (`forwards` says no to it, on every instance) and that nothing of the gateway listens to. Aedes
 * publishes whatever its authorizePublish lets through (MQTT 3.1.1 has no negative PUBACK, and an
 * error closes the connection): keeping the original topic would put the message on the shared
 * emitter, where another instance's cluster sync reads `alerts/#` and `devices/+/status`.
 */
export const SUPPRESSED_TOPIC = '$gateway/suppressed'

export interface PublishRejection {
  /** Whose dead-letter topic it goes to: the publishing device (`deadLetterDeviceId`). */
  deviceId: string
  clientId: string
  reason: RejectReason
  detail: string
}

/**
 * Publishes that are acknowledged but go nowhere (README "Security" and "Limits"): refused by the
 * ACL, over MAX_PACKET_BYTES, and (once rate-limit.ts uses it) over the publish rate.
 *
 * A refusal happens in two steps so that a refused publish still takes its rate-limit token:
 * `refuse` (anywhere in the authorizePublish chain) takes the message out of circulation at once
 * (not retained, topic diverted, never forwarded) and records its dead letter; the packet then
 * goes on down the chain, through the rate limiter, to `authorizePublish`, which sits just before
 * ingest, emits the dead letter and acknowledges. Links between skip a packet `isRefused` says is
 * refused. A refused publish that is over the rate gets the rate limiter's answer instead (counted
 * as rate-limited, no second dead letter): a client that keeps doing it meets the rate limit,
 * and RATE_DISCONNECT_AFTER, rather than a reconnect loop.
 */
export interface SuppressedPublishes {
  /** Takes the publish out of circulation and records its dead letter (emitted later). */
  refuse(packet: PublishPacket, rejection: PublishRejection): void
  isRefused(packet: object): boolean
  /** The chain's last link before ingest: a refused publish is dead-lettered and acknowledged. */
  authorizePublish(next: AuthorizePublish): AuthorizePublish
  /** For authorizeForward: false for a suppressed publish, which no one receives. */
  forwards(packet: { topic: string }): boolean
}

export function createSuppressedPublishes(deps: {
  bus: EventBus
  now?: () => number
}): SuppressedPublishes {
  const now = deps.now ?? Date.now
  // Keyed by the packet object: Aedes passes the same one through every link of the chain.
  const refused = new WeakMap<object, ReadingRejected>()

  return {
    refuse(packet, rejection) {
      const payload =
        typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
      refused.set(packet, {
        deviceId: rejection.deviceId,
        clientId: rejection.clientId,
        deadLetter: toDeadLetter(
          packet.topic,
          payload,
          { reason: rejection.reason, detail: rejection.detail },
          now(),
        ),
      })
      // A refused retained publish must not replace (or, empty, delete) the retained message.
      packet.retain = false
      packet.topic = SUPPRESSED_TOPIC
    },

    isRefused: (packet) => refused.has(packet),

    authorizePublish(next) {
      return (client, packet, callback) => {
        const rejection = refused.get(packet)
        if (rejection === undefined) return next(client, packet, callback)
        refused.delete(packet)
        deps.bus.emit('reading.rejected', rejection)
        // [MQTT-3.3.5-2] A publish the server does not authorise gets either the normal
        // acknowledgement for its QoS or a closed connection: acknowledged (PUBACK, PUBREC), the
        // client keeps its connection and its later readings.
        callback(null)
      }
    },

    forwards: (packet) => packet.topic !== SUPPRESSED_TOPIC,
  }
}

/**
 * The dead-letter topic's device for a refused publish: the authenticated device or app that sent
 * it (so a device reads why on its own `gateway/deadletter/{id}`, never on another's), else the
 * device level of a sensor topic, else the client id when it is a valid identifier (anonymous
 * devices connect with their device id), else `_unknown`.
 */
export function deadLetterDeviceId(
  principalId: string | undefined,
  topic: string,
  clientId?: string,
): string {
  if (principalId !== undefined) return principalId
  if (topic.startsWith(`${SENSOR_ROOT}/`)) {
    const start = SENSOR_ROOT.length + 1
    const slash = topic.indexOf('/', start)
    const level = slash === -1 ? topic.slice(start) : topic.slice(start, slash)
    if (isIdentifier(level)) return level
  }
  return isIdentifier(clientId) ? clientId : UNKNOWN_DEVICE_ID
}
