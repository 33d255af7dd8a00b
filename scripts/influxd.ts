/**
 * A throwaway InfluxDB 1.x server for tests and benchmarks: its own temp folder, two free loopback
 * ports, no auth, quiet logs. `startInfluxd()` resolves once `GET /ping` answers 204; `stop()`
 * ends that one process (by PID) and deletes its folder.
 *
 * As a CLI (`node --import tsx scripts/influxd.ts`) it starts one, prints `{"url":...,"pid":...}`
 * as one JSON line on stdout and stops it on SIGINT or SIGTERM.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  freePorts,
  type RestartableService,
  type ServiceProcess,
  spawnService,
  stopService,
} from './service-process.ts'

export interface InfluxdOptions {
  /** Receives influxd's stderr and stdout, line by line (it is quiet unless something is wrong). */
  log?: (line: string) => void
}

/** halt() keeps influxd's data: restart() brings the same databases back on the same port. */
export interface RunningInfluxd extends RestartableService {
  /** `http://127.0.0.1:PORT`, without a database path. */
  url: string
  httpPort: number
}

export const NOT_INSTALLED_MESSAGE = 'InfluxDB is not installed: apt-get install influxdb'

const HOST = '127.0.0.1'
const READY_TIMEOUT_MS = 20_000
const READY_POLL_MS = 50
const STOP_GRACE_MS = 5_000
/** Each /ping is bounded so a server that accepts but never answers cannot stall the wait. */
const PING_TIMEOUT_MS = 1_000
const STDERR_TAIL_CHARS = 4_000
/** The ports are found free, then bound by influxd: another process can take one in between. */
const START_ATTEMPTS = 3

export async function startInfluxd(options: InfluxdOptions = {}): Promise<RunningInfluxd> {
  let lastError: unknown
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce(options)
    } catch (err) {
      lastError = err
      // Only a lost port race is worth another try; anything else would fail the same way.
      if (!(err instanceof Error && /address already in use/i.test(err.message))) throw err
    }
  }
  throw lastError
}

async function startOnce(options: InfluxdOptions): Promise<RunningInfluxd> {
  const [httpPort, rpcPort] = await freePorts(2, HOST)
  const dir = await mkdtemp(join(tmpdir(), 'influxd-'))
  const removeDir = () => rm(dir, { recursive: true, force: true })
  const configFile = join(dir, 'influxdb.conf')
  await writeFile(configFile, configText(dir, httpPort as number, rpcPort as number))

  const url = `http://${HOST}:${httpPort}`
  let stderrTail = ''
  const onOutput = (chunk: Buffer) => {
    const text = chunk.toString('utf8')
    stderrTail = (stderrTail + text).slice(-STDERR_TAIL_CHARS)
    if (options.log) for (const line of text.split('\n')) if (line.trim()) options.log(line)
  }

  /** Spawns influxd on this config and waits until it answers, as itself. */
  const launch = async (): Promise<ServiceProcess> => {
    const launched = await spawnService('influxd', ['-config', configFile], NOT_INSTALLED_MESSAGE)
    const { child, pid, exited } = launched
    child.stderr?.on('data', onOutput)
    child.stdout?.on('data', onOutput)
    try {
      await waitForPing(url, exited, () => stderrTail)
      await assertServedBy(url, pid)
    } catch (err) {
      await end(launched)
      throw err
    }
    return launched
  }
  const end = (service: ServiceProcess) => stopService(service, STOP_GRACE_MS)

  let current: ServiceProcess
  try {
    current = await launch()
  } catch (err) {
    await removeDir()
    throw err
  }

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await end(current)
      await removeDir()
    })()
    return stopping
  }

  return {
    url,
    httpPort: httpPort as number,
    get pid() {
      return current.pid
    },
    halt: () => end(current),
    async restart() {
      if (stopping) throw new Error('influxd was stopped for good')
      current = await launch()
    },
    stop,
  }
}

/**
 * The port was free when chosen, but another influxd started at the same moment (a parallel
 * test file) may have bound it first; then /ping answers, from the wrong server, while ours
 * fails to bind. InfluxDB reports its own PID in SHOW DIAGNOSTICS: it must be ours.
 */
async function assertServedBy(url: string, pid: number): Promise<void> {
  const res = await fetch(`${url}/query?q=${encodeURIComponent('SHOW DIAGNOSTICS')}`)
  const body = (await res.json()) as {
    results?: Array<{ series?: Array<{ name?: string; columns?: string[]; values?: unknown[][] }> }>
  }
  const system = body.results?.[0]?.series?.find((s) => s.name === 'system')
  const servedBy = system?.values?.[0]?.[system.columns?.indexOf('PID') ?? -1]
  if (servedBy !== pid) {
    throw new Error(
      `address already in use: ${url} is served by influxd ${String(servedBy)}, not ours (${pid})`,
    )
  }
}

async function waitForPing(
  url: string,
  exited: Promise<number | string>,
  stderrTail: () => string,
): Promise<void> {
  let exitedWith: number | string | undefined
  void exited.then((code) => {
    exitedWith = code
  })
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (exitedWith !== undefined) {
      throw new Error(`influxd exited (${exitedWith}) before it was ready:\n${stderrTail().trim()}`)
    }
    try {
      const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(PING_TIMEOUT_MS) })
      await res.arrayBuffer()
      if (res.status === 204) return
    } catch {
      // Not listening yet.
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `influxd did not answer ${url}/ping within ${READY_TIMEOUT_MS} ms:\n${stderrTail().trim()}`,
      )
    }
    await Promise.race([new Promise((resolve) => setTimeout(resolve, READY_POLL_MS)), exited])
  }
}

function configText(dir: string, httpPort: number, rpcPort: number): string {
  const path = (name: string) => JSON.stringify(join(dir, name))
  // Upstream spells the switch `reporting-disabled`; Debian's package patches it into
  // `reporting-enabled`. influxd ignores keys it does not know, so both are set.
  return `reporting-disabled = true
reporting-enabled = false
bind-address = "${HOST}:${rpcPort}"

[meta]
  dir = ${path('meta')}
  logging-enabled = false

[data]
  dir = ${path('data')}
  wal-dir = ${path('wal')}
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "${HOST}:${httpPort}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "error"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
`
}

async function main(): Promise<void> {
  const server = await startInfluxd({ log: (line) => process.stderr.write(`${line}\n`) })
  process.stdout.write(`${JSON.stringify({ url: server.url, pid: server.pid })}\n`)
  const shutdown = () => {
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
        process.exit(1)
      },
    )
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  })
}
