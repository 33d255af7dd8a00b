/**
 * A throwaway Redis server for tests and benchmarks (Debian's `redis-server`): a free loopback
 * port, its own temp folder, no persistence to disk, started by `startRedis()` and ended by PID.
 * `halt()` and `restart()` make an outage on the same port (what a Redis restart looks like to
 * the gateway: connections drop, data is gone unless persistence is on — here it is off, as the
 * gateway's use of Redis must survive a Redis that comes back empty).
 *
 * As a CLI (`node --import tsx scripts/redis-server.ts`) it starts one, prints
 * `{"url":...,"pid":...}` as one JSON line and stops it on SIGINT or SIGTERM.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createConnection } from 'node:net'
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

/** restart() comes back empty: persistence is off (see above). */
export interface RunningRedis extends RestartableService {
  /** `redis://127.0.0.1:PORT` */
  url: string
  port: number
}

export const REDIS_NOT_INSTALLED = 'Redis is not installed: apt-get install redis-server'

const HOST = '127.0.0.1'
const READY_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 5_000
const START_ATTEMPTS = 3
const end = (service: ServiceProcess) => stopService(service, STOP_GRACE_MS)

export async function startRedis(): Promise<RunningRedis> {
  let lastError: unknown
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce()
    } catch (err) {
      lastError = err
      // Only a lost race for the port is worth another try.
      if (!(err instanceof Error && /address already in use/i.test(err.message))) throw err
    }
  }
  throw lastError
}

async function startOnce(): Promise<RunningRedis> {
  const [port] = (await freePorts(1, HOST)) as [number]
  const dir = await mkdtemp(join(tmpdir(), 'redis-'))
  const args = [
    '--port',
    String(port),
    '--bind',
    HOST,
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    '--loglevel',
    'warning',
  ]
  let output = ''

  const launch = async (): Promise<ServiceProcess> => {
    const launched = await spawnService('redis-server', args, REDIS_NOT_INSTALLED)
    const { child, exited } = launched
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-4_000)
    }
    child.stdout?.on('data', collect)
    child.stderr?.on('data', collect)
    try {
      await waitForPing(port, exited, () => output)
    } catch (err) {
      await end(launched)
      throw err
    }
    return launched
  }

  let current: ServiceProcess
  try {
    current = await launch()
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  let stopping: Promise<void> | undefined

  return {
    url: `redis://${HOST}:${port}`,
    port,
    get pid() {
      return current.pid
    },
    halt: () => end(current),
    async restart() {
      if (stopping) throw new Error('redis-server was stopped for good')
      current = await launch()
    },
    stop() {
      stopping ??= (async () => {
        await end(current)
        await rm(dir, { recursive: true, force: true })
      })()
      return stopping
    },
  }
}

/** Sends PING over a raw socket until +PONG comes back (no client library needed). */
async function waitForPing(
  port: number,
  exited: Promise<number | string>,
  output: () => string,
): Promise<void> {
  let exitedWith: number | string | undefined
  void exited.then((code) => {
    exitedWith = code
  })
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (exitedWith !== undefined) {
      throw new Error(
        `redis-server exited (${exitedWith}) before it was ready:\n${output().trim()}`,
      )
    }
    if (await pingOnce(port)) return
    if (Date.now() >= deadline) {
      throw new Error(`redis-server did not answer PING on ${port}:\n${output().trim()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1_000, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')))
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const redis = await startRedis()
  process.stdout.write(`${JSON.stringify({ url: redis.url, pid: redis.pid })}\n`)
  const stop = () => void redis.stop().then(() => process.exit(0))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}
