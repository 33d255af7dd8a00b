import type { MqttPublisher } from '../broker/mqtt-broker.ts'
import type { EventBus } from '../bus/event-bus.ts'
import { alertTopic } from '../contract/topics.ts'
import type { Alert } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'

const OWNER = 'alert-publisher'

export interface AlertPublisher {
  /**
   * Publishes stored alert states again (start-up): the broker's retained messages do not outlive
   * the process, the store does, so after a restart the retained topics are rebuilt from it.
   */
  republish(alerts: readonly Alert[]): Promise<void>
  stop(): void
}

/**
 * Publishes each alert transition retained at QoS 1, so the retained message on
 * `alerts/{severity}/{deviceId}/{ruleId}` is always the alert's current state and a subscriber
 * that connects late still learns it. An acknowledgement is part of that state: each alert goes
 * out through `withAck`, and `alert.acknowledged` publishes the acknowledged alert again.
 */
export function createAlertPublisher(deps: {
  bus: EventBus
  publisher: MqttPublisher
  log: Logger
  /** The alert with the acknowledgement of its current firing (src/notify/alert-controls.ts). */
  withAck?: (alert: Alert) => Alert
}): AlertPublisher {
  const log = deps.log.child({ module: 'alerts' })
  const withAck = deps.withAck ?? ((alert: Alert) => alert)
  const publish = (alert: Alert) =>
    deps.publisher.publish(alertTopic(alert), JSON.stringify(withAck(alert)), {
      qos: 1,
      retain: true,
    })

  deps.bus.on(OWNER, 'alert', (alert) => {
    log.debug(
      { ruleId: alert.ruleId, deviceId: alert.deviceId, state: alert.state, value: alert.value },
      `alert ${alert.state}: ${alert.message}`,
    )
    publish(alert).catch((err: unknown) =>
      log.error({ err, ruleId: alert.ruleId, deviceId: alert.deviceId }, 'alert not published'),
    )
  })
  deps.bus.on(OWNER, 'alert.acknowledged', (alert) => {
    publish(alert).catch((err: unknown) =>
      log.error({ err, alertId: alert.id }, 'acknowledged alert not published'),
    )
  })
  return {
    async republish(alerts) {
      await Promise.all(alerts.map(publish))
      if (alerts.length > 0)
        log.info({ count: alerts.length }, 'retained alert states rebuilt from the store')
    },
    stop: () => deps.bus.removeOwner(OWNER),
  }
}
