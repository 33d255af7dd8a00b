/**
 * The three brokers `npm run bench` compares, each as a child process of the orchestrator,
 * listening on 127.0.0.1 on a port of the OS's choosing, stopped by PID:
 *
 * - gateway: `node --import tsx src/main.ts` (the full pipeline: auth, ACL, rate limiter, ingest,
 *   SQLite group commits, rules, alerts, metrics), in a fresh DATA_DIR, with the shipped rules.
 * - aedes: bench/targets/bare-aedes.ts, the same Aedes on the same Node, default options.
 * - mosquitto: Mosquitto from PATH with a temp config (MOSQUITTO_CONFIG below), when installed.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sleep } from '../lib/stats.ts'

export type TargetName = 'gateway' | 'aedes' | 'mosquitto'

export const HOST = '127.0.0.1'
export const REPO = fileURLToPath(new URL('../..', import.meta.url))
const START_TIMEOUT_MS = 30_000
const STOP_GRACE_MS = 20_000
const OUTPUT_TAIL = 8_000

export interface Target {
  name: TargetName
  port: number
  url: string
  pid: number
  /** gateway only: its HTTP API (/metrics). */
  httpUrl?: string
  /** gateway only: its DATA_DIR (gateway.db). */
  dataDir?: string
  /** False once the process has exited (on its own: a crash). */
  alive(): boolean
  /** Exit code or signal once exited. */
  exitStatus(): number | string | null
  /** The last few KiB of its stdout and stderr. */
  output(): string
  /** SIGTERM, SIGKILL after a grace period; removes its temp folder. Resolves with the exit status. */
  stop(): Promise<number | string>
}

/** The gateway's settings for a benchmark; README "Configuration". */
export function gatewayEnv(dataDir: string, extra: Record<string, string> = {}) {
  return {
    MQTT_HOST: HOST,
    MQTT_PORT: '0',
    HTTP_HOST: HOST,
    HTTP_PORT: '0',
    DATA_DIR: dataDir,
    LOG_PRETTY: 'false',
    // info: the listening lines carry the ports; nothing is logged per message at info.
    LOG_LEVEL: 'info',
    RULES_FILE: join(REPO, 'config/rules.yaml'),
    DEVICES_FILE: join(REPO, 'config/devices.yaml'),
    RULES_WATCH: 'false',
    // The per-client rate limit would otherwise be what is measured (100/s per device).
    PUBLISH_RATE: '1000000',
    PUBLISH_BURST: '1000000',
    ...extra,
  }
}

interface Spawned {
  child: ChildProcess
  pid: number
  output: () => string
  exited: Promise<number | string>
}

/** Every target process started and not yet exited, for killTargets() on an interrupt. */
const running = new Set<ChildProcess>()

/** SIGKILLs every target still running (by PID): the orchestrator is being interrupted. */
export function killTargets(): void {
  for (const child of running) child.kill('SIGKILL')
  running.clear()
}

/**
 * Where the gateway target runs from: this checkout, or BENCH_GATEWAY_DIR, another checkout (with
 * its node_modules) for a before/after comparison of two revisions against the same baselines.
 */
const GATEWAY_DIR = process.env.BENCH_GATEWAY_DIR || REPO

function spawnTarget(
  command: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
  cwd: string = REPO,
): Spawned {
  const child = spawn(command, args, {
    cwd,
    env: env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  child.once('exit', () => running.delete(child))
  let tail = ''
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = new Promise<number | string>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code, signal) => resolve((code ?? signal) as number | string))
  })
  // An exit is reported through alive()/exitStatus(); nobody has to await this one.
  exited.catch(() => {})
  return { child, pid: child.pid ?? -1, output: () => tail, exited }
}

