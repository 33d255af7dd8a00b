/**
 * Churn soak (issue 14, point 5): memory of a gateway whose device ids keep changing.
 *
 *   npm run soak:churn -- [--ids 200000] [--duration 4m] [--release 5s] [--connections 8]
 *                         [--ids-per-connection 100] [--readings 3] [--settle 15s]
 *                         [--max-old-space MiB]
 *
 * Starts the gateway as a real child process (as scripts/soak.ts does) with DEVICE_IDLE_RELEASE
 * set to --release (0: release off, to compare), and sends readings from `--ids` distinct device
 * ids spread evenly over --duration: a sliding window of ids, each publishing --readings QoS 1
 * readings (`sensors/churn-{n}/temperature`, unique timestamps, values that fire no rule) and
 * then never again. `--connections` MQTT connections run in parallel; each speaks for
 * --ids-per-connection ids in turn and then disconnects, and a new one takes its place, so
 * connections churn too (each connection's devices go offline when it closes).
 *
 * Every 5 s one JSON line {t, ids, published, acked, tracked, ruleKeys, rssMiB, heapUsedMiB}
 * (tracked: gateway_devices_tracked). After the publishing and --settle (time for the last ids to
 * be released), one final line {scenario:'churn-soak', ..., rssMiB: [series], plateau} where
 * plateau compares the median RSS of the last third of the publishing time with the middle third
 * (ok when within PLATEAU_PCT %), and stored == readings acknowledged is checked in the SQLite
 * file after the gateway stopped (SIGTERM, exit 0 expected). Exit 1 when anything fails.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { connectAsync, type MqttClient } from 'mqtt'
import {
  type GatewayChild,
  parseDurationFlag,
  readFlags,
  reportRun,
  round1,
  startGatewayChild,
} from '../test/helpers/gateway-child.ts'

const USAGE = `usage: npm run soak:churn -- [--ids 200000] [--duration 4m] [--release 5s]
                             [--connections 8] [--ids-per-connection 100] [--readings 3]
                             [--settle 15s] [--max-old-space MiB]

  --ids                 distinct device ids, each publishing once (default 200000)
  --duration            publishing time, ids spread evenly over it (default 4m)
  --release             the gateway's DEVICE_IDLE_RELEASE; 0: off (default 5s)
  --connections         MQTT connections publishing in parallel (default 8)
  --ids-per-connection  ids a connection speaks for before it disconnects (default 100)
  --readings            QoS 1 readings per id (default 3)
  --settle              wait after publishing, for the last ids to be released (default 15s)
  --max-old-space       V8 heap limit of the gateway process, MiB (default 512)
`

const SAMPLE_EVERY_MS = 5_000
/** Median RSS of the last third of the run within this much of the middle third: a plateau. */
const PLATEAU_PCT = 10
/** QoS 1 publishes awaiting PUBACK per connection before it waits. */
const MAX_INFLIGHT = 200
const DRAIN_TIMEOUT_MS = 60_000

