import type { MqttPublisher } from '../broker/mqtt-broker.ts'
import type { EventBus } from '../bus/event-bus.ts'
import { isIdentifier } from '../contract/identifiers.ts'
import { deviceStatusTopic } from '../contract/topics.ts'
import type { DeviceStatus } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'

export interface Presence {
  /** Devices the gateway knows (registry, or readings stored before): online as soon as they connect. */
  addKnown(deviceIds: Iterable<string>): void
  /** A client finished connecting. */
  clientConnected(clientId: string): void
  /** A client published valid readings for a device: the device is online through that client. */
  seen(clientId: string, deviceId: string): void
  /** A client disconnected, cleanly or not (its last will, if any, is not passed on). */
  clientGone(clientId: string): void
  /** Publishes `offline` for every known device: after a start, none is connected yet. */
  publishAllOffline(): void
  /**
   * Scale-out: another gateway instance published this device's status. Its `online` means the
   * device is served there now: a connection here that still spoke for it (a takeover in
   * progress) will report nothing when it closes, so the retained status stays right. A status
   * older than the device's latest connection here changes nothing. A newer `offline` for a
   * device connected here is answered with its status here again.
   */
  remoteStatus(deviceId: string, status: DeviceStatus): void
  /**
   * An idle device (DEVICE_IDLE_RELEASE, src/rules/device-idle.ts): forgets it, so it comes back
   * as a device never seen (online with its first reading). With `clearStatus`, its retained
   * `offline` status is cleared too (an empty retained publish); with `keepKnown` (a registered
   * device) it stays known, online as soon as it connects. False, and nothing forgotten, while
   * its own connection (client id = device id) is open here. A device another connection speaks
   * for (a bridge, an aggregator) is forgotten even while that connection stays: it went quiet,
   * its `online` is cleared too, and its next reading announces it again.
   */
  forget(deviceId: string, options: { clearStatus: boolean; keepKnown: boolean }): boolean
  /** The device's own connection (client id = device id) is open here and speaks for it. */
  isConnected(deviceId: string): boolean
  stop(): void
}

const OWNER = 'presence'

/**
 * Owns `devices/{deviceId}/status` (retained): `online` while a connection speaks for the device,
 * `offline` once it is gone, `silent` while it is connected but a deadman rule finds no readings
 * from it. A device is
 * a client id the gateway knows (registry or stored readings) or one that publishes readings for
 * itself; other clients (dashboards, mosquitto_sub) never show up as devices. Only changes are
 * published.
 */
export function createPresence(deps: {
  bus: EventBus
  publisher: MqttPublisher
  log: Logger
  now?: () => number
}): Presence {
  const log = deps.log.child({ module: 'presence' })
  const now = deps.now ?? Date.now
  const known = new Set<string>()
  const devicesByClient = new Map<string, Set<string>>()
  const connected = new Set<string>()
  const published = new Map<string, DeviceStatus['state']>()
  /** When a connection here last started speaking for the device. */
  const onlineSince = new Map<string, number>()

  const setStatus = (deviceId: string, state: DeviceStatus['state'], always = false) => {
    if (!always && published.get(deviceId) === state) return
    published.set(deviceId, state)
    const status: DeviceStatus = { state, ts: now() }
    deps.publisher
      .publish(deviceStatusTopic(deviceId), JSON.stringify(status), { qos: 1, retain: true })
      .catch((err: unknown) => log.error({ err, deviceId }, 'device status not published'))
  }

  const online = (clientId: string, deviceId: string) => {
    let devices = devicesByClient.get(clientId)
    if (devices?.has(deviceId)) return
    if (!devices) {
      devices = new Set()
      devicesByClient.set(clientId, devices)
    }
    devices.add(deviceId)
    known.add(deviceId)
    connected.add(deviceId)
    const ts = now()
    onlineSince.set(deviceId, ts)
    deps.bus.emit('device.online', { deviceId, clientId, ts })
  }

  // A device that starts speaking here is announced even when the last status known says online
  // already: with several instances that may be another instance's, about to go stale.
  deps.bus.on(OWNER, 'device.online', ({ deviceId }) => setStatus(deviceId, 'online', true))
  deps.bus.on(OWNER, 'device.offline', ({ deviceId }) => setStatus(deviceId, 'offline'))
  deps.bus.on(OWNER, 'alert', (alert) => {
    if (alert.kind !== 'deadman') return
    // A disconnected device is silent too, but `offline` already says more.
    if (!connected.has(alert.deviceId)) return
    setStatus(alert.deviceId, alert.state === 'firing' ? 'silent' : 'online')
  })

  return {
    addKnown(deviceIds) {
      for (const id of deviceIds) known.add(id)
    },
    clientConnected(clientId) {
      if (isIdentifier(clientId) && known.has(clientId)) online(clientId, clientId)
    },
    seen: online,
    clientGone(clientId) {
      const devices = devicesByClient.get(clientId)
      if (!devices) return
      devicesByClient.delete(clientId)
      const ts = now()
      for (const deviceId of devices) {
        connected.delete(deviceId)
        deps.bus.emit('device.offline', { deviceId, clientId, ts })
      }
    },
    remoteStatus(deviceId, { state, ts }) {
      if ((onlineSince.get(deviceId) ?? Number.NEGATIVE_INFINITY) > ts) return
      // A connection here speaks for the device, so a newer `offline` from elsewhere (a survivor
      // reporting a crashed instance's devices, src/cluster/instance-lease.ts) is wrong: the
      // retained status is put right.
      if (state === 'offline' && connected.has(deviceId)) {
        setStatus(deviceId, published.get(deviceId) === 'silent' ? 'silent' : 'online', true)
        return
      }
      published.set(deviceId, state)
      if (state !== 'online') return
      known.add(deviceId)
      connected.delete(deviceId)
      for (const [clientId, devices] of devicesByClient) {
        if (devices.delete(deviceId) && devices.size === 0) devicesByClient.delete(clientId)
      }
    },
    publishAllOffline() {
      for (const deviceId of known) if (!connected.has(deviceId)) setStatus(deviceId, 'offline')
    },
    isConnected: (deviceId) => devicesByClient.get(deviceId)?.has(deviceId) === true,
    forget(deviceId, { clearStatus, keepKnown }) {
      if (devicesByClient.get(deviceId)?.has(deviceId) === true) return false
      const spokenFor = connected.delete(deviceId)
      if (spokenFor) {
        // O(connections), as in remoteStatus: only for a device spoken for by another client.
        for (const [clientId, devices] of devicesByClient) {
          if (devices.delete(deviceId) && devices.size === 0) devicesByClient.delete(clientId)
        }
      }
      const last = published.get(deviceId)
      if (!keepKnown) known.delete(deviceId)
      published.delete(deviceId)
      onlineSince.delete(deviceId)
      // A status this instance stands by: its own `offline`, or the `online` (`silent`) of a
      // connection here; another instance's `online` stays.
      if (clearStatus && (last === 'offline' || spokenFor)) {
        deps.publisher
          .publish(deviceStatusTopic(deviceId), '', { qos: 1, retain: true })
          .catch((err: unknown) => log.error({ err, deviceId }, 'device status not cleared'))
      }
      return true
    },
    stop: () => deps.bus.removeOwner(OWNER),
  }
}
