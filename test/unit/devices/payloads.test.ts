import { describe, expect, it } from 'vitest'
import {
  bareMessage,
  buildMessages,
  createMalformedPicker,
  MALFORMED_KINDS,
  type MalformedKind,
  malformedMessage,
  objectMessage,
  senmlMessage,
  valueMessage,
} from '../../../devices/payloads.ts'
import { isIdentifier, type Reading } from '../../../src/contract/index.ts'

const TS = 1_764_165_915_123
const readings: Reading[] = [
  { deviceId: 'sim-001', metric: 'temperature', value: 21.5, ts: TS, unit: 'Cel' },
  { deviceId: 'sim-001', metric: 'humidity', value: 40, ts: TS, unit: '%RH' },
  { deviceId: 'sim-001', metric: 'co2', value: 612, ts: TS, unit: 'ppm' },
]
const temperature = readings[0] as Reading

describe('reading payloads (DESIGN §3)', () => {
  it('bare number on sensors/{id}/{metric}', () => {
    const message = bareMessage(temperature)
    expect(message).toEqual({ topic: 'sensors/sim-001/temperature', payload: '21.5' })
  })

  it('{"value","ts","unit"} on sensors/{id}/{metric}', () => {
    const message = valueMessage(temperature)
    expect(message.topic).toBe('sensors/sim-001/temperature')
    expect(JSON.parse(message.payload)).toEqual({ value: 21.5, ts: TS, unit: 'Cel' })
  })

  it('multi-metric object on sensors/{id}: ts plus one numeric field per metric', () => {
    const message = objectMessage('sim-001', TS, readings)
    expect(message.topic).toBe('sensors/sim-001')
    expect(JSON.parse(message.payload)).toStrictEqual({
      ts: TS,
      temperature: 21.5,
      humidity: 40,
      co2: 612,
    })
  })

  it('SenML pack on sensors/{id}: base time in seconds, names, units and values', () => {
    const message = senmlMessage('sim-001', TS, readings)
    expect(message.topic).toBe('sensors/sim-001')
    expect(JSON.parse(message.payload)).toStrictEqual([
      { bt: TS / 1000, n: 'temperature', u: 'Cel', v: 21.5 },
      { n: 'humidity', u: '%RH', v: 40 },
      { n: 'co2', u: 'ppm', v: 612 },
    ])
  })

  it('buildMessages: one message per metric, or one per sample', () => {
    const even = buildMessages('metric', 'sim-001', TS, readings, 0)
    const odd = buildMessages('metric', 'sim-001', TS, readings, 1)
    expect(even.map((m) => m.topic)).toEqual([
      'sensors/sim-001/temperature',
      'sensors/sim-001/humidity',
      'sensors/sim-001/co2',
    ])
    expect(even.map((m) => JSON.parse(m.payload).value)).toEqual([21.5, 40, 612])
    expect(odd.map((m) => m.payload)).toEqual(['21.5', '40', '612'])
    expect(buildMessages('object', 'sim-001', TS, readings, 0)).toEqual([
      objectMessage('sim-001', TS, readings),
    ])
    expect(buildMessages('senml', 'sim-001', TS, readings, 0)).toEqual([
      senmlMessage('sim-001', TS, readings),
    ])
    expect(buildMessages('senml', 'sim-001', TS, [], 0)).toEqual([])
  })
})

function parses(payload: string): boolean {
  try {
    JSON.parse(payload)
    return true
  } catch {
    return false
  }
}

describe('malformed messages', () => {
  const now = Date.UTC(2025, 5, 1)
  const check: Record<MalformedKind, (topic: string, payload: string) => void> = {
    non_numeric: (topic, payload) => {
      expect(topic).toBe('sensors/dev-1/temperature')
      expect(Number.isNaN(Number(payload))).toBe(true)
      expect(parses(payload)).toBe(false)
    },
    truncated_json: (topic, payload) => {
      expect(topic).toBe('sensors/dev-1')
      expect(payload.startsWith('{"ts":')).toBe(true)
      expect(parses(payload)).toBe(false)
    },
    nan: (topic, payload) => {
      expect(topic).toBe('sensors/dev-1/humidity')
      expect(Number.isFinite(Number(payload))).toBe(false)
    },
    bad_metric_name: (topic) => {
      const metric = topic.split('/')[2]
      expect(metric).toBe('co2 ppm')
      expect(isIdentifier(metric)).toBe(false)
    },
    epoch_1970: (topic, payload) => {
      expect(topic).toBe('sensors/dev-1/temperature')
      const body = JSON.parse(payload) as { ts: number; value: number }
      expect(new Date(body.ts).getUTCFullYear()).toBe(1970)
      expect(body.value).toBe(21.5)
    },
  }

  it.each(MALFORMED_KINDS)('%s is on a sensors topic and breaks the contract', (kind) => {
    const { topic, payload } = malformedMessage(kind, 'dev-1', now)
    expect(topic.startsWith('sensors/dev-1')).toBe(true)
    check[kind](topic, payload)
  })

  it('the picker is seeded and covers every kind', () => {
    const a = createMalformedPicker(5)
    const b = createMalformedPicker(5)
    const picks = Array.from({ length: 200 }, () => a())
    expect(Array.from({ length: 200 }, () => b())).toEqual(picks)
    expect(new Set(picks)).toEqual(new Set(MALFORMED_KINDS))
  })
})
