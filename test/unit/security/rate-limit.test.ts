import type { AedesOptions, Client, PublishPacket } from 'aedes'
import { describe, expect, it } from 'vitest'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import type { ReadingRejected } from '../../../src/bus/events.ts'
import { createPublishRateLimiter, createTokenBucket } from '../../../src/security/rate-limit.ts'
import { captureLogs } from '../../helpers/log-capture.ts'

type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

describe('token bucket', () => {
  it('allows a burst at once, then the rate', () => {
    const bucket = createTokenBucket({ ratePerSec: 2, burst: 3 }, 0)
    expect([0, 0, 0, 0].map((t) => bucket.take(t))).toEqual([true, true, true, false])
    // 2 per second: one token every 500 ms.
    expect(bucket.take(499)).toBe(false)
    expect(bucket.take(500)).toBe(true)
    expect(bucket.take(500)).toBe(false)
    expect(bucket.take(1_500)).toBe(true)
    expect(bucket.take(1_500)).toBe(true)
    expect(bucket.take(1_500)).toBe(false)
  })

  it('never holds more than the burst, however long it was idle', () => {
    const bucket = createTokenBucket({ ratePerSec: 100, burst: 5 }, 0)
    expect(bucket.available(3_600_000)).toBe(5)
    const taken = Array.from({ length: 7 }, () => bucket.take(3_600_000))
    expect(taken.filter(Boolean)).toHaveLength(5)
  })

  it('accumulates fractions of a token across calls', () => {
    const bucket = createTokenBucket({ ratePerSec: 1, burst: 1 }, 0)
    expect(bucket.take(0)).toBe(true)
    // 10 calls 100 ms apart add up to one token, not ten roundings down to zero.
    const results = Array.from({ length: 10 }, (_, i) => bucket.take((i + 1) * 100))
    expect(results).toEqual([...Array(9).fill(false), true])
  })

  it('refills nothing when the clock steps back, and recovers when it moves on', () => {
    const bucket = createTokenBucket({ ratePerSec: 1, burst: 1 }, 10_000)
    expect(bucket.take(10_000)).toBe(true)
    expect(bucket.take(5_000)).toBe(false)
    expect(bucket.available(5_000)).toBe(0)
    expect(bucket.take(11_000)).toBe(true)
  })
})

/** What a wrapped authorizePublish chain did with one publish. */
interface Outcome {
  passedOn: boolean
  error: Error | null | undefined
}

function setUp(options = { ratePerSec: 1, burst: 5, disconnectAfter: 100 }) {
  const { log, lines } = captureLogs('debug')
  const bus = createEventBus(log)
  const rejected: ReadingRejected[] = []
  bus.on('test', 'reading.rejected', (event) => rejected.push(event))
  let clockMs = 0
  const limiter = createPublishRateLimiter(
    { bus, log, clock: () => clockMs, now: () => 1_764_165_915_000 },
    options,
  )
  const passedOn: PublishPacket[] = []
  const next: AuthorizePublish = (_client, packet, callback) => {
    passedOn.push(packet)
    callback(null)
  }
  const authorize = limiter.authorizePublish(next)
  const publish = (client: Client | null, topic: string, payload = '21.5', retain = false) => {
    const packet = {
      cmd: 'publish',
      topic,
      payload: Buffer.from(payload),
      qos: 1,
      retain,
      dup: false,
      messageId: 1,
    } as PublishPacket
    const before = passedOn.length
    let outcome: Outcome | undefined
    authorize(client, packet, (error) => {
      outcome = { passedOn: passedOn.length > before, error }
    })
    if (!outcome) throw new Error('callback not called synchronously')
    return { ...outcome, packet }
  }
  return {
    limiter,
    rejected,
    lines,
    publish,
    advance: (ms: number) => {
      clockMs += ms
    },
  }
}

const client = (id: string) => ({ id }) as unknown as Client

