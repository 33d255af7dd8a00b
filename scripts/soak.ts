/**
 * Soak run of the whole gateway ("nothing lost" over time):
 *
 *   npm run soak -- --duration 10m --rate 500 [--devices 20] [--store sqlite] [--malformed 0.02]
 *                   [--seed N] [--max-old-space MiB]
 *
 * Starts the gateway as a real child process (as scripts/fuzz.ts does) and runs simulated devices
 * against it at a steady total rate: each device its own MQTT.js connection, publishing QoS 1
 * readings in the three payload forms (devices/payloads.ts: `{"value","ts","unit"}`, a
 * multi-metric object, a SenML pack) with signals from the simulator's sensors
 * (devices/signals.ts) and a timestamp unique per device, plus a small share of the simulator's
 * malformed payloads. The simulator's own fleet is not used: it drops samples while disconnected,
 * sends bare numbers whose ts is the receive time (two in one millisecond are one reading), and
 * does not say which readings each acknowledged message carried, so its counts cannot be
 * reconciled reading by reading.
 *
 * Every 10 s one JSON line {t, published, acked, readingsAcked, stored, deadLettered, rssMiB}:
 * stored is counted in the SQLite file (read-only), deadLettered from /metrics. At the end the
 * devices' last PUBACKs are awaited, the gateway is stopped with SIGTERM (exit 0 expected), and
 * the file is reconciled exactly: every acknowledged reading stored once (rows == distinct
 * (device, metric, ts) == readings acknowledged, per series count and sum of ts equal), nothing
 * published left unacknowledged, and dead letters counted == malformed messages sent. One final
 * line {scenario:'soak', durationS, published, acked, stored, duplicates, deadLettered,
 * peakRssMiB, ok, ...}; exit 1 when anything does not reconcile.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { connectAsync, type MqttClient } from 'mqtt'
import {
  MALFORMED_KINDS,
  malformedMessage,
  type OutgoingMessage,
  objectMessage,
  senmlMessage,
  valueMessage,
} from '../devices/payloads.ts'
import {
  createPrng,
  createSensor,
  DEFAULT_SIGNALS,
  deviceSeed,
  METRIC_UNITS,
  METRICS,
  type Sensor,
} from '../devices/signals.ts'
import type { Reading } from '../src/contract/types.ts'
import { DEFAULT_PARSE_OPTIONS, parsePublish } from '../src/ingest/parse-publish.ts'
import {
  type GatewayChild,
  parseDurationFlag,
  readFlags,
  reportRun,
  round1,
  startGatewayChild,
  sumOf,
} from '../test/helpers/gateway-child.ts'

const USAGE = `usage: npm run soak -- --duration 10m --rate 500 [--devices 20] [--store sqlite]
                       [--malformed 0.02] [--seed N] [--max-old-space MiB]

  --duration       how long the devices publish (15s, 10m, 1h; default 10m)
  --rate           messages per second, all devices together (default 500)
  --devices        simulated devices, one MQTT connection each (default 20)
  --store          the gateway's store; only sqlite, whose file is checked (default sqlite)
  --malformed      share of malformed messages, 0..1 (default 0.02)
  --seed           seed of the signals and of the malformed picks (default 1)
  --max-old-space  V8 heap limit of the gateway process, MiB (default 512)
`

const REPORT_EVERY_MS = 10_000
const TICK_MS = 20
/** A device with this many publishes awaiting PUBACK skips its turn (the gateway is behind). */
const MAX_INFLIGHT_PER_DEVICE = 1_000
const DRAIN_TIMEOUT_MS = 60_000

interface Device {
  id: string
  client: MqttClient
  sensor: Sensor
  lastTs: number
  tick: number
  inflight: number
}

interface SeriesTally {
  count: number
  tsSum: bigint
}

