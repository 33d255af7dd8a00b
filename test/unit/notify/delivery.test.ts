import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Alert } from '../../../src/contract/types.ts'
import {
  type ActiveChannel,
  backoffMs,
  createDelivery,
  type Delivery,
  type DeliveryEvent,
  decideAfterAttempt,
} from '../../../src/notify/delivery.ts'
import { type Outbox, openOutbox } from '../../../src/notify/outbox.ts'
import type {
  DeliveryPolicy,
  DeliveryResult,
  Notification,
  NotificationChannel,
} from '../../../src/notify/types.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

const T0 = Date.UTC(2026, 11, 2, 12, 0, 0)
const log = createSilentLogger()
const POLICY: DeliveryPolicy = {
  maxAttempts: 6,
  maxAgeMs: 3_600_000,
  retryBaseMs: 1_000,
  retryMaxMs: 30_000,
}
const FAIL: DeliveryResult = { ok: false, permanent: false, error: 'HTTP 500' }

describe('retry arithmetic', () => {
  it('backs off exponentially from retryBaseMs, capped at retryMaxMs, with full jitter', () => {
    const top = () => 0.999_999
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffMs(POLICY, n, top))).toEqual([
      999, 1_999, 3_999, 7_999, 15_999, 29_999, 29_999,
    ])
    // Full jitter: anywhere from 0 to the cap, drawn by `random`.
    expect(backoffMs(POLICY, 3, () => 0)).toBe(0)
    expect(backoffMs(POLICY, 3, () => 0.5)).toBe(2_000)
    expect(backoffMs(POLICY, 40, () => 0.5)).toBe(15_000)
  })

  it('retries a retryable failure at now + backoff, and honours Retry-After', () => {
    const at = { attempts: 2, createdAtMs: T0 }
    expect(decideAfterAttempt(POLICY, at, FAIL, T0 + 5_000, () => 0.25)).toEqual({
      state: 'pending',
      nextAttemptAt: T0 + 5_000 + 500,
      error: 'HTTP 500',
    })
    expect(
      decideAfterAttempt(
        POLICY,
        at,
        { ...FAIL, error: 'HTTP 429', retryAfterMs: 7_000 },
        T0 + 5_000,
        () => 0.25,
      ),
    ).toEqual({ state: 'pending', nextAttemptAt: T0 + 12_000, error: 'HTTP 429' })
    expect(decideAfterAttempt(POLICY, at, { ok: true }, T0, () => 0)).toEqual({
      state: 'delivered',
    })
  })

  it('dead-letters a permanent refusal at once, and after maxAttempts or maxAgeMs', () => {
    const first = { attempts: 1, createdAtMs: T0 }
    expect(
      decideAfterAttempt(
        POLICY,
        first,
        { ok: false, permanent: true, error: 'HTTP 410' },
        T0,
        () => 0,
      ),
    ).toEqual({ state: 'failed', error: 'refused for good: HTTP 410' })
    expect(
      decideAfterAttempt(POLICY, { attempts: 5, createdAtMs: T0 }, FAIL, T0, () => 0).state,
    ).toBe('pending')
    expect(decideAfterAttempt(POLICY, { attempts: 6, createdAtMs: T0 }, FAIL, T0, () => 0)).toEqual(
      {
        state: 'failed',
        error: 'HTTP 500 (gave up after 6 attempts)',
      },
    )
    expect(decideAfterAttempt(POLICY, first, FAIL, T0 + 3_600_000, () => 0)).toEqual({
      state: 'failed',
      error: 'HTTP 500 (expired: older than 3600000 ms)',
    })
    // Close to the age limit: the last attempt is at the limit, not past it.
    expect(decideAfterAttempt(POLICY, first, FAIL, T0 + 3_599_500, () => 0.999)).toEqual({
      state: 'pending',
      nextAttemptAt: T0 + 3_600_000,
      error: 'HTTP 500',
    })
    // A Retry-After past the limit: waiting is past the limit, coming early ignores the receiver.
    expect(
      decideAfterAttempt(POLICY, first, { ...FAIL, retryAfterMs: 10_000 }, T0 + 3_595_000, () => 0)
        .state,
    ).toBe('failed')
  })
})

