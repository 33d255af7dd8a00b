import { createRequire } from 'node:module'
import type { AedesOptions } from 'aedes'

// mqemitter is CommonJS without types; this is the one Aedes 1.2 would create itself.
const require = createRequire(import.meta.url)
const mqemitter = require('mqemitter') as (options: {
  concurrency: number
  matchEmptyLevels: boolean
}) => EmitterInternals

type Listener = (message: unknown, done: () => void) => void
type Callback = (err?: Error) => void

/** The parts of mqemitter 7 this reaches into (fields of its instance, not its API). */
interface EmitterInternals {
  current: number
  closed: boolean
  _doing: boolean
  _messageQueue: unknown[]
  _messageCallbacks: Callback[]
  _matcher: { match(topic: string): Listener[] }
  _parallel(that: unknown, listeners: Listener[], message: unknown, done: Callback): void
  _do(message: { topic: string }, callback: Callback): EmitterInternals
  emit(message: { topic: string }, callback?: Callback): EmitterInternals
}

/** Dispatches nested in one another on the stack before the next waits for setImmediate. */
const MAX_SYNC_DEPTH = 64

/**
 * Aedes' in-memory message emitter, made safe for deep backlogs. mqemitter dispatches the next
 * queued message from inside the completion of the previous one; when every listener completes
 * at once (a subscriber that has just gone away), a backlog of thousands is dispatched in one
 * recursion and the process dies of `RangeError: Maximum call stack size exceeded` (found by
 * `npm run bench`, reproduced by bench/slow-subscriber-crash.ts; upstream mcollina/mqemitter
 * PR 204 is still open). Here a dispatch nested deeper than MAX_SYNC_DEPTH continues on the next
 * turn of the event loop, and messages emitted meanwhile queue behind it, so the order in which
 * subscribers get messages is kept (Aedes drops one numbered lower than one already delivered).
 */
export function createStackSafeEmitter(concurrency: number): NonNullable<AedesOptions['mq']> {
  const mq = mqemitter({ concurrency, matchEmptyLevels: true })
  let depth = 0
  let deferred = 0

  const dispatch = (message: { topic: string }, callback: Callback) => {
    depth++
    try {
      mq._parallel(mq, mq._matcher.match(message.topic), message, callback)
    } finally {
      depth--
    }
  }

  mq._do = (message, callback) => {
    mq._doing = true
    mq.current++
    if (depth < MAX_SYNC_DEPTH) {
      dispatch(message, callback)
      return mq
    }
    deferred++
    setImmediate(() => {
      deferred--
      dispatch(message, callback)
    })
    return mq
  }

  const emit = mq.emit.bind(mq)
  mq.emit = (message, callback) => {
    if (deferred > 0 && !mq.closed) {
      mq._messageQueue.push(message)
      mq._messageCallbacks.push(callback ?? (() => {}))
      return mq
    }
    return emit(message, callback)
  }
  return mq as unknown as NonNullable<AedesOptions['mq']>
}
