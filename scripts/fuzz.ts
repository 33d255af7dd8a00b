/**
 * Fuzz run of the whole gateway ("nothing lost"):
 *
 *   npm run fuzz -- --count 1000000 [--seed N] [--max-old-space MiB] [--clients 4] [--inflight 64]
 *
 * Starts the gateway as a real child process (`node --max-old-space-size=N --import tsx
 * src/main.ts`, OS-chosen ports, a fresh DATA_DIR), connects a handful of MQTT.js clients over
 * 127.0.0.1 and publishes `count` generated messages (test/helpers/fuzz-generators.ts, the
 * generators of the property tests) at QoS 1 with a bounded number in flight per client, so every
 * message is handled and acknowledged. For each message the pure parser, computed here at send
 * time, says what the gateway must do with it: readings to store, or one dead letter with a
 * reason (or nothing, for a topic outside `sensors/`). At the end GET /metrics must agree:
 * accepted readings == readings expected, rejected publishes == dead letters expected (per
 * reason), publishes received == messages sent; the process must still be alive, and exit 0 on
 * SIGTERM. RSS of the child is sampled every second.
 *
 * Prints progress on stderr every 10 s and one JSON line on stdout:
 *   {scenario:'fuzz', messages, readingsExpected, readingsAccepted, deadLettersExpected,
 *    deadLettersCounted, peakRssMiB, seconds, ok, ...}
 * and exits 1 when anything does not reconcile.
 */
import { setTimeout as delay } from 'node:timers/promises'
import Database from 'better-sqlite3'
import fc from 'fast-check'
import { connectAsync, type MqttClient } from 'mqtt'
import type { RejectReason } from '../src/contract/types.ts'
import { DEFAULT_PARSE_OPTIONS, type ParseOptions } from '../src/ingest/parse-publish.ts'
import {
  type FuzzMessage,
  fuzzMessage,
  fuzzOptions,
  isPublishable,
} from '../test/helpers/fuzz-generators.ts'
import { type ExpectedOutcome, expectedOutcome } from '../test/helpers/fuzz-oracle.ts'
import {
  byLabel,
  type GatewayChild,
  readFlags,
  reportRun,
  round1,
  startGatewayChild,
  sumOf,
} from '../test/helpers/gateway-child.ts'

const USAGE = `usage: npm run fuzz -- --count N [--seed N] [--max-old-space MiB] [--clients N] [--inflight N]
                        [--fresh-ids N]

  --count          messages to publish (default 100000)
  --seed           fast-check seed of the generators (default: random, printed)
  --max-old-space  V8 heap limit of the gateway process, MiB (default 512)
  --clients        MQTT connections publishing in parallel (default 4)
  --inflight       QoS 1 publishes awaiting their PUBACK per connection (default 64)
  --fresh-ids      per mille of device ids that are new random identifiers (default 50; metric
                   ids get twice that): each new device is new state in the gateway
`

/** The parser's limits, set explicitly on the gateway so that the oracle here uses the same. */
const MAX_PAYLOAD_BYTES = DEFAULT_PARSE_OPTIONS.maxPayloadBytes
const MAX_FUTURE_SKEW_MS = DEFAULT_PARSE_OPTIONS.maxFutureSkewMs
/** The gateway's default packet limit; isPublishable() keeps every packet under it. */
const MAX_PACKET_BYTES = 262_144
/** Messages generated at a time, around one `now`. */
const CHUNK = 500
/**
 * Epoch-ms timestamps are generated at least this far from the moving future boundary
 * (now + MAX_FUTURE_SKEW), so few messages are time-sensitive; those that still are (ISO dates
 * cut to the minute or day, SenML sums) are found by the oracle and not sent.
 */
const BOUNDARY_MARGIN_MS = 20_000
/** The gateway reads its clock at most this long after the oracle did (bounded in-flight). */
const RECEIVE_HORIZON_MS = 60_000
const PROGRESS_EVERY_MS = 10_000

const PARSE_OPTIONS: ParseOptions = {
  ...DEFAULT_PARSE_OPTIONS,
  maxPayloadBytes: MAX_PAYLOAD_BYTES,
  maxFutureSkewMs: MAX_FUTURE_SKEW_MS,
}