/** A channel that answers from a script, one result per attempt, and records what it saw. */
function scriptedChannel(
  name: string,
  script: Array<DeliveryResult | 'hang'>,
): NotificationChannel & { seen: Array<{ id: string; attempt: number }>; aborted: number } {
  const seen: Array<{ id: string; attempt: number }> = []
  const channel = {
    name,
    kind: 'test',
    seen,
    aborted: 0,
    deliver(n: Notification, attempt: number, signal: AbortSignal): Promise<DeliveryResult> {
      seen.push({ id: n.id, attempt })
      const next = script.length > 1 ? script.shift() : script[0]
      if (next !== 'hang') return Promise.resolve(next ?? { ok: true })
      // Hangs like a receiver that never answers, until the attempt is aborted.
      return new Promise((resolve) =>
        signal.addEventListener('abort', () => {
          channel.aborted++
          resolve({ ok: false, permanent: false, error: 'aborted' })
        }),
      )
    },
    close: async () => {},
  }
  return channel
}

const alert: Alert = {
  id: 'high-temperature:gh-1',
  ruleId: 'high-temperature',
  kind: 'threshold',
  deviceId: 'gh-1',
  metric: 'temperature',
  severity: 'major',
  state: 'firing',
  value: 35,
  threshold: 30,
  since: T0,
  ts: T0,
  message: 'hot',
  flapping: false,
}

