import type { MqttPublisher } from '../broker/mqtt-broker.ts'
import type { EventBus } from '../bus/event-bus.ts'
import { alertTopic } from '../contract/topics.ts'
import type { Logger } from '../telemetry/logger.ts'

const OWNER = 'alert-publisher'

/**
 * Publishes each alert transition retained at QoS 1, so the retained message on
 * `alerts/{severity}/{deviceId}/{ruleId}` is always the alert's current state and a subscriber
 * that connects late still learns it.
 */
export function createAlertPublisher(deps: {
  bus: EventBus
  publisher: MqttPublisher
  log: Logger
}): {
  stop(): void
} {
  const log = deps.log.child({ module: 'alerts' })
  deps.bus.on(OWNER, 'alert', (alert) => {
    log.debug(
      { ruleId: alert.ruleId, deviceId: alert.deviceId, state: alert.state, value: alert.value },
      `alert ${alert.state}: ${alert.message}`,
    )
    deps.publisher
      .publish(alertTopic(alert), JSON.stringify(alert), { qos: 1, retain: true })
      .catch((err: unknown) =>
        log.error({ err, ruleId: alert.ruleId, deviceId: alert.deviceId }, 'alert not published'),
      )
  })
  return { stop: () => deps.bus.removeOwner(OWNER) }
}
