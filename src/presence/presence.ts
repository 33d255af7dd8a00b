import type { MqttPublisher } from '../broker/mqtt-broker.ts'
import type { EventBus } from '../bus/event-bus.ts'
import { deviceStatusTopic } from '../contract/topics.ts'
import type { DeviceStatus } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'

export interface Presence {
  /** A client published readings for a device: the device is online through that client. */
  seen(clientId: string, deviceId: string): void
  /** A client disconnected: the devices it spoke for are offline. */
  clientGone(clientId: string): void
  stop(): void
}

const OWNER = 'presence'

/**
 * Tracks which devices are online. Until devices authenticate (their MQTT identity is then their
 * device id), a device counts as online from the first reading its client publishes for it, so a
 * dashboard or mosquitto_sub connection never shows up as a device.
 */
export function createPresence(deps: {
  bus: EventBus
  publisher: MqttPublisher
  log: Logger
  now?: () => number
}): Presence {
  const log = deps.log.child({ module: 'presence' })
  const now = deps.now ?? Date.now
  const devicesByClient = new Map<string, Set<string>>()

  const publishStatus = (deviceId: string, status: DeviceStatus) => {
    deps.publisher
      .publish(deviceStatusTopic(deviceId), JSON.stringify(status), { qos: 1, retain: true })
      .catch((err: unknown) => log.error({ err, deviceId }, 'device status not published'))
  }
  deps.bus.on(OWNER, 'device.online', ({ deviceId, ts }) =>
    publishStatus(deviceId, { state: 'online', ts }),
  )
  deps.bus.on(OWNER, 'device.offline', ({ deviceId, ts }) =>
    publishStatus(deviceId, { state: 'offline', ts }),
  )

  return {
    seen(clientId, deviceId) {
      let devices = devicesByClient.get(clientId)
      if (devices?.has(deviceId)) return
      if (!devices) {
        devices = new Set()
        devicesByClient.set(clientId, devices)
      }
      devices.add(deviceId)
      deps.bus.emit('device.online', { deviceId, clientId, ts: now() })
    },
    clientGone(clientId) {
      const devices = devicesByClient.get(clientId)
      if (!devices) return
      devicesByClient.delete(clientId)
      const ts = now()
      for (const deviceId of devices) deps.bus.emit('device.offline', { deviceId, clientId, ts })
    },
    stop: () => deps.bus.removeOwner(OWNER),
  }
}
