import type { EventBus } from '../bus/event-bus.ts'
import { type Alert, type AlertState, alertId, type Reading } from '../contract/types.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'
import { renderMessage } from './alert-message.ts'
import { createDeadlineWheel, type WheelNode } from './deadline-wheel.ts'
import { type DeviceRegistry, EMPTY_REGISTRY } from './device-registry.ts'
import { compileDeviceMatcher, compileGlob, type IdMatcher, isGlob } from './glob.ts'
import {
  type AlertLifecycle,
  NO_LIFECYCLE,
  type RuleHandler,
  type Trigger,
  type Verdict,
} from './rule-handler.ts'

export const RULE_ENGINE_OWNER = 'rule-engine'

/**
 * Resolution of deadman deadlines and the period of the engine's one (unref'd) interval. A silence
 * is reported at most ~2 ticks late; its alert carries the exact deadline as `ts`, and a reading
 * that arrives after a deadline the tick has not reached yet still reports the silence first.
 */
export const DEADLINE_TICK_MS = 500
/** 1024 slots of 500 ms: one lap of the wheel is ~8.5 min; longer deadlines wait for more laps. */
const WHEEL_SLOTS = 1024

/** Handler failures are logged on the first and then every this many, not per reading. */
const HANDLER_ERROR_LOG_EVERY = 1000

const FLAPPING_NOTE = ' [flapping: further changes held until stable]'
const STABLE_NOTE = ' [stable again]'

export interface RuleEngineDeps {
  bus: EventBus
  log: Logger
  /** The gateway clock (deadman silences); default Date.now. Dry runs pass reading time. */
  now?: () => number
  /** Device tags for `match.tags`; default: no device has tags. */
  registry?: DeviceRegistry
  /** Period of the deadline tick while started; 0: none, time moves only through advance(). */
  tickMs?: number
}

export interface RuleEngineStats {
  /** Readings received from the bus. */
  readings: number
  /** Handler evaluations (reading x matching rule and metric). */
  evaluations: number
  /** Readings older than the last one seen for their key: not evaluated. */
  outOfOrder: number
  /** Evaluations (or expiries) whose handler threw. */
  handlerErrors: number
  /** Alerts emitted (firing, resolved and flapping notices). */
  transitions: number
  /** Condition changes not published: held by a cooldown or while flapping. */
  held: number
  /** (rule, device) alert keys in memory. */
  keys: number
  /** Deadman deadlines armed now. */
  deadlines: number
  /** Deadlines that passed with no reading. */
  deadlinesExpired: number
  /** Deadline nodes the wheel moved to a later slot (lazy re-arms). */
  deadlineRelinks: number
  /** Devices with cached routes: every device a reading reached since it was last forgotten. */
  devices: number
  /** Alert keys dropped by forgetDevice (idle devices). */
  keysForgotten: number
}

/** A device+metric known from the store, to watch with deadman rules from start-up. */
export interface WatchKey {
  deviceId: string
  metric: string
  lastSeenMs: number
}

export interface RulesChange {
  added: string[]
  changed: string[]
  unchanged: string[]
  removed: string[]
  /** Resolved alerts the engine emitted: rule removed, or a changed rule no longer matching. */
  resolved: Alert[]
}

export interface RestoreResult {
  /** Keys whose alert state was restored. */
  restored: number
  /** Stored firing alerts of rules (or devices) no longer in force, resolved and emitted. */
  resolved: Alert[]
}

