import { EventEmitter } from 'node:events'
import type { AedesOptions, Client, PublishPacket } from 'aedes'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { SUPPRESSED_TOPIC } from '../../../src/ingest/suppressed-publishes.ts'
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

  it('says how long until the next token', () => {
    const bucket = createTokenBucket({ ratePerSec: 4, burst: 1 }, 0)
    expect(bucket.msUntilToken(0)).toBe(0)
    expect(bucket.take(0)).toBe(true)
    expect(bucket.msUntilToken(0)).toBe(250)
    expect(bucket.msUntilToken(100)).toBeCloseTo(150)
    expect(bucket.msUntilToken(250)).toBe(0)
  })

  it('refills nothing when the clock steps back, and recovers when it moves on', () => {
    const bucket = createTokenBucket({ ratePerSec: 1, burst: 1 }, 10_000)
    expect(bucket.take(10_000)).toBe(true)
    expect(bucket.take(5_000)).toBe(false)
    expect(bucket.available(5_000)).toBe(0)
    expect(bucket.take(11_000)).toBe(true)
  })
})

/** What a wrapped authorizePublish chain did with one publish, so far. */
interface Outcome {
  packet: PublishPacket
  /** The chain's `next` got it (ingest would store it). */
  passedOn: boolean
  /** The callback was called (Aedes would go on: PUBACK, or close on an error). */
  answered: boolean
  error: Error | null | undefined
}

type FakeClient = Client & { conn: EventEmitter; closed: boolean }

/** An Aedes client as far as the limiter looks at it: its id, `closed`, and its socket's 'close'. */
const client = (id: string) =>
  ({ id, closed: false, conn: new EventEmitter() }) as unknown as FakeClient

function setUp(
  options: {
    ratePerSec: number
    burst: number
    disconnectAfter: number
    noteIntervalMs?: number
  } = {
    ratePerSec: 1,
    burst: 5,
    disconnectAfter: 100,
  },
) {
  const { log, lines } = captureLogs('debug')
  // Fake timers drive both the limiter's clock (Date.now) and its timer.
  const limiter = createPublishRateLimiter({ log, clock: () => Date.now() }, options)
  const passedOn: PublishPacket[] = []
  const next: AuthorizePublish = (_client, packet, callback) => {
    passedOn.push(packet)
    callback(null)
  }
  const authorize = limiter.authorizePublish(next)
  let messageId = 0
  const publish = (
    client: Client | null,
    topic: string,
    {
      payload = '21.5',
      qos = 1,
      retain = false,
    }: { payload?: string; qos?: 0 | 1 | 2; retain?: boolean } = {},
  ): Outcome => {
    const packet = {
      cmd: 'publish',
      topic,
      payload: Buffer.from(payload),
      qos,
      retain,
      dup: false,
      messageId: ++messageId,
    } as PublishPacket
    const outcome: Outcome = { packet, passedOn: false, answered: false, error: undefined }
    authorize(client, packet, (error) => {
      outcome.answered = true
      outcome.error = error
      outcome.passedOn = passedOn.includes(packet)
    })
    return outcome
  }
  return {
    limiter,
    lines,
    passedOn,
    publish,
    advance: (ms: number) => vi.advanceTimersByTime(ms),
    payloads: () => passedOn.map((p) => String(p.payload)),
  }
}