function targetOf(
  name: TargetName,
  spawned: Spawned,
  port: number,
  cleanup: () => Promise<void>,
  extra: Partial<Target> = {},
): Target {
  const { child } = spawned
  let stopping: Promise<number | string> | undefined
  return {
    name,
    port,
    url: `mqtt://${HOST}:${port}`,
    pid: spawned.pid,
    ...extra,
    alive: () => child.exitCode === null && child.signalCode === null,
    exitStatus: () => child.exitCode ?? child.signalCode ?? null,
    output: spawned.output,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM')
          const timer = setTimeout(() => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
          }, STOP_GRACE_MS)
          await once(child, 'exit').catch(() => {})
          clearTimeout(timer)
        }
        await cleanup()
        return (child.exitCode ?? child.signalCode ?? 'gone') as number | string
      })()
      return stopping
    },
  }
}

/** Resolves with the first stdout JSON line `pick` accepts; rejects if the process exits first. */
function waitForLines(
  spawned: Spawned,
  pick: (line: Record<string, unknown>) => boolean,
  count: number,
): Promise<Array<Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    const found: Array<Record<string, unknown>> = []
    let buffer = ''
    const timer = setTimeout(
      () => fail(new Error(`not started within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    )
    const fail = (err: Error) => {
      clearTimeout(timer)
      spawned.child.stdout?.off('data', onData)
      reject(new Error(`${err.message}\n${spawned.output().trim()}`))
    }
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('utf8')
      let nl = buffer.indexOf('\n')
      while (nl >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        nl = buffer.indexOf('\n')
        if (!line.startsWith('{')) continue
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>
          if (pick(parsed)) found.push(parsed)
        } catch {
          // Not JSON: ignored.
        }
        if (found.length >= count) {
          clearTimeout(timer)
          spawned.child.stdout?.off('data', onData)
          resolve(found)
          return
        }
      }
    }
    spawned.child.stdout?.on('data', onData)
    spawned.exited.then(
      (code) => fail(new Error(`exited (${code}) before it listened`)),
      (err: Error) => fail(err),
    )
  })
}

export interface GatewayOptions {
  /** Write a V8 CPU profile (node --cpu-prof) into this folder at exit. */
  cpuProfileDir?: string
  env?: Record<string, string>
}

export async function startGateway(options: GatewayOptions = {}): Promise<Target> {
  const dataDir = await mkdtemp(join(tmpdir(), 'bench-gateway-'))
  const args = [
    ...(options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : []),
    '--import',
    'tsx',
    'src/main.ts',
  ]
  const spawned = spawnTarget(
    process.execPath,
    args,
    { ...process.env, ...gatewayEnv(dataDir, options.env) },
    GATEWAY_DIR,
  )
  const cleanup = () => rm(dataDir, { recursive: true, force: true })
  try {
    const lines = await waitForLines(
      spawned,
      (l) => typeof l.msg === 'string' && /^(MQTT|HTTP) listening on/.test(l.msg),
      2,
    )
    const portOf = (prefix: string) =>
      lines.find((l) => (l.msg as string).startsWith(prefix))?.port as number
    const httpPort = portOf('HTTP')
    return targetOf('gateway', spawned, portOf('MQTT'), cleanup, {
      httpUrl: `http://${HOST}:${httpPort}`,
      dataDir,
    })
  } catch (err) {
    spawned.child.kill('SIGKILL')
    await cleanup()
    throw new Error(`gateway: ${(err as Error).message}`)
  }
}

export async function startBareAedes(): Promise<Target> {
  const spawned = spawnTarget(process.execPath, [
    '--import',
    'tsx',
    fileURLToPath(new URL('./bare-aedes.ts', import.meta.url)),
  ])
  try {
    const [line] = await waitForLines(spawned, (l) => typeof l.port === 'number', 1)
    return targetOf('aedes', spawned, line?.port as number, async () => {})
  } catch (err) {
    spawned.child.kill('SIGKILL')
    throw new Error(`bare Aedes: ${(err as Error).message}`)
  }
}