export interface RuleEngine {
  /** Subscribes to 'reading' as owner `rule-engine` and starts the deadline tick. Idempotent. */
  start(): void
  /** Unsubscribes and stops the tick; state is kept, so start() resumes where it stopped. */
  stop(): void
  /**
   * Replaces the rule set. A rule whose id, kind and definition are unchanged keeps all its
   * state. A changed rule keeps its alert lifecycle (a firing alert stays firing, cooldown and
   * flapping carry on) but its handler state restarts; a firing alert whose device or metric the
   * changed rule no longer matches is resolved. A removed rule's firing alerts are resolved.
   * Resolutions are emitted as 'alert'. Throws GatewayError on duplicate rule ids.
   */
  setRules(rules: readonly RuleHandler[]): RulesChange
  /**
   * Start-up, before start(): the latest stored transition per (rule, device). A firing one makes
   * its key firing without emitting anything (the retained topic and the store have it already),
   * so the next breaching reading is no duplicate and a clearing one resolves it. Deadman rules
   * matching the restored devices are armed (see watch()).
   */
  restore(alerts: readonly Alert[]): RestoreResult
  /**
   * Arms deadman rules for devices known from the store, so a device that never comes back after
   * a restart is still reported silent. A key whose deadline (lastSeenMs + after) passed while the
   * gateway was down gets one full `after` from now: the gateway could not hear it, and devices
   * need time to reconnect. Returns how many deadlines were armed.
   */
  watch(keys: Iterable<WatchKey>): number
  /**
   * Scale-out (src/cluster/): a transition another gateway instance published. Its key takes that
   * state without emitting anything, so when the device moves here its alert carries on: no
   * duplicate firing, and a clearing reading resolves it. Alerts of rules not in force, or of
   * devices or metrics they do not match, are ignored; an older transition does not replace a newer.
   */
  adopt(alert: Alert): void
  /**
   * Scale-out: the device is now served by another instance, which watches its silence; the
   * deadman deadlines armed here for it are disarmed (a reading here arms them again). With
   * `movedAtMs` (when the other instance took it), a deadline armed here by a reading after that
   * stays: the news is older than what this instance saw. Returns how many were disarmed.
   */
  release(deviceId: string, movedAtMs?: number): number
  /**
   * An idle device (src/rules/device-idle.ts, DEVICE_IDLE_RELEASE): drops its routes and every
   * alert key of it that needs nothing more, so it comes back as a new device would. Kept (result
   * `kept`, asked again later): a key whose alert is firing, except a time-driven (deadman) alert
   * that has been firing for `idleMs` already, which is resolved (emitted) and dropped; and a key
   * with a deadman deadline still armed, whose silence is yet to be reported.
   */
  forgetDevice(deviceId: string, nowMs: number, idleMs: number): 'released' | 'kept'
  /** Processes deadlines up to `nowMs` (same clock as deps.now). The tick calls it with now(). */
  advance(nowMs: number): void
  rules(): readonly RuleHandler[]
  /** The latest alert (firing, or resolved) of every key that has had one. */
  alerts(): Alert[]
  /** Rule id -> keys whose published state is firing, for every rule in force. */
  firingCounts(): Map<string, number>
  stats(): RuleEngineStats
}

/** Per (rule, device, metric): the handler's state. The node of the deadline wheel too. */
interface Sub extends WheelNode {
  readonly key: AlertKey
  readonly metric: string
  state: unknown
  /** The handler's condition as last judged: true after 'breach' until 'clear'. */
  active: boolean
  /** Timestamp of the newest reading evaluated (out-of-order guard). */
  lastTs: number
  /** Engine clock of the last reading, or of arming; NaN before either. */
  seenMs: number
  lastValue: number
}

/** Per (rule, device): the alert lifecycle. */
interface AlertKey {
  entry: RuleEntry
  readonly deviceId: string
  readonly id: string
  /** One per metric seen; a single one unless the rule's metric is a glob. */
  subs: Sub[]
  /** Subs whose condition is active: the alert's condition holds while this is > 0. */
  activeCount: number
  /** The last alert published for this key. */
  published: Alert | null
  firing: boolean
  /** Reading time of the last published resolve: the cooldown runs from it. */
  resolvedTs: number
  /** Reading time of the last condition change (flapping stability). */
  lastChangeTs: number
  flapping: boolean
  /** Times of the last transitions + 1 condition changes, a ring; null without a flapping policy. */
  flapRing: number[] | null
  flapNext: number
  flapCount: number
}

interface RuleEntry {
  handler: RuleHandler
  index: number
  fingerprint: string
  lifecycle: AlertLifecycle
  matchesDevice: IdMatcher
  /** Null when the metric is an exact id (the entry is then in the by-metric index). */
  matchesMetric: IdMatcher | null
  tags: ReadonlyArray<readonly [string, string]> | null
  /** Deadman-style: silence in ms, 0 when the handler is not time-driven. */
  silenceMs: number
  keys: Map<string, AlertKey>
  firingCount: number
  errorCount: number
  removed: boolean
}

const NO_SUBS: readonly Sub[] = Object.freeze([])

function fingerprintOf(handler: RuleHandler): string {
  return `${handler.kind}\u0000${JSON.stringify(handler.definition)}`
}

function silenceOf(handler: RuleHandler): number {
  const ms = handler.silenceMs
  return typeof ms === 'number' && ms > 0 && typeof handler.expire === 'function' ? ms : 0
}

