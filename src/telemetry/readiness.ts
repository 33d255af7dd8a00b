import type { MqttBroker } from '../broker/mqtt-broker.ts'
import type { Logger } from './logger.ts'
import type { StoreMonitor } from './store-monitor.ts'

// A type, not an interface: it must fit the HTTP route's Record<string, string>.
export type ReadinessChecks = {
  /** `up`: writes succeed and a probe read answers in time; `down` otherwise. */
  store: 'up' | 'down'
  /** `listening`: the MQTT TCP listener accepts connections; `not_listening` before start and while stopping. */
  mqtt: 'listening' | 'not_listening'
  /** Only with REDIS_URL: `up` when Redis answers a PING within the probe time. */
  redis?: 'up' | 'down'
}

export interface GatewayReadinessReport {
  ready: boolean
  checks: ReadinessChecks
  /** Why each failing check failed, for the log (not sent to clients). */
  reasons: string[]
}

const REDIS_PROBE_TIMEOUT_MS = 1_000

export type GatewayReadinessCheck = () => Promise<GatewayReadinessReport>

/**
 * Readiness of the gateway (GET /readyz): it can take readings in and store them. A change of
 * readiness is logged once (warn with the reasons, info on recovery), not once per probe.
 */
export function createReadinessCheck(deps: {
  storeMonitor: Pick<StoreMonitor, 'check'>
  broker: Pick<MqttBroker, 'isListening'>
  log: Logger
  redis?: { ping(timeoutMs: number): Promise<boolean> }
}): GatewayReadinessCheck {
  const log = deps.log.child({ module: 'readiness' })
  let wasReady: boolean | undefined
  return async () => {
    const [store, redisUp] = await Promise.all([
      deps.storeMonitor.check(),
      deps.redis ? deps.redis.ping(REDIS_PROBE_TIMEOUT_MS) : Promise.resolve(true),
    ])
    const listening = deps.broker.isListening()
    const reasons: string[] = []
    if (!store.up) reasons.push(`store: ${store.reason}`)
    if (!listening) reasons.push('mqtt: the TCP listener is not accepting connections')
    if (!redisUp) reasons.push(`redis: no answer to PING within ${REDIS_PROBE_TIMEOUT_MS} ms`)
    const ready = store.up && listening && redisUp
    if (ready !== wasReady) {
      if (!ready) log.warn({ reasons }, 'gateway not ready')
      else if (wasReady === false) log.info('gateway ready again')
      wasReady = ready
    }
    return {
      ready,
      checks: {
        store: store.up ? 'up' : 'down',
        mqtt: listening ? 'listening' : 'not_listening',
        ...(deps.redis ? { redis: redisUp ? ('up' as const) : ('down' as const) } : {}),
      },
      reasons,
    }
  }
}
