/**
 * Property-based tests of the ingest parser and of ingest as a whole ("nothing lost"): every
 * publish, whatever its topic and bytes, becomes readings or exactly one dead letter with a
 * reason, never a throw and never both; readings are well-formed; the dead letter carries the
 * payload faithfully; and through the real ingest, store writer and SQLite file, every publish is
 * stored or dead-lettered, exactly one of the two, with counts that reconcile.
 *
 * The generators are shared with the fuzz run (scripts/fuzz.ts): test/helpers/fuzz-generators.ts.
 * A failure prints fast-check's seed and path; `FC_SEED=<seed>` reruns that seed.
 */
import { join } from 'node:path'
import type { Client, PublishPacket } from 'aedes'
import Database from 'better-sqlite3'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import type { ReadingRejected } from '../../../src/bus/events.ts'
import { isIdentifier } from '../../../src/contract/identifiers.ts'
import { isSensorTopic, UNKNOWN_DEVICE_ID } from '../../../src/contract/topics.ts'
import { REJECT_REASONS, type Reading, type RejectReason } from '../../../src/contract/types.ts'
import { createIngest, type DurableSink } from '../../../src/ingest/ingest.ts'
import {
  DEAD_LETTER_PAYLOAD_CHARS,
  DEAD_LETTER_TOPIC_CHARS,
  DEFAULT_PARSE_OPTIONS,
  MAX_UNIT_CHARS,
  type ParseOptions,
  type ParseResult,
  parsePublish,
  toDeadLetter,
} from '../../../src/ingest/parse-publish.ts'
import { createSqliteStore } from '../../../src/store/sqlite-store.ts'
import { createStoreWriter } from '../../../src/store/store-writer.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import {
  anyPayload,
  badIdentifier,
  deviceId,
  type FuzzMessage,
  fuzzMessage,
  fuzzOptions,
  identifier,
  isoTimestamp,
  metricName,
  numberText,
  oddTopic,
  senmlPayload,
  timestampMs,
} from '../../helpers/fuzz-generators.ts'
import { createTempDir } from '../../helpers/temp-dir.ts'

/** Receive time of every publish here: 2025-11-26T12:00:00.000Z. */
const NOW = Date.UTC(2025, 10, 26, 12, 0, 0)
const OPTIONS: ParseOptions = DEFAULT_PARSE_OPTIONS
const GEN = fuzzOptions(NOW, {
  maxFutureSkewMs: OPTIONS.maxFutureSkewMs,
  minTimestampMs: OPTIONS.minTimestampMs,
  maxPayloadBytes: OPTIONS.maxPayloadBytes,
})
/** The reasons parsePublish itself gives; the others come from the store, ACL and rate limit. */
const PARSER_REASONS: readonly RejectReason[] = REJECT_REASONS.filter(
  (r) => r !== 'store_rejected' && r !== 'not_authorized' && r !== 'rate_limited',
)
const CONTROL_CHARS = /\p{Cc}/u
/** Generous: a few thousand runs take seconds, more on a busy machine; nothing here is timed. */
const PROPERTY_TIMEOUT_MS = 120_000
const SEED = process.env.FC_SEED === undefined ? {} : { seed: Number(process.env.FC_SEED) }

/** The device level of a topic when it is an identifier, as rejections are filed. */
function expectedDeviceId(topic: string): string {
  if (!topic.startsWith('sensors/')) return UNKNOWN_DEVICE_ID
  const slash = topic.indexOf('/', 'sensors/'.length)
  const level = topic.slice('sensors/'.length, slash === -1 ? undefined : slash)
  return isIdentifier(level) ? level : UNKNOWN_DEVICE_ID
}

