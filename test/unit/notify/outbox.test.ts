import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createEventBus, type EventBus } from '../../../src/bus/event-bus.ts'
import type { Alert } from '../../../src/contract/types.ts'
import { createNotifier, type Notifier, type NotifyTarget } from '../../../src/notify/notifier.ts'
import { type Outbox, openOutbox } from '../../../src/notify/outbox.ts'
import type {
  AlertAck,
  AlertControls,
  ChannelSettings,
  DeliveryPolicy,
  Notification,
  NotificationChannel,
  NotificationsConfig,
  Route,
} from '../../../src/notify/types.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { captureLogs } from '../../helpers/log-capture.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

const T0 = Date.UTC(2026, 11, 2, 12, 0, 0)
const log = createSilentLogger()
const POLICY: DeliveryPolicy = {
  maxAttempts: 5,
  maxAgeMs: 3_600_000,
  retryBaseMs: 10,
  retryMaxMs: 50,
}

function alertOf(deviceId: string, state: 'firing' | 'resolved', ts = T0): Alert {
  return {
    id: `high-temperature:${deviceId}`,
    ruleId: 'high-temperature',
    kind: 'threshold',
    deviceId,
    metric: 'temperature',
    severity: 'major',
    state,
    value: state === 'firing' ? 35 : 20,
    threshold: 30,
    since: ts,
    ts,
    message: `temperature on ${deviceId}`,
    flapping: false,
  }
}

function routeOf(fields: Partial<Route> = {}): Route {
  return {
    name: 'ops',
    channels: ['hold'],
    match: { severity: null, rule: null, device: null, metric: null, tags: null },
    on: ['firing', 'resolved'],
    repeatIntervalMs: 0,
    groupWindowMs: 0,
    template: { title: '{deviceId}', text: '{message}' },
    ...fields,
  }
}

function configOf(route: Route): NotificationsConfig {
  return {
    channels: route.channels.map((name) => ({
      name,
      kind: 'test',
      // Longer than any test: an attempt of the holding channel never ends on its own.
      timeoutMs: 600_000,
      concurrency: 1,
      config: {},
    })),
    routes: [route],
    delivery: POLICY,
  }
}

/** A channel that never answers until the test ends: notifications stay pending for inspection. */
function holdingChannel(name: string): NotificationChannel {
  return {
    name,
    kind: 'test',
    deliver: (_n, _attempt, signal) =>
      new Promise((resolve) =>
        signal.addEventListener('abort', () =>
          resolve({ ok: false, permanent: false, error: 'aborted' }),
        ),
      ),
    close: async () => {},
  }
}

/** What the router would say in these tests: every route, on the transitions it lists. */
function routeAlert(config: NotificationsConfig, alert: Alert): NotifyTarget[] {
  const kind = alert.flapping ? 'flapping' : alert.state
  return config.routes
    .filter((route) => route.on.includes(kind))
    .flatMap((route) => route.channels.map((channel) => ({ route, channel, kind })))
}

