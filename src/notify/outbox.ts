import type { Alert } from '../contract/types.ts'
import { openStateFile } from '../store/state-file.ts'
import type { Notification, NotificationKind } from './types.ts'

/** The outbox's file name in DATA_DIR. */
export const OUTBOX_FILE = 'outbox.db'

export const OUTBOX_STATES = ['pending', 'delivered', 'failed'] as const
export type OutboxState = (typeof OUTBOX_STATES)[number]

/** A notification as the outbox holds it: the message, and where its delivery stands. */
export interface StoredNotification {
  notification: Notification
  state: OutboxState
  /** Attempts made so far (0: never tried). */
  attempts: number
  /** Epoch ms of the next attempt (pending), or of the last change (delivered, failed). */
  nextAttemptAt: number
  /** The last failed attempt's error; kept once delivered or dead-lettered. */
  lastError: string | null
  updatedAt: number
}

/** Alert transitions a route collects in its grouping window, for one channel and kind. */
export interface OpenGroup {
  route: string
  channel: string
  kind: NotificationKind
  /** Epoch ms the window closes: the first item's arrival plus the route's groupWindowMs. */
  closesAt: number
  /** The newest transition of each alert, in arrival order of their first transition. */
  alerts: Alert[]
}

/** A repeat schedule of one firing alert for one (route, channel). */
export interface RepeatSchedule {
  alertId: string
  route: string
  channel: string
  /** The alert object as last notified (the reminder is rendered from it). */
  alert: Alert
  lastAt: number
  nextAt: number
}

export interface PendingStats {
  /** Pending notifications per channel (channels with none are absent). */
  byChannel: Map<string, number>
  /** createdAt of the oldest pending notification, undefined when none is pending. */
  oldestCreatedAt: number | undefined
}

/**
 * The durable outbox of notifications (DESIGN §10): a SQLite file in DATA_DIR, whatever STORE is.
 * Every write is a transaction committed before the call returns, so a notification written while
 * an alert transition is handled survives a crash of the process (kill -9), as do the items of an
 * open grouping window and the repeat schedules. Delivery reads from here and writes each
 * attempt's outcome back. Synchronous on purpose: the notifier writes in the bus's `alert`
 * listener, in the same step the transition is handled, and nothing waits on a receiver.
 */
export interface Outbox {
  /** Runs `fn` in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T
  /** Stores a new notification, pending, due at once. */
  add(notification: Notification): void
  get(id: string): StoredNotification | undefined
  /** Pending notifications of `channel` due at `nowMs`, oldest first, skipping `exclude`. */
  due(
    channel: string,
    nowMs: number,
    limit: number,
    exclude: ReadonlySet<string>,
  ): StoredNotification[]
  /** The earliest next attempt after `afterMs` among pending notifications of `channel`. */
  nextDueAfter(channel: string, afterMs: number): number | undefined
  markDelivered(id: string, attempts: number, nowMs: number): void
  markRetry(id: string, attempts: number, nextAttemptAt: number, error: string, nowMs: number): void
  markFailed(id: string, attempts: number, error: string, nowMs: number): void
  /** A failed notification back to pending, due now, attempts from zero; false if not failed. */
  retry(id: string, nowMs: number): boolean
  /** Newest first. */
  list(query: { state: OutboxState; limit: number; channel?: string }): StoredNotification[]
  pendingStats(): PendingStats
  /** Channels with a pending notification (a channel removed from the file keeps its rows). */
  pendingChannels(): string[]

  /** Adds a transition to the open group of (route, channel, kind), opening one if none is. */
  addToGroup(
    group: { route: string; channel: string; kind: NotificationKind },
    alert: Alert,
    nowMs: number,
    windowMs: number,
  ): void
  /** Groups whose window has closed at `nowMs`. */
  dueGroups(nowMs: number): OpenGroup[]
  nextGroupCloseAt(): number | undefined
  /** Removes a group's items and stores its notification (if any), in one transaction. */
  closeGroup(group: OpenGroup, notification: Notification | null): void