/** Per-client queues of Mosquitto in the benchmark, stated in every Mosquitto result line. */
export const MOSQUITTO_LIMITS = {
  /** QoS 1/2 messages in flight to one client (default 20): as many as the devices keep. */
  maxInflightMessages: 1_000,
  /** Queued beyond those, per client (default 1000); over it Mosquitto drops. */
  maxQueuedMessages: 100_000,
}

export const MOSQUITTO_MISSING =
  'Mosquitto is not installed: apt-get install mosquitto (only the gateway and bare Aedes were measured)'

/** `mosquitto version 2.0.11`, or null when it is not installed. */
export function mosquittoVersion(): string | null {
  try {
    const out = execFileSync('mosquitto', ['-h'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    return /mosquitto version \S+/.exec(out)?.[0] ?? 'mosquitto (unknown version)'
  } catch (err) {
    // `mosquitto -h` exits 3 after printing its help (with the version) on stdout.
    const out = String((err as { stdout?: unknown }).stdout ?? '')
    const version = /mosquitto version \S+/.exec(out)?.[0]
    if (version) return version
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : 'mosquitto (unknown version)'
  }
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, resolve)
  })
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address !== 'object') throw new Error('no port assigned')
  return address.port
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

function mosquittoConfig(port: number): string {
  return `# npm run bench: one loopback listener, anonymous, nothing on disk.
listener ${port} ${HOST}
allow_anonymous true
persistence false
max_inflight_messages ${MOSQUITTO_LIMITS.maxInflightMessages}
max_queued_messages ${MOSQUITTO_LIMITS.maxQueuedMessages}
max_keepalive 65535
log_dest stderr
log_type error
log_type warning
`
}

/** Starts Mosquitto on a free loopback port; null when it is not installed. */
export async function startMosquitto(): Promise<Target | null> {
  if (mosquittoVersion() === null) return null
  let lastError: unknown
  // The port is found free, then bound by Mosquitto: another process may take it in between.
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), 'bench-mosquitto-'))
    const cleanup = () => rm(dir, { recursive: true, force: true })
    const port = await freePort()
    const config = join(dir, 'mosquitto.conf')
    await writeFile(config, mosquittoConfig(port))
    const spawned = spawnTarget('mosquitto', ['-c', config])
    const deadline = Date.now() + START_TIMEOUT_MS
    let up = false
    while (Date.now() < deadline && spawned.child.exitCode === null) {
      if (await canConnect(port)) {
        up = true
        break
      }
      await sleep(50)
    }
    // Someone else's listener answers too: ours must still be running a moment later.
    await sleep(100)
    if (up && spawned.child.exitCode === null) {
      return targetOf('mosquitto', spawned, port, cleanup)
    }
    spawned.child.kill('SIGKILL')
    await cleanup()
    lastError = new Error(`mosquitto did not start on port ${port}:\n${spawned.output().trim()}`)
  }
  throw lastError
}

export async function startTarget(name: TargetName, options: GatewayOptions = {}): Promise<Target> {
  if (name === 'gateway') return startGateway(options)
  if (name === 'aedes') return startBareAedes()
  const mosquitto = await startMosquitto()
  if (!mosquitto) throw new Error(MOSQUITTO_MISSING)
  return mosquitto
}

/** Prometheus text: the sum of every sample of `name` (all label sets); NaN when absent. */
export function metricValue(text: string, name: string): number {
  let sum = Number.NaN
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const next = line[name.length]
    if (next !== ' ' && next !== '{') continue
    const value = Number(line.slice(line.lastIndexOf(' ') + 1))
    sum = Number.isNaN(sum) ? value : sum + value
  }
  return sum
}

export async function scrapeMetrics(target: Target): Promise<string> {
  if (!target.httpUrl) throw new Error(`${target.name} has no /metrics`)
  const res = await fetch(`${target.httpUrl}/metrics`, { signal: AbortSignal.timeout(10_000) })
  return res.text()
}
