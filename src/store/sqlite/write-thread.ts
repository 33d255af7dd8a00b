/**
 * Entry of the SQLite store's worker threads (started by write-worker.ts, never imported):
 *
 * - `writer` makes every write of the store, one transaction per request, and answers each;
 * - `checkpointer` copies the WAL back into the database file every CHECKPOINT_INTERVAL_MS.
 *
 * Why threads: better-sqlite3 is synchronous. On the main thread a commit, and above all a
 * checkpoint inside a commit (its copy and fsync), stopped the broker from parsing, routing and
 * acknowledging for as long as it took: 36 % of the main thread under load, and the slow commits
 * behind the alert latency's p99 (docs/benchmarks.md).
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { Alert } from '../../contract/types.ts'
import { openConnection } from './schema.ts'
import { prepareWrites, type ReadingColumns } from './writes.ts'

export interface WriteThreadData {
  file: string
  role: 'writer' | 'checkpointer'
  /** Int32Array[1] shared by both threads: frames in the WAL, as its last checkpoint saw it. */
  walState: SharedArrayBuffer
}

export type WriteRequest =
  | { id: number; op: 'readings'; batch: ReadingColumns }
  | { id: number; op: 'alerts'; alerts: Alert[] }
  | { id: number; op: 'prune'; device: string; metric: string; cutoff: number }
  | { id: number; op: 'close' }

export type WriteResponse =
  | { id: number; ok: true; value?: number }
  | { id: number; ok: false; message: string; code?: string }

/** How often the checkpointer copies the WAL into the database file. */
const CHECKPOINT_INTERVAL_MS = 200
/**
 * The writer checkpoints itself once the WAL holds this many frames (64 MiB of 4 KiB pages).
 * Under continuous writes the checkpointer never sees the WAL fully copied between two commits,
 * and SQLite only starts the WAL over from a writer after a checkpoint that copied everything;
 * the writer's own checkpoint copies what the checkpointer has not yet (little), and the WAL
 * starts over. A bound on the WAL file, not a cost per commit.
 */
const WAL_RESTART_FRAMES = 16_384

type CheckpointResult = Array<{ busy: number; log: number; checkpointed: number }>

function main(): void {
  const port = parentPort
  if (port === null) throw new Error('write-thread.ts runs as a worker thread only')
  const { file, role, walState } = workerData as WriteThreadData
  const wal = new Int32Array(walState)
  const db = openConnection(file)
  // Checkpoints are the checkpointer's (and past WAL_RESTART_FRAMES the writer's, after its
  // answer), never a commit's.
  db.pragma('wal_autocheckpoint = 0')

  const checkpoint = (): void => {
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as CheckpointResult
    if (result === undefined) return
    // Everything copied: the next commit starts the WAL over, so it counts as empty.
    Atomics.store(wal, 0, result.checkpointed >= result.log ? 0 : result.log)
  }

  if (role === 'checkpointer') {
    const timer = setInterval(checkpoint, CHECKPOINT_INTERVAL_MS)
    port.on('message', (request: WriteRequest) => {
      if (request.op !== 'close') return
      clearInterval(timer)
      db.close()
      port.postMessage({ id: request.id, ok: true } satisfies WriteResponse)
      port.close()
    })
    return
  }

  const writes = prepareWrites(db)
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
    if (Atomics.load(wal, 0) >= WAL_RESTART_FRAMES) checkpoint()
  })

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
