import { randomUUID } from 'node:crypto'
import type { EventBus } from '../bus/event-bus.ts'
import type { Alert } from '../contract/types.ts'
import type { Logger } from '../telemetry/logger.ts'
import {
  type ActiveChannel,
  createDelivery,
  type Delivery,
  type DeliveryOutcome,
} from './delivery.ts'
import type { Outbox, OutboxState, StoredNotification } from './outbox.ts'
import type {
  AlertControls,
  ChannelSettings,
  Notification,
  NotificationChannel,
  NotificationKind,
  NotificationsConfig,
  Route,
} from './types.ts'

const OWNER = 'notifier'
const HOUR_MS = 3_600_000

/** One notification to write: a route's channel and what it is about. */
export interface NotifyTarget {
  route: Route
  channel: string
  kind: NotificationKind
}

export interface NotifierDeps {
  bus: EventBus
  log: Logger
  outbox: Outbox
  controls: AlertControls
  /** Device tags from the registry (routes and silences match on them). */
  tagsOf: (deviceId: string) => Readonly<Record<string, string>> | undefined
  /** The router (src/notify/router.ts): which (route, channel, kind) an alert transition goes to. */
  routeAlert: (
    config: NotificationsConfig,
    alert: Alert,
    tags: Readonly<Record<string, string>>,
  ) => readonly NotifyTarget[]
  /** The templates (src/notify/templates.ts). */
  render: (
    route: Route,
    kind: NotificationKind,
    alerts: readonly Alert[],
  ) => { title: string; text: string }
  /** Builds a channel from its validated settings (the kind registry, custom modules). */
  createChannel: (settings: ChannelSettings) => NotificationChannel
  now?: () => number
  random?: () => number
  newId?: () => string
}

export interface NotifierOptions {
  /** Delivered notifications are kept this long (then pruned); default 24 h. */
  keepDeliveredMs?: number
  /** Dead-lettered ones, this long; default 7 days. */
  keepFailedMs?: number
}

/** What /metrics reads (src/telemetry/metrics.ts). */
export interface NotifierStats {
  channels: string[]
  outcomes: ReadonlyMap<string, Readonly<Record<DeliveryOutcome, number>>>
  pending: ReadonlyMap<string, number>
  /** Age of the oldest pending notification, seconds; 0 when none is pending. */
  oldestPendingSeconds: number
}

/** What the HTTP API reads and does (src/http/routes/notifications.ts). */
export interface NotificationsView {
  list(query: { state: OutboxState; limit: number; channel?: string }): StoredNotification[]
  get(id: string): StoredNotification | undefined
  /** A dead-lettered notification back to pending (same id), due now. */
  retry(id: string): 'retried' | 'not_found' | 'not_failed'
}

export interface Notifier extends NotificationsView {
  /** Resumes delivery of what the outbox holds (pending, open groups, repeat schedules). */
  start(): void
  /** A reloaded notifications file: routes at once, channels recreated where they changed. */
  setConfig(config: NotificationsConfig): void
  stats(): NotifierStats
  onDelivered(listener: (channel: string, seconds: number) => void): void
  /** Closes due grouping windows and sends due reminders now (the timer does it otherwise). */
  runDue(): void
  /**
   * Looks for due work now: notifications another module wrote into the outbox (a dead
   * instance's, taken over: src/cluster/cluster-outbox.ts) are delivered at once.
   */
  kick(): void
  /** In-flight attempts aborted (they stay pending), channels closed; the outbox stays open. */
  stop(): Promise<void>
}

interface ChannelEntry {
  settings: ChannelSettings
  active: ActiveChannel
}

/**
 * Alert transitions -> notifications in the outbox -> channels (README "Notifications", DESIGN
 * §10). In the bus's `alert` listener, synchronously and in one transaction, it writes what the
 * router says the transition is owed: a notification (or an item of a route's open grouping
 * window) per channel, and the repeat schedules. Nothing there waits on a receiver; delivery
 * (src/notify/delivery.ts) reads the outbox on its own timers.
 */
