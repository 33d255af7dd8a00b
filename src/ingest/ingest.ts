import type { AedesOptions } from 'aedes'
import type { EventBus } from '../bus/event-bus.ts'
import { isSensorTopic } from '../contract/topics.ts'
import type { Reading } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'
import { type ParseOptions, parsePublish, toDeadLetter } from './parse-publish.ts'

/** Where accepted readings go before they are acknowledged: the store writer, structurally. */
export interface DurableSink {
  /** `done` once the readings are durable (stored, or spooled to disk), or with why not. */
  accept(readings: readonly Reading[], done: (err?: Error) => void): void
  /** Best effort (QoS 0): false when the sink is full and dropped them (it counts them). */
  offer(readings: readonly Reading[], done: (err?: Error) => void): boolean
}

export interface IngestStats {
  accepted: number
  rejected: number
}

export interface Ingest {
  /** Aedes' authorizePublish: the only hook that runs before a QoS 1 PUBACK (DESIGN §5). */
  authorizePublish: NonNullable<AedesOptions['authorizePublish']>
  stats(): IngestStats
}

/**
 * Turns publishes on `sensors/...` into readings. A bad payload is accepted at the MQTT level and
 * dead-lettered: an error in authorizePublish would drop the device's connection. A good one is
 * handed to the durable sink first and acknowledged (QoS 1) only once stored; then the readings go
 * on the bus, so rules never alert on something the store does not have.
 */
export function createIngest(
  deps: {
    bus: EventBus
    sink: DurableSink
    log: Logger
    now?: () => number
    /** Told of each device a client publishes valid readings for (presence). */
    onDeviceSeen?: (clientId: string, deviceId: string) => void
  },
  options: ParseOptions,
): Ingest {
  const log = deps.log.child({ module: 'ingest' })
  const now = deps.now ?? Date.now
  const stats: IngestStats = { accepted: 0, rejected: 0 }

  const emitReadings = (readings: readonly Reading[]) => {
    for (const reading of readings) deps.bus.emit('reading', reading)
  }

  return {
    authorizePublish(client, packet, callback) {
      // Publishes of the gateway itself (alerts, status) and of other topics are not readings.
      if (client === null || !isSensorTopic(packet.topic)) return callback(null)
      const receivedAt = now()
      const payload =
        typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
      const result = parsePublish(packet.topic, payload, receivedAt, options)
      if (!result.ok) {
        stats.rejected++
        deps.bus.emit('reading.rejected', {
          deviceId: result.deviceId,
          clientId: client.id,
          deadLetter: toDeadLetter(packet.topic, payload, result, receivedAt),
        })
        return callback(null)
      }
      deps.onDeviceSeen?.(client.id, result.deviceId)
      if (packet.qos === 0) {
        // QoS 0 is best effort: nothing to acknowledge, so the device is not held up; when the
        // writer's queue is full the readings are dropped and counted there (README, Guarantees).
        callback(null)
        deps.sink.offer(result.readings, (err) => {
          if (err) {
            log.error({ err, deviceId: result.deviceId }, 'QoS 0 readings not stored')
            return
          }
          stats.accepted += result.readings.length
          emitReadings(result.readings)
        })
        return
      }
      deps.sink.accept(result.readings, (err) => {
        if (err) {
          log.error({ err, deviceId: result.deviceId }, 'readings not stored; withholding PUBACK')
          // Without a PUBACK the device keeps the message and sends it again after reconnecting.
          callback(err)
          return
        }
        stats.accepted += result.readings.length
        // The PUBACK follows this callback: the device learns of success only after the commit.
        callback(null)
        emitReadings(result.readings)
      })
    },
    stats: () => ({ ...stats }),
  }
}