/**
 * The rule engine: dispatches each reading to the rules of its device and metric, keeps handler
 * state per (rule, device, metric) and owns the alert lifecycle per (rule, device).
 *
 * Dispatch: rules are indexed by exact metric in a Map, metric-glob rules sit in a short list; the
 * first reading of a (device, metric) pair resolves the matching rules (device glob, tags, metric)
 * once and caches the handler-state slots, so a reading costs two Map lookups plus its matching
 * rules. The cache is rebuilt lazily after setRules.
 *
 * Alert key and metric globs: the alert is keyed by (rule, device); with a metric glob each
 * matched metric has its own handler state. The alert fires when the first metric breaches and
 * resolves when none does; `metric` in an alert names the metric whose reading made that
 * transition.
 *
 * Lifecycle, judged on reading time (the deadline for a silence):
 * - only condition changes publish (firing, resolved); `since` is when the current state began;
 * - `cooldown`: after a resolve, a breach within the cooldown is held and fires on the first
 *   breaching reading after it ends (a silence held by cooldown is dropped: the next reading ends
 *   it);
 * - `flapping: { transitions: N, window }`: more than N condition changes within the window
 *   publish one alert with `flapping: true` (state = the condition now), then hold every change
 *   until the condition has been stable for the window; the first reading after that publishes
 *   the state with `flapping: false` (a transition if it differs from the last published state,
 *   else just the notice). Cooldown does not apply to that exit.
 *
 * A reading older than the last one evaluated for its key is ignored for rule state (counted in
 * `stats().outOfOrder`): it describes the past, and evaluating it would rewind `for` periods and
 * could flip an alert on stale data. A reading with the same timestamp is evaluated. For deadman
 * rules any reading, late or not, is a sign of life.
 */
