import { existsSync } from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createEventBus, type EventBus } from '../../../src/bus/event-bus.ts'
import type { Alert } from '../../../src/contract/types.ts'
import {
  parseAckBody,
  parseAlertId,
  parseSilenceBody,
} from '../../../src/http/routes/alert-controls.ts'
import {
  type AlertControlsService,
  createAlertControls,
  type SilenceInput,
} from '../../../src/notify/alert-controls.ts'
import type { Silence } from '../../../src/notify/types.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

const NOW = Date.UTC(2026, 11, 2, 13, 0, 0)
const MIN = 60_000
const HOUR = 3_600_000
const log = createSilentLogger()

const firing = (over: Partial<Alert> = {}): Alert => ({
  id: 'high-temperature:gh-1',
  ruleId: 'high-temperature',
  kind: 'threshold',
  deviceId: 'gh-1',
  metric: 'temperature',
  severity: 'major',
  state: 'firing',
  value: 31,
  threshold: 30,
  since: NOW - 10 * MIN,
  ts: NOW - 10 * MIN,
  message: 'temperature 31 above 30',
  flapping: false,
  ...over,
})
const resolved = (over: Partial<Alert> = {}): Alert =>
  firing({ state: 'resolved', value: 28, since: NOW - MIN, ts: NOW - MIN, ...over })

const ANY: Silence['matchers'] = { rule: null, device: null, severity: null, tags: null }