export function createNotifier(
  deps: NotifierDeps,
  initial: NotificationsConfig,
  options: NotifierOptions = {},
): Notifier {
  const log = deps.log.child({ module: 'notifier' })
  const { outbox, controls } = deps
  const now = deps.now ?? Date.now
  const newId = deps.newId ?? randomUUID
  const keepDeliveredMs = options.keepDeliveredMs ?? 24 * HOUR_MS
  const keepFailedMs = options.keepFailedMs ?? 7 * 24 * HOUR_MS
  let config = initial
  let channels = new Map<string, ChannelEntry>()
  let activeChannels = new Map<string, ActiveChannel>()
  const outcomes = new Map<string, Record<DeliveryOutcome, number>>()
  const deliveredListeners: Array<(channel: string, seconds: number) => void> = []
  let timer: NodeJS.Timeout | undefined
  let timerAt = Number.POSITIVE_INFINITY
  let pruneTimer: NodeJS.Timeout | undefined
  let stopped = false

  const outcomeOf = (channel: string) => {
    let counts = outcomes.get(channel)
    if (counts === undefined) {
      counts = { delivered: 0, retried: 0, failed: 0 }
      outcomes.set(channel, counts)
    }
    return counts
  }

  const applyChannels = (next: NotificationsConfig) => {
    const kept = new Map<string, ChannelEntry>()
    for (const settings of next.channels) {
      const old = channels.get(settings.name)
      if (old !== undefined && sameSettings(old.settings, settings)) {
        kept.set(settings.name, old)
        continue
      }
      const channel = deps.createChannel(settings)
      kept.set(settings.name, {
        settings,
        active: { channel, timeoutMs: settings.timeoutMs, concurrency: settings.concurrency },
      })
      outcomeOf(settings.name)
    }
    for (const [name, old] of channels) {
      if (kept.get(name) !== old) closeChannel(old.active.channel)
    }
    channels = kept
    activeChannels = new Map([...kept].map(([name, entry]) => [name, entry.active]))
  }

  const closeChannel = (channel: NotificationChannel) => {
    channel
      .close()
      .catch((err: unknown) => log.warn({ err, channel: channel.name }, 'close failed'))
  }

  applyChannels(initial)

  const delivery: Delivery = createDelivery({
    outbox,
    channels: () => activeChannels,
    policy: () => config.delivery,
    log: deps.log,
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.random ? { random: deps.random } : {}),
    onEvent(event) {
      outcomeOf(event.channel)[event.outcome]++
      if (event.latencySeconds !== undefined) {
        for (const listener of deliveredListeners) listener(event.channel, event.latencySeconds)
      }
    },
  })

  const build = (
    route: Route,
    channel: string,
    kind: NotificationKind,
    alerts: readonly Alert[],
    nowMs: number,
  ): Notification => ({
    id: newId(),
    channel,
    route: route.name,
    kind,
    alerts,
    ...deps.render(route, kind, alerts),
    createdAt: nowMs,
  })

  const routeNamed = (name: string) => config.routes.find((r) => r.name === name)

  /** One timer for the next grouping window to close or reminder to send. */
  const arm = () => {
    if (stopped) return
    const next = Math.min(
      outbox.nextGroupCloseAt() ?? Number.POSITIVE_INFINITY,
      outbox.nextRepeatAt() ?? Number.POSITIVE_INFINITY,
    )
    if (next === Number.POSITIVE_INFINITY || (timer !== undefined && timerAt <= next)) return
    clearTimeout(timer)
    timerAt = next
    timer = setTimeout(
      () => {
        timer = undefined
        timerAt = Number.POSITIVE_INFINITY
        runDue()
      },
      Math.min(Math.max(0, next - now()), 2_147_483_647),
    )
    timer.unref()
  }

  const onAlert = (alert: Alert) => {
    if (config.routes.length === 0) return
    const nowMs = now()
    const tags = deps.tagsOf(alert.deviceId) ?? {}
    const targets = deps.routeAlert(config, alert, tags)
    if (targets.length === 0 && alert.state === 'firing') return
    const silenced = targets.length > 0 && controls.isSilenced(alert, tags, nowMs)
    const kicked = new Set<string>()
    let grouped = false
    try {
      outbox.transaction(() => {
        // A resolve ends every reminder of the alert, whichever route started it.
        if (alert.state === 'resolved') outbox.clearRepeats(alert.id)
        for (const { route, channel, kind } of targets) {
          // A silenced alert keeps its schedule: once the silence ends, reminders resume.
          if (alert.state === 'firing' && route.repeatIntervalMs > 0) {
            outbox.scheduleRepeat({
              alertId: alert.id,
              route: route.name,
              channel,
              alert,
              lastAt: nowMs,
              nextAt: nowMs + route.repeatIntervalMs,
            })
          }
          if (silenced) continue
          if (route.groupWindowMs > 0) {
            outbox.addToGroup(
              { route: route.name, channel, kind },
              alert,
              nowMs,
              route.groupWindowMs,
            )
            grouped = true
          } else {
            outbox.add(build(route, channel, kind, [alert], nowMs))
            kicked.add(channel)
          }
        }
      })
    } catch (err) {
      // A disk that refuses the write: the one place a notification can be lost, so the log says
      // what was lost (the transition itself is published and stored as usual).
      log.error(
        { err, alertId: alert.id, state: alert.state, channels: targets.map((t) => t.channel) },
        'alert transition not written to the outbox: its notifications are lost',
      )
      return
    }
    if (silenced) log.debug({ alertId: alert.id, state: alert.state }, 'alert silenced')
    for (const channel of kicked) delivery.kick(channel)
    if (grouped || alert.state === 'firing') arm()
  }

  const runDue = () => {
    if (stopped) return
    const nowMs = now()
    const kicked = new Set<string>()
    for (const group of outbox.dueGroups(nowMs)) {
      const route = routeNamed(group.route)
      if (route === undefined) {
        log.warn(
          { route: group.route, channel: group.channel, alerts: group.alerts.length },
          'route removed from the notifications file while its grouping window was open; its alerts are not notified',
        )
        outbox.closeGroup(group, null)
        continue
      }
      outbox.closeGroup(group, build(route, group.channel, group.kind, group.alerts, nowMs))
      kicked.add(group.channel)
    }
    for (const schedule of outbox.dueRepeats(nowMs)) {
      const { alertId, channel, alert } = schedule
      const route = routeNamed(schedule.route)
      // The route is gone, reminds no more, or no longer sends to this channel; or the alert was
      // acknowledged (until it resolves): the schedule ends.
      if (
        route === undefined ||
        route.repeatIntervalMs <= 0 ||
        !route.channels.includes(channel) ||
        controls.ackOf(alertId) !== undefined
      ) {
        outbox.removeRepeat(alertId, schedule.route, channel)
        continue
      }
      const silenced = controls.isSilenced(alert, deps.tagsOf(alert.deviceId) ?? {}, nowMs)
      outbox.transaction(() => {
        outbox.scheduleRepeat({
          ...schedule,
          lastAt: nowMs,
          nextAt: nowMs + route.repeatIntervalMs,
        })
        if (!silenced) outbox.add(build(route, channel, 'repeat', [alert], nowMs))
      })
      if (!silenced) kicked.add(channel)
    }
    for (const channel of kicked) delivery.kick(channel)
    arm()
  }

  const prune = () => {
    const nowMs = now()
    const removed = outbox.prune(nowMs - keepDeliveredMs, nowMs - keepFailedMs)
    if (removed > 0) log.debug({ removed }, 'old notifications pruned from the outbox')
  }

  deps.bus.on(OWNER, 'alert', onAlert)

  return {
    start() {
      prune()
      pruneTimer = setInterval(prune, HOUR_MS)
      pruneTimer.unref()
      const waiting = outbox.pendingStats()
      const pendingTotal = [...waiting.byChannel.values()].reduce((a, b) => a + b, 0)
      if (pendingTotal > 0) log.info({ pending: pendingTotal }, 'resuming pending notifications')
      for (const name of waiting.byChannel.keys()) {
        if (!channels.has(name)) {
          log.warn(
            { channel: name, pending: waiting.byChannel.get(name) },
            'pending notifications of a channel that is not in the notifications file wait for it',
          )
        }
      }
      runDue()
      delivery.kick()
    },

    setConfig(next) {
      config = next
      applyChannels(next)
      delivery.kick()
      arm()
    },

    stats() {
      const { byChannel, oldestCreatedAt } = outbox.pendingStats()
      const pending = new Map<string, number>()
      for (const name of channels.keys()) pending.set(name, 0)
      for (const [name, count] of byChannel) pending.set(name, count)
      return {
        channels: [...channels.keys()],
        outcomes,
        pending,
        oldestPendingSeconds:
          oldestCreatedAt === undefined ? 0 : Math.max(0, now() - oldestCreatedAt) / 1000,
      }
    },

    onDelivered(listener) {
      deliveredListeners.push(listener)
    },

    list: (query) => outbox.list(query),
    get: (id) => outbox.get(id),

    retry(id) {
      const stored = outbox.get(id)
      if (stored === undefined) return 'not_found'
      if (!outbox.retry(id, now())) return 'not_failed'
      log.info({ id, channel: stored.notification.channel }, 'dead-lettered notification retried')
      delivery.kick(stored.notification.channel)
      return 'retried'
    },

    runDue,

    kick() {
      runDue()
      delivery.kick()
    },

    async stop() {
      if (stopped) return
      stopped = true
      deps.bus.removeOwner(OWNER)
      clearTimeout(timer)
      clearInterval(pruneTimer)
      await delivery.stop()
      await Promise.allSettled([...channels.values()].map((entry) => entry.active.channel.close()))
    },
  }
}

function sameSettings(a: ChannelSettings, b: ChannelSettings): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}
