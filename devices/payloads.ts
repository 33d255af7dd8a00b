import { type Reading, sensorTopic } from '../src/contract/index.ts'
import { createPrng } from './signals.ts'

/**
 * The reading forms of DESIGN §3, built from contract `Reading`s with the contract's topic
 * builder. `metric` publishes one message per metric on `sensors/{id}/{metric}`; `object` and
 * `senml` publish every metric of a sample in one message on `sensors/{id}`.
 */
export const PAYLOAD_FORMS = ['metric', 'object', 'senml'] as const
export type PayloadForm = (typeof PAYLOAD_FORMS)[number]
export type FormChoice = PayloadForm | 'mixed'

export function isFormChoice(value: unknown): value is FormChoice {
  return value === 'mixed' || (PAYLOAD_FORMS as readonly unknown[]).includes(value)
}

export interface OutgoingMessage {
  topic: string
  payload: string
}

/** `sensors/{id}/{metric}` with a bare number: what the cheapest sensors send (no clock). */
export function bareMessage(reading: Reading): OutgoingMessage {
  return { topic: sensorTopic(reading.deviceId, reading.metric), payload: String(reading.value) }
}

/** `sensors/{id}/{metric}` with `{"value","ts","unit"}`. */
export function valueMessage(reading: Reading): OutgoingMessage {
  const body: { value: number; ts: number; unit?: string } = {
    value: reading.value,
    ts: reading.ts,
  }
  if (reading.unit !== undefined) body.unit = reading.unit
  return { topic: sensorTopic(reading.deviceId, reading.metric), payload: JSON.stringify(body) }
}

/** `sensors/{id}` with `{"ts", metric: value, ...}`; the readings are one device's one sample. */
export function objectMessage(
  deviceId: string,
  ts: number,
  readings: readonly Reading[],
): OutgoingMessage {
  const body: Record<string, number> = { ts }
  for (const reading of readings) body[reading.metric] = reading.value
  return { topic: sensorTopic(deviceId), payload: JSON.stringify(body) }
}

export interface SenmlRecord {
  bt?: number
  n: string
  u?: string
  v: number
}

/**
 * `sensors/{id}` with a SenML pack (RFC 8428). Times are in seconds (§4.5.3), so the base time
 * carries the milliseconds as a fraction. No `bn`: the topic already names the device, and a base
 * name would be prefixed to every `n`, which must stay a bare metric id.
 */
export function senmlMessage(
  deviceId: string,
  ts: number,
  readings: readonly Reading[],
): OutgoingMessage {
  const pack: SenmlRecord[] = readings.map((reading, i) => {
    const record: SenmlRecord = { n: reading.metric, v: reading.value }
    if (reading.unit !== undefined) record.u = reading.unit
    return i === 0 ? { bt: ts / 1000, ...record } : record
  })
  return { topic: sensorTopic(deviceId), payload: JSON.stringify(pack) }
}

/**
 * All the messages for one sample of one device in `form`. In the `metric` form a device
 * alternates JSON (even ticks) and bare numbers (odd ticks), so both variants are exercised.
 */
export function buildMessages(
  form: PayloadForm,
  deviceId: string,
  ts: number,
  readings: readonly Reading[],
  tick: number,
): OutgoingMessage[] {
  if (readings.length === 0) return []
  switch (form) {
    case 'metric':
      return readings.map(tick % 2 === 0 ? valueMessage : bareMessage)
    case 'object':
      return [objectMessage(deviceId, ts, readings)]
    case 'senml':
      return [senmlMessage(deviceId, ts, readings)]
  }
}

/** Realistic failures the gateway must dead-letter (DESIGN §3: bad input never vanishes). */
export const MALFORMED_KINDS = [
  'non_numeric',
  'truncated_json',
  'nan',
  'bad_metric_name',
  'epoch_1970',
] as const
export type MalformedKind = (typeof MALFORMED_KINDS)[number]

/**
 * One malformed message of `kind`. Each kind is a failure seen in the field: a firmware printing
 * an error string where a number belongs, a packet cut short, a float printed as NaN, a metric
 * named with its unit, and a device without RTC sync reporting time since boot as epoch ms.
 */
export function malformedMessage(
  kind: MalformedKind,
  deviceId: string,
  nowMs: number,
): OutgoingMessage {
  switch (kind) {
    case 'non_numeric':
      return { topic: sensorTopic(deviceId, 'temperature'), payload: 'ERR_SENSOR_TIMEOUT' }
    case 'truncated_json': {
      const whole = JSON.stringify({ ts: nowMs, temperature: 21.57, humidity: 44.2 })
      return { topic: sensorTopic(deviceId), payload: whole.slice(0, Math.floor(whole.length / 2)) }
    }
    case 'nan':
      return { topic: sensorTopic(deviceId, 'humidity'), payload: 'NaN' }
    case 'bad_metric_name':
      // A space is legal in an MQTT topic but not in a metric id (DESIGN §3 identifiers).
      return { topic: sensorTopic(deviceId, 'co2 ppm'), payload: '612' }
    case 'epoch_1970': {
      const uptimeMs = 5_000 + (nowMs % 3_600_000)
      return {
        topic: sensorTopic(deviceId, 'temperature'),
        payload: JSON.stringify({ value: 21.5, ts: uptimeMs, unit: 'Cel' }),
      }
    }
  }
}

/** Picks malformed kinds from a seeded stream, so a demo's failures are reproducible. */
export function createMalformedPicker(seed: number): () => MalformedKind {
  const prng = createPrng(seed)
  return () => MALFORMED_KINDS[Math.floor(prng.next() * MALFORMED_KINDS.length)] ?? 'non_numeric'
}