describe('publish rate limiter', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_764_165_915_000 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('passes the burst on at once and holds QoS 1 publishes over it until a token comes, in order', () => {
    const { publish, advance, limiter, payloads } = setUp()
    const device = client('dev-1')
    const outcomes = Array.from({ length: 8 }, (_, i) =>
      publish(device, 'sensors/dev-1/temperature', { payload: String(20 + i) }),
    )
    // The burst of five went on (and was answered: ingest's PUBACK); three wait, unanswered.
    expect(outcomes.map((o) => o.answered)).toEqual([
      true,
      true,
      true,
      true,
      true,
      false,
      false,
      false,
    ])
    expect(payloads()).toEqual(['20', '21', '22', '23', '24'])
    expect(limiter.stats()).toMatchObject({ pacedQos1: 3, waiting: 3, droppedQos0: 0 })
    // 1/s: the next token is one second away, and goes to the oldest held publish.
    advance(999)
    expect(outcomes[5]?.answered).toBe(false)
    advance(1)
    expect(outcomes.map((o) => o.answered)).toEqual([
      true,
      true,
      true,
      true,
      true,
      true,
      false,
      false,
    ])
    advance(2_000)
    expect(outcomes.every((o) => o.answered && o.passedOn && o.error === null)).toBe(true)
    expect(payloads()).toEqual(['20', '21', '22', '23', '24', '25', '26', '27'])
    expect(limiter.stats()).toMatchObject({ pacedQos1: 3, waiting: 0, disconnected: 0 })
    // A paced publish is a normal one: forwarded, its retain flag kept.
    expect(outcomes.every((o) => limiter.forwards(o.packet))).toBe(true)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('keeps one timer per client however many publishes wait, and paces QoS 2 the same way', () => {
    const { publish, advance, limiter } = setUp({
      ratePerSec: 10,
      burst: 1,
      disconnectAfter: 1_000,
    })
    const device = client('dev-1')
    const outcomes = Array.from({ length: 50 }, (_, i) =>
      publish(device, 'sensors/dev-1/t', { qos: i % 2 === 0 ? 1 : 2 }),
    )
    expect(vi.getTimerCount()).toBe(1)
    expect(limiter.stats()).toMatchObject({ pacedQos1: 24, pacedQos2: 25, waiting: 49 })
    advance(2_000)
    expect(outcomes.filter((o) => o.answered)).toHaveLength(21)
    advance(3_000)
    expect(outcomes.every((o) => o.answered)).toBe(true)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('drops QoS 0 publishes over the rate: not passed on, not forwarded, not retained', () => {
    const { publish, advance, limiter, lines } = setUp({
      ratePerSec: 1,
      burst: 1,
      disconnectAfter: 100,
    })
    const app = client('app-1')
    const first = publish(app, 'lights/kitchen', { payload: 'on', qos: 0, retain: true })
    expect(first).toMatchObject({ passedOn: true, answered: true })
    expect(limiter.forwards(first.packet)).toBe(true)
    expect(first.packet.retain).toBe(true)

    const dropped = publish(app, 'lights/kitchen', { payload: 'off', qos: 0, retain: true })
    // Answered (so Aedes reads on from the socket) when the client's next token is due.
    expect(dropped).toMatchObject({ passedOn: false, answered: false })
    advance(999)
    expect(dropped.answered).toBe(false)
    advance(1)
    expect(dropped).toMatchObject({ passedOn: false, answered: true, error: null })
    expect(limiter.forwards(dropped.packet)).toBe(false)
    // Diverted as refused publishes are: Aedes copies the packet for delivery, topic included.
    expect(dropped.packet.topic).toBe(SUPPRESSED_TOPIC)
    expect(limiter.forwards({ topic: dropped.packet.topic })).toBe(false)
    expect(dropped.packet.retain).toBe(false)
    // The token that came is taken by the next publish; the 19 after it are dropped.
    const more = Array.from({ length: 20 }, () => publish(app, 'sensors/app-1/t', { qos: 0 }))
    expect(more.map((o) => o.passedOn)).toEqual([true, ...Array(19).fill(false)])
    expect(limiter.stats()).toMatchObject({ droppedQos0: 20, waiting: 0 })
    // Each is answered once the refill has earned it back: the 19th 19 s from now. Until then
    // Aedes reads no more of that socket: a flood is held back by TCP, not read and dropped.
    advance(18_000)
    expect(more.filter((o) => o.answered)).toHaveLength(19)
    advance(1_000)
    expect(more.every((o) => o.answered && o.error === null)).toBe(true)
    expect(vi.getTimerCount()).toBe(0)
    // Counted, not logged one by one: one warn line for the lot.
    const notes = lines.filter((l) => String(l.msg).startsWith('publishes over PUBLISH_RATE'))
    expect(notes).toEqual([
      expect.objectContaining({ level: 40, clientId: 'app-1', droppedQos0: 1 }),
    ])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('logs publishes over the rate at most once per interval, with the counts since the last line', () => {
    const { publish, advance, lines } = setUp({
      ratePerSec: 1,
      burst: 1,
      disconnectAfter: 100_000,
      noteIntervalMs: 10_000,
    })
    const device = client('dev-1')
    for (let i = 0; i < 30; i++) publish(device, 'sensors/dev-1/t', { qos: 0 })
    advance(10_000)
    for (let i = 0; i < 5; i++) publish(device, 'sensors/dev-1/t', { qos: 0 })
    const notes = lines.filter((l) => String(l.msg).startsWith('publishes over PUBLISH_RATE'))
    // 29 dropped before the second line, which reports the 28 after the first plus one more.
    expect(notes.map((n) => n.droppedQos0)).toEqual([1, 29])
  })

  it('gives tokens to held publishes first: a QoS 0 one arriving behind them is dropped', () => {
    const { publish, advance, payloads } = setUp({ ratePerSec: 1, burst: 1, disconnectAfter: 100 })
    const device = client('dev-1')
    publish(device, 'sensors/dev-1/t', { payload: 'a' })
    const held = publish(device, 'sensors/dev-1/t', { payload: 'b' })
    // A token is there (the clock moved) but the timer has not run yet: it belongs to 'b'.
    vi.setSystemTime(Date.now() + 1_000)
    const qos0 = publish(device, 'sensors/dev-1/t', { payload: 'c', qos: 0 })
    const qos1 = publish(device, 'sensors/dev-1/t', { payload: 'd' })
    expect(qos0).toMatchObject({ passedOn: false, answered: false })
    expect(qos1.answered).toBe(false)
    // The timer, still set for 1 s after 'b', gives the token to 'b'; 'd' waits for the next.
    advance(1_000)
    expect(held.answered).toBe(true)
    expect(qos0).toMatchObject({ passedOn: false, answered: true })
    expect(payloads()).toEqual(['a', 'b'])
    advance(1_000)
    expect(payloads()).toEqual(['a', 'b', 'd'])
  })

  it('keeps one bucket per client: one flooding device does not limit another', () => {
    const { publish, limiter } = setUp()
    const flooder = client('flooder')
    const quiet = client('quiet')
    for (let i = 0; i < 20; i++) publish(flooder, 'sensors/flooder/t')
    for (let i = 0; i < 20; i++) publish(flooder, 'sensors/flooder/t', { qos: 0 })
    expect(publish(quiet, 'sensors/quiet/t')).toMatchObject({ passedOn: true, answered: true })
    expect(publish(quiet, 'sensors/quiet/t', { qos: 0 })).toMatchObject({ passedOn: true })
    expect(limiter.stats()).toMatchObject({ waiting: 15, droppedQos0: 20 })
  })

  it('disconnects a QoS 0 client far over its rate although tokens keep coming in between', () => {
    // 10/s: a token every 100 ms. The old "limited in a row" count was reset by each of them.
    const { publish, advance, lines, limiter } = setUp({
      ratePerSec: 10,
      burst: 1,
      disconnectAfter: 20,
    })
    const device = client('dev-flood')
    // Twice the rate for 10 s: half dropped, never far over.
    for (let i = 0; i < 200; i++) {
      expect(publish(device, 'sensors/dev-flood/t', { qos: 0 }).error ?? null).toBeNull()
      advance(50)
    }
    expect(limiter.stats()).toMatchObject({ disconnected: 0 })
    // Ten times the rate: 80 more a second than the bucket earns back.
    const outcomes: Outcome[] = []
    for (let i = 0; i < 100 && !outcomes.some((o) => o.error); i++) {
      outcomes.push(publish(device, 'sensors/dev-flood/t', { qos: 0 }))
      advance(10)
    }
    const closedAt = outcomes.findIndex((o) => o.error instanceof Error)
    // Tokens were taken between the drops, and it was closed all the same.
    expect(outcomes.slice(0, closedAt).some((o) => o.passedOn)).toBe(true)
    expect(closedAt).toBeGreaterThan(15)
    expect(closedAt).toBeLessThan(40)
    expect(limiter.stats()).toMatchObject({ disconnected: 1 })
    const warned = lines.filter((l) => String(l.msg).includes('RATE_DISCONNECT_AFTER'))
    expect(warned).toEqual([expect.objectContaining({ level: 40, clientId: 'dev-flood' })])
    expect(warned[0]?.aheadOfBucket as number).toBeGreaterThanOrEqual(20)
    // The rest of that socket read is ignored: no callback, nothing passed on.
    const after = publish(device, 'sensors/dev-flood/t', { qos: 0 })
    expect(after).toMatchObject({ answered: false, passedOn: false })
  })

  it('disconnects a QoS 1 client with more than disconnectAfter publishes waiting, and releases them', () => {
    const { publish, advance, limiter, passedOn } = setUp({
      ratePerSec: 10,
      burst: 5,
      disconnectAfter: 30,
    })
    const device = client('dev-window')
    const outcomes = Array.from({ length: 40 }, () => publish(device, 'sensors/dev-window/t'))
    // Five within the burst; 29 waiting; the 30th ahead of the bucket closes the connection.
    expect(outcomes.slice(0, 5).every((o) => o.passedOn)).toBe(true)
    expect(outcomes.slice(5, 34).some((o) => o.answered)).toBe(false)
    expect(outcomes[34]?.error).toBeInstanceOf(Error)
    expect(outcomes.slice(35).some((o) => o.answered)).toBe(false)
    expect(limiter.stats()).toMatchObject({ disconnected: 1, waiting: 0 })
    // Released: never passed on, never answered (Aedes would write to a closed socket).
    advance(10_000)
    expect(passedOn).toHaveLength(5)
    expect(outcomes.filter((o) => o.answered)).toHaveLength(6)
    expect(vi.getTimerCount()).toBe(0)
  })

  it("releases a closed connection's held publishes without answering them", () => {
    const { publish, advance, limiter, passedOn } = setUp({
      ratePerSec: 1,
      burst: 1,
      disconnectAfter: 100,
    })
    const device = client('dev-gone')
    const outcomes = Array.from({ length: 10 }, () => publish(device, 'sensors/dev-gone/t'))
    expect(limiter.stats().waiting).toBe(9)
    device.closed = true
    device.conn.emit('close')
    expect(limiter.stats().waiting).toBe(0)
    expect(vi.getTimerCount()).toBe(0)
    advance(60_000)
    expect(passedOn).toHaveLength(1)
    expect(outcomes.filter((o) => o.answered)).toHaveLength(1)
  })

  it('releases them at the next token at the latest when no close event comes', () => {
    const { publish, advance, limiter, passedOn } = setUp({
      ratePerSec: 1,
      burst: 1,
      disconnectAfter: 100,
    })
    const device = client('dev-gone')
    for (let i = 0; i < 5; i++) publish(device, 'sensors/dev-gone/t')
    device.closed = true
    advance(1_000)
    expect(limiter.stats().waiting).toBe(0)
    expect(passedOn).toHaveLength(1)
    expect(vi.getTimerCount()).toBe(0)
  })

  it("never limits the gateway's own publishes (no client)", () => {
    const { publish } = setUp({ ratePerSec: 1, burst: 1, disconnectAfter: 1 })
    const outcomes = Array.from({ length: 10 }, () => publish(null, 'alerts/major/dev-1/hot'))
    expect(outcomes.every((o) => o.passedOn && !o.error)).toBe(true)
  })
})
