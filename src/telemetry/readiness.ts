import type { MqttBroker } from '../broker/mqtt-broker.ts'
import type { Logger } from './logger.ts'
import type { StoreMonitor } from './store-monitor.ts'

// A type, not an interface: it must fit the HTTP route's Record<string, string>.
export type ReadinessChecks = {
  /** `up`: writes succeed and a probe read answers in time; `down` otherwise. */
  store: 'up' | 'down'
  /** `listening`: the MQTT TCP listener accepts connections; `not_listening` before start and while stopping. */
  mqtt: 'listening' | 'not_listening'
}

export interface GatewayReadinessReport {
  ready: boolean
  checks: ReadinessChecks
  /** Why each failing check failed, for the log (not sent to clients). */
  reasons: string[]
}

export type GatewayReadinessCheck = () => Promise<GatewayReadinessReport>

/**
 * Readiness of the gateway (GET /readyz): it can take readings in and store them. A change of
 * readiness is logged once (warn with the reasons, info on recovery), not once per probe.
 */
export function createReadinessCheck(deps: {
  storeMonitor: Pick<StoreMonitor, 'check'>
  broker: Pick<MqttBroker, 'isListening'>
  log: Logger
}): GatewayReadinessCheck {
  const log = deps.log.child({ module: 'readiness' })
  let wasReady: boolean | undefined
  return async () => {
    const store = await deps.storeMonitor.check()
    const listening = deps.broker.isListening()
    const reasons: string[] = []
    if (!store.up) reasons.push(`store: ${store.reason}`)
    if (!listening) reasons.push('mqtt: the TCP listener is not accepting connections')
    const ready = store.up && listening
    if (ready !== wasReady) {
      if (!ready) log.warn({ reasons }, 'gateway not ready')
      else if (wasReady === false) log.info('gateway ready again')
      wasReady = ready
    }
    return {
      ready,
      checks: { store: store.up ? 'up' : 'down', mqtt: listening ? 'listening' : 'not_listening' },
      reasons,
    }
  }
}
