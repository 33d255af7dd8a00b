import type { Alert, DeviceStatus } from '../contract/types.ts'
import { DEVICE_STATUS_STATES } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'

const ALERTS = 'alerts/#'
const STATUSES = 'devices/+/status'

/** The broker's message emitter (Aedes' `mq`: mqemitter-redis here), as far as this uses it. */
export interface MessageEmitter {
  on(topic: string, listener: (packet: AedesPacket, done: () => void) => void): void
  removeListener(
    topic: string,
    listener: (packet: AedesPacket, done: () => void) => void,
    done: () => void,
  ): void
}

export interface ClusterSyncDeps {
  mq: MessageEmitter
  /** This instance's broker id (Aedes `id`): its own messages carry it as `brokerId`. */
  instanceId: string
  /** What this instance learns of alerts other instances publish. */
  engine: { adopt(alert: Alert): void; release(deviceId: string, movedAtMs?: number): number }
  /** What it learns of devices other instances speak for. */
  presence: { remoteStatus(deviceId: string, status: DeviceStatus): void }
  /** This instance's device set in Redis (src/cluster/instance-lease.ts): a device moved away. */
  lease?: { remoteStatus(deviceId: string, status: DeviceStatus): void }
  /**
   * The notifications' outbox (src/cluster/cluster-outbox.ts): an alert another instance
   * published is owned there now; this instance's reminders of it end. Adopting never notifies.
   */
  notifications?: { remoteAlert(alert: Alert): void }
  log: Logger
}

export interface ClusterSync {
  stop(): Promise<void>
}

/**
 * Keeps this instance's rule and presence state in step with the others (DESIGN §9). Every
 * alert transition any instance publishes reaches every instance through the broker's shared
 * emitter: the others adopt it, so a device that moves keeps its alert lifecycle. A device's
 * `online` status published by another instance means the device is served there now: its
 * deadman is disarmed here and its old connection here, when it closes, reports nothing.
 * Messages of this instance (packet.brokerId is its own id) are ignored.
 */
export function startClusterSync(deps: ClusterSyncDeps): ClusterSync {
  const { mq, engine, presence, instanceId } = deps
  const log = deps.log.child({ module: 'cluster-sync' })

  const fromElsewhere = (packet: { brokerId?: string }) =>
    packet.brokerId !== undefined && packet.brokerId !== instanceId

  const onAlert = (packet: AedesPacket, done: () => void) => {
    if (fromElsewhere(packet)) {
      try {
        const alert = JSON.parse(payloadText(packet)) as Alert
        engine.adopt(alert)
        deps.notifications?.remoteAlert(alert)
      } catch (err) {
        log.warn({ err, topic: packet.topic }, 'alert from another instance not understood')
      }
    }
    done()
  }

  const onStatus = (packet: AedesPacket, done: () => void) => {
    if (fromElsewhere(packet)) {
      const deviceId = packet.topic.split('/')[1] ?? ''
      try {
        const status = JSON.parse(payloadText(packet)) as DeviceStatus
        if (
          (DEVICE_STATUS_STATES as readonly string[]).includes(status.state) &&
          Number.isFinite(status.ts)
        ) {
          presence.remoteStatus(deviceId, status)
          deps.lease?.remoteStatus(deviceId, status)
          // A status older than this instance's own latest reading of the device is stale news.
          if (status.state === 'online') engine.release(deviceId, status.ts)
        }
      } catch (err) {
        log.warn({ err, topic: packet.topic }, 'device status from another instance not understood')
      }
    }
    done()
  }

  mq.on(ALERTS, onAlert)
  mq.on(STATUSES, onStatus)

  return {
    async stop() {
      await Promise.all([
        new Promise<void>((resolve) => mq.removeListener(ALERTS, onAlert, () => resolve())),
        new Promise<void>((resolve) => mq.removeListener(STATUSES, onStatus, () => resolve())),
      ])
    },
  }
}

export interface AedesPacket {
  topic: string
  payload: Buffer | string
  brokerId?: string
}

function payloadText(packet: AedesPacket): string {
  return typeof packet.payload === 'string' ? packet.payload : packet.payload.toString('utf8')
}
