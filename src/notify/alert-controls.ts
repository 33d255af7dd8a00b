import { randomUUID } from 'node:crypto'
import type Database from 'better-sqlite3'
import type { EventBus } from '../bus/event-bus.ts'
import type { Alert, AlertAck } from '../contract/types.ts'
import { openStateFile } from '../store/state-file.ts'
import type { Logger } from '../telemetry/logger.ts'
import { alertMatches } from './router.ts'
import type { AlertControls, Silence } from './types.ts'

/** The file of acknowledgements and silences in DATA_DIR. */
export const ALERT_CONTROLS_FILE = 'alert-controls.db'
/** Expired silences stay listed (`state=expired`) this long after their end, then are dropped. */
export const SILENCE_HISTORY_MS = 7 * 86_400_000
/**
 * Active and pending silences at once. Each notification is checked against every one of them,
 * and a client in a loop must not grow the file without bound; past it a new one is refused.
 */
export const MAX_OPEN_SILENCES = 1_000

export const SILENCE_STATES = ['active', 'pending', 'expired'] as const
/** A silence now: in its window, not yet begun, or over (its end passed, or it was expired). */
export type SilenceState = (typeof SILENCE_STATES)[number]

export function silenceState(silence: Silence, nowMs: number): SilenceState {
  if (nowMs >= silence.endsAt) return 'expired'
  return nowMs < silence.startsAt ? 'pending' : 'active'
}

/** What a silence is made of; the API validates it (src/http/routes/alert-controls.ts). */
export interface SilenceInput {
  matchers: Silence['matchers']
  startsAt: number
  endsAt: number
  comment: string
}

export type AckOutcome =
  | { ok: true; alert: Alert }
  | { ok: false; reason: 'not_found' | 'not_firing'; message: string }

/**
 * A change to acknowledgements or silences, as one instance tells the others (with REDIS_URL:
 * src/cluster/cluster-alert-controls.ts). Applying one is idempotent and order-free: a silence's
 * window only shrinks (the smaller `endsAt` wins), an ack of a later firing (or a later ack of the
 * same firing) replaces an earlier one, and an ack ends only for the firing it belonged to.
 */
export type AlertControlChange =
  | { kind: 'ack'; alertId: string; since: number; ack: AlertAck }
  | { kind: 'ack-ended'; alertId: string; since: number }
  | { kind: 'silence'; silence: Silence }

export type SilenceOutcome =
  | { ok: true; silence: Silence }
  | { ok: false; reason: 'too_many'; message: string }

/**
 * Acknowledgements and silences (issue 15, point 4): what the outbox asks before it notifies
 * (AlertControls), and what the HTTP API changes.
 */
export interface AlertControlsService extends AlertControls {
  /**
   * Acknowledges the current firing of `alertId` as `by`: persisted, then `alert.acknowledged`
   * is emitted with the alert as it is now (the publisher re-publishes the retained alert).
   * Again on an acknowledged alert: the newer acknowledgement replaces the older.
   */
  acknowledge(alertId: string, by: string, comment: string | undefined): AckOutcome
  /** The alert with its acknowledgement when its current firing has one, without otherwise. */
  withAck(alert: Alert): Alert
  /**
   * Start-up, after the restore: drops acknowledgements of alerts that are known (`current`) and
   * no longer in the acknowledged firing. An alert not in `current` keeps its acknowledgement (the
   * store may not have answered yet). Returns how many were dropped.
   */
  reconcile(current: readonly Alert[]): number
  createSilence(input: SilenceInput, createdBy: string): SilenceOutcome
  /** Newest first; `state` narrows to one state now. */
  silences(state?: SilenceState): Silence[]
  /** Ends a silence now (a pending one never starts); undefined when the id is unknown. */
  expireSilence(id: string): Silence | undefined
  /**
   * A change made on another instance: kept in memory and in the file like one made here, but
   * neither announced again (`onChange`) nor re-published (`alert.acknowledged`: the instance that
   * took the ack did). Returns false when it changed nothing (already known, or older).
   */
  apply(change: AlertControlChange): boolean
  /** Unsubscribes and closes the file. Idempotent. */
  close(): void
}

export interface AlertControlsDeps {
  bus: EventBus
  log: Logger
  /** The alert's current state (firing or resolved), undefined when there is none. */
  alertById: (alertId: string) => Alert | undefined
  /** Wall clock for `at`, `createdAt` and silence windows; tests pin it. */
  now?: () => number
  /**
   * Each change made here, once it is in the file (with REDIS_URL, shared with the other
   * instances). Not called for `apply`, nor for reconcile's drops: a starting instance's own
   * store may be behind the cluster's.
   */
  onChange?: (change: AlertControlChange) => void
}

export interface AlertControlsOptions {
  file: string
  historyMs?: number
  maxOpenSilences?: number
}

const OWNER = 'alert-controls'

