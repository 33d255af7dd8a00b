import { createRequire } from 'node:module'
import { CONNECTION_PRAGMAS } from './schema.ts'

/** How often the checkpointer copies the WAL into the database file. */
const CHECKPOINT_INTERVAL_MS = 200

export interface CheckpointerData {
  file: string
}

/**
 * The checkpointer thread's code, plain JavaScript run with `eval`: it needs nothing but
 * better-sqlite3, and TypeScript in a worker costs tsx and esbuild in that thread too (18 MiB of
 * RSS more, measured with tsx's ESM API). PASSIVE never waits for the writer nor blocks it; the
 * copy and its fsyncs happen here, beside the commits instead of inside one. A checkpoint that
 * throws ends the thread: write-worker.ts logs that and starts it again with the next write.
 */
export function checkpointerSource(): string {
  const betterSqlite3 = createRequire(import.meta.url).resolve('better-sqlite3')
  return `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(${JSON.stringify(betterSqlite3)})
const db = new Database(workerData.file, { fileMustExist: true })
for (const pragma of ${JSON.stringify(CONNECTION_PRAGMAS)}) db.pragma(pragma)
db.pragma('wal_autocheckpoint = 0')
const timer = setInterval(() => db.pragma('wal_checkpoint(PASSIVE)'), ${CHECKPOINT_INTERVAL_MS})
parentPort.on('message', (request) => {
  if (request.op !== 'close') return
  clearInterval(timer)
  db.close()
  parentPort.postMessage({ id: request.id, ok: true })
  parentPort.close()
})
`
}