async function main(): Promise<number> {
  const read = readFlags(
    process.argv.slice(2),
    ['duration', 'rate', 'devices', 'store', 'malformed', 'seed', 'max-old-space'],
    USAGE,
  )
  if ('exitCode' in read) return read.exitCode
  const { flags } = read
  const durationMs = parseDurationFlag(flags.duration ?? '10m')
  const rate = Number(flags.rate ?? 500)
  const deviceCount = Number(flags.devices ?? 20)
  const malformedShare = Number(flags.malformed ?? 0.02)
  const seed = Number(flags.seed ?? 1) | 0
  const maxOldSpace = Number(flags['max-old-space'] ?? 512)
  const store = flags.store ?? 'sqlite'
  if (store !== 'sqlite') {
    process.stderr.write(
      `--store ${store}: only sqlite is supported (the soak reconciles the SQLite file)\n`,
    )
    return 2
  }
  if (!(rate > 0) || !Number.isInteger(deviceCount) || deviceCount < 1) {
    process.stderr.write(`--rate must be > 0 and --devices a positive integer\n${USAGE}`)
    return 2
  }
  if (!(malformedShare >= 0 && malformedShare <= 1)) {
    process.stderr.write(`--malformed must be between 0 and 1\n${USAGE}`)
    return 2
  }
  if (rate / deviceCount > 900) {
    // Timestamps are unique per device by stepping 1 ms past the last one: above ~1000 messages
    // a second per device they would run ahead of the clock and, after 5 minutes, out of range.
    process.stderr.write('--rate / --devices must stay under 900 messages per second per device\n')
    return 2
  }

  let published = 0
  let acked = 0
  let readingsAcked = 0
  let malformedSent = 0
  let skipped = 0
  let publishErrors = 0
  let firstPublishError: string | undefined
  let unexpectedCloses = 0
  let shuttingDown = false
  const expectedSeries = new Map<string, SeriesTally>()
  const problems: string[] = []

  let gateway: GatewayChild | undefined
  const devices: Device[] = []
  let reader: Database.Database | undefined
  let reportTimer: NodeJS.Timeout | undefined
  let tickTimer: NodeJS.Timeout | undefined
  let interrupted = false
  const onSignal = () => {
    interrupted = true
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  let deadLettered = Number.NaN
  let readingsAccepted = Number.NaN
  let stored = Number.NaN
  let storedRows = Number.NaN
  let duplicates = Number.NaN
  let spooledAtEnd = 0
  let seriesMismatches = 0
  let exitCode: number | string = 'not stopped'
  let publishSeconds = 0
  try {
    // Rate limits: a device here publishes rate/devices messages a second (25 at the defaults),
    // under the default PUBLISH_RATE of 100/s; the defaults stay, so the soak runs the gateway
    // as shipped. A run faster per device raises the limit with it, so that no reading is paced
    // by PUBLISH_RATE (its PUBACK held for a token) and the soak measures the rate it asked for.
    const perDevice = rate / deviceCount
    const env: Record<string, string> =
      perDevice > 50 ? { PUBLISH_RATE: String(Math.ceil(perDevice * 4)) } : {}
    gateway = await startGatewayChild({ env, maxOldSpaceMiB: maxOldSpace })
    const gw = gateway
    const dbFile = join(gw.dataDir, 'gateway.db')

    const prng = createPrng(seed ^ 0x50a4)
    for (let i = 0; i < deviceCount; i++) {
      const id = `soak-${String(i + 1).padStart(3, '0')}`
      const client = await connectAsync(gw.mqttUrl, {
        clientId: id,
        clean: true,
        protocolVersion: 4,
        keepalive: 30,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
      })
      client.on('close', () => {
        if (!shuttingDown) unexpectedCloses++
      })
      devices.push({
        id,
        client,
        sensor: createSensor(DEFAULT_SIGNALS, deviceSeed(seed, id)),
        lastTs: 0,
        tick: 0,
        inflight: 0,
      })
    }

    /** One message of a device: a well-formed sample (three forms in turn) or, now and then, a malformed one. */
    const nextMessage = (device: Device, nowMs: number): OutgoingMessage => {
      const tick = device.tick++
      if (malformedShare > 0 && prng.next() < malformedShare) {
        const kind = MALFORMED_KINDS[Math.floor(prng.next() * MALFORMED_KINDS.length)]
        return malformedMessage(kind ?? 'non_numeric', device.id, nowMs)
      }
      // A timestamp of its own: never the same (device, metric, ts) twice.
      const ts = Math.max(nowMs, device.lastTs + 1)
      device.lastTs = ts
      const sample = device.sensor.sample(ts)
      const readings: Reading[] = METRICS.map((metric) => ({
        deviceId: device.id,
        metric,
        value: sample[metric],
        ts,
        unit: METRIC_UNITS[metric],
      }))
      switch (tick % 3) {
        case 0:
          return valueMessage(readings[Math.floor(tick / 3) % readings.length] as Reading)
        case 1:
          return objectMessage(device.id, ts, readings)
        default:
          return senmlMessage(device.id, ts, readings)
      }
    }

    const send = (device: Device) => {
      if (device.inflight >= MAX_INFLIGHT_PER_DEVICE) {
        skipped++
        return
      }
      const nowMs = Date.now()
      const message = nextMessage(device, nowMs)
      // What the gateway must make of it: the parser decides (every message here is far from
      // the timestamp window's edges, so the receive time does not matter).
      const parsed = parsePublish(
        message.topic,
        Buffer.from(message.payload),
        nowMs,
        DEFAULT_PARSE_OPTIONS,
      )
      const readings = parsed.ok ? parsed.readings : []
      if (!parsed.ok) malformedSent++
      published++
      device.inflight++
      device.client.publish(message.topic, message.payload, { qos: 1 }, (err) => {
        device.inflight--
        if (err) {
          publishErrors++
          firstPublishError ??= err.message
          return
        }
        acked++
        readingsAcked += readings.length
        for (const r of readings) {
          const key = `${r.deviceId}\u0000${r.metric}`
          const tally = expectedSeries.get(key) ?? { count: 0, tsSum: 0n }
          tally.count++
          tally.tsSum += BigInt(r.ts)
          expectedSeries.set(key, tally)
        }
      })
    }

    const countStored = (): number | undefined => {
      if (reader === undefined) {
        if (!existsSync(dbFile)) return undefined
        reader = new Database(dbFile, { readonly: true, fileMustExist: true })
      }
      return (reader.prepare('SELECT count(*) AS n FROM readings').get() as { n: number }).n
    }

    const t0 = performance.now()
    const report = async (final = false) => {
      let dead: number | undefined
      try {
        dead = sumOf(await gw.scrape(), 'gateway_publishes_rejected_total')
      } catch {
        dead = undefined
      }
      process.stdout.write(
        `${JSON.stringify({
          t: Math.round((performance.now() - t0) / 1000),
          published,
          acked,
          readingsAcked,
          stored: countStored() ?? null,
          deadLettered: dead ?? null,
          rssMiB: round1(gw.rssMiB() ?? Number.NaN),
          // The line taken after the drain: acks and the writer are done.
          ...(final ? { final: true } : {}),
        })}\n`,
      )
    }
    reportTimer = setInterval(() => {
      report().catch((err: unknown) => process.stderr.write(`report failed: ${err}\n`))
    }, REPORT_EVERY_MS)

    // A steady total rate: on every tick, as many messages as are due since the start, each
    // from the next device in turn.
    let scheduled = 0
    let turn = 0
    await new Promise<void>((resolve) => {
      tickTimer = setInterval(() => {
        const elapsed = performance.now() - t0
        if (interrupted || elapsed >= durationMs) {
          clearInterval(tickTimer)
          resolve()
          return
        }
        const due = Math.floor((rate * elapsed) / 1000)
        for (; scheduled < due; scheduled++) send(devices[turn++ % devices.length] as Device)
      }, TICK_MS)
    })
    publishSeconds = (performance.now() - t0) / 1000
    if (interrupted) problems.push('interrupted')

    // Drain: the last PUBACKs, then the gateway's writer (memory queue and spool) to the store.
    const deadline = Date.now() + DRAIN_TIMEOUT_MS
    while (devices.some((d) => d.inflight > 0) && Date.now() < deadline) await delay(50)
    const inflight = devices.reduce((sum, d) => sum + d.inflight, 0)
    if (inflight > 0) problems.push(`${inflight} publishes still unacknowledged after the drain`)
    let scrape = await gw.scrape()
    while (
      ((scrape.value('gateway_store_pending_readings') ?? 0) > 0 ||
        (scrape.value('gateway_spool_items') ?? 0) > 0) &&
      Date.now() < deadline
    ) {
      await delay(200)
      scrape = await gw.scrape()
    }
    deadLettered = sumOf(scrape, 'gateway_publishes_rejected_total')
    readingsAccepted = scrape.value('gateway_readings_accepted_total') ?? Number.NaN
    clearInterval(reportTimer)
    await report(true)

    shuttingDown = true
    await Promise.all(devices.map((d) => d.client.endAsync()))
    reader?.close()
    reader = undefined
    exitCode = await gw.stop(60_000)

    // The file after the stop, exactly.
    const db = new Database(dbFile, { readonly: true, fileMustExist: true })
    try {
      storedRows = (db.prepare('SELECT count(*) AS n FROM readings').get() as { n: number }).n
      stored = (
        db
          .prepare('SELECT count(*) AS n FROM (SELECT DISTINCT device, metric, ts FROM readings)')
          .get() as { n: number }
      ).n
      duplicates = storedRows - stored
      const series = db
        .prepare(
          'SELECT device, metric, count(*) AS n, sum(ts) AS s FROM readings GROUP BY device, metric',
        )
        .safeIntegers(true)
        .all() as Array<{ device: string; metric: string; n: bigint; s: bigint }>
      const seen = new Set<string>()
      for (const row of series) {
        const key = `${row.device}\u0000${row.metric}`
        seen.add(key)
        const want = expectedSeries.get(key)
        if (want === undefined || BigInt(want.count) !== row.n || want.tsSum !== row.s) {
          seriesMismatches++
          if (seriesMismatches <= 5) {
            problems.push(
              `series ${row.device}/${row.metric}: stored ${row.n} (ts sum ${row.s}), acked ${want?.count ?? 0} (ts sum ${want?.tsSum ?? 0})`,
            )
          }
        }
      }
      for (const key of expectedSeries.keys()) {
        if (!seen.has(key)) {
          seriesMismatches++
          if (seriesMismatches <= 5)
            problems.push(`series ${key.replace('\u0000', '/')}: nothing stored`)
        }
      }
    } finally {
      db.close()
    }
    // Whatever the spool still holds at the stop is acknowledged and not yet in the store: the
    // next start replays it. The drain above waits for it to empty, so this should be 0.
    const spoolFile = join(gw.dataDir, 'spool.db')
    if (existsSync(spoolFile)) {
      const spool = new Database(spoolFile, { readonly: true })
      try {
        spooledAtEnd =
          (
            spool.prepare("SELECT sum(count) AS n FROM spool WHERE kind = 'readings'").get() as {
              n: number | null
            }
          ).n ?? 0
      } catch {
        spooledAtEnd = 0
      } finally {
        spool.close()
      }
    }

    if (published !== acked) problems.push(`published ${published} != acked ${acked}`)
    if (stored !== readingsAcked) {
      problems.push(`stored ${stored} readings != ${readingsAcked} acknowledged`)
    }
    if (duplicates !== 0) problems.push(`${duplicates} duplicate rows`)
    if (seriesMismatches > 0) problems.push(`${seriesMismatches} series do not reconcile`)
    if (spooledAtEnd > 0) problems.push(`${spooledAtEnd} readings left in the spool at the stop`)
    if (deadLettered !== malformedSent) {
      problems.push(`dead letters ${deadLettered} != malformed sent ${malformedSent}`)
    }
    if (readingsAccepted !== readingsAcked) {
      problems.push(
        `gateway_readings_accepted_total ${readingsAccepted} != ${readingsAcked} acknowledged`,
      )
    }
    if (publishErrors > 0) problems.push(`${publishErrors} publishes failed: ${firstPublishError}`)
    if (unexpectedCloses > 0) problems.push(`${unexpectedCloses} connections closed by the gateway`)
    if (exitCode !== 0) problems.push(`the gateway exited ${exitCode} on SIGTERM, not 0`)
  } catch (err) {
    problems.push(`run failed: ${(err as Error).stack ?? err}`)
  } finally {
    clearInterval(reportTimer)
    clearInterval(tickTimer)
    shuttingDown = true
    reader?.close()
    for (const d of devices) d.client.end(true)
    if (gateway?.alive()) {
      gateway.kill()
      await gateway.exited
    }
  }

  const fields = {
    scenario: 'soak',
    durationS: round1(publishSeconds),
    rate,
    devices: deviceCount,
    published,
    acked,
    readingsAcked,
    stored,
    storedRows,
    duplicates,
    deadLettered,
    malformedSent,
    readingsAccepted,
    skipped,
  }
  return reportRun(fields, {
    gateway,
    problems,
    maxOldSpaceMiB: maxOldSpace,
    gatewayExit: exitCode,
  })
}

process.exitCode = await main()
