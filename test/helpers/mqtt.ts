import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt'
import { expect } from 'vitest'

export interface ReceivedMessage {
  topic: string
  payload: string
  retain: boolean
  qos: number
}

/** Connects a real MQTT.js client; the caller ends it (see `endAll`). */
export async function connectClient(
  url: string,
  options: IClientOptions = {},
): Promise<MqttClient> {
  return connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options })
}

/** Records every message a client receives, so tests can wait for what they expect. */
export function recordMessages(client: MqttClient): ReceivedMessage[] {
  const received: ReceivedMessage[] = []
  client.on('message', (topic, payload, packet) => {
    received.push({
      topic,
      payload: payload.toString('utf8'),
      retain: packet.retain,
      qos: packet.qos,
    })
  })
  return received
}

export async function endAll(clients: Iterable<MqttClient>): Promise<void> {
  await Promise.all([...clients].map((c) => c.endAsync(true)))
}

/** The CONNACK return code a refused connection ended with (MQTT.js puts it on `code`). */
export async function refusal(url: string, options: IClientOptions): Promise<number | undefined> {
  const err = await connectClient(url, options).then(
    async (client) => {
      await client.endAsync(true)
      return null
    },
    (e: unknown) => e as { code?: number },
  )
  expect(err, 'the connection was accepted').not.toBeNull()
  return err?.code
}
