/**
 * The gateway as a real child process for the fuzz and soak runs (scripts/fuzz.ts,
 * scripts/soak.ts): `node --max-old-space-size=N --import tsx src/main.ts` on OS-chosen ports,
 * with a fresh DATA_DIR, its ports read from its JSON log lines, its RSS sampled from /proc, and
 * stopped with SIGTERM by PID.
 *
 * The child is not detached: it stays in the caller's process group, so whatever stops the caller
 * as a group (Ctrl-C in a terminal, a test's SIGKILL of the group) stops the gateway too.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { toDurationMs } from '../../src/util/duration.ts'
import { parsePrometheusText, type Scrape } from './prometheus.ts'

/** The repository root: src/main.ts and config/ are found from here, whatever the caller's cwd. */
export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))

export interface GatewayChildOptions {
  /** Configuration on top of the defaults below (PUBLISH_RATE, ...). */
  env?: Record<string, string>
  /** V8 heap limit of the child (--max-old-space-size), MiB. */
  maxOldSpaceMiB?: number
  /** How long to wait for both 'listening' lines. */
  readyTimeoutMs?: number
  /** RSS sampling period. */
  sampleEveryMs?: number
}

export interface GatewayChild {
  readonly pid: number
  readonly dataDir: string
  readonly mqttUrl: string
  readonly httpUrl: string
  readonly child: ChildProcess
  /** Resolves with the exit code (or the signal's name) once the process has ended. */
  readonly exited: Promise<number | string>
  /** True until the process has exited. */
  alive(): boolean
  /** Resident set size now (VmRSS), MiB; undefined once the process is gone. */
  rssMiB(): number | undefined
  /** Highest RSS seen: the 1 s samples and the kernel's own high-water mark (VmHWM). */
  peakRssMiB(): number
  /** GET /metrics, parsed. */
  scrape(): Promise<Scrape>
  /** Log lines at warn or above seen so far, and the last lines of any level (diagnostics). */
  logStats(): { warn: number; error: number; tail: string[]; firstErrors: string[] }
  stderr(): string
  /** SIGTERM by PID; resolves with the exit code, or 'timeout' (then SIGKILL) after timeoutMs. */
  stop(timeoutMs?: number): Promise<number | string>
  /** SIGKILL by PID if still running. */
  kill(): void
  /** Removes DATA_DIR (call after the process has exited). */
  removeDataDir(): Promise<void>
}

const TAIL_LINES = 40

/** Reads VmRSS and VmHWM of a process, in MiB. */
export function readProcStatus(pid: number): { rssMiB: number; hwmMiB: number } | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(text)
    return match ? Number(match[1]) / 1024 : undefined
  }
  const rssMiB = kib('VmRSS')
  if (rssMiB === undefined) return undefined
  return { rssMiB, hwmMiB: kib('VmHWM') ?? rssMiB }
}

export async function startGatewayChild(options: GatewayChildOptions = {}): Promise<GatewayChild> {
  const dataDir = await mkdtemp(join(tmpdir(), 'gw-child-'))
  const args = [
    ...(options.maxOldSpaceMiB ? [`--max-old-space-size=${options.maxOldSpaceMiB}`] : []),
    '--import',
    'tsx',
    'src/main.ts',
  ]
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      MQTT_HOST: '127.0.0.1',
      HTTP_HOST: '127.0.0.1',
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      DATA_DIR: dataDir,
      // info, not warn: the 'MQTT listening' / 'HTTP listening' lines that carry the ports are
      // info lines. The gateway logs little else at info under load (per-connection lines are
      // debug, dead letters are warn and rate-limited per device and reason).
      LOG_LEVEL: 'info',
      LOG_PRETTY: 'false',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const pid = child.pid
  if (pid === undefined) throw new Error('could not start the gateway process')
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string)
  let running = true
  void exited.then(() => {
    running = false
  })

  let warn = 0
  let error = 0
  const tail: string[] = []
  const firstErrors: string[] = []
  let stderrText = ''
  let mqttPort: number | undefined
  let httpPort: number | undefined
  let onPorts: (() => void) | undefined

  child.stderr?.on('data', (chunk) => {
    if (stderrText.length < 64_000) stderrText += String(chunk)
  })
  const lines = createInterface({ input: child.stdout! })
  lines.on('line', (line) => {
    tail.push(line.length > 2_000 ? `${line.slice(0, 2_000)}…` : line)
    if (tail.length > TAIL_LINES) tail.shift()
    if (!line.startsWith('{')) return
    let entry: Record<string, unknown>
    try {
      entry = JSON.parse(line) as Record<string, unknown>
    } catch {
      return
    }
    const level = typeof entry.level === 'number' ? entry.level : 0
    if (level >= 50) {
      error++
      if (firstErrors.length < 10) firstErrors.push(line.slice(0, 2_000))
    } else if (level >= 40) warn++
    const msg = typeof entry.msg === 'string' ? entry.msg : ''
    if (msg.startsWith('MQTT listening') && typeof entry.port === 'number') mqttPort = entry.port
    if (msg.startsWith('HTTP listening') && typeof entry.port === 'number') httpPort = entry.port
    if (mqttPort !== undefined && httpPort !== undefined) onPorts?.()
  })

  let peak = 0
  const sample = () => {
    const status = readProcStatus(pid)
    if (status) peak = Math.max(peak, status.rssMiB, status.hwmMiB)
  }
  const sampler = setInterval(sample, options.sampleEveryMs ?? 1_000)
  sampler.unref()
  void exited.then(() => clearInterval(sampler))

  const kill = () => {
    if (!running) return
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }

  const ready = new Promise<void>((resolveReady, rejectReady) => {
    const timer = setTimeout(
      () => rejectReady(new Error('the gateway did not log its ports in time')),
      options.readyTimeoutMs ?? 60_000,
    )
    onPorts = () => {
      clearTimeout(timer)
      resolveReady()
    }
    void exited.then((code) => {
      clearTimeout(timer)
      rejectReady(new Error(`the gateway exited (${code}) before listening: ${stderrText}`))
    })
  })
  try {
    await ready
  } catch (err) {
    kill()
    await exited
    await rm(dataDir, { recursive: true, force: true })
    throw err
  }
  sample()

  const httpUrl = `http://127.0.0.1:${httpPort}`
  return {
    pid,
    dataDir,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    httpUrl,
    child,
    exited,
    alive: () => running,
    rssMiB: () => readProcStatus(pid)?.rssMiB,
    peakRssMiB() {
      if (running) sample()
      return peak
    },
    async scrape() {
      const res = await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(30_000) })
      if (!res.ok) throw new Error(`GET /metrics: ${res.status}`)
      return parsePrometheusText(await res.text())
    },
    logStats: () => ({ warn, error, tail: [...tail], firstErrors: [...firstErrors] }),
    stderr: () => stderrText,
    async stop(timeoutMs = 60_000) {
      if (!running) return exited
      sample()
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // Already gone.
      }
      let timer: NodeJS.Timeout | undefined
      const timedOut = new Promise<'timeout'>((resolveTimeout) => {
        timer = setTimeout(() => resolveTimeout('timeout'), timeoutMs)
      })
      const result = await Promise.race([exited, timedOut])
      clearTimeout(timer)
      if (result === 'timeout') {
        kill()
        await exited
      }
      return result
    },
    kill,
    removeDataDir: () => rm(dataDir, { recursive: true, force: true }),
  }
}

