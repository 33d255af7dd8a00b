import type { MqttPublisher } from '../broker/mqtt-broker.ts'
import type { EventBus } from '../bus/event-bus.ts'
import { deadLetterTopic } from '../contract/topics.ts'
import type { RejectReason } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'

export interface DeadLetters {
  /** Rejected publishes by reason since start. */
  counts(): Partial<Record<RejectReason, number>>
  stop(): void
}

const OWNER = 'dead-letters'

/**
 * Makes every rejected publish visible: on `gateway/deadletter/{deviceId}`, in a counter per
 * reason, and in a warn log limited to one line per device and reason per interval, so a device
 * sending garbage in a loop cannot flood the log.
 */
export function createDeadLetters(
  deps: { bus: EventBus; publisher: MqttPublisher; log: Logger; now?: () => number },
  options: { logIntervalMs: number },
): DeadLetters {
  const log = deps.log.child({ module: 'dead-letters' })
  const now = deps.now ?? Date.now
  const counts: Partial<Record<RejectReason, number>> = {}
  const lastLogged = new Map<string, { at: number; suppressed: number }>()
  let lastSweep = now()
  // Entries past the interval log again anyway: dropping them bounds the map by the devices
  // rejected within one interval, not by every device id ever rejected (the fuzz run's finding).
  // What is lost is the count of suppressed lines of a device that went quiet; metrics keep all.
  const sweep = (at: number) => {
    if (at - lastSweep < options.logIntervalMs) return
    lastSweep = at
    for (const [key, entry] of lastLogged) {
      if (at - entry.at >= options.logIntervalMs) lastLogged.delete(key)
    }
  }

  deps.bus.on(OWNER, 'reading.rejected', ({ deviceId, clientId, deadLetter }) => {
    counts[deadLetter.reason] = (counts[deadLetter.reason] ?? 0) + 1
    deps.publisher
      .publish(deadLetterTopic(deviceId), JSON.stringify(deadLetter), { qos: 0, retain: false })
      .catch((err: unknown) => log.error({ err, deviceId }, 'dead letter not published'))

    const key = `${deviceId}\u0000${deadLetter.reason}`
    const at = now()
    sweep(at)
    const seen = lastLogged.get(key)
    if (seen && at - seen.at < options.logIntervalMs) {
      seen.suppressed++
      return
    }
    log.warn(
      {
        deviceId,
        clientId,
        topic: deadLetter.topic,
        reason: deadLetter.reason,
        detail: deadLetter.detail,
        suppressed: seen?.suppressed ?? 0,
      },
      'publish rejected',
    )
    lastLogged.set(key, { at, suppressed: 0 })
  })

  return {
    counts: () => ({ ...counts }),
    stop: () => deps.bus.removeOwner(OWNER),
  }
}