/** The checks every parse result must pass, whatever the input. Throws (fails) otherwise. */
function checkResult(message: FuzzMessage, result: ParseResult, nowMs: number): void {
  const keys = Object.keys(result).sort()
  expect(result.deviceId).toBe(expectedDeviceId(message.topic))
  if (result.ok) {
    // Readings only: never a reason beside them.
    expect(keys).toEqual(['deviceId', 'ok', 'readings'])
    expect(result.readings.length).toBeGreaterThan(0)
    expect(isIdentifier(result.deviceId)).toBe(true)
    for (const reading of result.readings) checkReading(reading, result.deviceId, nowMs)
    const levels = message.topic.split('/')
    if (levels.length === 3) {
      // sensors/{d}/{m}: one reading, of that metric.
      expect(result.readings).toHaveLength(1)
      expect(result.readings[0]?.metric).toBe(levels[2])
    }
  } else {
    // A dead letter only: a reason from the contract, a detail, no readings.
    expect(keys).toEqual(['detail', 'deviceId', 'ok', 'reason'])
    expect(PARSER_REASONS).toContain(result.reason)
    expect(typeof result.detail).toBe('string')
    expect(result.detail.length).toBeGreaterThan(0)
    expect(result.deviceId === UNKNOWN_DEVICE_ID || isIdentifier(result.deviceId)).toBe(true)
  }
}

function checkReading(reading: Reading, device: string, nowMs: number): void {
  const { deviceId: d, metric, value, ts, unit } = reading
  expect(d).toBe(device)
  expect(isIdentifier(metric), `metric ${JSON.stringify(metric)}`).toBe(true)
  expect(Number.isFinite(value), `value ${value}`).toBe(true)
  expect(Number.isInteger(ts), `ts ${ts}`).toBe(true)
  expect(ts).toBeGreaterThanOrEqual(OPTIONS.minTimestampMs)
  expect(ts).toBeLessThanOrEqual(nowMs + OPTIONS.maxFutureSkewMs)
  if (unit !== undefined) {
    expect(typeof unit).toBe('string')
    expect(unit.length).toBeGreaterThanOrEqual(1)
    expect(unit.length).toBeLessThanOrEqual(MAX_UNIT_CHARS)
    expect(CONTROL_CHARS.test(unit)).toBe(false)
  }
  const keys = ['deviceId', 'metric', 'ts', ...(unit === undefined ? [] : ['unit']), 'value']
  expect(Object.keys(reading).sort()).toEqual(keys)
}

/** Parses, with a throw reported as the failure it is (the parser must never throw). */
function parse(message: FuzzMessage, nowMs = NOW): ParseResult {
  try {
    return parsePublish(message.topic, message.payload, nowMs, OPTIONS)
  } catch (err) {
    throw new Error(`parsePublish threw for ${JSON.stringify(describeMessage(message))}: ${err}`)
  }
}

function describeMessage(message: FuzzMessage) {
  return { topic: message.topic.slice(0, 200), payload: message.payload.toString('base64') }
}

