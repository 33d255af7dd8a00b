import type { Reading } from '../../src/contract/types.ts'
import type { ReadingStore } from '../../src/store/reading-store.ts'
import type { StoreWriter } from '../../src/store/store-writer.ts'

/** Every stored reading of a device, oldest first: what "nothing lost" is checked against. */
export function allReadings(store: ReadingStore, deviceId: string): Promise<Reading[]> {
  return store.queryReadings({
    deviceId,
    fromMs: 0,
    toMs: Number.MAX_SAFE_INTEGER,
    limit: 1_000_000,
    order: 'asc',
  })
}

/** StoreWriter.accept as a Promise: settled when the readings are durable, or failed. */
export function accepted(writer: Pick<StoreWriter, 'accept'>, readings: readonly Reading[]) {
  return new Promise<void>((resolve, reject) =>
    writer.accept(readings, (err) => (err ? reject(err) : resolve())),
  )
}

/** StoreWriter.offer as a Promise; undefined when the writer dropped the readings (queue full). */
export function offered(
  writer: Pick<StoreWriter, 'offer'>,
  readings: readonly Reading[],
): Promise<void> | undefined {
  let settle: ((err?: Error) => void) | undefined
  const done = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve())
  })
  return writer.offer(readings, (err) => settle?.(err)) ? done : undefined
}