describe('delivery from the outbox', () => {
  let dir: TempDir
  let outbox: Outbox
  let delivery: Delivery | undefined
  const events: DeliveryEvent[] = []
  let seq = 0

  const notify = (channel: string, createdAt = Date.now()): string => {
    const id = `n-${++seq}`
    outbox.add({
      id,
      channel,
      route: 'ops',
      kind: 'firing',
      alerts: [alert],
      title: 't',
      text: 'x',
      createdAt,
    })
    return id
  }
  const deliver = (
    channels: Record<string, NotificationChannel>,
    options: { policy?: Partial<DeliveryPolicy>; timeoutMs?: number; concurrency?: number } = {},
  ) => {
    const active = new Map<string, ActiveChannel>(
      Object.entries(channels).map(([name, channel]) => [
        name,
        { channel, timeoutMs: options.timeoutMs ?? 5_000, concurrency: options.concurrency ?? 1 },
      ]),
    )
    delivery = createDelivery({
      outbox,
      channels: () => active,
      policy: () => ({ ...POLICY, retryBaseMs: 5, retryMaxMs: 20, ...options.policy }),
      log,
      onEvent: (e) => events.push(e),
    })
    delivery.kick()
    return delivery
  }

  beforeEach(async () => {
    dir = await createTempDir('delivery-')
    outbox = openOutbox({ file: join(dir.path, 'outbox.db') })
    events.length = 0
  })
  afterEach(async () => {
    await delivery?.stop()
    delivery = undefined
    outbox.close()
    await dir.remove()
  })

  it('retries a retryable failure with the same id until delivered', async () => {
    const hook = scriptedChannel('hook', [FAIL, FAIL, { ok: true }])
    const id = notify('hook')
    deliver({ hook })
    await vi.waitFor(() => expect(outbox.get(id)?.state).toBe('delivered'))
    expect(hook.seen).toEqual([
      { id, attempt: 1 },
      { id, attempt: 2 },
      { id, attempt: 3 },
    ])
    expect(outbox.get(id)).toMatchObject({ attempts: 3, lastError: 'HTTP 500' })
    expect(events.map((e) => e.outcome)).toEqual(['retried', 'retried', 'delivered'])
    expect(events[2]?.latencySeconds).toBeGreaterThanOrEqual(0)
  })

  it('dead-letters a permanent refusal after one attempt, and after maxAttempts retryable ones', async () => {
    const gone = scriptedChannel('gone', [{ ok: false, permanent: true, error: 'HTTP 410' }])
    const down = scriptedChannel('down', [FAIL])
    const refused = notify('gone')
    const tired = notify('down')
    deliver({ gone, down }, { policy: { maxAttempts: 3 } })
    await vi.waitFor(() => {
      expect(outbox.get(refused)?.state).toBe('failed')
      expect(outbox.get(tired)?.state).toBe('failed')
    })
    expect(gone.seen).toHaveLength(1)
    expect(down.seen.map((s) => s.attempt)).toEqual([1, 2, 3])
    expect(
      outbox.list({ state: 'failed', limit: 10 }).map((s) => [s.notification.id, s.lastError]),
    ).toEqual(
      expect.arrayContaining([
        [refused, 'refused for good: HTTP 410'],
        [tired, 'HTTP 500 (gave up after 3 attempts)'],
      ]),
    )
  })

  it('dead-letters a notification older than maxAgeMs after its next failure', async () => {
    const down = scriptedChannel('down', [FAIL])
    const old = notify('down', Date.now() - 60_000)
    deliver({ down }, { policy: { maxAgeMs: 30_000 } })
    await vi.waitFor(() => expect(outbox.get(old)?.state).toBe('failed'))
    expect(down.seen).toHaveLength(1)
    expect(outbox.get(old)?.lastError).toBe('HTTP 500 (expired: older than 30000 ms)')
  })

  it('aborts an attempt at the channel timeout and tries again', async () => {
    const slow = scriptedChannel('slow', ['hang', { ok: true }])
    const id = notify('slow')
    deliver({ slow }, { timeoutMs: 50 })
    await vi.waitFor(() => expect(outbox.get(id)?.state).toBe('delivered'))
    expect(slow.aborted).toBe(1)
    expect(outbox.get(id)?.lastError).toBe('timed out after 50 ms')
  })

  it('holds no more than the channel concurrency in flight, and a hung channel delays no other', async () => {
    const hung = scriptedChannel('hung', ['hang'])
    const fine = scriptedChannel('fine', [{ ok: true }])
    const stuck = [notify('hung'), notify('hung'), notify('hung')]
    const quick = [notify('fine'), notify('fine')]
    deliver({ hung, fine }, { timeoutMs: 600_000, concurrency: 2 })
    await vi.waitFor(() => {
      for (const id of quick) expect(outbox.get(id)?.state).toBe('delivered')
    })
    expect(delivery?.inFlight().get('hung')).toBe(2)
    expect(hung.seen.map((s) => s.id)).toEqual(stuck.slice(0, 2))
    for (const id of stuck) expect(outbox.get(id)?.state).toBe('pending')
  })

  it('at stop aborts what is in flight and leaves it pending, untouched, for the next start', async () => {
    const hung = scriptedChannel('hung', ['hang'])
    const id = notify('hung')
    const first = deliver({ hung }, { timeoutMs: 600_000 })
    await vi.waitFor(() => expect(hung.seen).toHaveLength(1))
    await first.stop()
    expect(hung.aborted).toBe(1)
    expect(outbox.get(id)).toMatchObject({ state: 'pending', attempts: 0, lastError: null })
    expect(events).toEqual([])

    const back = scriptedChannel('hung', [{ ok: true }])
    deliver({ hung: back })
    await vi.waitFor(() => expect(outbox.get(id)?.state).toBe('delivered'))
    expect(back.seen).toEqual([{ id, attempt: 1 }])
  })

  it('comes back no earlier than Retry-After says', async () => {
    const limited = scriptedChannel('limited', [
      { ok: false, permanent: false, error: 'HTTP 429', retryAfterMs: 300 },
      { ok: true },
    ])
    const id = notify('limited')
    const times: number[] = []
    const original = limited.deliver.bind(limited)
    limited.deliver = (n, attempt, signal) => {
      times.push(Date.now())
      return original(n, attempt, signal)
    }
    deliver({ limited })
    await vi.waitFor(() => expect(outbox.get(id)?.state).toBe('delivered'))
    const [first, second] = times as [number, number]
    expect(second - first).toBeGreaterThanOrEqual(300)
  })
})
