import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { Alert, Reading } from '../../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../../errors.ts'
import type { Logger } from '../../telemetry/logger.ts'
import { checkpointerSource } from './checkpointer.ts'
import type { WriteRequest, WriteResponse, WriteThreadData } from './write-thread.ts'
import { columnBuffers, toColumns } from './writes.ts'

/** The SQLite store's writes, made on a worker thread; each resolves once committed. */
export interface SqliteWriteWorker {
  readings(readings: readonly Reading[]): Promise<void>
  alerts(alerts: readonly Alert[]): Promise<void>
  /** Deletes up to PRUNE_CHUNK_ROWS expired readings of one series; resolves with the count. */
  pruneSeries(device: string, metric: string, cutoff: number): Promise<number>
  /** Lets what was asked finish, then stops both threads. */
  close(): Promise<void>
}

type Role = 'writer' | 'checkpointer'
type Request = WriteRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never

const THREAD_FILE = fileURLToPath(new URL('./write-thread.ts', import.meta.url))

/**
 * The writer's entry is TypeScript, like the rest of the gateway. Node 20 does not apply the
 * `--import tsx` hooks to a worker's entry, so a small bootstrap registers tsx's CommonJS hooks
 * in the thread and requires the entry through them (tsx found through its own exports map from
 * here: neither the working directory nor the parent's flags matter, and a test runner's worker
 * has no tsx in its execArgv). Its ESM API would start a module-hooks thread of its own, with
 * 13 MiB more RSS; the thread's modules use no ESM-only feature (no import.meta, no top-level
 * await).
 */
function writerBootstrap(): string {
  const require = createRequire(import.meta.url)
  const manifest = require('tsx/package.json') as {
    exports: Record<string, { require: { default: string } }>
  }
  const api = manifest.exports['./cjs/api']?.require.default
  if (api === undefined) throw new Error('tsx has no ./cjs/api export')
  const apiFile = join(dirname(require.resolve('tsx/package.json')), api)
  return `require(${JSON.stringify(apiFile)}).register(); require(${JSON.stringify(THREAD_FILE)})`
}

/**
 * Starts the writer and the checkpointer threads on a file that openDatabase created. A thread
 * that dies fails what it was asked (the store writer retries, or spools) and is started again
 * at the next request.
 */
export function startWriteWorker(file: string, log?: Logger): SqliteWriteWorker {
  const source: Record<Role, string> = {
    writer: writerBootstrap(),
    checkpointer: checkpointerSource(),
  }
  let nextId = 1
  let closing: Promise<void> | undefined

  const spawn = (role: Role) => {
    const worker = new Worker(source[role], {
      eval: true,
      workerData: { file } satisfies WriteThreadData,
    })
    const pending = new Map<number, { resolve: (v?: number) => void; reject: (e: Error) => void }>()
    let lastError: Error | undefined
    worker.on('message', (response: WriteResponse) => {
      const waiter = pending.get(response.id)
      if (waiter === undefined) return
      pending.delete(response.id)
      // Idle, the thread must not keep the process alive; busy, it must (a write at shutdown).
      if (pending.size === 0) worker.unref()
      if (response.ok) waiter.resolve(response.value)
      else {
        // SQLite's result code (SQLITE_FULL, SQLITE_BUSY, ...) says more than its message alone.
        const code = response.code ? ` (${response.code})` : ''
        waiter.reject(
          new GatewayError(ERROR_CODES.store, `SQLite write failed${code}: ${response.message}`),
        )
      }
    })
    worker.on('error', (err) => {
      lastError = err
      log?.error({ err, role }, 'SQLite worker thread failed')
    })
    worker.on('exit', (code) => {
      const err = new GatewayError(
        ERROR_CODES.store,
        `SQLite ${role} thread stopped (exit code ${code})${lastError ? `: ${lastError.message}` : ''}`,
      )
      for (const waiter of pending.values()) waiter.reject(err)
      pending.clear()
      if (threads[role] === thread) threads[role] = undefined
    })
    worker.unref()
    const thread = {
      request(request: Request): Promise<number | undefined> {
        const id = nextId++
        if (pending.size === 0) worker.ref()
        return new Promise((resolve, reject) => {
          pending.set(id, { resolve, reject })
          const message = { ...request, id } as WriteRequest
          // The column arrays' buffers move to the thread instead of being copied.
          const transfer = message.op === 'readings' ? columnBuffers(message.batch) : []
          worker.postMessage(message, transfer)
        })
      },
    }
    return thread
  }

  const threads: Partial<Record<Role, ReturnType<typeof spawn>>> = {}
  /** The writer, started (again) with its checkpointer when either is not running. */
  const writer = () => {
    if (closing) throw new GatewayError(ERROR_CODES.store, `SQLite store ${file} is closed`)
    threads.checkpointer ??= spawn('checkpointer')
    threads.writer ??= spawn('writer')
    return threads.writer
  }
  writer()

  return {
    async readings(readings) {
      if (readings.length === 0) return
      await writer().request({ op: 'readings', batch: toColumns(readings) })
    },
    async alerts(alerts) {
      if (alerts.length === 0) return
      await writer().request({ op: 'alerts', alerts: [...alerts] })
    },
    async pruneSeries(device, metric, cutoff) {
      return (await writer().request({ op: 'prune', device, metric, cutoff })) ?? 0
    },
    close() {
      closing ??= Promise.all(
        [threads.writer, threads.checkpointer].map((t) =>
          t?.request({ op: 'close' }).catch(() => undefined),
        ),
      ).then(() => undefined)
      return closing
    },
  }
}
