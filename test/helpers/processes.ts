import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'

export interface RunningProcess {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Parsed JSON lines of stdout (pino), skipping anything that is not JSON. */
  logLines: () => Array<Record<string, unknown>>
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  exited: Promise<number | string>
  /**
   * Signals the process group the command was started in (as a terminal or a service manager
   * would), so a wrapper like npm and the program it runs both get it, and nothing is orphaned.
   */
  signal(signal: NodeJS.Signals): void
}

/** Starts a command in its own process group so a test can stop it, and only it, by PID. */
export function startProcess(
  command: string,
  args: string[],
  env: Record<string, string>,
): RunningProcess {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk) => {
    out += String(chunk)
  })
  child.stderr?.on('data', (chunk) => {
    err += String(chunk)
  })
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string)
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    logLines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    exited,
    signal(signal) {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
      try {
        process.kill(-child.pid, signal)
      } catch {
        // The group is already gone.
      }
    },
  }
}

/** Runs a command to completion with a time bound; returns its exit code and output. */
export async function runToEnd(
  command: string,
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const proc = startProcess(command, args, env)
  const timer = setTimeout(() => proc.signal('SIGKILL'), timeoutMs)
  const code = await proc.exited
  clearTimeout(timer)
  return { code, stdout: proc.stdout(), stderr: proc.stderr() }
}
