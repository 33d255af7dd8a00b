import type { Alert, Reading } from '../contract/types.ts'
import { type ReadingStore, StoreRejectedError } from '../store/reading-store.ts'

/** One write call the store writer made: what, how many, how long, and whether it succeeded. */
export interface StoreWriteObservation {
  kind: 'readings' | 'alerts'
  count: number
  seconds: number
  /**
   * 'ok': committed. 'refused': the store answered and refused points for good
   * (StoreRejectedError; it is reachable). 'error': a transient failure the writer retries.
   */
  outcome: 'ok' | 'refused' | 'error'
}

export type StoreCheckResult = { up: true } | { up: false; reason: string }

export interface StoreMonitor {
  /**
   * The store to give the writer: the same store, with every write timed and its outcome
   * remembered. Reads pass straight through.
   */
  readonly store: ReadingStore
  /** Called after every write call, in order; a throwing observer does not affect the write. */
  onWrite(observer: (observation: StoreWriteObservation) => void): void
  /**
   * Whether the store can be used now. Down while the last write attempt failed (the writer is
   * retrying: nothing is being committed, QoS 1 devices wait for their PUBACK); otherwise a cheap
   * read (a range query that matches nothing) must answer within probeTimeoutMs.
   * Concurrent calls share one probe.
   */
  check(): Promise<StoreCheckResult>
}

export interface StoreMonitorOptions {
  /** A probe slower than this counts as down (default 2 s). */
  probeTimeoutMs?: number
}

export const DEFAULT_PROBE_TIMEOUT_MS = 2_000
/** A valid device id no device can have published for: readings before 1970-01-01T00:00:00.001Z. */
const PROBE_QUERY = {
  deviceId: '_readiness_probe',
  fromMs: 0,
  toMs: 1,
  limit: 1,
  order: 'asc',
} as const

/**
 * Watches the store from outside (no change to the writer or the backends): a decorator around
 * the writes for latency and outcome, and a probe for reachability.
 */
export function createStoreMonitor(
  store: ReadingStore,
  options: StoreMonitorOptions = {},
): StoreMonitor {
  const probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS
  const observers: Array<(observation: StoreWriteObservation) => void> = []
  let lastWriteError: string | undefined
  let probing: Promise<StoreCheckResult> | undefined

  async function timed(
    kind: StoreWriteObservation['kind'],
    count: number,
    write: () => Promise<void>,
  ): Promise<void> {
    const start = process.hrtime.bigint()
    let outcome: StoreWriteObservation['outcome'] = 'ok'
    try {
      await write()
      lastWriteError = undefined
    } catch (err) {
      if (err instanceof StoreRejectedError) {
        outcome = 'refused'
        lastWriteError = undefined
      } else {
        outcome = 'error'
        lastWriteError = err instanceof Error ? err.message : String(err)
      }
      throw err
    } finally {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9
      for (const observer of observers) {
        try {
          observer({ kind, count, seconds, outcome })
        } catch {
          // Metrics must never fail a write.
        }
      }
    }
  }

  const monitored: ReadingStore = {
    kind: store.kind,
    writeReadings: (readings: readonly Reading[]) =>
      timed('readings', readings.length, () => store.writeReadings(readings)),
    writeAlerts: (alerts: readonly Alert[]) =>
      timed('alerts', alerts.length, () => store.writeAlerts(alerts)),
    queryReadings: (query) => store.queryReadings(query),
    aggregate: (query) => store.aggregate(query),
    latest: (deviceId) => store.latest(deviceId),
    queryAlerts: (query) => store.queryAlerts(query),
    latestAlerts: () => store.latestAlerts(),
    close: () => store.close(),
  }

  async function probe(): Promise<StoreCheckResult> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<StoreCheckResult>((resolve) => {
      timer = setTimeout(
        () => resolve({ up: false, reason: `probe query took longer than ${probeTimeoutMs} ms` }),
        probeTimeoutMs,
      )
    })
    const query = (async (): Promise<StoreCheckResult> => {
      try {
        await store.queryReadings(PROBE_QUERY)
        return { up: true }
      } catch (err) {
        return { up: false, reason: `probe query failed: ${errorText(err)}` }
      }
    })()
    try {
      return await Promise.race([query, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  return {
    store: monitored,
    onWrite(observer) {
      observers.push(observer)
    },
    check() {
      if (lastWriteError !== undefined) {
        return Promise.resolve({ up: false, reason: `last write failed: ${lastWriteError}` })
      }
      probing ??= probe().finally(() => {
        probing = undefined
      })
      return probing
    },
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
