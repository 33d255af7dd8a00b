/**
 * Two gateway instances on Redis against one, same load generator, same run (README, Scale-out).
 *
 *   node --import tsx bench/scale-out.bench.ts [--devices 40] [--seconds 10] [--rounds 3]
 *
 * Starts a private redis-server and influxd, then per round: one instance (REDIS_URL set, so the
 * broker path is the same) and two instances, in alternating order, each fed by the same closed
 * loop of QoS 1 devices (one reading in flight per device, devices spread over the instances,
 * as a TCP load balancer would). Counts PUBACKs: every one is a reading stored in InfluxDB
 * before its acknowledgement. Prints one JSON line per run and a summary with the ratio:
 *   {"bench":"scale-out","instances":2,"round":1,"ackedPerSec":..,"cpu":{...}}
 *   {"bench":"scale-out","summary":true,"oneInstance":..,"twoInstances":..,"ratio":..}
 * `cpu` is the CPU seconds each process used during the run (from /proc), which shows where the
 * time goes: gateway instances, redis-server, influxd.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import mqtt, { type MqttClient } from 'mqtt'
import { startInfluxd } from '../scripts/influxd.ts'
import { startRedis } from '../scripts/redis-server.ts'

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '40' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
  },
})
const DEVICES = Number(values.devices)
const SECONDS = Number(values.seconds)
const ROUNDS = Number(values.rounds)
const CLOCK_TICKS = 100 // USER_HZ on Linux

interface Instance {
  child: ChildProcess
  mqttUrl: string
  stop(): Promise<void>
}

async function startInstance(env: Record<string, string>): Promise<Instance> {
  const child = spawn('node', ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (chunk) => {
    out += String(chunk)
  })
  child.stderr?.on('data', (chunk) => {
    out += String(chunk)
  })
  const exited = once(child, 'exit')
  const deadline = Date.now() + 30_000
  for (;;) {
    const line = out.split('\n').find((l) => l.includes('"MQTT listening'))
    if (line) {
      const port = (JSON.parse(line) as { port: number }).port
      return {
        child,
        mqttUrl: `mqtt://127.0.0.1:${port}`,
        async stop() {
          child.kill('SIGTERM')
          await exited
        },
      }
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`gateway did not start:\n${out.slice(-2000)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** utime + stime of a process, in seconds. */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return 0
  }
}

/** Closed loop: each device keeps one QoS 1 reading in flight; returns PUBACKs counted. */
async function drive(urls: string[], seconds: number, tag: string): Promise<number> {
  const clients: MqttClient[] = await Promise.all(
    Array.from({ length: DEVICES }, (_, i) =>
      mqtt.connectAsync(urls[i % urls.length] as string, {
        clientId: `${tag}-${i}`,
        reconnectPeriod: 0,
      }),
    ),
  )
  let acked = 0
  let running = true
  const startTs = Date.now() - 120_000
  const loops = clients.map(async (client, i) => {
    for (let seq = 0; running; seq++) {
      await client.publishAsync(
        `sensors/${tag}-${i}/temperature`,
        JSON.stringify({ value: seq % 25, ts: startTs + seq }),
        { qos: 1 },
      )
      acked++
    }
  })
  // Warm-up second, then the measured window.
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  const from = acked
  await new Promise((resolve) => setTimeout(resolve, seconds * 1_000))
  const measured = acked - from
  running = false
  await Promise.all(loops)
  await Promise.all(clients.map((client) => client.endAsync()))
  return measured / seconds
}

const redis = await startRedis()
const influxd = await startInfluxd()
const dir = await mkdtemp(path.join(tmpdir(), 'bench-scale-'))
const results: Record<1 | 2, number[]> = { 1: [], 2: [] }
let run = 0
try {
  for (let round = 1; round <= ROUNDS; round++) {
    const order: Array<1 | 2> = round % 2 === 1 ? [1, 2] : [2, 1]
    for (const count of order) {
      run++
      const database = `bench_scale_${run}`
      const instances = await Promise.all(
        Array.from({ length: count }, (_, i) =>
          startInstance({
            MQTT_PORT: '0',
            HTTP_PORT: '0',
            LOG_LEVEL: 'info',
            LOG_PRETTY: 'false',
            DATA_DIR: path.join(dir, `run-${run}-${i}`),
            STORE: 'influx',
            INFLUX_URL: `${influxd.url}/${database}`,
            REDIS_URL: redis.url,
            INSTANCE_ID: `bench-${i + 1}`,
            PUBLISH_RATE: '1000000',
            PUBLISH_BURST: '1000000',
          }),
        ),
      )
      const pids = {
        gateways: instances.map((instance) => instance.child.pid),
        redis: redis.pid,
        influxd: influxd.pid,
      }
      const cpuBefore = await Promise.all([
        ...pids.gateways.map(cpuSeconds),
        cpuSeconds(pids.redis),
        cpuSeconds(pids.influxd),
      ])
      const perSec = await drive(
        instances.map((instance) => instance.mqttUrl),
        SECONDS,
        `r${run}`,
      )
      const cpuAfter = await Promise.all([
        ...pids.gateways.map(cpuSeconds),
        cpuSeconds(pids.redis),
        cpuSeconds(pids.influxd),
      ])
      const used = cpuAfter.map((after, i) => round2(after - (cpuBefore[i] ?? 0)))
      results[count].push(perSec)
      process.stdout.write(
        `${JSON.stringify({
          bench: 'scale-out',
          instances: count,
          round,
          devices: DEVICES,
          seconds: SECONDS,
          ackedPerSec: Math.round(perSec),
          cpuSeconds: {
            gateways: used.slice(0, count),
            redis: used[count],
            influxd: used[count + 1],
          },
        })}\n`,
      )
      await Promise.all(instances.map((instance) => instance.stop()))
    }
  }
  const one = median(results[1])
  const two = median(results[2])
  process.stdout.write(
    `${JSON.stringify({
      bench: 'scale-out',
      summary: true,
      oneInstance: Math.round(one),
      twoInstances: Math.round(two),
      ratio: round2(two / one),
      cpus: (await import('node:os')).cpus().length,
    })}\n`,
  )
} finally {
  await Promise.all([redis.stop(), influxd.stop(), rm(dir, { recursive: true, force: true })])
}

function median(list: number[]): number {
  const sorted = [...list].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}

function round2(n: number): number {
  return Math.round(n * 100) / 100
}
