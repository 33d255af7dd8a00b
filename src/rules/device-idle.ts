import type { EventBus } from '../bus/event-bus.ts'
import type { Logger } from '../telemetry/logger.ts'
import { toDurationMs } from '../util/duration.ts'
import type { RuleHandler } from './rule-handler.ts'

/**
 * Releases what the gateway keeps in memory per device once the device has not been heard from
 * for a while (DEVICE_IDLE_RELEASE), so memory follows the devices that are around, not every
 * device id ever seen: fleets churn ids (replaced hardware, ephemeral clients, a fuzzer).
 *
 * One Map of device id -> last time heard (a reading, a connect or a disconnect), updated with
 * one Map.set per reading; a periodic sweep (a quarter of the release time, at most once a minute)
 * asks the holders of per-device state (presence, the rule engine) to release each device idle
 * for the release time. A holder may keep what it still needs: the device is then asked again at
 * the next sweep, and stays counted as tracked until everything is released.
 */
export const DEVICE_IDLE_OWNER = 'device-idle'

/** `auto`: this many times the longest rule window... */
export const AUTO_IDLE_WINDOWS = 4
/** ... and at least a day. */
export const MIN_AUTO_IDLE_RELEASE_MS = 86_400_000

/** Longest and shortest sweep period. */
const SWEEP_MAX_MS = 60_000
const SWEEP_MIN_MS = 100

/**
 * What a holder did with an idle device:
 * - `released`: it holds nothing for the device any more;
 * - `kept`: it still holds something it needs (a firing alert, an armed deadman deadline).
 */
export type DeviceReleaseOutcome = 'released' | 'kept'

/**
 * A module with per-device state. The sweeper asks every holder's `isActive` first (a connected
 * device is in use: nothing of it is released), then `releaseDevice` in the holders' order; a
 * holder that keeps something stops the ones after it, which keep theirs too (the rule engine
 * comes first: a device with a firing alert keeps its presence state and retained status).
 */
export interface DeviceStateHolder {
  /** Named in errors. */
  readonly name: string
  isActive?(deviceId: string): boolean
  /** `idleMs`: the release time in force; the device was last heard at least that long ago. */
  releaseDevice(deviceId: string, nowMs: number, idleMs: number): DeviceReleaseOutcome
}

export interface DeviceIdleStats {
  /** Devices heard from and not yet wholly released; 0 while release is off. */
  tracked: number
  /** Devices wholly released since start. */
  released: number
  /** Sweeps that ran. */
  sweeps: number
}

export interface DeviceIdleSweeper {
  /** Listens to the bus and starts the (unref'd) sweep timer. Idempotent. */
  start(): void
  stop(): void
  /** The device was heard from at `atMs` (start-up: devices known from the store). */
  touch(deviceId: string, atMs: number): void
  /** The release time in force, ms; 0: release is off. */
  idleMs(): number
  /** Changes the release time (a rules reload with `auto`); reschedules the sweep. */
  setIdleMs(idleMs: number): void
  /** Releases every device idle at `nowMs`; returns how many were wholly released. */
  sweep(nowMs: number): number
  stats(): DeviceIdleStats
}

/**
 * The longest time window of the rules: `for`, `per`, `after`, cooldown and flapping window. A
 * custom kind's own fields are not known here; its `silenceMs` is.
 */
export function longestRuleWindowMs(rules: readonly RuleHandler[]): number {
  let longest = 0
  for (const rule of rules) {
    const windows = [
      rule.silenceMs ?? 0,
      rule.lifecycle?.cooldownMs ?? 0,
      rule.lifecycle?.flapping?.windowMs ?? 0,
    ]
    for (const field of ['for', 'per', 'after']) {
      const value = rule.definition[field]
      if (value !== undefined) windows.push(toDurationMs(value) ?? 0)
    }
    for (const ms of windows) if (ms > longest) longest = ms
  }
  return longest
}