describe('parsePublish: properties over generated topics and payloads', () => {
  it(
    'every publish is readings or one rejection with a contract reason: never a throw, never both',
    () => {
      fc.assert(
        fc.property(fuzzMessage(GEN), (message) => {
          checkResult(message, parse(message), NOW)
        }),
        { numRuns: 3_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'odd topics (wildcards, empty levels, unicode, long, wrong root) with any payload never throw',
    () => {
      fc.assert(
        fc.property(oddTopic(), anyPayload(GEN), (topic, payload) => {
          const message = { topic, payload }
          const result = parse(message)
          checkResult(message, result, NOW)
          const levels = topic.split('/')
          const shapeOk =
            levels[0] === 'sensors' &&
            (levels.length === 2 || levels.length === 3) &&
            levels.slice(1).every((l) => l !== '')
          // A topic that is not sensors/{a}[/{b}] with non-empty levels is bad_topic, whatever
          // the payload; one that is, but with a level outside the alphabet, is bad_identifier.
          if (!shapeOk) expect(result).toMatchObject({ ok: false, reason: 'bad_topic' })
          else if (!levels.slice(1).every(isIdentifier)) {
            expect(result).toMatchObject({ ok: false, reason: 'bad_identifier' })
          }
        }),
        { numRuns: 2_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'arbitrary bytes on a valid topic: readings or a rejection, and not_utf8 exactly when the bytes are not UTF-8',
    () => {
      const decoder = new TextDecoder('utf-8', { fatal: true })
      fc.assert(
        fc.property(
          deviceId(),
          fc.option(metricName(), { nil: undefined }),
          fc.uint8Array({ maxLength: 200 }),
          (d, m, bytes) => {
            const message = {
              topic: m === undefined ? `sensors/${d}` : `sensors/${d}/${m}`,
              payload: Buffer.from(bytes),
            }
            const result = parse(message)
            checkResult(message, result, NOW)
            let utf8 = true
            try {
              decoder.decode(bytes)
            } catch {
              utf8 = false
            }
            const notUtf8 = !result.ok && result.reason === 'not_utf8'
            expect(notUtf8).toBe(bytes.length > 0 && !utf8)
            if (bytes.length === 0)
              expect(result).toMatchObject({ ok: false, reason: 'empty_payload' })
          },
        ),
        { numRuns: 2_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'a topic level outside [A-Za-z0-9_.-]{1,64} is rejected as bad_identifier, filed under the valid device',
    () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.tuple(badIdentifier(), fc.option(metricName(), { nil: undefined })),
            fc.tuple(deviceId(), badIdentifier()),
          ),
          fc.constantFrom('21.5', '{"value":1}', '{"temp":1}'),
          ([d, m], payload) => {
            fc.pre(!d.includes('/') && (m === undefined || !m.includes('/')))
            const topic = m === undefined ? `sensors/${d}` : `sensors/${d}/${m}`
            const result = parse({ topic, payload: Buffer.from(payload) })
            expect(result).toMatchObject({
              ok: false,
              reason: 'bad_identifier',
              deviceId: isIdentifier(d) ? d : UNKNOWN_DEVICE_ID,
            })
          },
        ),
        { numRuns: 1_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'a finite number in any textual form on sensors/{d}/{m} is one reading of exactly that number',
    () => {
      const pad = fc.constantFrom('', ' ', '\t', '\r\n', '\n ')
      fc.assert(
        fc.property(
          deviceId(),
          metricName(),
          numberText(),
          pad,
          pad,
          (d, m, text, before, after) => {
            const value = Number(text)
            const bare = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/.test(text)
            const payload = before + text + after
            const result = parse({ topic: `sensors/${d}/${m}`, payload: Buffer.from(payload) })
            if (payload === '') {
              expect(result).toMatchObject({ ok: false, reason: 'empty_payload' })
            } else if (bare && Number.isFinite(value)) {
              expect(result).toEqual({
                ok: true,
                deviceId: d,
                readings: [{ deviceId: d, metric: m, value, ts: NOW }],
              })
            } else {
              // Not a decimal (an empty mantissa, a lone sign), or out of double range.
              expect(result).toMatchObject({ ok: false, reason: 'bad_value' })
            }
          },
        ),
        { numRuns: 3_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'every finite double, as JavaScript prints it, reads back as the same double (bare and in JSON)',
    () => {
      fc.assert(
        fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (value) => {
          const expected = value === 0 ? 0 : value
          for (const payload of [String(value), JSON.stringify({ value })]) {
            const result = parse({ topic: 'sensors/dev1/m', payload: Buffer.from(payload) })
            expect(result.ok).toBe(true)
            if (result.ok) expect(result.readings[0]?.value === expected).toBe(true)
          }
        }),
        { numRuns: 2_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'an epoch-ms ts is accepted exactly inside [2000-01-01, now + MAX_FUTURE_SKEW], else timestamp_out_of_range',
    () => {
      fc.assert(
        fc.property(timestampMs(GEN), fc.boolean(), (ts, objectForm) => {
          const message = objectForm
            ? { topic: 'sensors/dev1', payload: Buffer.from(`{"ts":${JSON.stringify(ts)},"t":1}`) }
            : {
                topic: 'sensors/dev1/t',
                payload: Buffer.from(`{"value":1,"ts":${JSON.stringify(ts)}}`),
              }
          const result = parse(message)
          checkResult(message, result, NOW)
          const ms = Math.round(ts)
          const inside = ms >= OPTIONS.minTimestampMs && ms - NOW <= OPTIONS.maxFutureSkewMs
          if (inside) {
            expect(result.ok).toBe(true)
            if (result.ok) expect(result.readings[0]?.ts).toBe(ms)
          } else {
            expect(result).toMatchObject({ ok: false, reason: 'timestamp_out_of_range' })
          }
        }),
        { numRuns: 3_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'an ISO-8601 ts gives the instant it names, or bad_timestamp / timestamp_out_of_range',
    () => {
      fc.assert(
        fc.property(isoTimestamp(GEN), (iso) => {
          const message = {
            topic: 'sensors/dev1/t',
            payload: Buffer.from(JSON.stringify({ value: 1, ts: iso })),
          }
          const result = parse(message)
          checkResult(message, result, NOW)
          if (result.ok) {
            // What it names: the ECMAScript reading of the same text (which needs the offset).
            expect(result.readings[0]?.ts).toBe(Date.parse(iso))
            expect(/[Zz]$|[+-]\d{2}:?\d{2}$/.test(iso) || /^\d{4}-\d{2}-\d{2}$/.test(iso)).toBe(
              true,
            )
          } else {
            expect(['bad_timestamp', 'timestamp_out_of_range']).toContain(result.reason)
          }
        }),
        { numRuns: 2_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'a SenML pack is stored whole (one reading per record) or rejected whole',
    () => {
      fc.assert(
        fc.property(
          deviceId().chain((d) => fc.tuple(fc.constant(d), senmlPayload(GEN, d))),
          ([d, pack]) => {
            const message = { topic: `sensors/${d}`, payload: Buffer.from(pack) }
            const result = parse(message)
            checkResult(message, result, NOW)
            if (result.ok)
              expect(result.readings).toHaveLength((JSON.parse(pack) as unknown[]).length)
          },
        ),
        { numRuns: 3_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'a multi-metric object is atomic: every field but ts becomes a reading, or none does',
    () => {
      const field = fc.oneof(
        { weight: 8, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
        { weight: 1, arbitrary: fc.constantFrom<unknown>('1', null, true, [1], { v: 1 }) },
      )
      fc.assert(
        fc.property(
          deviceId(),
          fc.dictionary(fc.oneof({ weight: 8, arbitrary: identifier() }, badIdentifier()), field, {
            maxKeys: 6,
          }),
          fc.option(timestampMs(GEN), { nil: undefined }),
          (d, fields, ts) => {
            const doc = ts === undefined ? fields : { ...fields, ts }
            const message = { topic: `sensors/${d}`, payload: Buffer.from(JSON.stringify(doc)) }
            const result = parse(message)
            checkResult(message, result, NOW)
            const metrics = Object.keys(JSON.parse(JSON.stringify(doc)) as object).filter(
              (k) => k !== 'ts',
            )
            const allGood = metrics.every(
              (k) => isIdentifier(k) && typeof fields[k] === 'number' && Number.isFinite(fields[k]),
            )
            if (result.ok) {
              expect(allGood).toBe(true)
              expect(result.readings.map((r) => r.metric).sort()).toEqual([...metrics].sort())
            } else if (allGood && metrics.length > 0) {
              // Only the timestamp can reject a message whose fields are all good.
              expect(['bad_timestamp', 'timestamp_out_of_range']).toContain(result.reason)
            }
          },
        ),
        { numRuns: 2_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    'is pure: the same publish at the same time gives the same answer',
    () => {
      fc.assert(
        fc.property(fuzzMessage(GEN), (message) => {
          const copy = { topic: message.topic, payload: Buffer.from(message.payload) }
          expect(parse(copy)).toEqual(parse(message))
        }),
        { numRuns: 1_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )

  it(
    "toDeadLetter keeps the rejection and round-trips the payload's leading bytes (utf8 or base64)",
    () => {
      fc.assert(
        fc.property(fuzzMessage(GEN), fc.integer({ min: 1, max: 2_000 }), (message, at) => {
          const result = parse(message)
          fc.pre(!result.ok)
          if (result.ok) return
          const letter = toDeadLetter(message.topic, message.payload, result, at)
          expect(letter.reason).toBe(result.reason)
          expect(letter.detail).toBe(result.detail)
          expect(letter.ts).toBe(at)
          // The topic: a bounded prefix.
          expect(letter.topic.length).toBeLessThanOrEqual(DEAD_LETTER_TOPIC_CHARS)
          expect(message.topic.startsWith(letter.topic)).toBe(true)
          if (message.topic.length <= DEAD_LETTER_TOPIC_CHARS)
            expect(letter.topic).toBe(message.topic)
          // The payload: a faithful prefix, whole when it fits.
          expect(letter.payload.length).toBeLessThanOrEqual(DEAD_LETTER_PAYLOAD_CHARS)
          const bytes =
            letter.payloadEncoding === 'utf8'
              ? Buffer.from(letter.payload, 'utf8')
              : Buffer.from(letter.payload, 'base64')
          // The utf8 form is the payload's text as sent, a leading byte order mark included.
          const source = message.payload
          expect(source.subarray(0, bytes.length).equals(bytes)).toBe(true)
          if (letter.payloadEncoding === 'base64') {
            expect(bytes.toString('base64')).toBe(letter.payload)
            const fits = Math.floor(DEAD_LETTER_PAYLOAD_CHARS / 4) * 3
            expect(bytes.length).toBe(Math.min(message.payload.length, fits))
          } else {
            expect(result.reason).not.toBe('not_utf8')
            const whole = bytes.length === source.length
            // Cut short only when the text would not fit (a surrogate pair may cost one unit).
            if (!whole)
              expect(letter.payload.length).toBeGreaterThanOrEqual(DEAD_LETTER_PAYLOAD_CHARS - 1)
          }
          if (result.reason === 'not_utf8') expect(letter.payloadEncoding).toBe('base64')
          // And the dead letter survives JSON, as it goes on the wire.
          expect(JSON.parse(JSON.stringify(letter))).toEqual(letter)
        }),
        { numRuns: 3_000, ...SEED },
      )
    },
    PROPERTY_TIMEOUT_MS,
  )
})

describe('ingest pipeline: generated publishes through createIngest, the store writer and a SQLite file', () => {
  const log = createSilentLogger()
  const client = { id: 'prop-client' } as unknown as Client

  it('each publish is stored or dead-lettered (exactly one), acknowledged after its commit, and the counts reconcile', async () => {
    const dir = await createTempDir('ingest-prop-')
    let run = 0
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fuzzMessage({ ...GEN, largePayloadPerMille: 2 }), {
            minLength: 1,
            maxLength: 300,
          }),
          async (messages) => {
            const file = join(dir.path, `run-${run++}.db`)
            const store = createSqliteStore({ file })
            const reader = new Database(file, { readonly: true })
            const committed = reader.prepare<[string, string, number], { n: number }>(
              'SELECT 1 AS n FROM readings WHERE device = ? AND metric = ? AND ts = ?',
            )
            const bus = createEventBus(log)
            const writer = createStoreWriter(
              { store, bus, log },
              { maxBatchSize: 64, retryBaseMs: 10, retryMaxMs: 100 },
            )
            // Which message the synchronous part of authorizePublish is handling right now.
            let current = -1
            const sunk = new Map<number, Reading[]>()
            const sink: DurableSink = {
              accept(readings, done) {
                expect(sunk.has(current)).toBe(false)
                sunk.set(current, [...readings])
                writer.accept(readings, done)
              },
              offer(readings) {
                // QoS 0 only; every publish here is QoS 1.
                throw new Error(`unexpected QoS 0 offer of ${readings.length} readings`)
              },
            }
            const rejected = new Map<number, ReadingRejected[]>()
            bus.on('test', 'reading.rejected', (event) => {
              rejected.set(current, [...(rejected.get(current) ?? []), event])
            })
            let readingEvents = 0
            bus.on('test', 'reading', () => {
              readingEvents++
            })
            const ingest = createIngest({ bus, sink, log, now: () => NOW }, OPTIONS)
            try {
              // All at once, as a broker under load calls the hook, each with its own callback.
              const outcomes = messages.map((message, i) => {
                const calls: Array<{ err: unknown; missing: number }> = []
                const done = new Promise<void>((resolve) => {
                  current = i
                  const packet = {
                    cmd: 'publish',
                    topic: message.topic,
                    payload: message.payload,
                    qos: 1,
                    retain: false,
                    dup: false,
                    messageId: (i % 65_535) + 1,
                  } as PublishPacket
                  ingest.authorizePublish(client, packet, (err) => {
                    // The PUBACK moment: this message's readings must already be committed.
                    const readings = sunk.get(i) ?? []
                    const missing = readings.filter(
                      (r) => committed.get(r.deviceId, r.metric, r.ts) === undefined,
                    ).length
                    calls.push({ err, missing })
                    resolve()
                  })
                  current = -1
                })
                return { calls, done }
              })
              await Promise.all(outcomes.map((o) => o.done))
              await writer.flush()

              // Per message: exactly one of stored / dead-lettered / passed through, as the
              // parser (the oracle) says.
              let expectedReadings = 0
              let expectedRejected = 0
              const expectedRows = new Map<string, Reading>()
              for (const [i, message] of messages.entries()) {
                const outcome = outcomes[i]!
                expect(outcome.calls).toHaveLength(1)
                expect(outcome.calls[0]?.err ?? null).toBeNull()
                expect(outcome.calls[0]?.missing).toBe(0)
                const letters = rejected.get(i) ?? []
                const readings = sunk.get(i)
                if (!isSensorTopic(message.topic)) {
                  expect(letters).toHaveLength(0)
                  expect(readings).toBeUndefined()
                  continue
                }
                const oracle = parsePublish(message.topic, message.payload, NOW, OPTIONS)
                if (oracle.ok) {
                  expect(letters).toHaveLength(0)
                  expect(readings).toEqual(oracle.readings)
                  expectedReadings += oracle.readings.length
                  for (const r of oracle.readings) {
                    expectedRows.set(JSON.stringify([r.deviceId, r.metric, r.ts]), r)
                  }
                } else {
                  expect(readings).toBeUndefined()
                  expect(letters).toHaveLength(1)
                  expect(letters[0]).toEqual({
                    deviceId: oracle.deviceId,
                    clientId: client.id,
                    deadLetter: toDeadLetter(message.topic, message.payload, oracle, NOW),
                  })
                  expectedRejected++
                }
              }
              // The counts reconcile: ingest's own, the bus's, and the store's rows (the same
              // identity again replaces the value, so the last one written is what is stored).
              expect(ingest.stats()).toEqual({
                accepted: expectedReadings,
                rejected: expectedRejected,
              })
              expect(readingEvents).toBe(expectedReadings)
              expect(rejected.get(-1)).toBeUndefined()
              const rows = reader
                .prepare<
                  [],
                  { device: string; metric: string; ts: number; value: number; unit: string | null }
                >(
                  'SELECT device, metric, ts, value, unit FROM readings ORDER BY device, metric, ts',
                )
                .all()
              const normalise = (r: {
                device: string
                metric: string
                ts: number
                value: number
                unit: string | null
              }) => ({
                ...r,
                value: r.value === 0 ? 0 : r.value,
              })
              const expected = [...expectedRows.values()]
                .map((r) =>
                  normalise({
                    device: r.deviceId,
                    metric: r.metric,
                    ts: r.ts,
                    value: r.value,
                    unit: r.unit ?? null,
                  }),
                )
                .sort((a, b) =>
                  a.device < b.device
                    ? -1
                    : a.device > b.device
                      ? 1
                      : a.metric < b.metric
                        ? -1
                        : a.metric > b.metric
                          ? 1
                          : a.ts - b.ts,
                )
              expect(rows.map(normalise)).toEqual(expected)
              expect(writer.stats().pendingReadings).toBe(0)
            } finally {
              await writer.close()
              reader.close()
              await store.close()
            }
          },
        ),
        { numRuns: 12, ...SEED },
      )
    } finally {
      await dir.remove()
    }
  }, 120_000)
})