describe('publish rate limiter', () => {
  it('passes the burst on and dead-letters exactly the publishes over it as rate_limited', () => {
    const { publish, rejected, limiter } = setUp()
    const device = client('dev-1')
    const outcomes = Array.from({ length: 8 }, (_, i) =>
      publish(device, 'sensors/dev-1/temperature', String(20 + i)),
    )
    expect(outcomes.map((o) => o.passedOn)).toEqual([
      true,
      true,
      true,
      true,
      true,
      false,
      false,
      false,
    ])
    // Every one is accepted at the MQTT level: no error, so a PUBACK and no disconnect.
    expect(outcomes.map((o) => o.error ?? null)).toEqual(Array(8).fill(null))
    expect(rejected).toHaveLength(3)
    expect(rejected[0]).toMatchObject({
      deviceId: 'dev-1',
      clientId: 'dev-1',
      deadLetter: {
        topic: 'sensors/dev-1/temperature',
        reason: 'rate_limited',
        payload: '25',
        payloadEncoding: 'utf8',
        ts: 1_764_165_915_000,
      },
    })
    expect(rejected[0]?.deadLetter.detail).toContain('1/s (burst 5)')
    expect(rejected.map((r) => r.deadLetter.payload)).toEqual(['25', '26', '27'])
    expect(limiter.stats()).toEqual({ limited: 3, disconnected: 0 })
  })

  it('passes publishes on again as tokens come back', () => {
    const { publish, advance } = setUp()
    const device = client('dev-1')
    for (let i = 0; i < 5; i++) publish(device, 'sensors/dev-1/t')
    expect(publish(device, 'sensors/dev-1/t').passedOn).toBe(false)
    advance(1_000)
    expect(publish(device, 'sensors/dev-1/t').passedOn).toBe(true)
    expect(publish(device, 'sensors/dev-1/t').passedOn).toBe(false)
  })

  it('keeps one bucket per client: one flooding device does not limit another', () => {
    const { publish, rejected } = setUp()
    const flooder = client('flooder')
    const quiet = client('quiet')
    for (let i = 0; i < 20; i++) publish(flooder, 'sensors/flooder/t')
    expect(publish(quiet, 'sensors/quiet/t').passedOn).toBe(true)
    expect(rejected.every((r) => r.deviceId === 'flooder')).toBe(true)
  })

  it('does not forward or retain a limited publish on any topic; dead-letters only readings', () => {
    const { publish, rejected, limiter } = setUp({ ratePerSec: 1, burst: 1, disconnectAfter: 100 })
    const app = client('app-1')
    const first = publish(app, 'lights/kitchen', 'on', true)
    expect(first.passedOn).toBe(true)
    expect(limiter.forwards(first.packet)).toBe(true)
    expect(first.packet.retain).toBe(true)

    const limited = publish(app, 'lights/kitchen', 'off', true)
    expect(limited).toMatchObject({ passedOn: false, error: null })
    expect(limiter.forwards(limited.packet)).toBe(false)
    // Aedes copies the packet for delivery but keeps the payload buffer.
    expect(limiter.forwards({ payload: limited.packet.payload })).toBe(false)
    expect(limited.packet.retain).toBe(false)
    // Not a reading: nothing to dead-letter.
    expect(rejected).toHaveLength(0)

    const reading = publish(app, 'sensors/bad id/t')
    expect(reading.passedOn).toBe(false)
    expect(rejected.map((r) => r.deviceId)).toEqual(['_unknown'])
  })

  it('disconnects after disconnectAfter limited publishes in a row, and logs that once', () => {
    const { publish, rejected, lines, limiter } = setUp({
      ratePerSec: 1,
      burst: 2,
      disconnectAfter: 3,
    })
    const device = client('dev-flood')
    const outcomes = Array.from({ length: 5 }, () => publish(device, 'sensors/dev-flood/t'))
    expect(outcomes.map((o) => o.passedOn)).toEqual([true, true, false, false, false])
    expect(outcomes.slice(0, 4).map((o) => o.error ?? null)).toEqual([null, null, null, null])
    // The third limited publish in a row closes the connection (an error: no PUBACK).
    expect(outcomes[4]?.error).toBeInstanceOf(Error)
    expect(rejected).toHaveLength(3)
    expect(limiter.stats()).toEqual({ limited: 3, disconnected: 1 })
    const warned = lines.filter((l) => String(l.msg).includes('RATE_DISCONNECT_AFTER'))
    expect(warned).toEqual([
      expect.objectContaining({ level: 40, clientId: 'dev-flood', limitedInRow: 3 }),
    ])
  })

  it('counts limited publishes in a row: one within the rate starts the count again', () => {
    const { publish, advance } = setUp({ ratePerSec: 1, burst: 1, disconnectAfter: 3 })
    const device = client('dev-1')
    publish(device, 'sensors/dev-1/t')
    publish(device, 'sensors/dev-1/t')
    publish(device, 'sensors/dev-1/t')
    advance(1_000)
    expect(publish(device, 'sensors/dev-1/t').passedOn).toBe(true)
    expect(publish(device, 'sensors/dev-1/t').error ?? null).toBeNull()
    expect(publish(device, 'sensors/dev-1/t').error ?? null).toBeNull()
    expect(publish(device, 'sensors/dev-1/t').error).toBeInstanceOf(Error)
  })

  it("never limits the gateway's own publishes (no client)", () => {
    const { publish } = setUp({ ratePerSec: 1, burst: 1, disconnectAfter: 1 })
    const outcomes = Array.from({ length: 10 }, () => publish(null, 'alerts/major/dev-1/hot'))
    expect(outcomes.every((o) => o.passedOn && !o.error)).toBe(true)
  })
})