/** Sum of a counter over all its label sets (e.g. rejected publishes over every reason). */
export function sumOf(scrape: Scrape, name: string): number {
  return scrape.samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0)
}

/** The samples of a counter by one label's value. */
export function byLabel(scrape: Scrape, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const s of scrape.samples) {
    if (s.name !== name) continue
    const key = s.labels[label] ?? ''
    out[key] = (out[key] ?? 0) + s.value
  }
  return out
}

/** What every fuzz or soak run reports about its gateway, beside its own figures. */
export interface RunOutcome {
  gateway: GatewayChild | undefined
  /** What went wrong; the run is ok when this is empty. */
  problems: readonly string[]
  maxOldSpaceMiB: number
  /** The gateway's exit status on SIGTERM, or why it was not stopped. */
  gatewayExit: number | string
}

/**
 * The end of a fuzz or soak run: the run's own figures, then the gateway's peak RSS, heap limit,
 * exit status and warn/error line counts, `ok` and the problems. On failure the gateway's first
 * errors, log tail and stderr go to stderr; the data folder is removed; the result is the one
 * JSON line on stdout. Returns the exit code (0 when ok).
 */
export async function reportRun(fields: Record<string, unknown>, run: RunOutcome): Promise<number> {
  const { gateway, problems } = run
  const ok = problems.length === 0
  const logs = gateway?.logStats()
  const result = {
    ...fields,
    peakRssMiB: round1(gateway?.peakRssMiB() ?? Number.NaN),
    maxOldSpaceMiB: run.maxOldSpaceMiB,
    gatewayExit: run.gatewayExit,
    gatewayWarnLines: logs?.warn,
    gatewayErrorLines: logs?.error,
    ok,
    ...(ok ? {} : { problems }),
  }
  if (!ok && logs) {
    process.stderr.write(
      `gateway errors:\n${logs.firstErrors.join('\n')}\ngateway log tail:\n${logs.tail.join('\n')}\n${gateway?.stderr() ?? ''}\n`,
    )
  }
  await gateway?.removeDataDir()
  process.stdout.write(`${JSON.stringify(result)}\n`)
  return ok ? 0 : 1
}

/** One decimal, as the runs report MiB and seconds. */
export function round1(n: number): number {
  return Math.round(n * 10) / 10
}

/** A duration flag: `15s`, `10m`, `1h`, `500ms` or plain milliseconds (the gateway's syntax). */
export function parseDurationFlag(text: string): number {
  const ms = toDurationMs(text)
  if (ms === null) throw new Error(`not a duration: ${text} (use 500ms, 15s, 10m, 1h)`)
  return ms
}

/**
 * A script's flags (see parseFlags), or the exit code when there is nothing to run: 0 after
 * printing `usage` for --help, 2 after printing the problem and `usage` to stderr.
 */
export function readFlags(
  argv: readonly string[],
  known: readonly string[],
  usage: string,
): { flags: Record<string, string> } | { exitCode: number } {
  let flags: Record<string, string>
  try {
    flags = parseFlags(argv, [...known, 'help'])
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}`)
    return { exitCode: 2 }
  }
  if (flags.help) {
    process.stdout.write(usage)
    return { exitCode: 0 }
  }
  return { flags }
}

/** `--name value` and `--name=value` flags; unknown names are an error. */
export function parseFlags(
  argv: readonly string[],
  known: readonly string[],
): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--') continue
    if (!arg.startsWith('--')) throw new Error(`unexpected argument: ${arg}`)
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    if (!known.includes(name))
      throw new Error(`unknown flag --${name} (known: ${known.join(', ')})`)
    if (name === 'help') {
      out.help = 'true'
      continue
    }
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1)
    if (value === undefined) throw new Error(`--${name} needs a value`)
    out[name] = value
  }
  return out
}
