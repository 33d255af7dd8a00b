import { createRequire } from 'node:module'
import { describe, expect, it, vi } from 'vitest'
import { createStackSafeEmitter } from '../../../src/broker/stack-safe-emitter.ts'

const require = createRequire(import.meta.url)

interface Emitter {
  on(
    topic: string,
    listener: (message: { topic: string; n: number }, done: () => void) => void,
  ): void
  emit(message: { topic: string; n: number }, callback?: () => void): void
}

const BACKLOG = 20_000

/**
 * A backlog queued behind a listener that holds its message, then drained by listeners that
 * complete at once: what a subscriber that has just gone away does to Aedes' emitter.
 */
function drainBacklog(mq: Emitter): { seen: number[]; start(): void } {
  const seen: number[] = []
  let held: (() => void) | undefined
  mq.on('sensors/#', (message, done) => {
    if (message.n === 0) {
      held = done
      return
    }
    seen.push(message.n)
    done()
  })
  for (let n = 0; n <= BACKLOG; n++) mq.emit({ topic: `sensors/dev/${n % 7}`, n })
  return { seen, start: () => held?.() }
}

describe('the stack-safe message emitter', () => {
  it("mqemitter's own dispatch overflows the stack on such a backlog (what this guards)", () => {
    const plain = require('mqemitter')({ concurrency: 1, matchEmptyLevels: true }) as Emitter
    const { start } = drainBacklog(plain)
    expect(start).toThrow(RangeError)
  })

  it('drains the same backlog without overflowing, every message once, in order', async () => {
    const safe = createStackSafeEmitter(1) as unknown as Emitter
    const { seen, start } = drainBacklog(safe)
    start()
    // Messages emitted while the drain is spread over event-loop turns queue behind it.
    safe.emit({ topic: 'sensors/dev/late', n: BACKLOG + 1 })
    await vi.waitFor(() => expect(seen).toHaveLength(BACKLOG + 1), { timeout: 10_000 })
    expect(seen).toEqual(Array.from({ length: BACKLOG + 1 }, (_, i) => i + 1))
  })
})