  /** Starts (or restarts) the repeat schedule of an alert for (route, channel). */
  scheduleRepeat(schedule: RepeatSchedule): void
  /** Ends every repeat schedule of the alert (resolved, acknowledged). */
  clearRepeats(alertId: string): void
  removeRepeat(alertId: string, route: string, channel: string): void
  dueRepeats(nowMs: number): RepeatSchedule[]
  nextRepeatAt(): number | undefined

  /** Deletes delivered rows older than `deliveredBefore` and failed ones older than `failedBefore`. */
  prune(deliveredBefore: number, failedBefore: number): number
  close(): void
}

interface NotificationRow {
  id: string
  channel: string
  route: string
  kind: NotificationKind
  title: string
  text: string
  alerts: string
  created_at: number
  state: OutboxState
  attempts: number
  next_at: number
  last_error: string | null
  updated_at: number
}

interface GroupRow {
  route: string
  channel: string
  kind: NotificationKind
  closes_at: number
  alert_id: string
  alert: string
}

interface RepeatRow {
  alert_id: string
  route: string
  channel: string
  alert: string
  last_at: number
  next_at: number
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS notifications (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  channel TEXT NOT NULL,
  route TEXT NOT NULL,
  kind TEXT NOT NULL,
  title TEXT NOT NULL,
  text TEXT NOT NULL,
  alerts TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL,
  last_error TEXT,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, channel, next_at);
CREATE INDEX IF NOT EXISTS notifications_updated ON notifications (state, updated_at);
CREATE TABLE IF NOT EXISTS group_items (
  route TEXT NOT NULL,
  channel TEXT NOT NULL,
  kind TEXT NOT NULL,
  alert_id TEXT NOT NULL,
  closes_at INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  alert TEXT NOT NULL,
  PRIMARY KEY (route, channel, kind, alert_id)
);
CREATE INDEX IF NOT EXISTS group_items_closes ON group_items (closes_at);
CREATE INDEX IF NOT EXISTS group_items_seq ON group_items (seq);
CREATE TABLE IF NOT EXISTS repeats (
  alert_id TEXT NOT NULL,
  route TEXT NOT NULL,
  channel TEXT NOT NULL,
  alert TEXT NOT NULL,
  last_at INTEGER NOT NULL,
  next_at INTEGER NOT NULL,
  PRIMARY KEY (alert_id, route, channel)
);
CREATE INDEX IF NOT EXISTS repeats_next ON repeats (next_at);
`

export function openOutbox(options: { file: string }): Outbox {
  const { file } = options
  const db = openStateFile(file, SCHEMA, 'the outbox')

  const insert = db.prepare(
    `INSERT INTO notifications (id, channel, route, kind, title, text, alerts, created_at, state, attempts, next_at, updated_at)
     VALUES (@id, @channel, @route, @kind, @title, @text, @alerts, @createdAt, 'pending', 0, @createdAt, @createdAt)`,
  )
  const byId = db.prepare<[string], NotificationRow>('SELECT * FROM notifications WHERE id = ?')
  const dueRows = db.prepare<[string, number, number], NotificationRow>(
    `SELECT * FROM notifications WHERE state = 'pending' AND channel = ? AND next_at <= ?
     ORDER BY next_at, seq LIMIT ?`,
  )
  const nextDue = db.prepare<[string, number], { at: number | null }>(
    "SELECT min(next_at) AS at FROM notifications WHERE state = 'pending' AND channel = ? AND next_at > ?",
  )
  const setDelivered = db.prepare<[number, number, number, string]>(
    "UPDATE notifications SET state = 'delivered', attempts = ?, next_at = ?, updated_at = ? WHERE id = ? AND state = 'pending'",
  )
  const setRetry = db.prepare<[number, number, string, number, string]>(
    "UPDATE notifications SET attempts = ?, next_at = ?, last_error = ?, updated_at = ? WHERE id = ? AND state = 'pending'",
  )
  const setFailed = db.prepare<[number, number, string, number, string]>(
    "UPDATE notifications SET state = 'failed', attempts = ?, next_at = ?, last_error = ?, updated_at = ? WHERE id = ? AND state = 'pending'",
  )
  const setRetryByHand = db.prepare<[number, number, string]>(
    "UPDATE notifications SET state = 'pending', attempts = 0, next_at = ?, updated_at = ? WHERE id = ? AND state = 'failed'",
  )
  const listAll = db.prepare<[OutboxState, number], NotificationRow>(
    'SELECT * FROM notifications WHERE state = ? ORDER BY updated_at DESC, seq DESC LIMIT ?',
  )
  const listChannel = db.prepare<[OutboxState, string, number], NotificationRow>(
    'SELECT * FROM notifications WHERE state = ? AND channel = ? ORDER BY updated_at DESC, seq DESC LIMIT ?',
  )
  const pendingCounts = db.prepare<[], { channel: string; count: number; oldest: number }>(
    "SELECT channel, count(*) AS count, min(created_at) AS oldest FROM notifications WHERE state = 'pending' GROUP BY channel",
  )
  const pruneRows = db.prepare<[number, number]>(
    `DELETE FROM notifications WHERE (state = 'delivered' AND updated_at < ?)
       OR (state = 'failed' AND updated_at < ?)`,
  )

  // Index lookups only: a storm of 200 alerts into one window must not cost 200 scans of it.
  const openGroupOf = db.prepare<[string, string, string], { closes_at: number }>(
    'SELECT closes_at FROM group_items WHERE route = ? AND channel = ? AND kind = ? LIMIT 1',
  )
  const lastSeq = db.prepare<[], { seq: number | null }>('SELECT max(seq) AS seq FROM group_items')
  const itemSeq = db.prepare<[string, string, string, string], { seq: number }>(
    'SELECT seq FROM group_items WHERE route = ? AND channel = ? AND kind = ? AND alert_id = ?',
  )
  const upsertItem = db.prepare(
    `INSERT INTO group_items (route, channel, kind, alert_id, closes_at, seq, alert)
     VALUES (@route, @channel, @kind, @alertId, @closesAt, @seq, @alert)
     ON CONFLICT (route, channel, kind, alert_id) DO UPDATE SET alert = excluded.alert`,
  )
  const dueItems = db.prepare<[number], GroupRow>(
    'SELECT * FROM group_items WHERE closes_at <= ? ORDER BY route, channel, kind, seq',
  )
  const nextClose = db.prepare<[], { at: number | null }>(
    'SELECT min(closes_at) AS at FROM group_items',
  )
  const deleteGroup = db.prepare<[string, string, string]>(
    'DELETE FROM group_items WHERE route = ? AND channel = ? AND kind = ?',
  )

  const upsertRepeat = db.prepare(
    `INSERT INTO repeats (alert_id, route, channel, alert, last_at, next_at)
     VALUES (@alertId, @route, @channel, @alert, @lastAt, @nextAt)
     ON CONFLICT (alert_id, route, channel) DO UPDATE SET alert = excluded.alert,
       last_at = excluded.last_at, next_at = excluded.next_at`,
  )
  const deleteRepeats = db.prepare<[string]>('DELETE FROM repeats WHERE alert_id = ?')
  const deleteRepeat = db.prepare<[string, string, string]>(
    'DELETE FROM repeats WHERE alert_id = ? AND route = ? AND channel = ?',
  )
  const dueRepeatRows = db.prepare<[number], RepeatRow>(
    'SELECT * FROM repeats WHERE next_at <= ? ORDER BY next_at',
  )
  const nextRepeat = db.prepare<[], { at: number | null }>('SELECT min(next_at) AS at FROM repeats')

  const toStored = (row: NotificationRow): StoredNotification => ({
    notification: toNotification(row),
    state: row.state,
    attempts: row.attempts,
    nextAttemptAt: row.next_at,
    lastError: row.last_error,
    updatedAt: row.updated_at,
  })

  const add = (n: Notification) => {
    insert.run({
      id: n.id,
      channel: n.channel,
      route: n.route,
      kind: n.kind,
      title: n.title,
      text: n.text,
      alerts: JSON.stringify(n.alerts),
      createdAt: n.createdAt,
    })
  }

  return {
    transaction: (fn) => db.transaction(fn)(),
    add,

    get(id) {
      const row = byId.get(id)
      return row === undefined ? undefined : toStored(row)
    },

    due(channel, nowMs, limit, exclude) {
      // Over-fetch by what is in flight: those rows are still pending and come first.
      return dueRows
        .all(channel, nowMs, limit + exclude.size)
        .filter((row) => !exclude.has(row.id))
        .slice(0, limit)
        .map(toStored)
    },

    nextDueAfter: (channel, afterMs) => nextDue.get(channel, afterMs)?.at ?? undefined,

    markDelivered(id, attempts, nowMs) {
      setDelivered.run(attempts, nowMs, nowMs, id)
    },
    markRetry(id, attempts, nextAttemptAt, error, nowMs) {
      setRetry.run(attempts, nextAttemptAt, error, nowMs, id)
    },
    markFailed(id, attempts, error, nowMs) {
      setFailed.run(attempts, nowMs, error, nowMs, id)
    },
    retry: (id, nowMs) => setRetryByHand.run(nowMs, nowMs, id).changes === 1,

    list({ state, limit, channel }) {
      const rows =
        channel === undefined ? listAll.all(state, limit) : listChannel.all(state, channel, limit)
      return rows.map(toStored)
    },

    pendingStats() {
      const byChannel = new Map<string, number>()
      let oldestCreatedAt: number | undefined
      for (const row of pendingCounts.all()) {
        byChannel.set(row.channel, row.count)
        if (oldestCreatedAt === undefined || row.oldest < oldestCreatedAt)
          oldestCreatedAt = row.oldest
      }
      return { byChannel, oldestCreatedAt }
    },

    pendingChannels: () => pendingCounts.all().map((row) => row.channel),

    addToGroup({ route, channel, kind }, alert, nowMs, windowMs) {
      db.transaction(() => {
        const open = openGroupOf.get(route, channel, kind)
        const known = itemSeq.get(route, channel, kind, alert.id)
        upsertItem.run({
          route,
          channel,
          kind,
          alertId: alert.id,
          closesAt: open?.closes_at ?? nowMs + windowMs,
          // Arrival order across every group: an alert's first transition keeps its place.
          seq: known?.seq ?? (lastSeq.get()?.seq ?? 0) + 1,
          alert: JSON.stringify(alert),
        })
      })()
    },

    dueGroups(nowMs) {
      const groups = new Map<string, OpenGroup>()
      for (const row of dueItems.all(nowMs)) {
        const key = `${row.route}\u0000${row.channel}\u0000${row.kind}`
        let group = groups.get(key)
        if (group === undefined) {
          group = {
            route: row.route,
            channel: row.channel,
            kind: row.kind,
            closesAt: row.closes_at,
            alerts: [],
          }
          groups.set(key, group)
        }
        group.alerts.push(JSON.parse(row.alert) as Alert)
      }
      return [...groups.values()]
    },

    nextGroupCloseAt: () => nextClose.get()?.at ?? undefined,

    closeGroup(group, notification) {
      db.transaction(() => {
        deleteGroup.run(group.route, group.channel, group.kind)
        if (notification !== null) add(notification)
      })()
    },

    scheduleRepeat(s) {
      upsertRepeat.run({
        alertId: s.alertId,
        route: s.route,
        channel: s.channel,
        alert: JSON.stringify(s.alert),
        lastAt: s.lastAt,
        nextAt: s.nextAt,
      })
    },
    clearRepeats(alertId) {
      deleteRepeats.run(alertId)
    },
    removeRepeat(alertId, route, channel) {
      deleteRepeat.run(alertId, route, channel)
    },
    dueRepeats: (nowMs) =>
      dueRepeatRows.all(nowMs).map((row) => ({
        alertId: row.alert_id,
        route: row.route,
        channel: row.channel,
        alert: JSON.parse(row.alert) as Alert,
        lastAt: row.last_at,
        nextAt: row.next_at,
      })),
    nextRepeatAt: () => nextRepeat.get()?.at ?? undefined,

    prune: (deliveredBefore, failedBefore) => pruneRows.run(deliveredBefore, failedBefore).changes,

    close() {
      if (db.open) db.close()
    },
  }
}

function toNotification(row: NotificationRow): Notification {
  return {
    id: row.id,
    channel: row.channel,
    route: row.route,
    kind: row.kind,
    alerts: JSON.parse(row.alerts) as Alert[],
    title: row.title,
    text: row.text,
    createdAt: row.created_at,
  }
}
