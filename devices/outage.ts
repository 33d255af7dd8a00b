/**
 * Scheduled outages of a simulated device, so a demo can show what a stopped device looks like
 * to the gateway (deadman alerts, `devices/{id}/status`). Pure functions of the schedule, the
 * device's start time and the time asked about: no clocks, no I/O.
 */

export const OUTAGE_MODES = ['silent', 'disconnect'] as const
/**
 * `silent`: the device stays connected but publishes nothing (a stuck sensor).
 * `disconnect`: it closes its MQTT connection cleanly and reconnects afterwards (a power cut).
 */
export type OutageMode = (typeof OUTAGE_MODES)[number]

export function isOutageMode(value: unknown): value is OutageMode {
  return typeof value === 'string' && (OUTAGE_MODES as readonly string[]).includes(value)
}

export interface OutageSchedule {
  /** An outage starts this often. */
  everyMs: number
  /** Each outage lasts this long; shorter than `everyMs`. */
  forMs: number
  mode: OutageMode
  /** The first outage starts this long after the device starts; `everyMs` when unset. */
  offsetMs?: number
}

export interface OutagePhase {
  /** In an outage at the time asked about. */
  down: boolean
  /** Outages started by then, the current one included. */
  started: number
  /** When `down` next changes: the current outage's end, or the next one's start. */
  nextChangeMs: number
}

/**
 * Where a device started at `startMs` is in its schedule at `atMs`. Outage n (from 0) covers
 * [first + n * every, first + n * every + for), where first = startMs + (offset ?? every).
 */
export function outagePhase(schedule: OutageSchedule, startMs: number, atMs: number): OutagePhase {
  const { everyMs, forMs } = schedule
  const firstMs = startMs + (schedule.offsetMs ?? everyMs)
  if (atMs < firstMs) return { down: false, started: 0, nextChangeMs: firstMs }
  const n = Math.floor((atMs - firstMs) / everyMs)
  const beginMs = firstMs + n * everyMs
  if (atMs < beginMs + forMs) return { down: true, started: n + 1, nextChangeMs: beginMs + forMs }
  return { down: false, started: n + 1, nextChangeMs: beginMs + everyMs }
}