describe('alert controls (acknowledgements and silences on a real SQLite file)', () => {
  let dir: TempDir
  let file: string
  let bus: EventBus
  let clock: number
  /** What the engine would say of each alert now. */
  let current: Map<string, Alert>
  const opened: AlertControlsService[] = []

  const open = (options: { historyMs?: number; maxOpenSilences?: number } = {}) => {
    const controls = createAlertControls(
      { bus, log, alertById: (id) => current.get(id), now: () => clock },
      { file, ...options },
    )
    opened.push(controls)
    return controls
  }
  /** Closes `controls` and opens the same file again, as a restart does. */
  const reopen = (controls: AlertControlsService) => {
    controls.close()
    bus = createEventBus(log)
    return open()
  }

  beforeEach(async () => {
    dir = await createTempDir('alert-controls-')
    file = path.join(dir.path, 'sub', 'alert-controls.db')
    bus = createEventBus(log)
    clock = NOW
    current = new Map([[firing().id, firing()]])
  })
  afterEach(async () => {
    for (const controls of opened.splice(0)) controls.close()
    await dir.remove()
  })

  describe('acknowledge', () => {
    it('acknowledges a firing alert: ackOf, withAck, the event, and the file (WAL)', () => {
      const controls = open()
      const events: Alert[] = []
      bus.on('test', 'alert.acknowledged', (alert) => events.push(alert))
      const result = controls.acknowledge(firing().id, 'ops-app', 'on it')
      const ack = { by: 'ops-app', at: NOW, comment: 'on it' }
      expect(result).toEqual({ ok: true, alert: { ...firing(), acknowledged: ack } })
      expect(controls.ackOf(firing().id)).toEqual(ack)
      expect(controls.withAck(firing())).toEqual({ ...firing(), acknowledged: ack })
      expect(events).toEqual([{ ...firing(), acknowledged: ack }])
      expect(existsSync(file)).toBe(true)
      const db = new Database(file, { readonly: true })
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
      db.close()
    })

    it('survives a restart: the same file opened again has the acknowledgement', () => {
      const first = open()
      first.acknowledge(firing().id, 'ops-app', undefined)
      const second = reopen(first)
      expect(second.ackOf(firing().id)).toEqual({ by: 'ops-app', at: NOW })
      expect(second.withAck(firing()).acknowledged).toEqual({ by: 'ops-app', at: NOW })
    })

    it('refuses an unknown alert (not_found) and a resolved one (not_firing), storing nothing', () => {
      const controls = open()
      expect(controls.acknowledge('nope:gh-1', 'a', undefined)).toMatchObject({
        ok: false,
        reason: 'not_found',
      })
      current.set(firing().id, resolved())
      expect(controls.acknowledge(firing().id, 'a', undefined)).toMatchObject({
        ok: false,
        reason: 'not_firing',
        message: expect.stringContaining('resolved'),
      })
      expect(controls.ackOf(firing().id)).toBeUndefined()
      expect(reopen(controls).ackOf(firing().id)).toBeUndefined()
    })

    it('ends when the alert resolves, in memory and in the file; the next firing starts unacknowledged', () => {
      const controls = open()
      controls.acknowledge(firing().id, 'ops-app', undefined)
      // A flapping notice of the same firing keeps it (same since).
      bus.emit('alert', firing({ flapping: true, ts: NOW }))
      expect(controls.ackOf(firing().id)).toBeDefined()
      bus.emit('alert', resolved())
      expect(controls.ackOf(firing().id)).toBeUndefined()
      const next = firing({ since: NOW, ts: NOW })
      expect(controls.withAck(next).acknowledged).toBeUndefined()
      expect(reopen(controls).ackOf(firing().id)).toBeUndefined()
    })

    it('ends on a firing that began later (a resolve it did not see)', () => {
      const controls = open()
      controls.acknowledge(firing().id, 'ops-app', undefined)
      bus.emit('alert', firing({ since: NOW, ts: NOW }))
      expect(controls.ackOf(firing().id)).toBeUndefined()
    })

    it('withAck leaves other alerts, a resolved state, and strips a stale acknowledged', () => {
      const controls = open()
      controls.acknowledge(firing().id, 'ops-app', undefined)
      const other = firing({ id: 'high-temperature:gh-2', deviceId: 'gh-2' })
      expect(controls.withAck(other)).toBe(other)
      expect(controls.withAck(resolved()).acknowledged).toBeUndefined()
      const stale = firing({ since: NOW, acknowledged: { by: 'x', at: 1 } })
      expect(controls.withAck(stale)).not.toHaveProperty('acknowledged')
    })

    it('a second acknowledgement replaces the first', () => {
      const controls = open()
      controls.acknowledge(firing().id, 'a', 'first')
      clock = NOW + MIN
      controls.acknowledge(firing().id, 'b', undefined)
      expect(reopen(controls).ackOf(firing().id)).toEqual({ by: 'b', at: NOW + MIN })
    })

    it('reconcile drops acks of alerts known in another firing or resolved, keeps unknown ones', () => {
      const controls = open()
      const other = firing({ id: 'low:gh-9', ruleId: 'low', deviceId: 'gh-9' })
      const third = firing({ id: 'low:gh-8', ruleId: 'low', deviceId: 'gh-8' })
      current.set(other.id, other)
      current.set(third.id, third)
      for (const id of [firing().id, other.id, third.id]) controls.acknowledge(id, 'a', undefined)
      const restarted = reopen(controls)
      // The store says: first still firing, second resolved, third unknown (InfluxDB not up yet).
      expect(restarted.reconcile([firing(), resolved({ id: other.id })])).toBe(1)
      expect(restarted.ackOf(firing().id)).toBeDefined()
      expect(restarted.ackOf(other.id)).toBeUndefined()
      expect(restarted.ackOf(third.id)).toBeDefined()
    })
  })

  describe('silences', () => {
    const input = (over: Partial<SilenceInput> = {}): SilenceInput => ({
      matchers: { ...ANY, device: ['gh-*'] },
      startsAt: NOW,
      endsAt: NOW + HOUR,
      comment: 'maintenance',
      ...over,
    })
    const create = (controls: AlertControlsService, over: Partial<SilenceInput> = {}) => {
      const result = controls.createSilence(input(over), 'ops-app')
      if (!result.ok) throw new Error(result.message)
      return result.silence
    }

    it('acts only within [startsAt, endsAt): pending, active, expired', () => {
      const controls = open()
      const silence = create(controls, { startsAt: NOW + MIN, endsAt: NOW + 2 * MIN })
      expect(silence).toMatchObject({
        createdBy: 'ops-app',
        createdAt: NOW,
        comment: 'maintenance',
      })
      expect(controls.isSilenced(firing(), {}, NOW)).toBe(false)
      expect(controls.silences('pending').map((s) => s.id)).toEqual([silence.id])
      expect(controls.isSilenced(firing(), {}, NOW + MIN)).toBe(true)
      expect(controls.isSilenced(firing(), {}, NOW + 2 * MIN - 1)).toBe(true)
      expect(controls.isSilenced(firing(), {}, NOW + 2 * MIN)).toBe(false)
      clock = NOW + MIN
      expect(controls.silences('active').map((s) => s.id)).toEqual([silence.id])
      clock = NOW + 2 * MIN
      expect(controls.silences('expired').map((s) => s.id)).toEqual([silence.id])
      expect(controls.silences('active')).toEqual([])
    })

    it('persists: created and expired silences are there after a restart', () => {
      const first = open()
      const kept = create(first)
      const ended = create(first, { comment: 'short' })
      clock = NOW + MIN
      const expired = first.expireSilence(ended.id)
      expect(expired).toMatchObject({ id: ended.id, endsAt: NOW + MIN })
      const second = reopen(first)
      expect(second.silences('active').map((s) => s.id)).toEqual([kept.id])
      expect(second.silences('expired')).toEqual([expired])
      expect(second.isSilenced(firing(), {}, NOW + 2 * MIN)).toBe(true)
      expect(second.silences()).toHaveLength(2)
    })

    it('expiring a pending silence means it never starts; expiring again changes nothing', () => {
      const controls = open()
      const silence = create(controls, { startsAt: NOW + HOUR, endsAt: NOW + 2 * HOUR })
      const expired = controls.expireSilence(silence.id)
      expect(expired).toMatchObject({ startsAt: NOW, endsAt: NOW })
      expect(controls.isSilenced(firing(), {}, NOW + HOUR + MIN)).toBe(false)
      clock = NOW + MIN
      expect(controls.expireSilence(silence.id)).toEqual(expired)
      expect(controls.expireSilence('no-such-id')).toBeUndefined()
    })

    it('keeps expired ones for the history time, then drops them (memory and file)', () => {
      const controls = open({ historyMs: HOUR })
      const silence = create(controls, { endsAt: NOW + MIN })
      clock = NOW + MIN + HOUR
      expect(controls.silences('expired').map((s) => s.id)).toEqual([silence.id])
      clock = NOW + MIN + HOUR + 1
      expect(controls.silences()).toEqual([])
      controls.close()
      const db = new Database(file, { readonly: true })
      expect(db.prepare('SELECT count(*) AS n FROM silences').get()).toEqual({ n: 0 })
      db.close()
    })

    it('refuses more than maxOpenSilences active or pending; an expired one frees a place', () => {
      const controls = open({ maxOpenSilences: 2 })
      const a = create(controls)
      create(controls)
      expect(controls.createSilence(input(), 'x')).toMatchObject({ ok: false, reason: 'too_many' })
      controls.expireSilence(a.id)
      expect(controls.createSilence(input(), 'x').ok).toBe(true)
    })

    it('matches as AlertMatchers: null any, globs, severity list, every tag (values globs)', () => {
      const controls = open()
      const silenced = (matchers: Partial<Silence['matchers']>, alert = firing(), tags = {}) => {
        const silence = create(controls, { matchers: { ...ANY, ...matchers } })
        const result = controls.isSilenced(alert, tags, NOW)
        controls.expireSilence(silence.id)
        return result
      }
      expect(silenced({ rule: ['high-*'] })).toBe(true)
      expect(silenced({ rule: ['low-*', 'high-temperature'] })).toBe(true)
      expect(silenced({ rule: ['low-*'] })).toBe(false)
      expect(silenced({ device: ['gh-?'] })).toBe(true)
      expect(silenced({ device: ['gh-??'] })).toBe(false)
      expect(silenced({ severity: ['critical', 'major'] })).toBe(true)
      expect(silenced({ severity: ['critical'] })).toBe(false)
      expect(silenced({ metric: ['temp*'] })).toBe(true)
      expect(silenced({ metric: ['humidity'] })).toBe(false)
      expect(silenced({ metric: null, rule: ['high-temperature'] })).toBe(true)
      // Every matcher given must match.
      expect(silenced({ rule: ['high-*'], severity: ['critical'] })).toBe(false)
      const tags = { site: 'greenhouse-2', zone: 'north' }
      expect(silenced({ tags: { site: 'greenhouse-*' } }, firing(), tags)).toBe(true)
      expect(silenced({ tags: { site: 'greenhouse-*', zone: 'south' } }, firing(), tags)).toBe(
        false,
      )
      // A device without the tag is not matched by it.
      expect(silenced({ tags: { site: '*' } }, firing(), {})).toBe(false)
    })
  })

  describe('API bodies', () => {
    it('ack: none, {} or {comment}; other fields and bad comments name the field', () => {
      expect(parseAckBody(undefined)).toEqual({ ok: true, value: {} })
      expect(parseAckBody({ comment: 'x' })).toEqual({ ok: true, value: { comment: 'x' } })
      expect(parseAckBody({ coment: 'x' })).toMatchObject({
        message: expect.stringContaining('"coment"'),
      })
      expect(parseAckBody({ comment: 5 })).toMatchObject({
        message: expect.stringContaining('"comment"'),
      })
      expect(parseAckBody({ comment: 'x'.repeat(1_001) })).toMatchObject({ ok: false })
      expect(parseAckBody('text')).toMatchObject({ ok: false })
      expect(parseAlertId('high-temperature:gh-1')).toEqual({
        ok: true,
        value: 'high-temperature:gh-1',
      })
      expect(parseAlertId('gh-1')).toMatchObject({ message: expect.stringContaining('"id"') })
      expect(parseAlertId('a:b:c')).toMatchObject({ ok: false })
    })

    it('silence: defaults, duration, and a 400 message naming each bad field', () => {
      const ok = parseSilenceBody(
        { matchers: { device: 'gh-*' }, duration: '2h', comment: 'c' },
        NOW,
      )
      expect(ok).toEqual({
        ok: true,
        value: {
          matchers: { rule: null, device: ['gh-*'], severity: null, metric: null, tags: null },
          startsAt: NOW,
          endsAt: NOW + 2 * HOUR,
          comment: 'c',
        },
      })
      const iso = parseSilenceBody(
        {
          matchers: { severity: ['major'], tags: { site: 'gh' } },
          startsAt: '2026-12-02T14:00:00Z',
          endsAt: NOW + 2 * HOUR,
          comment: 'c',
        },
        NOW,
      )
      expect(iso).toMatchObject({
        ok: true,
        value: { startsAt: NOW + HOUR, endsAt: NOW + 2 * HOUR },
      })
      const field = (body: Record<string, unknown>) => {
        const result = parseSilenceBody(
          { matchers: { device: 'gh-1' }, duration: '1h', comment: 'c', ...body },
          NOW,
        )
        return result.ok ? 'accepted' : result.message
      }
      expect(field({ matchers: undefined })).toContain('"matchers"')
      expect(field({ matchers: {} })).toContain('"matchers"')
      expect(field({ matchers: { device: ['ok', 'bad/id'] } })).toContain('"matchers.device[1]"')
      expect(field({ matchers: { severity: 'loud' } })).toContain('"matchers.severity"')
      expect(field({ matchers: { devise: 'x' } })).toContain('"devise"')
      expect(field({ matchers: { tags: { site: [] } } })).toContain('"matchers.tags.site"')
      expect(field({ duration: 'soon' })).toContain('"duration"')
      expect(field({ duration: undefined })).toContain('"endsAt"')
      expect(field({ endsAt: NOW + HOUR })).toContain('not both')
      expect(field({ duration: undefined, endsAt: 'yesterday' })).toContain('"endsAt"')
      expect(field({ duration: undefined, endsAt: NOW - 1 })).toContain('"endsAt"')
      expect(
        field({ startsAt: NOW + 2 * HOUR, duration: undefined, endsAt: NOW + HOUR }),
      ).toContain('must be after startsAt')
      expect(field({ comment: '' })).toContain('"comment"')
      expect(field({ comment: undefined })).toContain('"comment"')
      expect(field({ extra: 1 })).toContain('"extra"')
    })
  })
})
