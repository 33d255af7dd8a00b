import type { Logger } from '../../telemetry/logger.ts'
import { downsampleSelect, lateReadingCutoffMs, MINUTE_MS } from './downsampling.ts'
import { ident, str, timeRange } from './influxql.ts'

/**
 * Downsampling of readings that arrive too late for the continuous query (a spool flushed after
 * an outage, a device whose clock lags, a backfill): the continuous query only recomputes its
 * last few minutes, so their minutes would be missing from `reading_1m` for good.
 *
 * Off the write path: recomputing a minute costs InfluxDB about as much as a whole minute of
 * every series it touches (0.6-1 s for 5,000 series here), which done per batch would cut a
 * catch-up write to a few thousand points/s. So writes only mark minutes dirty, and a pass at
 * most DELAY_MS later recomputes each dirty minute once, however many batches touched it, with
 * the continuous query's own SELECT. Reads of the downsampled data first wait for the dirty
 * minutes of their range, so a reader never sees a late reading in raw but not downsampled.
 *
 * Dirty minutes live in memory: a crash of the gateway loses the last DELAY_MS of them (those
 * minutes then stay raw-only until the raw retention drops them); a failed pass is retried with
 * backoff; close() gives the last pass CLOSE_BUDGET_MS.
 */

const DELAY_MS = 1_000
const RETRY_MAX_MS = 30_000
/**
 * A pass restricted to the devices that were late costs InfluxDB little for a few devices, but an
 * OR of many tag values costs more than the whole minute: past this many devices it recomputes
 * the minutes for every device.
 */
const MAX_FILTERED_DEVICES = 50
/** Minutes per statement: a long run is split so no statement nears the query timeout. */
const MAX_RUN_MINUTES = 10
const CLOSE_BUDGET_MS = 5_000

type Devices = Set<string> | 'all'

export interface LateDownsampler {
  /** Marks the minutes of readings too late for the continuous query (cheap, synchronous). */
  add(readings: readonly { deviceId: string; ts: number }[], nowMs: number): void
  /** Recomputes every dirty minute in [fromMs, toMs) now (all of them without a range). */
  flush(range?: { fromMs: number; toMs: number }): Promise<void>
  /** Minutes waiting to be recomputed. */
  pendingMinutes(): number
  /** A last bounded pass; what it could not do is logged. */
  close(): Promise<void>
}

