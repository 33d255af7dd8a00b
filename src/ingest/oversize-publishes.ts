import type { AedesOptions, Client } from 'aedes'
import { placeholderAnnouncedBytes } from '../broker/packet-guard.ts'
import { deadLetterDeviceId, type SuppressedPublishes } from './suppressed-publishes.ts'

type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

/**
 * The first link of the authorizePublish chain: recognises the placeholder the packet guard put
 * where a PUBLISH over MAX_PACKET_BYTES was (src/broker/packet-guard.ts), and refuses it as
 * `payload_too_large` with the size it announced. The payload of the dead letter is empty: the
 * body was discarded unread. The placeholder then goes down the chain like any refused publish
 * (rate limit token, then acknowledged by SuppressedPublishes.authorizePublish).
 */
export function createOversizePublishes(
  deps: {
    suppressed: SuppressedPublishes
    /** The authenticated device or app of a client (auth's principalOf), for the dead letter. */
    principalIdOf?: (client: Client) => string | undefined
  },
  options: { marker: Buffer; maxPacketBytes: number },
): { authorizePublish(next: AuthorizePublish): AuthorizePublish } {
  return {
    authorizePublish(next) {
      return (client, packet, callback) => {
        if (client !== null) {
          const announcedBytes = placeholderAnnouncedBytes(options.marker, packet.payload)
          if (announcedBytes !== null) {
            packet.payload = Buffer.alloc(0)
            deps.suppressed.refuse(packet, {
              deviceId: deadLetterDeviceId(deps.principalIdOf?.(client), packet.topic, client.id),
              clientId: client.id,
              reason: 'payload_too_large',
              detail: `MQTT packet of ${announcedBytes} bytes announced, over MAX_PACKET_BYTES (${options.maxPacketBytes}): discarded unread`,
            })
          }
        }
        next(client, packet, callback)
      }
    },
  }
}
