import type { AedesOptions } from 'aedes'
import { isGatewayTopic } from '../contract/topics.ts'
import { deadLetterDeviceId, type SuppressedPublishes } from '../ingest/suppressed-publishes.ts'

type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

/**
 * Keeps clients off the topics whose retained state the gateway owns (alerts, device status,
 * dead letters): a device's last will on `devices/{id}/status` would otherwise replace the
 * gateway's status message with the device's own payload. Authenticated clients meet the ACL
 * first (which refuses these topics too); this guard is what holds for anonymous ones and for
 * admins.
 *
 * A refused publish is acknowledged, never published, forwarded or retained, and dead-lettered as
 * `not_authorized` (SuppressedPublishes): the client keeps its connection. MQTT 3.1.1 has no
 * negative PUBACK, and refusing it in Aedes' callback would close the connection, which the
 * client answers by reconnecting and sending the same message again. A refused will is dropped
 * the same way.
 */
export function guardGatewayTopics(
  next: AuthorizePublish,
  suppressed: SuppressedPublishes,
): AuthorizePublish {
  return (client, packet, callback) => {
    if (client !== null && !suppressed.isRefused(packet) && isGatewayTopic(packet.topic)) {
      suppressed.refuse(packet, {
        deviceId: deadLetterDeviceId(undefined, packet.topic, client.id),
        clientId: client.id,
        reason: 'not_authorized',
        detail: `only the gateway publishes on ${packet.topic}`,
      })
    }
    next(client, packet, callback)
  }
}