export function createLateDownsampler(deps: {
  database: string
  downsampledRetentionMs: number
  run: (statement: string) => Promise<void>
  log: Logger | undefined
}): LateDownsampler {
  const { database, log } = deps
  const pending = new Map<number, Devices>()
  let timer: NodeJS.Timeout | undefined
  /** Passes run one at a time, in order. */
  let chain: Promise<void> = Promise.resolve()
  let failures = 0
  let closed = false

  function mark(minute: number, devices: Devices): void {
    const seen = pending.get(minute)
    if (devices === 'all' || seen === 'all') {
      pending.set(minute, 'all')
      return
    }
    if (seen === undefined) {
      pending.set(minute, new Set(devices))
      return
    }
    for (const d of devices) seen.add(d)
    if (seen.size > MAX_FILTERED_DEVICES) pending.set(minute, 'all')
  }

  function schedule(delayMs: number): void {
    if (timer !== undefined || closed || pending.size === 0) return
    timer = setTimeout(() => {
      timer = undefined
      flush().then(
        () => {
          failures = 0
        },
        (err: unknown) => {
          failures++
          const retryMs = Math.min(RETRY_MAX_MS, DELAY_MS * 2 ** failures)
          log?.warn(
            { err, pendingMinutes: pending.size, retryMs },
            'downsampling late readings failed; retrying',
          )
          schedule(retryMs)
        },
      )
    }, delayMs)
    // Never keeps the process alive on its own: close() does the last pass.
    timer.unref()
  }

  /** Takes the dirty minutes in range out of `pending` as runs of whole minutes. */
  function takeRuns(range?: { fromMs: number; toMs: number }) {
    const nowMs = Date.now()
    // InfluxDB refuses points older than the downsampled retention: such minutes are dropped.
    const oldest = nowMs - deps.downsampledRetentionMs
    const minutes = [...pending.keys()]
      .filter((m) => range === undefined || (m + MINUTE_MS > range.fromMs && m < range.toMs))
      .sort((a, b) => a - b)
    const runs: Array<{ fromMs: number; toMs: number; devices: Devices }> = []
    for (const minute of minutes) {
      const devices = pending.get(minute) as Devices
      pending.delete(minute)
      if (minute < oldest) continue
      const run = runs.at(-1)
      if (
        run !== undefined &&
        run.toMs === minute &&
        (run.toMs - run.fromMs) / MINUTE_MS < MAX_RUN_MINUTES
      ) {
        run.toMs = minute + MINUTE_MS
        if (run.devices !== 'all') {
          if (devices === 'all') run.devices = 'all'
          else for (const d of devices) run.devices.add(d)
          if (run.devices !== 'all' && run.devices.size > MAX_FILTERED_DEVICES) run.devices = 'all'
        }
      } else {
        runs.push({
          fromMs: minute,
          toMs: minute + MINUTE_MS,
          devices: devices === 'all' ? 'all' : new Set(devices),
        })
      }
    }
    return runs
  }

  async function pass(range?: { fromMs: number; toMs: number }, deadlineMs = Infinity) {
    const runs = takeRuns(range)
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i] as (typeof runs)[number]
      if (Date.now() >= deadlineMs) {
        requeue(runs.slice(i))
        throw new Error(`ran out of time with ${runs.length - i} runs of minutes left`)
      }
      const where =
        run.devices === 'all'
          ? timeRange(run.fromMs, run.toMs)
          : `${timeRange(run.fromMs, run.toMs)} AND (${[...run.devices]
              .map((d) => `${ident('device')} = ${str(d)}`)
              .join(' OR ')})`
      try {
        await deps.run(downsampleSelect(database, where))
      } catch (err) {
        requeue(runs.slice(i))
        throw err
      }
    }
  }

  function requeue(runs: Array<{ fromMs: number; toMs: number; devices: Devices }>): void {
    for (const run of runs) {
      for (let m = run.fromMs; m < run.toMs; m += MINUTE_MS) mark(m, run.devices)
    }
  }

  function flush(range?: { fromMs: number; toMs: number }, deadlineMs?: number): Promise<void> {
    const next = chain.then(() => pass(range, deadlineMs))
    // The chain goes on after a failure; the caller gets the failure.
    chain = next.catch(() => {})
    return next
  }

  return {
    add(readings, nowMs) {
      if (closed) return
      const cutoff = lateReadingCutoffMs(nowMs)
      let marked = false
      for (const r of readings) {
        if (r.ts >= cutoff) continue
        mark(Math.floor(r.ts / MINUTE_MS) * MINUTE_MS, new Set([r.deviceId]))
        marked = true
      }
      if (marked) schedule(DELAY_MS)
    },

    async flush(range) {
      // Nothing of this range queued: only a pass already running could still be writing it.
      const wanted =
        range === undefined
          ? pending.size > 0
          : [...pending.keys()].some((m) => m + MINUTE_MS > range.fromMs && m < range.toMs)
      if (!wanted) return chain
      return flush(range)
    },

    pendingMinutes: () => pending.size,

    async close() {
      if (closed) return
      closed = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      if (pending.size === 0) return chain
      try {
        await flush(undefined, Date.now() + CLOSE_BUDGET_MS)
      } catch (err) {
        log?.warn(
          { err, pendingMinutes: pending.size },
          'late readings left without downsampling at close; their minutes stay raw-only',
        )
      }
    },
  }
}