describe('notification outbox', () => {
  let dir: TempDir
  let file: string
  let clock: number
  const opened: Outbox[] = []
  const notifiers: Notifier[] = []
  const acks = new Map<string, AlertAck>()
  const silenced = new Set<string>()
  const controls: AlertControls = {
    ackOf: (id) => acks.get(id),
    isSilenced: (alert) => silenced.has(alert.deviceId),
  }

  const open = () => {
    const outbox = openOutbox({ file })
    opened.push(outbox)
    return outbox
  }
  let ids = 0
  const notifierOn = (outbox: Outbox, bus: EventBus, route: Route, realClock = false) => {
    const notifier = createNotifier(
      {
        bus,
        log,
        outbox,
        controls,
        tagsOf: () => ({}),
        routeAlert,
        render: (r, kind, alerts) => ({ title: `${r.name} ${kind} ${alerts.length}`, text: '' }),
        createChannel: (settings) => holdingChannel(settings.name),
        now: realClock ? Date.now : () => clock,
        newId: () => `n-${++ids}`,
      },
      configOf(route),
    )
    notifiers.push(notifier)
    return notifier
  }
  const pending = (outbox: Outbox) =>
    outbox
      .list({ state: 'pending', limit: 100 })
      .map((s) => s.notification)
      .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))

  beforeEach(async () => {
    dir = await createTempDir('outbox-')
    file = join(dir.path, 'outbox.db')
    clock = T0
    acks.clear()
    silenced.clear()
  })
  afterEach(async () => {
    for (const n of notifiers.splice(0)) await n.stop()
    for (const o of opened.splice(0)) o.close()
    await dir.remove()
  })

  it('keeps notifications, open groups and repeat schedules across a reopen, with the same ids', () => {
    const outbox = open()
    const n: Notification = {
      id: 'stable-1',
      channel: 'hook',
      route: 'ops',
      kind: 'firing',
      alerts: [alertOf('gh-1', 'firing')],
      title: 't',
      text: 'x',
      createdAt: T0,
    }
    outbox.add(n)
    outbox.markRetry('stable-1', 2, T0 + 500, 'HTTP 500', T0 + 10)
    outbox.addToGroup(
      { route: 'ops', channel: 'hook', kind: 'firing' },
      alertOf('gh-2', 'firing'),
      T0,
      1_000,
    )
    outbox.scheduleRepeat({
      alertId: 'high-temperature:gh-3',
      route: 'ops',
      channel: 'hook',
      alert: alertOf('gh-3', 'firing'),
      lastAt: T0,
      nextAt: T0 + 60_000,
    })
    outbox.close()

    const again = open()
    const stored = again.get('stable-1')
    expect(stored).toMatchObject({
      notification: n,
      state: 'pending',
      attempts: 2,
      nextAttemptAt: T0 + 500,
      lastError: 'HTTP 500',
    })
    expect(again.due('hook', T0 + 499, 10, new Set())).toEqual([])
    expect(again.due('hook', T0 + 500, 10, new Set()).map((s) => s.notification.id)).toEqual([
      'stable-1',
    ])
    expect(again.dueGroups(T0 + 999)).toEqual([])
    expect(again.dueGroups(T0 + 1_000)).toEqual([
      {
        route: 'ops',
        channel: 'hook',
        kind: 'firing',
        closesAt: T0 + 1_000,
        alerts: [alertOf('gh-2', 'firing')],
      },
    ])
    expect(again.nextRepeatAt()).toBe(T0 + 60_000)
    expect(again.dueRepeats(T0 + 60_000).map((r) => r.alertId)).toEqual(['high-temperature:gh-3'])
  })

  it('writes one notification per transition at once when the route does not group', () => {
    const outbox = open()
    const bus = createEventBus(log)
    notifierOn(outbox, bus, routeOf({ channels: ['hold', 'other'] }))
    bus.emit('alert', alertOf('gh-1', 'firing'))
    // Written before emit returned: the same step as the transition.
    expect(pending(outbox).map((n) => [n.channel, n.kind, n.alerts.length])).toEqual([
      ['hold', 'firing', 1],
      ['other', 'firing', 1],
    ])
  })

  it('says in an error line which alert transition a refused outbox write cost its notifications', () => {
    const outbox = open()
    const bus = createEventBus(log)
    const { log: captured, lines } = captureLogs('info')
    const notifier = createNotifier(
      {
        bus,
        log: captured,
        outbox,
        controls,
        tagsOf: () => ({}),
        routeAlert,
        render: () => ({ title: 't', text: '' }),
        createChannel: (settings) => holdingChannel(settings.name),
        now: () => clock,
      },
      configOf(routeOf({ channels: ['hold', 'other'] })),
    )
    notifiers.push(notifier)
    // The outbox refuses every write from here on, as a full or failing disk would.
    outbox.close()
    bus.emit('alert', alertOf('gh-1', 'firing'))
    expect(lines.filter((l) => l.level === 50)).toMatchObject([
      {
        msg: 'alert transition not written to the outbox: its notifications are lost',
        alertId: 'high-temperature:gh-1',
        state: 'firing',
        channels: ['hold', 'other'],
      },
    ])
  })

  it('collects the transitions of a grouping window into one notification when it closes', () => {
    const outbox = open()
    const bus = createEventBus(log)
    const notifier = notifierOn(outbox, bus, routeOf({ groupWindowMs: 1_000 }))
    bus.emit('alert', alertOf('gh-1', 'firing'))
    clock = T0 + 200
    bus.emit('alert', alertOf('gh-2', 'firing'))
    bus.emit('alert', alertOf('gh-1', 'resolved', T0 + 200))
    clock = T0 + 900
    // The same alert again: one entry in the group, its newest transition.
    bus.emit('alert', { ...alertOf('gh-2', 'firing'), value: 36 })
    bus.emit('alert', alertOf('gh-3', 'firing'))
    notifier.runDue()
    expect(pending(outbox)).toEqual([])

    clock = T0 + 1_000
    notifier.runDue()
    const [firing, ...rest] = pending(outbox)
    expect(rest).toEqual([])
    expect(firing?.kind).toBe('firing')
    expect(firing?.alerts.map((a) => [a.deviceId, a.value])).toEqual([
      ['gh-1', 35],
      ['gh-2', 36],
      ['gh-3', 35],
    ])
    expect(firing?.title).toBe('ops firing 3')

    // The resolved kind has its own window, opened by its first transition at +200.
    clock = T0 + 1_100
    bus.emit('alert', alertOf('gh-4', 'firing'))
    notifier.runDue()
    expect(pending(outbox)).toHaveLength(1)
    clock = T0 + 1_200
    notifier.runDue()
    expect(pending(outbox).map((n) => [n.kind, n.alerts.map((a) => a.deviceId)])).toEqual([
      ['firing', ['gh-1', 'gh-2', 'gh-3']],
      ['resolved', ['gh-1']],
    ])
    // The firing window closed at +1000: gh-4 opened a new one, closing at +2100.
    clock = T0 + 2_099
    notifier.runDue()
    expect(pending(outbox)).toHaveLength(2)
    clock = T0 + 2_100
    notifier.runDue()
    expect(pending(outbox).map((n) => n.alerts.map((a) => a.deviceId))).toContainEqual(['gh-4'])
  })

  it('forms a grouped notification after a restart from the items stored while its window was open', async () => {
    const first = open()
    const bus = createEventBus(log)
    const before = notifierOn(first, bus, routeOf({ groupWindowMs: 1_000 }))
    bus.emit('alert', alertOf('gh-1', 'firing'))
    bus.emit('alert', alertOf('gh-2', 'firing'))
    await before.stop()
    first.close()

    clock = T0 + 5_000
    const second = open()
    notifierOn(second, createEventBus(log), routeOf({ groupWindowMs: 1_000 })).start()
    expect(pending(second).map((n) => n.alerts.map((a) => a.deviceId))).toEqual([['gh-1', 'gh-2']])
  })

  it('reminds of a firing alert every repeat interval, across a restart, until it is acknowledged', async () => {
    const route = routeOf({ repeatIntervalMs: 60_000, on: ['firing'] })
    const first = open()
    const bus = createEventBus(log)
    const notifier = notifierOn(first, bus, route)
    bus.emit('alert', alertOf('gh-1', 'firing'))
    expect(pending(first).map((n) => n.kind)).toEqual(['firing'])
    clock = T0 + 59_999
    notifier.runDue()
    expect(pending(first)).toHaveLength(1)
    clock = T0 + 60_000
    notifier.runDue()
    expect(pending(first).map((n) => n.kind)).toEqual(['firing', 'repeat'])
    await notifier.stop()
    first.close()

    // Down for a while: the schedule is in the file; the next reminder is due at +120 s.
    clock = T0 + 125_000
    const second = open()
    expect(second.nextRepeatAt()).toBe(T0 + 120_000)
    const after = notifierOn(second, createEventBus(log), route)
    after.start()
    expect(pending(second).map((n) => n.kind)).toEqual(['firing', 'repeat', 'repeat'])
    // One reminder for the missed time, not one per missed interval; the next from now.
    expect(second.nextRepeatAt()).toBe(T0 + 185_000)

    acks.set('high-temperature:gh-1', { by: 'ops-app', at: clock })
    clock = T0 + 185_000
    after.runDue()
    expect(pending(second)).toHaveLength(3)
    expect(second.nextRepeatAt()).toBeUndefined()
  })

  it('stops reminders when the alert resolves, and a silence holds notifications but keeps the schedule', () => {
    const route = routeOf({ repeatIntervalMs: 60_000 })
    const outbox = open()
    const bus = createEventBus(log)
    const notifier = notifierOn(outbox, bus, route)
    silenced.add('gh-1')
    bus.emit('alert', alertOf('gh-1', 'firing'))
    expect(pending(outbox)).toEqual([])
    expect(outbox.nextRepeatAt()).toBe(T0 + 60_000)
    clock = T0 + 60_000
    notifier.runDue()
    expect(pending(outbox)).toEqual([])
    silenced.clear()
    clock = T0 + 120_000
    notifier.runDue()
    expect(pending(outbox).map((n) => n.kind)).toEqual(['repeat'])

    clock = T0 + 130_000
    bus.emit('alert', alertOf('gh-1', 'resolved', clock))
    expect(outbox.nextRepeatAt()).toBeUndefined()
    expect(pending(outbox).map((n) => n.kind)).toEqual(['repeat', 'resolved'])
  })

  it('closes grouping windows and sends reminders on its own timer (real clock)', async () => {
    const outbox = open()
    const bus = createEventBus(log)
    notifierOn(
      outbox,
      bus,
      routeOf({ groupWindowMs: 150, repeatIntervalMs: 400, on: ['firing'] }),
      true,
    )
    const t = Date.now()
    for (const id of ['gh-1', 'gh-2', 'gh-3']) bus.emit('alert', alertOf(id, 'firing', t))
    expect(pending(outbox)).toEqual([])
    await vi.waitFor(() => expect(pending(outbox)).toHaveLength(1), { timeout: 5_000 })
    expect(pending(outbox)[0]?.alerts.map((a) => a.deviceId)).toEqual(['gh-1', 'gh-2', 'gh-3'])
    // Reminders are one per alert, not grouped.
    await vi.waitFor(
      () => expect(pending(outbox).filter((n) => n.kind === 'repeat')).toHaveLength(3),
      { timeout: 5_000 },
    )
  })

  it('takes a reloaded file at once: new routes, channels created or closed only where they changed', async () => {
    const outbox = open()
    const bus = createEventBus(log)
    const created: string[] = []
    const closed: string[] = []
    const first: NotificationsConfig = {
      ...configOf(routeOf({ channels: ['a', 'b'] })),
    }
    const notifier = createNotifier(
      {
        bus,
        log,
        outbox,
        controls,
        tagsOf: () => ({}),
        routeAlert,
        render: () => ({ title: '', text: '' }),
        createChannel(settings) {
          created.push(`${settings.name}/${settings.timeoutMs}`)
          return {
            ...holdingChannel(settings.name),
            close: async () => void closed.push(settings.name),
          }
        },
        now: () => clock,
      },
      first,
    )
    notifiers.push(notifier)
    expect(created).toEqual(['a/600000', 'b/600000'])
    const [a, b] = first.channels as [ChannelSettings, ChannelSettings]
    notifier.setConfig({
      ...first,
      channels: [a, { ...b, timeoutMs: 5_000 }, { ...a, name: 'c' }],
      routes: [routeOf({ name: 'to-c', channels: ['c'] })],
    })
    // a unchanged: kept; b changed: created anew and the old one closed; c new.
    expect(created).toEqual(['a/600000', 'b/600000', 'b/5000', 'c/600000'])
    expect(closed).toEqual(['b'])
    bus.emit('alert', alertOf('gh-1', 'firing'))
    expect(pending(outbox).map((n) => [n.route, n.channel])).toEqual([['to-c', 'c']])
    expect(notifier.stats().channels).toEqual(['a', 'b', 'c'])
  })

  it('retries a dead-lettered notification by hand: back to pending, same id, attempts from zero', () => {
    const outbox = open()
    const bus = createEventBus(log)
    const notifier = notifierOn(outbox, bus, routeOf())
    bus.emit('alert', alertOf('gh-1', 'firing'))
    const [n] = pending(outbox)
    if (n === undefined) throw new Error('no notification')
    expect(notifier.retry(n.id)).toBe('not_failed')
    expect(notifier.retry('no-such-id')).toBe('not_found')
    outbox.markFailed(n.id, 3, 'refused for good: HTTP 410', T0 + 5)
    expect(notifier.list({ state: 'failed', limit: 10 })).toMatchObject([
      { notification: { id: n.id }, attempts: 3, lastError: 'refused for good: HTTP 410' },
    ])
    clock = T0 + 1_000
    expect(notifier.retry(n.id)).toBe('retried')
    expect(outbox.get(n.id)).toMatchObject({
      state: 'pending',
      attempts: 0,
      nextAttemptAt: T0 + 1_000,
    })
    expect(notifier.list({ state: 'failed', limit: 10 })).toEqual([])
  })

  it('prunes delivered notifications past their keep time, never pending ones', () => {
    const outbox = open()
    for (const id of ['a', 'b', 'c']) {
      outbox.add({
        id,
        channel: 'hook',
        route: 'ops',
        kind: 'firing',
        alerts: [alertOf('gh-1', 'firing')],
        title: '',
        text: '',
        createdAt: T0,
      })
    }
    outbox.markDelivered('a', 1, T0 + 10)
    outbox.markDelivered('b', 1, T0 + 1_000)
    expect(outbox.prune(T0 + 500, T0)).toBe(1)
    expect(outbox.get('a')).toBeUndefined()
    expect(outbox.get('b')?.state).toBe('delivered')
    expect(outbox.get('c')?.state).toBe('pending')
    expect(outbox.pendingStats()).toEqual({
      byChannel: new Map([['hook', 1]]),
      oldestCreatedAt: T0,
    })
  })
})
