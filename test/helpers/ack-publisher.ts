import mqtt, { type MqttClient } from 'mqtt'

/** One acknowledged reading: the device, and the ts that makes it unique (value = sequence). */
export interface Acked {
  deviceId: string
  ts: number
  value: number
}

export interface AckPublisher {
  /** Readings the gateway acknowledged (PUBACK received), in order per device. */
  readonly acked: Acked[]
  /** Publishes whose PUBACK has not come (yet). */
  inFlight(): number
  /** Resolves once `count` more PUBACKs have arrived than when called (bounded by the caller). */
  waitForAcks(count: number): Promise<void>
  /**
   * Stops publishing; resolves when every loop has ended. With `drain`, the readings in flight
   * are waited for (acked counts them all); without, they are abandoned (the gateway is gone).
   */
  stop(options?: { drain: boolean }): Promise<void>
}

export interface AckPublisherOptions {
  url: string
  devices: number
  /** Device ids are `${prefix}-${i}`. */
  prefix: string
  metric?: string
  /** First reading's ts; each device's ts goes up by 1 ms per reading, so every reading is unique. */
  startTs: number
}

/**
 * QoS 1 devices that each keep one reading in flight and count what the gateway acknowledges:
 * the load of the durability tests, where "acked" is what the gateway promised to keep. No
 * reconnects: a publish that was in flight when the connection died is simply not acked.
 */
export async function startAckPublisher(options: AckPublisherOptions): Promise<AckPublisher> {
  const metric = options.metric ?? 'temperature'
  const acked: Acked[] = []
  let inFlight = 0
  let stopped = false
  let stopNow: () => void = () => {}
  const stopSignal = new Promise<'stopped'>((resolve) => {
    stopNow = () => resolve('stopped')
  })
  const ackListeners = new Set<() => void>()

  const clients: MqttClient[] = await Promise.all(
    Array.from({ length: options.devices }, (_, i) =>
      mqtt.connectAsync(options.url, {
        clientId: `${options.prefix}-${i}`,
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      }),
    ),
  )
  for (const client of clients) client.on('error', () => {})

  const loop = async (client: MqttClient, deviceId: string) => {
    for (let seq = 0; !stopped && client.connected; seq++) {
      const reading = { deviceId, ts: options.startTs + seq, value: seq }
      inFlight++
      const outcome = await Promise.race([
        client
          .publishAsync(
            `sensors/${deviceId}/${metric}`,
            JSON.stringify({ value: reading.value, ts: reading.ts }),
            { qos: 1 },
          )
          .then(
            () => 'acked' as const,
            () => 'failed' as const,
          ),
        stopSignal,
      ])
      inFlight--
      if (outcome !== 'acked') return
      acked.push(reading)
      for (const listener of ackListeners) listener()
    }
  }
  const loops = clients.map((client, i) => loop(client, `${options.prefix}-${i}`))

  return {
    acked,
    inFlight: () => inFlight,
    waitForAcks(count) {
      const target = acked.length + count
      return new Promise((resolve) => {
        const check = () => {
          if (acked.length < target) return
          ackListeners.delete(check)
          resolve()
        }
        ackListeners.add(check)
        check()
      })
    },
    async stop({ drain } = { drain: false }) {
      stopped = true
      if (!drain) stopNow()
      await Promise.all(loops)
      await Promise.all(clients.map((client) => client.endAsync(true).catch(() => {})))
    },
  }
}