interface Sample {
  t: number
  ids: number
  published: number
  acked: number
  tracked: number | null
  ruleKeys: number | null
  rssMiB: number
  heapUsedMiB: number | null
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** Middle vs last third of the samples taken while publishing. */
export function plateauOf(rss: readonly number[]): {
  middleMiB: number
  lastMiB: number
  growthPct: number
  ok: boolean
} {
  const third = Math.floor(rss.length / 3)
  const middleMiB = median(rss.slice(third, 2 * third))
  const lastMiB = median(rss.slice(2 * third))
  const growthPct = ((lastMiB - middleMiB) / middleMiB) * 100
  return {
    middleMiB: round1(middleMiB),
    lastMiB: round1(lastMiB),
    growthPct: round1(growthPct),
    ok: rss.length >= 3 && growthPct <= PLATEAU_PCT,
  }
}

async function main(): Promise<number> {
  const read = readFlags(
    process.argv.slice(2),
    [
      'ids',
      'duration',
      'release',
      'connections',
      'ids-per-connection',
      'readings',
      'settle',
      'max-old-space',
    ],
    USAGE,
  )
  if ('exitCode' in read) return read.exitCode
  const { flags } = read
  const idCount = Number(flags.ids ?? 200_000)
  const durationMs = parseDurationFlag(flags.duration ?? '4m')
  const release = flags.release ?? '5s'
  const connections = Number(flags.connections ?? 8)
  const idsPerConnection = Number(flags['ids-per-connection'] ?? 100)
  const readingsPerId = Number(flags.readings ?? 3)
  const settleMs = parseDurationFlag(flags.settle ?? '15s')
  const maxOldSpace = Number(flags['max-old-space'] ?? 512)
  for (const [name, n] of Object.entries({
    idCount,
    connections,
    idsPerConnection,
    readingsPerId,
  })) {
    if (!Number.isInteger(n) || n < 1) {
      process.stderr.write(`${name} must be a positive integer\n${USAGE}`)
      return 2
    }
  }

  let published = 0
  let acked = 0
  let publishErrors = 0
  let firstPublishError: string | undefined
  let nextId = 0
  let stopping = false
  const problems: string[] = []
  const samples: Sample[] = []
  let gateway: GatewayChild | undefined
  let sampler: NodeJS.Timeout | undefined
  const open = new Set<MqttClient>()
  let stored = Number.NaN
  let exitCode: number | string = 'not stopped'
  let publishSeconds = 0
  let releasedTotal: number | null = null
  let fields: Record<string, unknown> = { scenario: 'churn-soak', release }
  const onSignal = () => {
    stopping = true
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  try {
    gateway = await startGatewayChild({
      maxOldSpaceMiB: maxOldSpace,
      env: {
        DEVICE_IDLE_RELEASE: release,
        // A connection here speaks for many devices: its rate is theirs together, not one
        // device's, and no reading of this run may be paced or dropped by PUBLISH_RATE.
        PUBLISH_RATE: '1000000',
        PUBLISH_BURST: '1000000',
      },
    })
    const gw = gateway
    const t0 = performance.now()

    const sample = async (): Promise<Sample> => {
      let tracked: number | null = null
      let ruleKeys: number | null = null
      let heapUsedMiB: number | null = null
      try {
        const scrape = await gw.scrape()
        tracked = scrape.value('gateway_devices_tracked') ?? null
        ruleKeys = scrape.value('gateway_rule_keys') ?? null
        releasedTotal = scrape.value('gateway_devices_released_total') ?? null
        const heap = scrape.value('nodejs_heap_size_used_bytes')
        heapUsedMiB = heap === undefined ? null : round1(heap / 1_048_576)
      } catch {
        // A scrape that fails under load leaves the gauges out of this sample.
      }
      const s: Sample = {
        t: Math.round((performance.now() - t0) / 1000),
        ids: nextId,
        published,
        acked,
        tracked,
        ruleKeys,
        rssMiB: round1(gw.rssMiB() ?? Number.NaN),
        heapUsedMiB,
      }
      process.stdout.write(`${JSON.stringify(s)}\n`)
      return s
    }
    let publishing = true
    sampler = setInterval(() => {
      sample()
        .then((s) => {
          if (publishing) samples.push(s)
        })
        .catch((err: unknown) => process.stderr.write(`sample failed: ${err}\n`))
    }, SAMPLE_EVERY_MS)

    const idDueMs = (n: number) => (n * durationMs) / idCount
    let connectionSeq = 0

    /** One connection at a time: speaks for a block of ids, then disconnects. */
    const worker = async () => {
      while (!stopping && nextId < idCount) {
        const client = await connectAsync(gw.mqttUrl, {
          clientId: `churn-conn-${++connectionSeq}`,
          clean: true,
          protocolVersion: 4,
          keepalive: 30,
          reconnectPeriod: 0,
          connectTimeout: 10_000,
        })
        open.add(client)
        let inflight = 0
        for (let k = 0; k < idsPerConnection && nextId < idCount && !stopping; k++) {
          const n = nextId++
          const wait = idDueMs(n) - (performance.now() - t0)
          if (wait > 0) await delay(wait)
          while (inflight >= MAX_INFLIGHT) await delay(5)
          const deviceId = `churn-${n}`
          const baseTs = Date.now()
          for (let r = 0; r < readingsPerId; r++) {
            // Normal values: no rule fires, the alerts stay out of the picture.
            const payload = JSON.stringify({ value: 20 + (n % 5), ts: baseTs + r })
            published++
            inflight++
            client.publish(`sensors/${deviceId}/temperature`, payload, { qos: 1 }, (err) => {
              inflight--
              if (err) {
                publishErrors++
                firstPublishError ??= err.message
              } else acked++
            })
          }
        }
        const deadline = Date.now() + DRAIN_TIMEOUT_MS
        while (inflight > 0 && Date.now() < deadline) await delay(5)
        if (inflight > 0) problems.push(`${inflight} publishes unacknowledged on a connection`)
        await client.endAsync()
        open.delete(client)
      }
    }
    await Promise.all(Array.from({ length: connections }, () => worker()))
    publishing = false
    publishSeconds = (performance.now() - t0) / 1000
    if (stopping) problems.push('interrupted')

    // The last ids are released one release time after they spoke; the writer drains meanwhile.
    await delay(settleMs)
    const settled = await sample()
    clearInterval(sampler)

    exitCode = await gw.stop(60_000)
    const dbFile = join(gw.dataDir, 'gateway.db')
    if (existsSync(dbFile)) {
      const db = new Database(dbFile, { readonly: true, fileMustExist: true })
      try {
        stored = (db.prepare('SELECT count(*) AS n FROM readings').get() as { n: number }).n
      } finally {
        db.close()
      }
    }

    const plateau = plateauOf(samples.map((s) => s.rssMiB))
    if (!plateau.ok) {
      problems.push(
        `RSS does not plateau: median ${plateau.lastMiB} MiB in the last third vs ${plateau.middleMiB} MiB in the middle third (+${plateau.growthPct} %, over ${PLATEAU_PCT} %)`,
      )
    }
    if (published !== acked) problems.push(`published ${published} != acked ${acked}`)
    if (stored !== acked) problems.push(`stored ${stored} != ${acked} readings acknowledged`)
    if (publishErrors > 0) problems.push(`${publishErrors} publishes failed: ${firstPublishError}`)
    if (exitCode !== 0) problems.push(`the gateway exited ${exitCode} on SIGTERM, not 0`)
    fields = {
      scenario: 'churn-soak',
      release,
      ids: nextId,
      durationS: round1(publishSeconds),
      connections: connectionSeq,
      published,
      acked,
      stored,
      trackedMax: Math.max(...samples.map((s) => s.tracked ?? 0)),
      trackedAfterSettle: settled.tracked,
      ruleKeysAfterSettle: settled.ruleKeys,
      devicesReleased: releasedTotal,
      rssMiB: samples.map((s) => s.rssMiB),
      heapUsedMiB: samples.map((s) => s.heapUsedMiB),
      plateau,
    }
  } catch (err) {
    problems.push(`run failed: ${(err as Error).stack ?? err}`)
    fields = { ...fields, ids: nextId, published, acked }
  } finally {
    clearInterval(sampler)
    for (const client of open) client.end(true)
    if (gateway?.alive()) {
      gateway.kill()
      await gateway.exited
    }
  }
  return reportRun(fields, {
    gateway,
    problems,
    maxOldSpaceMiB: maxOldSpace,
    gatewayExit: exitCode,
  })
}

process.exitCode = await main()
