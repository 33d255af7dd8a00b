import type { Reading } from '../../src/contract/types.ts'
import type { ReadingStore } from '../../src/store/reading-store.ts'

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