/**
 * The gateway's configuration for the run. Every limit the generator could trip in a way the
 * parser cannot predict is either set out of reach or avoided by the generator:
 *
 * - PUBLISH_RATE / PUBLISH_BURST: the token bucket is per connection, 100/s with a burst of 1000
 *   by default. A fuzz client sends as fast as PUBACKs come back, far above that, so at the
 *   defaults its QoS 1 publishes would be paced to 100/s (each PUBACK waits for a token: a
 *   million messages would take hours), a QoS 0 one over the rate dropped (which the oracle
 *   cannot foresee), and a connection with RATE_DISCONNECT_AFTER publishes waiting closed. At
 *   the maxima (1,000,000/s, burst 10,000,000) the bucket never runs dry: a million messages over
 *   4 connections take 250,000 tokens each. The dead-letter counts are checked reason by reason,
 *   so a `rate_limited` one (which the gateway no longer produces) would show there too.
 * - RATE_DISCONNECT_AFTER: out of reach too, should a bucket ever run dry anyway.
 * - MAX_PACKET_BYTES: left at its default (256 KiB) and passed explicitly; the largest generated
 *   payloads are a little over MAX_PAYLOAD_BYTES (payload_too_large) and isPublishable() skips any
 *   packet over the limit, which would close the connection instead of being dead-lettered.
 * - MAX_PAYLOAD_BYTES / MAX_FUTURE_SKEW: the parser's defaults, passed explicitly so the gateway
 *   and the oracle here agree.
 * - MAX_CONNECTIONS, MAX_INFLIGHT_INBOUND (QoS 2 only), KEEPALIVE_LIMIT: the defaults are far
 *   from what the run uses (a few connections, QoS 1, keepalive 60 s).
 */
function gatewayEnv(): Record<string, string> {
  return {
    PUBLISH_RATE: '1000000',
    PUBLISH_BURST: '10000000',
    RATE_DISCONNECT_AFTER: '100000000',
    MAX_PACKET_BYTES: String(MAX_PACKET_BYTES),
    MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
    // With its unit: from the environment a bare number of ms is refused (reported).
    MAX_FUTURE_SKEW: `${MAX_FUTURE_SKEW_MS}ms`,
  }
}

interface Tally {
  messages: number
  readingsExpected: number
  deadLettersExpected: number
  passthrough: number
  byReason: Partial<Record<RejectReason, number>>
  /** Generated but not sent: an MQTT-invalid topic or an oversized packet. */
  unpublishable: number
  /** Generated but not sent: the outcome depends on the exact receive time. */
  timeSensitive: number
  acked: number
  publishErrors: number
  firstPublishError?: string
  unexpectedCloses: number
  devices: Set<string>
}

