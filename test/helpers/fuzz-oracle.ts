import { isSensorTopic } from '../../src/contract/topics.ts'
import type { RejectReason } from '../../src/contract/types.ts'
import { type ParseOptions, parsePublish } from '../../src/ingest/parse-publish.ts'
import type { FuzzMessage } from './fuzz-generators.ts'

/** What the gateway must do with one publish, as the pure parser decides it. */
export type ExpectedOutcome =
  /** Not on `sensors/...`: the broker passes it through; ingest never sees it. */
  | { kind: 'passthrough' }
  /** Stored: this many readings (rows may be fewer when readings share an identity). */
  | { kind: 'readings'; count: number }
  /** Dead-lettered once, with this reason. */
  | { kind: 'dead-letter'; reason: RejectReason }
  /**
   * The answer depends on when the gateway reads its clock (a timestamp near now + skew): the
   * parser answers differently at the two ends of the horizon. Not sent by the fuzz run.
   */
  | { kind: 'time-sensitive' }

/**
 * The outcome of `message` at a receive time anywhere in [nowMs, nowMs + horizonMs]. The gateway
 * reads its own clock when the publish arrives, a little after the sender computed this; the
 * window's only moving edge (now + MAX_FUTURE_SKEW) moves one way, so when the parser gives the
 * same answer at both ends it gives it everywhere in between.
 */
export function expectedOutcome(
  message: FuzzMessage,
  nowMs: number,
  options: ParseOptions,
  horizonMs = 60_000,
): ExpectedOutcome {
  if (!isSensorTopic(message.topic)) return { kind: 'passthrough' }
  const early = parsePublish(message.topic, message.payload, nowMs, options)
  const late =
    horizonMs > 0 ? parsePublish(message.topic, message.payload, nowMs + horizonMs, options) : early
  if (early.ok && late.ok && early.readings.length === late.readings.length) {
    return { kind: 'readings', count: early.readings.length }
  }
  if (!early.ok && !late.ok && early.reason === late.reason) {
    return { kind: 'dead-letter', reason: early.reason }
  }
  return { kind: 'time-sensitive' }
}
