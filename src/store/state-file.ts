import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { ERROR_CODES, GatewayError } from '../errors.ts'

/**
 * Opens, creating it and its folder, a SQLite file of the gateway's own durable state in
 * DATA_DIR: the spool, the notification outbox, acknowledgements and silences. WAL with
 * synchronous=NORMAL: a committed write survives a crash of the process (kill -9); only an OS
 * crash or power loss can lose the newest transactions (README, Guarantees). `schema` is run on
 * every open (CREATE ... IF NOT EXISTS). A file that cannot be opened stops the start with a
 * GatewayError naming `what` and the file.
 */
export function openStateFile(file: string, schema: string, what: string): Database.Database {
  try {
    mkdirSync(dirname(file), { recursive: true })
    const db = new Database(file)
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.exec(schema)
    return db
  } catch (err) {
    throw new GatewayError(
      ERROR_CODES.store,
      `cannot open ${what} ${file}: ${(err as Error).message}`,
      { cause: err },
    )
  }
}