function positiveInt(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`)
  return n
}

async function main(): Promise<number> {
  const started = performance.now()
  const read = readFlags(
    process.argv.slice(2),
    ['count', 'seed', 'max-old-space', 'clients', 'inflight', 'fresh-ids'],
    USAGE,
  )
  if ('exitCode' in read) return read.exitCode
  const { flags } = read
  const count = positiveInt(flags.count, 100_000, 'count')
  const seed = flags.seed === undefined ? Date.now() % 2 ** 31 : Number(flags.seed) | 0
  const maxOldSpace = positiveInt(flags['max-old-space'], 512, 'max-old-space')
  const clientCount = Math.max(1, positiveInt(flags.clients, 4, 'clients'))
  const inflight = Math.max(1, positiveInt(flags.inflight, 64, 'inflight'))
  const freshIds = Math.min(1000, positiveInt(flags['fresh-ids'], 50, 'fresh-ids'))

  const tally: Tally = {
    messages: 0,
    readingsExpected: 0,
    deadLettersExpected: 0,
    passthrough: 0,
    byReason: {},
    unpublishable: 0,
    timeSensitive: 0,
    acked: 0,
    publishErrors: 0,
    unexpectedCloses: 0,
    devices: new Set(),
  }

  // Messages come in chunks generated around the current time, each chunk from its own seed
  // (seed + chunk number), so a run is reproducible up to the clock.
  let chunk: FuzzMessage[] = []
  let chunkIndex = 0
  let chunkAt = 0
  const nextGenerated = (): FuzzMessage => {
    if (chunkAt >= chunk.length) {
      const options = fuzzOptions(Date.now(), {
        maxFutureSkewMs: MAX_FUTURE_SKEW_MS,
        maxPayloadBytes: MAX_PAYLOAD_BYTES,
        boundaryMarginMs: BOUNDARY_MARGIN_MS,
        largePayloadPerMille: 2,
        freshDevicePerMille: freshIds,
        freshMetricPerMille: Math.min(1000, 2 * freshIds),
      })
      chunk = fc.sample(fuzzMessage(options), { numRuns: CHUNK, seed: (seed + chunkIndex++) | 0 })
      chunkAt = 0
    }
    return chunk[chunkAt++] as FuzzMessage
  }

  /** The next message to send and what must become of it; undefined once `count` are sent. */
  const nextToSend = (): { message: FuzzMessage; expected: ExpectedOutcome } | undefined => {
    while (tally.messages < count) {
      const message = nextGenerated()
      if (!isPublishable(message, MAX_PACKET_BYTES)) {
        tally.unpublishable++
        continue
      }
      const expected = expectedOutcome(message, Date.now(), PARSE_OPTIONS, RECEIVE_HORIZON_MS)
      if (expected.kind === 'time-sensitive') {
        tally.timeSensitive++
        continue
      }
      tally.messages++
      if (expected.kind === 'readings') {
        tally.readingsExpected += expected.count
        tally.devices.add(message.topic.split('/')[1] as string)
      } else if (expected.kind === 'dead-letter') {
        tally.deadLettersExpected++
        tally.byReason[expected.reason] = (tally.byReason[expected.reason] ?? 0) + 1
      } else tally.passthrough++
      return { message, expected }
    }
    return undefined
  }

  let gateway: GatewayChild | undefined
  const clients: MqttClient[] = []
  const problems: string[] = []
  let progressTimer: NodeJS.Timeout | undefined
  let interrupted = false
  let shuttingDown = false
  const onSignal = () => {
    interrupted = true
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  let readingsAccepted = Number.NaN
  let deadLettersCounted = Number.NaN
  let messagesIn = Number.NaN
  let countedByReason: Record<string, number> = {}
  let exitCode: number | string = 'not stopped'
  let storedRows = Number.NaN
  try {
    gateway = await startGatewayChild({ env: gatewayEnv(), maxOldSpaceMiB: maxOldSpace })
    const gw = gateway
    process.stderr.write(
      `${JSON.stringify({ fuzz: 'started', seed, count, clients: clientCount, inflight, pid: gw.pid, mqtt: gw.mqttUrl, http: gw.httpUrl })}\n`,
    )

    for (let i = 0; i < clientCount; i++) {
      const client = await connectAsync(gw.mqttUrl, {
        clientId: `fuzz-${i}`,
        clean: true,
        protocolVersion: 4,
        keepalive: 60,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
      })
      client.on('close', () => {
        if (!shuttingDown) tally.unexpectedCloses++
      })
      clients.push(client)
    }

    const publish = (client: MqttClient, message: FuzzMessage) =>
      new Promise<void>((resolve) => {
        client.publish(message.topic, message.payload, { qos: 1 }, (err) => {
          if (err) {
            tally.publishErrors++
            tally.firstPublishError ??= `${err.message} (topic ${JSON.stringify(message.topic.slice(0, 80))})`
          } else tally.acked++
          resolve()
        })
      })

    const lane = async (client: MqttClient) => {
      while (!interrupted && client.connected) {
        const next = nextToSend()
        if (next === undefined) return
        await publish(client, next.message)
      }
    }

    const t0 = performance.now()
    progressTimer = setInterval(() => {
      process.stderr.write(
        `${JSON.stringify({
          t: Math.round((performance.now() - t0) / 1000),
          sent: tally.messages,
          acked: tally.acked,
          rssMiB: round1(gw.rssMiB() ?? Number.NaN),
          perSec: Math.round(tally.acked / ((performance.now() - t0) / 1000)),
        })}\n`,
      )
    }, PROGRESS_EVERY_MS)
    progressTimer.unref()

    await Promise.all(
      clients.flatMap((client) => Array.from({ length: inflight }, () => lane(client))),
    )
    clearInterval(progressTimer)
    if (interrupted) problems.push('interrupted')

    // Every message was acknowledged, so everything it caused is counted already: the dead
    // letter before its PUBACK, the readings' counter once durable (before the PUBACK too).
    // Still, wait for the writer to have nothing pending, so the store can be checked after.
    const deadline = Date.now() + 60_000
    let scrape = await gw.scrape()
    while (
      (scrape.value('gateway_store_pending_readings') ?? 0) > 0 ||
      (scrape.value('gateway_spool_items') ?? 0) > 0
    ) {
      if (Date.now() > deadline) {
        problems.push('the store writer did not drain within 60 s')
        break
      }
      await delay(200)
      scrape = await gw.scrape()
    }
    readingsAccepted = scrape.value('gateway_readings_accepted_total') ?? Number.NaN
    countedByReason = byLabel(scrape, 'gateway_publishes_rejected_total', 'reason')
    deadLettersCounted = sumOf(scrape, 'gateway_publishes_rejected_total')
    messagesIn = scrape.value('gateway_mqtt_messages_in_total') ?? Number.NaN

    if (readingsAccepted !== tally.readingsExpected) {
      problems.push(`readings accepted ${readingsAccepted} != expected ${tally.readingsExpected}`)
    }
    if (deadLettersCounted !== tally.deadLettersExpected) {
      problems.push(
        `dead letters counted ${deadLettersCounted} != expected ${tally.deadLettersExpected}`,
      )
    }
    for (const reason of new Set([
      ...Object.keys(countedByReason),
      ...Object.keys(tally.byReason),
    ])) {
      const counted = countedByReason[reason] ?? 0
      const expected = tally.byReason[reason as RejectReason] ?? 0
      if (counted !== expected) {
        problems.push(`dead letters ${reason}: counted ${counted} != expected ${expected}`)
      }
    }
    if (messagesIn !== tally.messages) {
      problems.push(`publishes received ${messagesIn} != sent ${tally.messages}`)
    }
    if (tally.messages !== count) problems.push(`sent ${tally.messages} of ${count} messages`)
    if (tally.acked !== tally.messages) {
      problems.push(`PUBACKs ${tally.acked} != messages ${tally.messages}`)
    }
    if (tally.publishErrors > 0) {
      problems.push(`${tally.publishErrors} publishes failed: ${tally.firstPublishError}`)
    }
    if (tally.unexpectedCloses > 0) {
      problems.push(`${tally.unexpectedCloses} connections closed by the gateway`)
    }
    if (!gw.alive()) problems.push('the gateway process died')

    shuttingDown = true
    await Promise.all(clients.map((c) => c.endAsync()))
    exitCode = await gw.stop(60_000)
    if (exitCode !== 0) problems.push(`the gateway exited ${exitCode} on SIGTERM, not 0`)

    // The store after the stop: never more rows than readings (the same identity replaces, and
    // readings without a ts take the receive time, so fewer is expected).
    try {
      const db = new Database(`${gw.dataDir}/gateway.db`, { readonly: true })
      storedRows = (db.prepare('SELECT count(*) AS n FROM readings').get() as { n: number }).n
      db.close()
      if (storedRows > readingsAccepted) {
        problems.push(`${storedRows} rows stored for ${readingsAccepted} readings`)
      }
      if (tally.readingsExpected > 0 && storedRows === 0) problems.push('no readings stored')
    } catch (err) {
      problems.push(`cannot read the store: ${(err as Error).message}`)
    }
  } catch (err) {
    problems.push(`run failed: ${(err as Error).stack ?? err}`)
  } finally {
    clearInterval(progressTimer)
    shuttingDown = true
    for (const client of clients) client.end(true)
    if (gateway?.alive()) {
      gateway.kill()
      await gateway.exited
    }
  }

  const fields = {
    scenario: 'fuzz',
    seed,
    messages: tally.messages,
    readingsExpected: tally.readingsExpected,
    readingsAccepted,
    deadLettersExpected: tally.deadLettersExpected,
    deadLettersCounted,
    deadLettersByReason: countedByReason,
    passthrough: tally.passthrough,
    messagesIn,
    storedRows,
    distinctDevices: tally.devices.size,
    freshIdsPerMille: freshIds,
    skippedUnpublishable: tally.unpublishable,
    skippedTimeSensitive: tally.timeSensitive,
    seconds: round1((performance.now() - started) / 1000),
  }
  return reportRun(fields, {
    gateway,
    problems,
    maxOldSpaceMiB: maxOldSpace,
    gatewayExit: exitCode,
  })
}

process.exitCode = await main()
