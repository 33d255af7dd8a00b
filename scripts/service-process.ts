/**
 * What the throwaway services of the tests and benchmarks (scripts/influxd.ts,
 * scripts/redis-server.ts) share: spawning a server binary with a clear message when it is not
 * installed, stopping it by PID with a grace period, and free loopback ports.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'

export interface ServiceProcess {
  child: ChildProcess
  pid: number
  /** Resolves with the exit code (or signal name) once the process has ended. */
  exited: Promise<number | string>
}

/** A throwaway service a test can take down and bring back (an outage) on the same port. */
export interface RestartableService {
  /** The PID of the running server (a new one after restart()). */
  readonly pid: number
  /** An outage: stops the server (SIGTERM, SIGKILL after a grace period) on the same port. */
  halt(): Promise<void>
  /** Starts it again on the same port; resolves once it answers. */
  restart(): Promise<void>
  /** Stops it and removes its folder. Idempotent. */
  stop(): Promise<void>
}

/** Spawns `command`; a missing binary becomes `notInstalled`, the message that says what to install. */
export async function spawnService(
  command: string,
  args: readonly string[],
  notInstalled: string,
): Promise<ServiceProcess> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  // 'spawn' or 'error' comes first: ENOENT is reported through 'error', never as an exit.
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new Error(notInstalled, { cause: err })
          : new Error(`cannot start ${command}: ${err.message}`, { cause: err }),
      )
    })
  })
  const exited = once(child, 'exit').then(([code, sig]) => (code ?? sig) as number | string)
  return { child, pid: child.pid as number, exited }
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process has ended. */
export async function stopService(service: ServiceProcess, graceMs: number): Promise<void> {
  const { child, pid, exited } = service
  if (child.exitCode !== null || child.signalCode !== null) return
  signalPid(pid, 'SIGTERM')
  const killTimer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) signalPid(pid, 'SIGKILL')
  }, graceMs)
  await exited
  clearTimeout(killTimer)
}

/** Signals a process we started, by its PID; it may have exited on its own meanwhile. */
export function signalPid(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

/** Ports the OS hands out for port 0 on `host`, all held at once so they differ. */
export async function freePorts(count: number, host: string): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer())
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.once('error', reject)
            server.listen(0, host, () => {
              const address = server.address()
              if (address !== null && typeof address === 'object') resolve(address.port)
              else reject(new Error('no port assigned'))
            })
          }),
      ),
    )
  } finally {
    await Promise.all(
      servers.map((server) => new Promise((resolve) => server.close(() => resolve(undefined)))),
    )
  }
}
