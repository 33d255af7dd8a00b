import type { Alert, Reading } from '../contract/types.ts'
import { openStateFile } from './state-file.ts'

/** The spool's file name in DATA_DIR. */
export const SPOOL_FILE = 'spool.db'

export type SpoolKind = 'readings' | 'alerts'

export type SpooledBatch =
  | { seq: number; kind: 'readings'; items: Reading[] }
  | { seq: number; kind: 'alerts'; items: Alert[] }

export interface SpoolStats {
  batches: number
  items: number
  /** Bytes of spooled payload (JSON text); what maxBytes bounds. */
  bytes: number
  maxBytes: number
}

/**
 * A bounded, durable FIFO of batches the store could not take (DESIGN §5): a SQLite file in
 * DATA_DIR. An append is one transaction, committed before it returns, so a batch in the spool
 * survives a crash of the process and can be acknowledged to its devices. SQLite rather than a
 * hand-made log: its journal already gives atomic appends and detects torn writes, and removing
 * the head is a DELETE, not a file rewrite.
 */
export interface Spool {
  /**
   * Appends one batch, committed when this returns; its sequence number, or undefined (nothing
   * written) when it would take the spool over maxBytes.
   */
  append(kind: SpoolKind, items: readonly Reading[] | readonly Alert[]): number | undefined
  /** The oldest batch still spooled. */
  oldest(): SpooledBatch | undefined
  /** Removes a batch once the store has it. */
  remove(seq: number): void
  /** Every spooled alert transition, oldest first (start-up merges them into restored state). */
  alerts(): Alert[]
  stats(): SpoolStats
  close(): void
}

export interface SpoolOptions {
  file: string
  maxBytes: number
}

interface Row {
  seq: number
  kind: SpoolKind
  body: string
}

export function openSpool(options: SpoolOptions): Spool {
  const { file, maxBytes } = options
  const db = openStateFile(
    file,
    `CREATE TABLE IF NOT EXISTS spool (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      kind TEXT NOT NULL CHECK (kind IN ('readings', 'alerts')),
      count INTEGER NOT NULL,
      body TEXT NOT NULL
    )`,
    'the spool',
  )
  const insert = db.prepare<[SpoolKind, number, string]>(
    'INSERT INTO spool (kind, count, body) VALUES (?, ?, ?)',
  )
  const head = db.prepare<[], Row>('SELECT seq, kind, body FROM spool ORDER BY seq LIMIT 1')
  const bySeq = db.prepare<[number], { count: number; bytes: number }>(
    'SELECT count, length(CAST(body AS BLOB)) AS bytes FROM spool WHERE seq = ?',
  )
  const deleteSeq = db.prepare<[number]>('DELETE FROM spool WHERE seq = ?')
  const alertRows = db.prepare<[], Row>(
    "SELECT seq, kind, body FROM spool WHERE kind = 'alerts' ORDER BY seq",
  )
  const totals = db
    .prepare<[], { batches: number; items: number | null; bytes: number | null }>(
      'SELECT count(*) AS batches, sum(count) AS items, sum(length(CAST(body AS BLOB))) AS bytes FROM spool',
    )
    .get()
  let batches = totals?.batches ?? 0
  let items = totals?.items ?? 0
  let bytes = totals?.bytes ?? 0

  return {
    append(kind, batch) {
      const body = JSON.stringify(batch)
      const size = Buffer.byteLength(body)
      if (bytes + size > maxBytes) return undefined
      const { lastInsertRowid } = insert.run(kind, batch.length, body)
      batches++
      items += batch.length
      bytes += size
      return Number(lastInsertRowid)
    },

    oldest() {
      const row = head.get()
      if (row === undefined) return undefined
      return { seq: row.seq, kind: row.kind, items: JSON.parse(row.body) } as SpooledBatch
    },

    remove(seq) {
      const row = bySeq.get(seq)
      if (row === undefined) return
      deleteSeq.run(seq)
      batches--
      items -= row.count
      bytes -= row.bytes
    },

    alerts() {
      return alertRows.all().flatMap((row) => JSON.parse(row.body) as Alert[])
    },

    stats: () => ({ batches, items, bytes, maxBytes }),

    close() {
      if (db.open) db.close()
    },
  }
}