export function createRuleEngine(
  deps: RuleEngineDeps,
  initialRules: readonly RuleHandler[],
): RuleEngine {
  const { bus } = deps
  const log = deps.log.child({ module: 'rule-engine' })
  const clock = deps.now ?? Date.now
  const registry = deps.registry ?? EMPTY_REGISTRY
  const tickMs = deps.tickMs ?? DEADLINE_TICK_MS

  /** Exact metric -> its rules, in rule order. */
  let byMetric = new Map<string, RuleEntry[]>()
  /** Rules whose metric is a glob: checked per (device, metric) when the route is built. */
  let globMetricEntries: RuleEntry[] = []
  let entries: RuleEntry[] = []
  let byId = new Map<string, RuleEntry>()
  /** deviceId -> metric -> the subs a reading goes to. */
  let routes = new Map<string, Map<string, readonly Sub[]>>()
  const wheel = createDeadlineWheel<Sub>({
    resolutionMs: DEADLINE_TICK_MS,
    slots: WHEEL_SLOTS,
    startMs: clock(),
  })
  let started = false
  let ticker: NodeJS.Timeout | null = null
  let keyCount = 0
  let keysForgotten = 0
  const stats = {
    readings: 0,
    evaluations: 0,
    outOfOrder: 0,
    handlerErrors: 0,
    transitions: 0,
    held: 0,
    deadlinesExpired: 0,
  }

  // --- matching and key tables ---------------------------------------------------------------

  function deviceMatches(entry: RuleEntry, deviceId: string): boolean {
    if (!entry.matchesDevice(deviceId)) return false
    if (entry.tags === null) return true
    const tags = registry.tagsOf(deviceId)
    if (tags === undefined) return false
    for (const [name, value] of entry.tags) if (tags[name] !== value) return false
    return true
  }

  function metricMatches(entry: RuleEntry, metric: string): boolean {
    return entry.matchesMetric === null
      ? entry.handler.match.metric === metric
      : entry.matchesMetric(metric)
  }

  function keyOf(entry: RuleEntry, deviceId: string): AlertKey {
    let key = entry.keys.get(deviceId)
    if (key === undefined) {
      const flap = entry.lifecycle.flapping
      key = {
        entry,
        deviceId,
        id: alertId(entry.handler.ruleId, deviceId),
        subs: [],
        activeCount: 0,
        published: null,
        firing: false,
        resolvedTs: -Infinity,
        lastChangeTs: -Infinity,
        flapping: false,
        flapRing: flap === null ? null : new Array<number>(flap.transitions + 1).fill(0.5),
        flapNext: 0,
        flapCount: 0,
      }
      entry.keys.set(deviceId, key)
      keyCount++
    }
    return key
  }

  function subOf(key: AlertKey, metric: string): Sub {
    for (const sub of key.subs) if (sub.metric === metric) return sub
    const sub: Sub = {
      key,
      metric,
      state: key.entry.handler.initialState(),
      active: false,
      lastTs: -Infinity,
      seenMs: Number.NaN,
      lastValue: Number.NaN,
      wheelSlot: -1,
      wheelPrev: null,
      wheelNext: null,
    }
    key.subs.push(sub)
    return sub
  }

  function buildRoute(deviceId: string, metric: string): readonly Sub[] {
    const exact = byMetric.get(metric)
    const matched: RuleEntry[] = []
    if (exact !== undefined) {
      for (const entry of exact) if (deviceMatches(entry, deviceId)) matched.push(entry)
    }
    for (const entry of globMetricEntries) {
      if (metricMatches(entry, metric) && deviceMatches(entry, deviceId)) matched.push(entry)
    }
    if (matched.length === 0) return NO_SUBS
    // Rule order, so transitions of one reading come out in the order the rules are written.
    if (exact !== undefined && globMetricEntries.length > 0)
      matched.sort((a, b) => a.index - b.index)
    const subs: Sub[] = []
    for (const entry of matched) {
      // A custom kind whose initialState() throws must not take the other rules' route down.
      try {
        subs.push(subOf(keyOf(entry, deviceId), metric))
      } catch (err) {
        stats.handlerErrors++
        log.error(
          { err, ruleId: entry.handler.ruleId, deviceId, metric },
          `rule ${entry.handler.ruleId} failed to create its state; it skips this device and metric`,
        )
      }
    }
    return subs
  }

  function routeOf(deviceId: string, metric: string): readonly Sub[] {
    let byDeviceMetric = routes.get(deviceId)
    if (byDeviceMetric === undefined) {
      byDeviceMetric = new Map()
      routes.set(deviceId, byDeviceMetric)
    }
    let subs = byDeviceMetric.get(metric)
    if (subs === undefined) {
      subs = buildRoute(deviceId, metric)
      byDeviceMetric.set(metric, subs)
    }
    return subs
  }

  // --- publishing ----------------------------------------------------------------------------

  function emit(alert: Alert): void {
    stats.transitions++
    log.info(
      {
        ruleId: alert.ruleId,
        deviceId: alert.deviceId,
        severity: alert.severity,
        value: alert.value,
        flapping: alert.flapping,
      },
      `alert ${alert.state}: ${alert.message}`,
    )
    // The bus isolates listeners: one that throws is logged and cannot reach the engine.
    bus.emit('alert', alert)
  }

  function setPublished(key: AlertKey, alert: Alert): void {
    const firing = alert.state === 'firing'
    if (firing !== key.firing) {
      key.entry.firingCount += firing ? 1 : -1
      if (!firing) key.resolvedTs = alert.ts
      key.firing = firing
    }
    key.published = alert
  }

  function publish(
    sub: Sub,
    state: AlertState,
    flapping: boolean,
    trigger: Trigger,
    note: string,
  ): void {
    const key = sub.key
    const { handler, lifecycle } = key.entry
    const detail = handler.describe(sub.state, trigger, state)
    const previous = key.published
    const since = previous !== null && previous.state === state ? previous.since : trigger.ts
    const message =
      lifecycle.message === null
        ? detail.message
        : renderMessage(lifecycle.message, {
            deviceId: key.deviceId,
            metric: sub.metric,
            value: detail.value,
            threshold: detail.threshold,
            ruleId: handler.ruleId,
            state,
            severity: handler.severity,
            kind: handler.kind,
          })
    const alert: Alert = Object.freeze({
      id: key.id,
      ruleId: handler.ruleId,
      kind: handler.kind,
      deviceId: key.deviceId,
      metric: sub.metric,
      severity: handler.severity,
      state,
      value: detail.value,
      threshold: detail.threshold,
      since,
      ts: trigger.ts,
      message: message + note,
      flapping,
    })
    setPublished(key, alert)
    emit(alert)
  }

  /** Resolves a firing key whose rule is gone (or no longer covers it), without its handler. */
  function resolveOrphan(key: AlertKey, why: string, ts: number): Alert | null {
    const last = key.published
    if (last === null || last.state !== 'firing') return null
    const alert: Alert = Object.freeze({
      ...last,
      state: 'resolved',
      since: ts,
      ts,
      flapping: false,
      message: `${last.ruleId} on ${last.deviceId}: ${why}; alert resolved`,
    })
    setPublished(key, alert)
    emit(alert)
    return alert
  }

  /** Condition-change ring: true when this change makes more than N within the window. */
  function flapsNow(key: AlertKey, ts: number, windowMs: number): boolean {
    const ring = key.flapRing as number[]
    ring[key.flapNext] = ts
    key.flapNext = (key.flapNext + 1) % ring.length
    if (key.flapCount < ring.length) key.flapCount++
    // Full ring: the slot to be overwritten next holds the oldest of the last N + 1 changes.
    return key.flapCount === ring.length && ts - (ring[key.flapNext] as number) <= windowMs
  }

  /**
   * Applies a verdict to a sub and its alert key: condition bookkeeping, flapping, cooldown,
   * publishing. The trigger object is only built when something is published.
   */
  function settle(
    sub: Sub,
    verdict: Verdict,
    ts: number,
    value: number,
    silentMs: number,
    cause: Trigger['cause'],
  ): void {
    const key = sub.key
    let changed = false
    if (verdict === 'breach') {
      if (!sub.active) {
        sub.active = true
        changed = key.activeCount++ === 0
      }
    } else if (verdict === 'clear') {
      if (sub.active) {
        sub.active = false
        changed = --key.activeCount === 0
      }
    }
    const condition: AlertState = key.activeCount > 0 ? 'firing' : 'resolved'
    const { lifecycle } = key.entry
    const flap = lifecycle.flapping
    let flapping = false
    let note = ''

    if (flap !== null && key.flapping) {
      if (changed) {
        key.lastChangeTs = ts
        stats.held++
        return
      }
      if (ts - key.lastChangeTs < flap.windowMs) return
      // Stable for the window: publish the state now, a transition or just the notice.
      key.flapping = false
      key.flapCount = 0
      note = STABLE_NOTE
    } else if (flap !== null && changed && flapsNow(key, ts, flap.windowMs)) {
      key.lastChangeTs = ts
      key.flapping = true
      flapping = true
      note = FLAPPING_NOTE
    } else {
      if (changed) key.lastChangeTs = ts
      if (condition === 'firing') {
        // Only a breaching reading fires: one in a hysteresis band after a cooldown does not.
        if (key.firing || verdict !== 'breach') return
        if (ts - key.resolvedTs < lifecycle.cooldownMs) {
          if (changed) stats.held++
          return
        }
      } else if (!key.firing) return
    }
    const trigger: Trigger = {
      deviceId: key.deviceId,
      metric: sub.metric,
      value,
      ts,
      silentMs,
      cause,
    }
    publish(sub, condition, flapping, trigger, note)
  }

  function handlerFailed(sub: Sub, err: unknown): void {
    const entry = sub.key.entry
    stats.handlerErrors++
    entry.errorCount++
    if (entry.errorCount === 1 || entry.errorCount % HANDLER_ERROR_LOG_EVERY === 0) {
      log.error(
        {
          err,
          ruleId: entry.handler.ruleId,
          deviceId: sub.key.deviceId,
          metric: sub.metric,
          failures: entry.errorCount,
        },
        `rule ${entry.handler.ruleId} failed`,
      )
    }
  }

  // --- time ----------------------------------------------------------------------------------

  function expire(sub: Sub, deadline: number): void {
    const entry = sub.key.entry
    if (entry.removed || entry.silenceMs === 0) return
    stats.deadlinesExpired++
    const silentMs = deadline - sub.seenMs
    const verdict = (entry.handler.expire as NonNullable<RuleHandler['expire']>)(
      sub.state,
      silentMs,
      sub.active,
    )
    if (verdict === 'hold' && !sub.key.flapping) return
    settle(sub, verdict, deadline, sub.lastValue, silentMs, 'deadline')
  }

  function deadlineOf(sub: Sub): number {
    const silence = sub.key.entry.silenceMs
    // Removed or no longer time-driven (a changed rule): drop the node.
    if (sub.key.entry.removed || silence === 0) return Number.NaN
    return sub.seenMs + silence
  }

  function expireGuarded(sub: Sub, deadline: number): void {
    try {
      expire(sub, deadline)
    } catch (err) {
      handlerFailed(sub, err)
    }
  }

  function advance(nowMs: number): void {
    wheel.advance(nowMs, deadlineOf, expireGuarded)
  }

  /** Arms a time-driven sub as seen at `seenMs` (no-op when it is armed or its alert fired). */
  function arm(sub: Sub, seenMs: number): boolean {
    const silence = sub.key.entry.silenceMs
    if (silence === 0 || sub.active || sub.wheelSlot >= 0) return false
    sub.seenMs = seenMs
    wheel.link(sub, seenMs + silence)
    return true
  }

  // --- readings ------------------------------------------------------------------------------

  function evaluate(sub: Sub, reading: Reading, now: number): void {
    const key = sub.key
    const entry = key.entry
    const previousSeen = sub.seenMs
    const silence = entry.silenceMs
    if (silence > 0) {
      // The deadline passed but the tick has not got to it: the silence happened, report it
      // before the reading that ends it. Tick resolution then never hides a silence.
      if (sub.wheelSlot >= 0 && now - previousSeen >= silence) {
        wheel.unlink(sub)
        expire(sub, previousSeen + silence)
      }
      sub.seenMs = now
      // Re-arming is lazy (the wheel reads seenMs when it reaches the node): O(1), no relinking.
      if (sub.wheelSlot < 0) wheel.link(sub, now + silence)
    } else {
      sub.seenMs = now
    }
    sub.lastValue = reading.value
    if (reading.ts < sub.lastTs) {
      stats.outOfOrder++
      return
    }
    sub.lastTs = reading.ts
    stats.evaluations++
    const verdict = entry.handler.evaluate(sub.state, reading, sub.active)
    // Fast path: nothing to do unless the condition or the published state may change, or a
    // flapping alert may have settled.
    if (!key.flapping) {
      if (verdict === 'hold') return
      if (verdict === 'breach' ? sub.active && key.firing : !sub.active && !key.firing) return
    }
    settle(sub, verdict, reading.ts, reading.value, now - previousSeen, 'reading')
  }

  function onReading(reading: Reading): void {
    stats.readings++
    const subs = routeOf(reading.deviceId, reading.metric)
    const n = subs.length
    if (n === 0) return
    const now = clock()
    for (let i = 0; i < n; i++) {
      const sub = subs[i] as Sub
      // One failing rule (a custom handler) must not keep the others from this reading.
      try {
        evaluate(sub, reading, now)
      } catch (err) {
        handlerFailed(sub, err)
      }
    }
  }

  // --- rule set ------------------------------------------------------------------------------

  function entryFor(handler: RuleHandler, index: number, fingerprint: string): RuleEntry {
    const { match } = handler
    return {
      handler,
      index,
      fingerprint,
      lifecycle: handler.lifecycle ?? NO_LIFECYCLE,
      matchesDevice: compileDeviceMatcher(match.devices),
      matchesMetric: isGlob(match.metric) ? compileGlob(match.metric) : null,
      tags: match.tags === undefined ? null : Object.entries(match.tags),
      silenceMs: silenceOf(handler),
      keys: new Map(),
      firingCount: 0,
      errorCount: 0,
      removed: false,
    }
  }

  function dropKey(entry: RuleEntry, key: AlertKey): void {
    for (const sub of key.subs) wheel.unlink(sub)
    entry.keys.delete(key.deviceId)
    keyCount--
  }

  /**
   * Moves the alert lifecycle of `old` to the changed rule `next`: handler state restarts, the
   * condition flags stay (so a firing alert still resolves through the new handler). Keys and
   * metrics the new rule does not match are dropped; a firing alert left without an active metric
   * is resolved.
   */
  function carryOver(old: RuleEntry, next: RuleEntry, resolved: Alert[]): void {
    const now = clock()
    for (const key of old.keys.values()) {
      key.entry = next
      next.keys.set(key.deviceId, key)
      if (key.firing) next.firingCount++
      if (!deviceMatches(next, key.deviceId)) {
        const why = `rule ${next.handler.ruleId} changed and no longer matches the device`
        const alert = resolveOrphan(key, why, now)
        if (alert) resolved.push(alert)
        dropKey(next, key)
        continue
      }
      const kept: Sub[] = []
      for (const sub of key.subs) {
        wheel.unlink(sub)
        let keep = metricMatches(next, sub.metric)
        if (keep) {
          try {
            sub.state = next.handler.initialState()
          } catch (err) {
            keep = false
            stats.handlerErrors++
            log.error({ err, ruleId: next.handler.ruleId }, 'rule failed to create its state')
          }
        }
        if (!keep) {
          if (sub.active) key.activeCount--
          continue
        }
        sub.lastTs = -Infinity
        kept.push(sub)
        if (Number.isFinite(sub.seenMs)) arm(sub, sub.seenMs)
      }
      key.subs = kept
      const flap = next.lifecycle.flapping
      if (flap === null) {
        key.flapRing = null
        key.flapping = false
      } else if (key.flapRing === null || key.flapRing.length !== flap.transitions + 1) {
        key.flapRing = new Array<number>(flap.transitions + 1).fill(0.5)
        key.flapNext = 0
        key.flapCount = 0
      }
      if (key.firing && key.activeCount === 0 && !key.flapping) {
        const why = `rule ${next.handler.ruleId} changed and no longer matches ${key.published?.metric}`
        const alert = resolveOrphan(key, why, now)
        if (alert) resolved.push(alert)
      }
      if (kept.length === 0 && !key.firing) dropKey(next, key)
    }
  }

  function setRules(rules: readonly RuleHandler[]): RulesChange {
    const seen = new Set<string>()
    for (const handler of rules) {
      if (seen.has(handler.ruleId)) {
        throw new GatewayError(ERROR_CODES.rules, `duplicate rule id "${handler.ruleId}"`)
      }
      seen.add(handler.ruleId)
    }
    const change: RulesChange = { added: [], changed: [], unchanged: [], removed: [], resolved: [] }
    const previous = byId
    const next: RuleEntry[] = []
    const nextById = new Map<string, RuleEntry>()
    const changedPairs: Array<[RuleEntry, RuleEntry]> = []
    for (const [index, handler] of rules.entries()) {
      const fingerprint = fingerprintOf(handler)
      const old = previous.get(handler.ruleId)
      let entry: RuleEntry
      if (old !== undefined && old.fingerprint === fingerprint) {
        entry = old
        entry.handler = handler
        entry.index = index
        change.unchanged.push(handler.ruleId)
      } else {
        entry = entryFor(handler, index, fingerprint)
        if (old === undefined) change.added.push(handler.ruleId)
        else {
          change.changed.push(handler.ruleId)
          changedPairs.push([old, entry])
        }
      }
      next.push(entry)
      nextById.set(handler.ruleId, entry)
    }

    entries = next
    byId = nextById
    const index = new Map<string, RuleEntry[]>()
    const globs: RuleEntry[] = []
    for (const entry of next) {
      if (entry.matchesMetric !== null) globs.push(entry)
      else {
        const list = index.get(entry.handler.match.metric)
        if (list) list.push(entry)
        else index.set(entry.handler.match.metric, [entry])
      }
    }
    byMetric = index
    globMetricEntries = globs
    routes = new Map()

    const now = clock()
    for (const [old, entry] of changedPairs) {
      old.removed = true
      carryOver(old, entry, change.resolved)
    }
    for (const [ruleId, old] of previous) {
      if (nextById.has(ruleId)) continue
      change.removed.push(ruleId)
      old.removed = true
      for (const key of [...old.keys.values()]) {
        const alert = resolveOrphan(key, `rule ${ruleId} was removed`, now)
        if (alert) change.resolved.push(alert)
        dropKey(old, key)
      }
    }
    return change
  }

  setRules(initialRules)

  return {
    start() {
      if (started) return
      started = true
      bus.on(RULE_ENGINE_OWNER, 'reading', onReading)
      if (tickMs > 0) {
        ticker = setInterval(() => advance(clock()), tickMs)
        // The tick must never keep the process alive on its own.
        ticker.unref()
      }
    },
    stop() {
      if (!started) return
      started = false
      bus.removeOwner(RULE_ENGINE_OWNER)
      if (ticker !== null) clearInterval(ticker)
      ticker = null
    },
    setRules,
    restore(alerts) {
      const now = clock()
      const result: RestoreResult = { restored: 0, resolved: [] }
      const devices: WatchKey[] = []
      for (const stored of alerts) {
        const entry = byId.get(stored.ruleId)
        const covered =
          entry !== undefined &&
          deviceMatches(entry, stored.deviceId) &&
          metricMatches(entry, stored.metric)
        if (!covered) {
          if (stored.state !== 'firing') continue
          // Nothing will ever resolve it otherwise: the retained topic would say firing forever.
          const orphan: Alert = Object.freeze({
            ...stored,
            state: 'resolved',
            since: now,
            ts: now,
            flapping: false,
            message: `${stored.ruleId} on ${stored.deviceId}: ${entry === undefined ? `rule ${stored.ruleId} was removed` : 'the rule no longer matches this device or metric'}; alert resolved`,
          })
          emit(orphan)
          result.resolved.push(orphan)
          continue
        }
        if (!takeOver(entry, stored)) continue
        result.restored++
        devices.push({ deviceId: stored.deviceId, metric: stored.metric, lastSeenMs: now })
      }
      watchKeys(devices, now)
      return result
    },
    watch(keys) {
      return watchKeys(keys, clock())
    },
    adopt(remote) {
      const entry = byId.get(remote.ruleId)
      if (entry === undefined || !deviceMatches(entry, remote.deviceId)) return
      if (metricMatches(entry, remote.metric)) takeOver(entry, remote)
    },
    release(deviceId, movedAtMs = Number.POSITIVE_INFINITY) {
      let disarmed = 0
      for (const entry of entries) {
        if (entry.silenceMs === 0) continue
        for (const sub of entry.keys.get(deviceId)?.subs ?? NO_SUBS) {
          if (sub.wheelSlot < 0 || sub.seenMs > movedAtMs) continue
          wheel.unlink(sub)
          sub.seenMs = Number.NaN
          disarmed++
        }
      }
      return disarmed
    },
    forgetDevice,
    advance,
    rules() {
      return entries.map((entry) => entry.handler)
    },
    alerts() {
      const out: Alert[] = []
      for (const entry of entries) {
        for (const key of entry.keys.values()) if (key.published) out.push(key.published)
      }
      return out
    },
    firingCounts() {
      return new Map(entries.map((entry) => [entry.handler.ruleId, entry.firingCount]))
    },
    stats(): RuleEngineStats {
      return {
        ...stats,
        keys: keyCount,
        deadlines: wheel.size(),
        deadlineRelinks: wheel.relinks(),
        devices: routes.size,
        keysForgotten,
      }
    },
  }

  /**
   * A transition published before (restored from the store) or elsewhere (another instance)
   * becomes the key's state, without emitting: false when the key already has a newer one.
   */
  function takeOver(entry: RuleEntry, known: Alert): boolean {
    const key = keyOf(entry, known.deviceId)
    if (key.published !== null && key.published.ts > known.ts) return false
    const sub = subOf(key, known.metric)
    const alert: Alert = Object.freeze({
      ...known,
      id: key.id,
      kind: known.kind ?? entry.handler.kind,
      flapping: known.flapping ?? false,
    })
    setPublished(key, alert)
    // The cooldown runs from that resolve, restart or not (setPublished sets it on a change).
    if (alert.state === 'resolved') key.resolvedTs = alert.ts
    if (alert.state === 'firing' && !sub.active) {
      wheel.unlink(sub)
      sub.active = true
      key.activeCount++
    } else if (alert.state === 'resolved' && sub.active) {
      sub.active = false
      key.activeCount--
    }
    return true
  }

  /** See RuleEngine.forgetDevice. */
  function forgetDevice(deviceId: string, nowMs: number, idleMs: number): 'released' | 'kept' {
    // Routes point at the subs: always dropped, a reading rebuilds them (and finds a kept key).
    routes.delete(deviceId)
    let kept = false
    for (const entry of entries) {
      const key = entry.keys.get(deviceId)
      if (key === undefined) continue
      // A deadline still armed: the silence it watches for is exactly this one, not yet reported.
      if (key.subs.some((sub) => sub.wheelSlot >= 0)) {
        kept = true
        continue
      }
      if (key.firing) {
        const firedMs = key.published?.ts ?? nowMs
        // Only a silence alert ages out: the device stays silent, and its firing alert has
        // been out for the release time. Any other firing alert waits for the reading that
        // resolves it (or for its rule to change or go).
        if (entry.silenceMs === 0 || nowMs - firedMs < idleMs) {
          kept = true
          continue
        }
        resolveOrphan(
          key,
          `no reading since the alert fired ${Math.round((nowMs - firedMs) / 1000)} s ago; the gateway stopped watching the device (DEVICE_IDLE_RELEASE)`,
          nowMs,
        )
      }
      dropKey(entry, key)
      keysForgotten++
    }
    return kept ? 'kept' : 'released'
  }

  function watchKeys(keys: Iterable<WatchKey>, now: number): number {
    const timed = entries.filter((entry) => entry.silenceMs > 0)
    if (timed.length === 0) return 0
    let armed = 0
    for (const { deviceId, metric, lastSeenMs } of keys) {
      for (const entry of timed) {
        if (!metricMatches(entry, metric) || !deviceMatches(entry, deviceId)) continue
        const sub = subOf(keyOf(entry, deviceId), metric)
        if (Number.isFinite(sub.seenMs)) continue
        // A deadline that passed while the gateway was down restarts from now (see watch()).
        const seen = lastSeenMs + entry.silenceMs > now ? lastSeenMs : now
        if (arm(sub, seen)) armed++
      }
    }
    return armed
  }
}
