/**
 * Entry of the SQLite store's writer thread (started by write-worker.ts, never imported): every
 * write of the store, one transaction per request, each answered. The WAL is copied back into the
 * file by the checkpointer thread (checkpointer.ts).
 *
 * Why threads: better-sqlite3 is synchronous. On the main thread a commit, and above all a
 * checkpoint inside a commit (its copy and fsync), stopped the broker from parsing, routing and
 * acknowledging for as long as it took: 36 % of the main thread under load, and the slow commits
 * behind the alert latency's p99 (docs/benchmarks.md).
 */
import { statSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'
import type { Alert } from '../../contract/types.ts'
import type { CheckpointerData } from './checkpointer.ts'
import { JOURNAL_SIZE_LIMIT_BYTES, openConnection } from './schema.ts'
import { prepareWrites, type ReadingColumns } from './writes.ts'

/** The same file as the checkpointer's. */
export type WriteThreadData = CheckpointerData

export type WriteRequest =
  | { id: number; op: 'readings'; batch: ReadingColumns }
  | { id: number; op: 'alerts'; alerts: Alert[] }
  | { id: number; op: 'prune'; device: string; metric: string; cutoff: number }
  | { id: number; op: 'close' }

export type WriteResponse =
  | { id: number; ok: true; value?: number }
  | { id: number; ok: false; message: string; code?: string }

/**
 * Under writes that never pause, the checkpointer's copies never catch up with the last commit,
 * and SQLite starts the WAL over (truncating the file to journal_size_limit) only at a commit
 * that follows a checkpoint which copied everything: the WAL file would grow without bound
 * (376 MB in the test that shows it). So once the file is past journal_size_limit, the writer
 * checkpoints itself after its answer: it copies what the checkpointer has not yet, and its
 * next commit starts the WAL over. The file size says it: a WAL that started over since it last
 * grew past the limit was truncated back to it.
 */
const WAL_RESTART_BYTES = JOURNAL_SIZE_LIMIT_BYTES
/**
 * SQLite answers a checkpoint that finds another one running (the checkpointer thread's) with
 * busy at once, without the busy handler; under a loaded disk that copy takes long enough for
 * several commits' attempts in a row to find it busy, and the WAL grew past 100 MiB in CI. The
 * writer then waits for it, in steps, at most this long (only past WAL_RESTART_BYTES).
 */
const CHECKPOINT_BUSY_WAIT_MS = 250
const CHECKPOINT_BUSY_STEP_MS = 2

function main(): void {
  const port = parentPort
  if (port === null) throw new Error('write-thread.ts runs as a worker thread only')
  const { file } = workerData as WriteThreadData
  const walFile = `${file}-wal`
  const db = openConnection(file)
  // Checkpoints are the checkpointer's (and past WAL_RESTART_BYTES the writer's, after its
  // answer), never a commit's.
  db.pragma('wal_autocheckpoint = 0')

  const writes = prepareWrites(db)
  // Atomics.wait on a cell nobody changes: a sleep that blocks only this thread.
  const sleeper = new Int32Array(new SharedArrayBuffer(4))
  port.on('message', (request: WriteRequest) => {
    let response: WriteResponse
    try {
      response = { id: request.id, ok: true, value: handle(request) }
    } catch (err) {
      const e = err as Error & { code?: unknown }
      response = {
        id: request.id,
        ok: false,
        message: e instanceof Error ? e.message : String(err),
        ...(typeof e.code === 'string' ? { code: e.code } : {}),
      }
    }
    port.postMessage(response)
    if (request.op === 'close') {
      port.close()
      return
    }
    // A throw here ends the thread: its waiting requests fail (the store writer retries them)
    // and write-worker.ts starts it again.
    const walBytes = statSync(walFile, { throwIfNoEntry: false })?.size ?? 0
    if (walBytes > WAL_RESTART_BYTES) checkpointPastCheckpointer()
  })

  /** A PASSIVE checkpoint of the writer's own, tried again while the checkpointer's runs. */
  function checkpointPastCheckpointer(): void {
    const deadline = Date.now() + CHECKPOINT_BUSY_WAIT_MS
    for (;;) {
      const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number }>
      if (result?.busy !== 1 || Date.now() >= deadline) return
      Atomics.wait(sleeper, 0, 0, CHECKPOINT_BUSY_STEP_MS)
    }
  }

  function handle(request: WriteRequest): number | undefined {
    switch (request.op) {
      case 'readings':
        writes.readings(request.batch)
        return undefined
      case 'alerts':
        writes.alerts(request.alerts)
        return undefined
      case 'prune':
        return writes.pruneSeries(request.device, request.metric, request.cutoff)
      case 'close':
        db.close()
        return undefined
    }
  }
}

main()
