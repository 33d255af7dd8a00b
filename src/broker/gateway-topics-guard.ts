import type { AedesOptions } from 'aedes'
import { isGatewayTopic } from '../contract/topics.ts'

type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

/**
 * Keeps clients off the topics whose retained state the gateway owns (alerts, device status,
 * dead letters): a device's last will on `devices/{id}/status` would otherwise replace the
 * gateway's status message with the device's own payload. Aedes drops a refused will silently;
 * a refused publish closes that client's connection (MQTT 3.1.1 has no negative PUBACK).
 */
export function guardGatewayTopics(next: AuthorizePublish): AuthorizePublish {
  return (client, packet, callback) => {
    if (client !== null && isGatewayTopic(packet.topic)) {
      return callback(new Error(`only the gateway publishes on ${packet.topic}`))
    }
    next(client, packet, callback)
  }
}
