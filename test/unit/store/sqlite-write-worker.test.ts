import { statSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Reading } from '../../../src/contract/types.ts'
import { ERROR_CODES } from '../../../src/errors.ts'
import { openDatabase } from '../../../src/store/sqlite/schema.ts'
import { type SqliteWriteWorker, startWriteWorker } from '../../../src/store/sqlite/write-worker.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

describe('SQLite write threads', () => {
  const T0 = Date.UTC(2026, 0, 1)
  let dir: TempDir
  let file: string
  const started: SqliteWriteWorker[] = []

  function start(): SqliteWriteWorker {
    const worker = startWriteWorker(file)
    started.push(worker)
    return worker
  }

  /** `count` readings of 200 series, every one new. */
  function batch(from: number, count: number): Reading[] {
    return Array.from({ length: count }, (_, i) => ({
      deviceId: `dev-${(from + i) % 200}`,
      metric: 'temperature',
      ts: T0 + from + i,
      value: (from + i) / 10,
      ...(i % 2 === 0 ? { unit: 'C' } : {}),
    }))
  }

  /** Readings in the file, read through a connection of its own. */
  function storedCount(): number {
    const reader = new Database(file, { readonly: true })
    try {
      return (reader.prepare('SELECT count(*) AS n FROM readings').get() as { n: number }).n
    } finally {
      reader.close()
    }
  }

  beforeEach(async () => {
    dir = await createTempDir('sqlite-write-worker-')
    file = join(dir.path, 'gateway.db')
  })

  afterEach(async () => {
    for (const worker of started.splice(0)) await worker.close()
    await dir.remove()
  })

  it('commits readings with their units and answers once they are readable from another connection', async () => {
    openDatabase(file).close()
    const worker = start()
    await worker.readings(batch(0, 1_000))
    const reader = new Database(file, { readonly: true })
    try {
      expect(reader.prepare('SELECT count(*) AS n FROM readings').get()).toEqual({ n: 1_000 })
      expect(reader.prepare('SELECT count(*) AS n FROM latest').get()).toEqual({ n: 200 })
      expect(
        reader
          .prepare('SELECT ts, value, unit FROM readings WHERE device = ? ORDER BY ts')
          .all('dev-1'),
      ).toEqual([
        { ts: T0 + 1, value: 0.1, unit: null },
        ...[201, 401, 601, 801].map((i) => ({ ts: T0 + i, value: i / 10, unit: null })),
      ])
    } finally {
      reader.close()
    }
  })

  it('fails what a thread that cannot start was asked, with its reason, and starts it again at the next request', async () => {
    // No openDatabase first: the threads open only a file that exists and has the schema.
    const worker = start()
    await expect(worker.readings(batch(0, 10))).rejects.toMatchObject({
      code: ERROR_CODES.store,
      message: expect.stringMatching(/^SQLite writer thread stopped \(exit code 1\): .+/),
    })
    openDatabase(file).close()
    await worker.readings(batch(0, 10))
    expect(storedCount()).toBe(10)
  })

  it('copies the WAL into the database file while writes go on, without being asked', async () => {
    openDatabase(file).close()
    const emptySize = statSync(file).size
    const worker = start()
    // Batches keep coming, as under load; the writer never checkpoints inside them.
    for (let i = 0; i < 20; i++) await worker.readings(batch(i * 1_000, 1_000))
    await vi.waitFor(() => expect(statSync(file).size).toBeGreaterThan(emptySize), {
      timeout: 5_000,
      interval: 50,
    })
  })

  it('keeps the WAL file near 64 MiB under writes that never pause', async () => {
    openDatabase(file).close()
    const worker = start()
    // Readings of 5,000 series per batch: every commit adds thousands of WAL frames.
    const wide = (n: number): Reading[] =>
      Array.from({ length: 5_000 }, (_, i) => ({
        deviceId: `dev-${i}`,
        metric: 'temperature',
        ts: T0 + n,
        value: i,
      }))
    let peakWalBytes = 0
    for (let n = 0; n < 60; n++) {
      await worker.readings(wide(n))
      peakWalBytes = Math.max(peakWalBytes, statSync(`${file}-wal`).size)
    }
    expect(peakWalBytes).toBeGreaterThan(32 * 1024 * 1024)
    expect(peakWalBytes).toBeLessThan(96 * 1024 * 1024)
  })

  it("fails a write the file cannot take with SQLite's code and message, and takes the next one", async () => {
    openDatabase(file).close()
    const worker = start()
    await worker.readings(batch(0, 1))
    const other = new Database(file)
    other.exec('ALTER TABLE latest RENAME TO latest_moved')
    await expect(worker.readings(batch(1, 1))).rejects.toMatchObject({
      code: ERROR_CODES.store,
      message: 'SQLite write failed (SQLITE_ERROR): no such table: latest',
    })
    other.exec('ALTER TABLE latest_moved RENAME TO latest')
    other.close()
    await worker.readings(batch(1, 1))
    // The batch that failed is stored when sent again: two readings in all.
    expect(storedCount()).toBe(2)
  })

  it('refuses requests after close', async () => {
    openDatabase(file).close()
    const worker = start()
    await worker.readings(batch(0, 1))
    await worker.close()
    await expect(worker.readings(batch(1, 1))).rejects.toMatchObject({
      code: ERROR_CODES.store,
      message: `SQLite store ${file} is closed`,
    })
  })
})
