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
 * `unavailable` (it never came up: no `/mqtt` endpoint, or the gateway is down), `signed-out`
 * (the gateway requires authentication and refused the link: CONNACK 5 without credentials, 4
 * with wrong ones). Retries back off from 1 s to 30 s; a refused login is not retried (the page
 * opens a new link after sign-in).
 *
 * With `credentials` (an app's id and secret) the link logs in as that app; the gateway then
 * forwards only what the app's roles grant, and a topic they do not cover is refused at subscribe
 * (SUBACK 0x80). The link is live with what was granted; the detail names what was not.
 *
 * @param {{
 *   onState: (state: 'connecting' | 'live' | 'reconnecting' | 'unavailable' | 'signed-out', detail?: string) => void,
 *   onConnect: (resumed: boolean) => void,
 *   onMessage: (topic: string, text: string, retained: boolean) => void,
 *   onRefused?: (code: number, message: string) => void,
 * }} handlers
 * @param {{ username: string, password: string } | null} [credentials]
 */
export function connectLive(handlers, credentials = null) {
  // Relative to the page, so the dashboard also works behind a proxy that mounts it on a path.
  const endpoint = new URL('mqtt', location.href)
  endpoint.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:'
  const url = endpoint.href
  const decoder = new TextDecoder()
  let everConnected = false
  let retryMs = FIRST_RETRY_MS
  /** Set by close(): a link being replaced reports nothing more (its last `close` included). */
  let ended = false
  /** The CONNACK refusal of the last attempt, when it was about credentials. */
  let refused = null

  const state = (name, detail) => {
    if (!ended) handlers.onState(name, detail)
  }

  state('connecting')
  const client = mqtt.connect(url, {
    clientId: `dashboard-${Math.random().toString(16).slice(2, 10)}`,
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    connectTimeout: 10_000,
    reconnectPeriod: FIRST_RETRY_MS,
    // The page subscribes itself on every connect, after it has reset what it shows.
    resubscribe: false,
    ...(credentials ? { username: credentials.username, password: credentials.password } : {}),
  })

  client.on('connect', () => {
    if (ended) return
    const resumed = everConnected
    everConnected = true
    refused = null
    retryMs = FIRST_RETRY_MS
    client.options.reconnectPeriod = retryMs
    client.subscribe(LIVE_TOPICS, { qos: 0 }, (err, _subs, packet) => {
      if (!err) {
        state('live')
        return
      }
      // MQTT.js fails the whole call when any filter was refused; the SUBACK says which.
      const granted = packet?.granted ?? []
      const denied = LIVE_TOPICS.filter((_topic, i) => (granted[i] ?? 0x80) >= 0x80)
      if (denied.length < LIVE_TOPICS.length) {
        state('live', `not allowed for this app: ${denied.join(', ')}`)
      } else {
        state('unavailable', `subscribe failed: ${err.message}`)
      }
    })
    handlers.onConnect(resumed)
  })

  client.on('message', (topic, payload, packet) => {
    if (ended) return
    handlers.onMessage(topic, decoder.decode(payload), packet.retain === true)
  })

  const down = () => {
    if (refused !== null) {
      state('signed-out', refused.message)
      return
    }
    state(everConnected ? 'reconnecting' : 'unavailable', url)
    // MQTT.js reads reconnectPeriod each time it schedules the next attempt.
    client.options.reconnectPeriod = retryMs
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS)
  }
  client.on('close', down)
  // Errors are part of the link's state, shown by the indicator; nothing to throw or log. A login
  // refused (4 bad user name or password, 5 not authorized) is the page's to handle: MQTT.js does
  // not retry it, and the page asks for a token.
  client.on('error', (err) => {
    if (ended || (err.code !== 4 && err.code !== 5)) return
    refused = { code: err.code, message: err.message }
    state('signed-out', err.message)
    handlers.onRefused?.(err.code, err.message)
  })

  return {
    url,
    close: () => {
      ended = true
      client.end(true)
    },
  }
}
