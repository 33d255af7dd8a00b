import type { AedesOptions } from 'aedes'
import { isSensorTopic } from '../contract/topics.ts'

type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

/**
 * While Redis is unreachable a reading can be stored but not handed to the other instances'
 * subscribers: a QoS 1 reading waits here, unacknowledged (the device keeps it and, if its
 * connection drops meanwhile, sends it again), and goes on when Redis is back. QoS 0 readings
 * pass: they are best effort, and stored as usual.
 */
export function holdWhileRedisDown(
  redis: { isUp(): boolean; whenUp(): Promise<void> },
  next: AuthorizePublish,
): AuthorizePublish {
  return (client, packet, callback) => {
    if (redis.isUp() || client === null || packet.qos === 0 || !isSensorTopic(packet.topic)) {
      next(client, packet, callback)
      return
    }
    void redis.whenUp().then(() => next(client, packet, callback))
  }
}
