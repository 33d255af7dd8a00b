import mqtt from './mqtt.esm.js'

/** Everything the page listens to. `sensors/#` covers `sensors/{device}` and `sensors/{device}/#`
 * of every device: the device list shows every device's latest values, not only the charted one. */
export const LIVE_TOPICS = ['sensors/#', 'devices/+/status', 'alerts/#']

const FIRST_RETRY_MS = 1_000
const MAX_RETRY_MS = 30_000

/**
 * The live link: MQTT over WebSocket to the gateway's own HTTP port (`mqtt` next to the page, subprotocol
 * `mqtt`), read-only. The broker re-sends every retained message on each (re)subscription, so
 * device states and current alerts are right again after any reconnect; readings missed while
 * the link was down are fetched again over HTTP by the caller (`onConnect` with `resumed`).
 *
 * States: `connecting` (first attempt), `live`, `reconnecting` (it was live, the link dropped),
 * `unavailable` (it never came up: no `/mqtt` endpoint, or the gateway is down). Retries back
 * off from 1 s to 30 s.
 *
 * @param {{
 *   onState: (state: 'connecting' | 'live' | 'reconnecting' | 'unavailable', detail?: string) => void,
 *   onConnect: (resumed: boolean) => void,
 *   onMessage: (topic: string, text: string, retained: boolean) => void,
 * }} handlers
 */
export function connectLive(handlers) {
  // Relative to the page, so the dashboard also works behind a proxy that mounts it on a path.
  const endpoint = new URL('mqtt', location.href)
  endpoint.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:'
  const url = endpoint.href
  const decoder = new TextDecoder()
  let everConnected = false
  let retryMs = FIRST_RETRY_MS

  handlers.onState('connecting')
  const client = mqtt.connect(url, {
    clientId: `dashboard-${Math.random().toString(16).slice(2, 10)}`,
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    connectTimeout: 10_000,
    reconnectPeriod: FIRST_RETRY_MS,
    // The page subscribes itself on every connect, after it has reset what it shows.
    resubscribe: false,
  })

  client.on('connect', () => {
    const resumed = everConnected
    everConnected = true
    retryMs = FIRST_RETRY_MS
    client.options.reconnectPeriod = retryMs
    client.subscribe(LIVE_TOPICS, { qos: 0 }, (err) => {
      if (err) {
        handlers.onState('unavailable', `subscribe failed: ${err.message}`)
        return
      }
      handlers.onState('live')
    })
    handlers.onConnect(resumed)
  })

  client.on('message', (topic, payload, packet) => {
    handlers.onMessage(topic, decoder.decode(payload), packet.retain === true)
  })

  const down = () => {
    handlers.onState(everConnected ? 'reconnecting' : 'unavailable', url)
    // MQTT.js reads reconnectPeriod each time it schedules the next attempt.
    client.options.reconnectPeriod = retryMs
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS)
  }
  client.on('close', down)
  // Errors are part of the link's state, shown by the indicator; nothing to throw or log.
  client.on('error', () => {})

  return {
    url,
    close: () => client.end(true),
  }
}