/**
 * The release time in force: a configured duration as is (0: off), or for `auto`
 * AUTO_IDLE_WINDOWS times the longest rule window, at least MIN_AUTO_IDLE_RELEASE_MS.
 */
export function effectiveIdleReleaseMs(
  configured: number | 'auto',
  rules: readonly RuleHandler[],
): number {
  if (configured !== 'auto') return configured
  return Math.max(MIN_AUTO_IDLE_RELEASE_MS, AUTO_IDLE_WINDOWS * longestRuleWindowMs(rules))
}

export function createDeviceIdleSweeper(
  deps: {
    bus: EventBus
    log: Logger
    holders: readonly DeviceStateHolder[]
    now?: () => number
  },
  options: { idleMs: number; sweepEveryMs?: number },
): DeviceIdleSweeper {
  const { bus, holders } = deps
  const log = deps.log.child({ module: 'device-idle' })
  const clock = deps.now ?? Date.now
  /** deviceId -> engine clock when last heard. */
  const lastHeard = new Map<string, number>()
  let idleMs = options.idleMs
  let timer: NodeJS.Timeout | null = null
  let started = false
  let released = 0
  let sweeps = 0

  const touch = (deviceId: string, atMs: number) => {
    // Release off: nothing to remember either.
    if (idleMs > 0) lastHeard.set(deviceId, atMs)
  }

  const sweepEveryMs = () =>
    options.sweepEveryMs ?? Math.min(SWEEP_MAX_MS, Math.max(SWEEP_MIN_MS, Math.floor(idleMs / 4)))

  const schedule = () => {
    if (timer !== null) clearInterval(timer)
    timer = null
    if (!started || idleMs <= 0) return
    timer = setInterval(() => sweep(clock()), sweepEveryMs())
    // The sweep must never keep the process alive on its own.
    timer.unref()
  }

  const releaseOne = (deviceId: string, nowMs: number): DeviceReleaseOutcome => {
    let holder: DeviceStateHolder | undefined
    try {
      for (holder of holders) if (holder.isActive?.(deviceId)) return 'kept'
      for (holder of holders) {
        if (holder.releaseDevice(deviceId, nowMs, idleMs) === 'kept') return 'kept'
      }
    } catch (err) {
      // Keep the device: asked again at the next sweep.
      log.error({ err, deviceId, holder: holder?.name }, 'releasing an idle device failed')
      return 'kept'
    }
    return 'released'
  }

  function sweep(nowMs: number): number {
    if (idleMs <= 0) return 0
    sweeps++
    let count = 0
    let kept = 0
    // Deleting the entry being visited is safe while iterating a Map.
    for (const [deviceId, heardMs] of lastHeard) {
      if (nowMs - heardMs < idleMs) continue
      if (releaseOne(deviceId, nowMs) === 'released') {
        lastHeard.delete(deviceId)
        count++
      } else kept++
    }
    released += count
    if (count > 0) {
      log.info({ released: count, kept, tracked: lastHeard.size, idleMs }, 'idle devices released')
    }
    return count
  }

  return {
    start() {
      if (started) return
      started = true
      bus.on(DEVICE_IDLE_OWNER, 'reading', (reading) => touch(reading.deviceId, clock()))
      bus.on(DEVICE_IDLE_OWNER, 'device.online', (event) => touch(event.deviceId, clock()))
      bus.on(DEVICE_IDLE_OWNER, 'device.offline', (event) => touch(event.deviceId, clock()))
      log.info({ idleMs }, idleMs > 0 ? 'idle devices are released' : 'idle device release off')
      schedule()
    },
    stop() {
      if (!started) return
      started = false
      bus.removeOwner(DEVICE_IDLE_OWNER)
      schedule()
    },
    touch,
    idleMs: () => idleMs,
    setIdleMs(next) {
      if (next === idleMs) return
      idleMs = next
      if (idleMs <= 0) lastHeard.clear()
      log.info({ idleMs }, 'device idle release time changed')
      schedule()
    },
    sweep,
    stats: () => ({ tracked: lastHeard.size, released, sweeps }),
  }
}