interface HeldAck {
  /** `since` of the firing acknowledged: a later firing is another one. */
  since: number
  ack: AlertAck
}

interface AckRow {
  alert_id: string
  since: number
  by: string
  at: number
  comment: string | null
}

/**
 * Opens (creates) the file and loads what it holds. Acks and silences are few and read on the
 * notification path, so they live in memory too; the file is written before a change is answered.
 */
export function createAlertControls(
  deps: AlertControlsDeps,
  options: AlertControlsOptions,
): AlertControlsService {
  const log = deps.log.child({ module: 'alert-controls' })
  const now = deps.now ?? Date.now
  const historyMs = options.historyMs ?? SILENCE_HISTORY_MS
  const maxOpen = options.maxOpenSilences ?? MAX_OPEN_SILENCES
  const db = openFile(options.file)

  const insertAck = db.prepare<[string, number, string, number, string | null]>(
    'INSERT OR REPLACE INTO acks (alert_id, since, by, at, comment) VALUES (?, ?, ?, ?, ?)',
  )
  const deleteAck = db.prepare<[string]>('DELETE FROM acks WHERE alert_id = ?')
  const putSilence = db.prepare<[string, number, string]>(
    'INSERT OR REPLACE INTO silences (id, ends_at, body) VALUES (?, ?, ?)',
  )
  const pruneSilences = db.prepare<[number]>('DELETE FROM silences WHERE ends_at < ?')
  const silenceRows = db.prepare<[], { body: string }>('SELECT body FROM silences')

  const acks = new Map<string, HeldAck>()
  for (const row of db.prepare<[], AckRow>('SELECT * FROM acks').all()) {
    const ack: AlertAck = { by: row.by, at: row.at }
    if (row.comment !== null) ack.comment = row.comment
    acks.set(row.alert_id, { since: row.since, ack })
  }

  /** Every silence kept, by id; `open` holds those not yet expired (what isSilenced reads). */
  const kept = new Map<string, Silence>()
  let open: Silence[] = []
  pruneSilences.run(now() - historyMs)
  for (const row of silenceRows.all()) {
    const silence = JSON.parse(row.body) as Silence
    kept.set(silence.id, silence)
  }
  const refreshOpen = (nowMs: number) => {
    open = [...kept.values()].filter((s) => s.endsAt > nowMs)
  }
  refreshOpen(now())
  if (acks.size > 0 || kept.size > 0) {
    log.info({ acks: acks.size, silences: kept.size }, 'acknowledgements and silences loaded')
  }

  const changed = (change: AlertControlChange) => {
    try {
      deps.onChange?.(change)
    } catch (err) {
      log.error({ err, kind: change.kind }, 'change not shared with the other instances')
    }
  }

  const dropAck = (alertId: string, why: string, announce: boolean) => {
    const held = acks.get(alertId)
    deleteAck.run(alertId)
    acks.delete(alertId)
    log.info({ alertId }, `acknowledgement ended: ${why}`)
    if (announce && held !== undefined) changed({ kind: 'ack-ended', alertId, since: held.since })
  }

  const putKept = (silence: Silence) => {
    putSilence.run(silence.id, silence.endsAt, JSON.stringify(silence))
    kept.set(silence.id, silence)
  }

  // An acknowledgement belongs to one firing: it ends when the alert resolves, and a firing that
  // began later (a transition this instance did not see end the old one) is a new one.
  deps.bus.on(OWNER, 'alert', (alert) => {
    const held = acks.get(alert.id)
    if (held === undefined) return
    if (alert.state !== 'firing') dropAck(alert.id, 'the alert resolved', true)
    else if (alert.since !== held.since) dropAck(alert.id, 'the alert fired anew', true)
  })

  const forget = (nowMs: number) => {
    const horizon = nowMs - historyMs
    let dropped = false
    for (const [id, silence] of kept) {
      if (silence.endsAt < horizon) {
        kept.delete(id)
        dropped = true
      }
    }
    if (dropped) pruneSilences.run(horizon)
  }

  let closed = false
  return {
    ackOf: (alertId) => acks.get(alertId)?.ack,

    isSilenced(alert, tags, nowMs) {
      // The routes' matching (router.ts), so a silence takes exactly what a route would.
      for (const silence of open) {
        if (
          nowMs >= silence.startsAt &&
          nowMs < silence.endsAt &&
          alertMatches(silence.matchers, alert, tags)
        ) {
          return true
        }
      }
      return false
    },

    acknowledge(alertId, by, comment) {
      const alert = deps.alertById(alertId)
      if (alert === undefined) {
        return { ok: false, reason: 'not_found', message: `no alert ${alertId}` }
      }
      if (alert.state !== 'firing') {
        return {
          ok: false,
          reason: 'not_firing',
          message: `alert ${alertId} is ${alert.state}: only a firing alert can be acknowledged`,
        }
      }
      const ack: AlertAck = { by, at: now() }
      if (comment !== undefined) ack.comment = comment
      insertAck.run(alertId, alert.since, by, ack.at, comment ?? null)
      acks.set(alertId, { since: alert.since, ack })
      const acknowledged: Alert = { ...alert, acknowledged: ack }
      log.info({ alertId, by }, 'alert acknowledged')
      changed({ kind: 'ack', alertId, since: alert.since, ack })
      deps.bus.emit('alert.acknowledged', acknowledged)
      return { ok: true, alert: acknowledged }
    },

    withAck(alert) {
      const held = acks.get(alert.id)
      if (held !== undefined && alert.state === 'firing' && alert.since === held.since) {
        return { ...alert, acknowledged: held.ack }
      }
      if (alert.acknowledged === undefined) return alert
      // Adopted from another instance's retained message, or stale: not this firing's.
      const { acknowledged: _, ...rest } = alert
      return rest
    },

    reconcile(current) {
      let dropped = 0
      for (const alert of current) {
        const held = acks.get(alert.id)
        if (held === undefined) continue
        if (alert.state !== 'firing' || alert.since !== held.since) {
          dropAck(alert.id, 'the alert is no longer in the acknowledged firing', false)
          dropped++
        }
      }
      return dropped
    },

    createSilence(input, createdBy) {
      const nowMs = now()
      refreshOpen(nowMs)
      if (open.length >= maxOpen) {
        return {
          ok: false,
          reason: 'too_many',
          message: `${open.length} silences are active or pending (at most ${maxOpen}): expire some first`,
        }
      }
      const silence: Silence = {
        id: randomUUID(),
        matchers: input.matchers,
        startsAt: input.startsAt,
        endsAt: input.endsAt,
        comment: input.comment,
        createdBy,
        createdAt: nowMs,
      }
      putKept(silence)
      open.push(silence)
      forget(nowMs)
      changed({ kind: 'silence', silence })
      log.info(
        { silenceId: silence.id, createdBy, startsAt: silence.startsAt, endsAt: silence.endsAt },
        'silence created',
      )
      return { ok: true, silence }
    },

    silences(state) {
      const nowMs = now()
      forget(nowMs)
      const all = [...kept.values()].sort((a, b) => b.createdAt - a.createdAt)
      return state === undefined ? all : all.filter((s) => silenceState(s, nowMs) === state)
    },

    expireSilence(id) {
      const silence = kept.get(id)
      if (silence === undefined) return undefined
      const nowMs = now()
      if (silenceState(silence, nowMs) === 'expired') return silence
      // A pending one is over before it began: its window is empty, at now.
      const expired: Silence = {
        ...silence,
        startsAt: Math.min(silence.startsAt, nowMs),
        endsAt: nowMs,
      }
      putKept(expired)
      refreshOpen(nowMs)
      log.info({ silenceId: id }, 'silence expired')
      changed({ kind: 'silence', silence: expired })
      return expired
    },

    apply(change) {
      if (closed) return false
      if (change.kind === 'silence') {
        const { silence } = change
        const known = kept.get(silence.id)
        // Expiring only moves the end earlier: the earlier end is the newer news.
        if (known !== undefined && known.endsAt <= silence.endsAt) return false
        if (silence.endsAt < now() - historyMs) return false
        putKept(silence)
        refreshOpen(now())
        log.info({ silenceId: silence.id, endsAt: silence.endsAt }, 'silence from another instance')
        return true
      }
      const held = acks.get(change.alertId)
      if (change.kind === 'ack-ended') {
        if (held === undefined || held.since !== change.since) return false
        dropAck(change.alertId, 'ended on another instance', false)
        return true
      }
      if (
        held !== undefined &&
        (held.since > change.since || (held.since === change.since && held.ack.at >= change.ack.at))
      ) {
        return false
      }
      const ack: AlertAck = { by: change.ack.by, at: change.ack.at }
      if (change.ack.comment !== undefined) ack.comment = change.ack.comment
      insertAck.run(change.alertId, change.since, ack.by, ack.at, ack.comment ?? null)
      acks.set(change.alertId, { since: change.since, ack })
      log.info({ alertId: change.alertId, by: ack.by }, 'acknowledgement from another instance')
      return true
    },

    close() {
      if (closed) return
      closed = true
      deps.bus.removeOwner(OWNER)
      if (db.open) db.close()
    },
  }
}

function openFile(file: string): Database.Database {
  return openStateFile(
    file,
    `CREATE TABLE IF NOT EXISTS acks (
      alert_id TEXT PRIMARY KEY,
      since INTEGER NOT NULL,
      by TEXT NOT NULL,
      at INTEGER NOT NULL,
      comment TEXT
    );
    CREATE TABLE IF NOT EXISTS silences (
      id TEXT PRIMARY KEY,
      ends_at INTEGER NOT NULL,
      body TEXT NOT NULL
    )`,
    'the acknowledgements and silences file',
  )
}
