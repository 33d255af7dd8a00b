import { $, el, showMessage, timeEl } from './dom.js'

/**
 * What the page shows of notifications (README "Notifications", "Dashboard"): an Ack button on
 * each firing alert, the silences (create, list, expire) and the outbox (pending and dead-lettered
 * notifications, with a retry for the latter). Acknowledging, silencing and retrying need the
 * `write-alerts` role when the gateway requires authentication; an app without it gets the
 * gateway's 403 message where it clicked. Nothing here is on MQTT: silences and the outbox come
 * from the API, refetched on a timer and after each live alert transition.
 */

/** Notifications of each state asked for at once; the outbox answers newest change first. */
const OUTBOX_LIMIT = 50
/** While something waits for delivery the outbox changes within seconds; else rarely. */
const OUTBOX_BUSY_REFRESH_MS = 2_000
const OUTBOX_IDLE_REFRESH_MS = 15_000
/** After a live transition: enough for the notifier to have written its notifications. */
const OUTBOX_SOON_MS = 700
const SILENCES_REFRESH_MS = 60_000
const EXPIRED_SHOWN = 10
const SILENCE_STATES = ['active', 'pending', 'expired']

/**
 * @param {{
 *   api: (path: string, options?: { method?: string, body?: unknown, signal?: AbortSignal }) => Promise<any>,
 *   loadFailure: (what: string, err: Error & { status?: number }) => string,
 *   onAlert: (alert: object) => void,
 * }} deps
 */
export function createNotificationPanels({ api, loadFailure, onAlert }) {
  const state = {
    /** As the API answered them, newest first. */
    silences: [],
    /** Silence id -> the state it was rendered in (a silence's state changes with time). */
    silenceStates: new Map(),
    failed: [],
    pending: [],
    /** The alert the Ack dialog is open for. */
    acking: null,
    /** Notification or silence id -> the message of its last action that failed. */
    actionErrors: new Map(),
    /** Ids with an action in flight: their button is disabled. */
    busy: new Set(),
    /** False after a 403 or 404: the outbox is not polled again until the next load. */
    outboxPolling: true,
  }
  let outboxTimer = null
  let silencesTimer = null
  /** Renders only what changed, so a focused button in a list keeps its focus. */
  const rendered = { failed: '', pending: '', silences: '' }

  // ------------------------------------------------------------------ acknowledge

  /**
   * What a firing alert shows below its facts: who acknowledged it, or an Ack button; and a
   * Silence button that fills the silence form with its rule and device.
   */
  function alertControls(alert) {
    if (alert.state !== 'firing') return null
    const ack = alert.acknowledged
    const fragment = document.createDocumentFragment()
    if (ack) {
      fragment.append(
        el('p', { className: 'alert-ack' }, [
          'Acknowledged by ',
          el('strong', { className: 'ack-by', textContent: ack.by }),
          ' ',
          timeEl(ack.at, { ago: true }),
          ack.comment
            ? el('span', { className: 'ack-comment', textContent: `: ${ack.comment}` })
            : null,
        ]),
      )
    }
    fragment.append(
      el('div', { className: 'alert-actions' }, [
        ack
          ? null
          : el('button', {
              type: 'button',
              className: 'secondary small',
              textContent: 'Ack',
              title: `Acknowledge ${alert.ruleId} on ${alert.deviceId}`,
              dataset: { action: 'ack' },
              onclick: () => openAck(alert),
            }),
        el('button', {
          type: 'button',
          className: 'secondary small',
          textContent: 'Silence',
          title: `New silence for ${alert.ruleId} on ${alert.deviceId}`,
          dataset: { action: 'silence' },
          onclick: () => silenceFor(alert),
        }),
      ]),
    )
    return fragment
  }

  function openAck(alert) {
    state.acking = alert
    $('ack-alert').textContent =
      `${alert.ruleId} on ${alert.deviceId}: ${alert.message ?? alert.state}`
    $('ack-comment').value = ''
    showMessage('ack-form-message', null)
    $('ack-dialog').showModal()
    $('ack-comment').focus()
  }

  async function onAckSubmit(event) {
    event.preventDefault()
    const alert = state.acking
    if (alert === null) return
    const comment = $('ack-comment').value.trim()
    const submit = $('ack-submit')
    submit.disabled = true
    try {
      const answer = await api(`api/alerts/${encodeURIComponent(alert.id)}/ack`, {
        method: 'POST',
        body: comment ? { comment } : {},
      })
      state.acking = null
      $('ack-dialog').close()
      onAlert(answer.alert)
    } catch (err) {
      if (err.name === 'AbortError') {
        $('ack-dialog').close()
        return
      }
      showMessage('ack-form-message', `Not acknowledged: ${err.message}`)
    } finally {
      submit.disabled = false
    }
  }

  // ------------------------------------------------------------------ silences

  async function loadSilences() {
    clearTimeout(silencesTimer)
    silencesTimer = setTimeout(loadSilences, SILENCES_REFRESH_MS)
    try {
      const body = await api('api/silences')
      state.silences = body.silences
      showMessage('silences-message', null)
    } catch (err) {
      if (err.name === 'AbortError') return
      showMessage('silences-message', loadFailure('Silences', err))
      // Not signed in, a role the app lacks, or no silences here: asking again changes nothing.
      if (err.status === 401 || err.status === 403 || err.status === 404) {
        clearTimeout(silencesTimer)
      }
    }
    renderSilences()
  }

  function silenceState(s, nowMs) {
    if (nowMs >= s.endsAt) return 'expired'
    return nowMs < s.startsAt ? 'pending' : 'active'
  }

  function renderSilences(nowMs = Date.now()) {
    const groups = { active: [], pending: [], expired: [] }
    state.silenceStates.clear()
    for (const s of state.silences) {
      const now = silenceState(s, nowMs)
      state.silenceStates.set(s.id, now)
      groups[now].push(s)
    }
    const key = JSON.stringify([
      state.silences.map((s) => [s.id, s.endsAt, state.silenceStates.get(s.id)]),
      [...state.busy],
      [...state.actionErrors],
    ])
    if (key === rendered.silences) return
    rendered.silences = key
    for (const name of SILENCE_STATES) {
      const shown = name === 'expired' ? groups[name].slice(0, EXPIRED_SHOWN) : groups[name]
      $(`silences-${name}`).replaceChildren(...shown.map((s) => silenceItem(s, name)))
      if (name !== 'active') $(`silences-${name}-heading`).hidden = shown.length === 0
    }
    $('silences-active-empty').hidden = groups.active.length > 0
    $('silence-count').textContent = groups.active.length ? `(${groups.active.length} active)` : ''
  }

  function silenceItem(s, now) {
    const when =
      now === 'active'
        ? ['until ', timeEl(s.endsAt, { until: true })]
        : now === 'pending'
          ? ['from ', timeEl(s.startsAt, { until: true }), ' until ', timeEl(s.endsAt)]
          : ['ended ', timeEl(s.endsAt, { ago: true })]
    const error = state.actionErrors.get(s.id)
    return el('li', { className: 'silence', dataset: { silenceId: s.id, state: now } }, [
      el('div', { className: 'silence-top' }, [
        el('span', { className: 'silence-state', textContent: now }),
        el('span', { className: 'silence-matchers', textContent: matchersText(s.matchers) }),
      ]),
      el('p', { className: 'silence-comment', textContent: s.comment }),
      el('p', { className: 'silence-when' }, [...when, ` · by ${s.createdBy}`]),
      error ? el('p', { className: 'message', role: 'alert', textContent: error }) : null,
      now === 'expired'
        ? null
        : el('div', { className: 'item-actions' }, [
            el('button', {
              type: 'button',
              className: 'secondary small',
              textContent: 'Expire',
              title: 'End this silence now',
              disabled: state.busy.has(s.id),
              dataset: { action: 'expire' },
              onclick: () => void expireSilence(s),
            }),
          ]),
    ])
  }

  function matchersText(m) {
    const parts = []
    for (const name of ['rule', 'device', 'metric', 'severity']) {
      if (m[name]) parts.push(`${name} ${m[name].join(', ')}`)
    }
    if (m.tags) {
      const tags = Object.entries(m.tags).map(([k, v]) => `${k}=${v}`)
      parts.push(`tags ${tags.join(', ')}`)
    }
    return parts.join(' · ')
  }

  async function expireSilence(silence) {
    state.busy.add(silence.id)
    state.actionErrors.delete(silence.id)
    renderSilences()
    try {
      const answer = await api(`api/silences/${encodeURIComponent(silence.id)}`, {
        method: 'DELETE',
      })
      state.silences = state.silences.map((s) => (s.id === silence.id ? answer.silence : s))
    } catch (err) {
      if (err.name !== 'AbortError')
        state.actionErrors.set(silence.id, `Not expired: ${err.message}`)
    } finally {
      state.busy.delete(silence.id)
    }
    renderSilences()
  }

  /** Opens the silence form for the alert's rule and device, ready for the comment. */
  function silenceFor(alert) {
    const fields = $('silence-form').elements
    for (const name of ['metric', 'tags', 'comment']) fields[name].value = ''
    fields.severity.value = ''
    fields.rule.value = alert.ruleId
    fields.device.value = alert.deviceId
    showMessage('silence-form-message', null)
    $('silence-new').open = true
    $('silences').scrollIntoView({ block: 'nearest' })
    fields.comment.focus({ preventScroll: true })
  }

  /** `a, b*` -> the API's pattern list; empty -> undefined (any). */
  function patterns(text) {
    const items = text
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean)
    return items.length ? items : undefined
  }

  /** `site=north-*, floor=2` -> `{ site: 'north-*', floor: '2' }`; null when not that. */
  function tagsOf(text) {
    const tags = {}
    for (const pair of patterns(text) ?? []) {
      const eq = pair.indexOf('=')
      if (eq <= 0) return null
      tags[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim()
    }
    return Object.keys(tags).length ? tags : undefined
  }

  async function onSilenceSubmit(event) {
    event.preventDefault()
    const form = $('silence-form')
    const fields = form.elements
    const tags = tagsOf(fields.tags.value)
    if (tags === null) {
      showMessage('silence-form-message', 'Tags: write name=value, several separated by commas.')
      fields.tags.focus()
      return
    }
    const matchers = {
      rule: patterns(fields.rule.value),
      device: patterns(fields.device.value),
      metric: patterns(fields.metric.value),
      severity: fields.severity.value || undefined,
      tags,
    }
    const body = {
      matchers: Object.fromEntries(Object.entries(matchers).filter(([, v]) => v !== undefined)),
      duration: fields.duration.value.trim(),
      comment: fields.comment.value.trim(),
    }
    const submit = form.querySelector('button[type="submit"]')
    submit.disabled = true
    try {
      const answer = await api('api/silences', { method: 'POST', body })
      state.silences = [answer.silence, ...state.silences.filter((s) => s.id !== answer.silence.id)]
      showMessage('silence-form-message', null)
      for (const name of ['rule', 'device', 'metric', 'tags', 'comment']) fields[name].value = ''
      fields.severity.value = ''
      $('silence-new').open = false
      renderSilences()
    } catch (err) {
      if (err.name === 'AbortError') return
      // The gateway's 400 names the field (`body field "duration": ...`), its 403 the role.
      showMessage('silence-form-message', `Not created: ${err.message}`)
    } finally {
      submit.disabled = false
    }
  }

  // ------------------------------------------------------------------ outbox

  function scheduleOutbox(ms) {
    clearTimeout(outboxTimer)
    if (state.outboxPolling) outboxTimer = setTimeout(loadOutbox, ms)
  }

  async function loadOutbox() {
    clearTimeout(outboxTimer)
    try {
      const [failed, pending] = await Promise.all([
        api(`api/notifications?state=failed&limit=${OUTBOX_LIMIT}`),
        api(`api/notifications?state=pending&limit=${OUTBOX_LIMIT}`),
      ])
      state.failed = failed.notifications
      state.pending = pending.notifications
      showMessage('outbox-message', null)
    } catch (err) {
      if (err.name === 'AbortError') return
      showMessage('outbox-message', loadFailure('Notifications', err))
      // A role the app lacks, or a gateway without the outbox: asking again changes nothing.
      if (err.status === 401 || err.status === 403 || err.status === 404) {
        state.outboxPolling = false
      }
    }
    renderOutbox()
    scheduleOutbox(state.pending.length ? OUTBOX_BUSY_REFRESH_MS : OUTBOX_IDLE_REFRESH_MS)
  }

  function renderOutbox() {
    const failedKey = JSON.stringify([
      state.failed.map((n) => [n.id, n.updatedAt]),
      [...state.busy],
      [...state.actionErrors],
    ])
    if (failedKey !== rendered.failed) {
      rendered.failed = failedKey
      $('outbox-failed').replaceChildren(...state.failed.map(failedItem))
    }
    const pendingKey = JSON.stringify(state.pending.map((n) => [n.id, n.updatedAt, n.attempts]))
    if (pendingKey !== rendered.pending) {
      rendered.pending = pendingKey
      $('outbox-pending').replaceChildren(...state.pending.map(pendingItem))
    }
    $('outbox-failed-empty').hidden = state.failed.length > 0
    $('outbox-pending-empty').hidden = state.pending.length > 0
    const counts = []
    if (state.failed.length) counts.push(`${countText(state.failed.length)} failed`)
    if (state.pending.length) counts.push(`${countText(state.pending.length)} pending`)
    $('outbox-count').textContent = counts.length ? `(${counts.join(', ')})` : ''
  }

  const countText = (n) => (n >= OUTBOX_LIMIT ? `${OUTBOX_LIMIT}+` : String(n))

  function notificationHead(n) {
    return [
      el('div', { className: 'notification-top' }, [
        el('span', { className: 'notification-kind', textContent: n.kind }),
        el('strong', { className: 'notification-title', textContent: n.title }),
      ]),
      el('p', {
        className: 'notification-route',
        textContent: `${n.channel} · route ${n.route} · ${attemptsText(n.attempts)}`,
      }),
    ]
  }

  const attemptsText = (n) => (n === 1 ? '1 attempt' : `${n} attempts`)

  function failedItem(n) {
    const error = state.actionErrors.get(n.id)
    return el(
      'li',
      { className: 'notification', dataset: { notificationId: n.id, state: 'failed' } },
      [
        ...notificationHead(n),
        el('p', { className: 'notification-error' }, [
          el('span', { className: 'label', textContent: 'Last error ' }),
          el('code', { className: 'notification-last-error', textContent: n.lastError ?? '–' }),
        ]),
        el('p', { className: 'notification-when' }, [
          'dead-lettered ',
          timeEl(n.updatedAt, { ago: true }),
        ]),
        error ? el('p', { className: 'message', role: 'alert', textContent: error }) : null,
        el('div', { className: 'item-actions' }, [
          el('button', {
            type: 'button',
            className: 'secondary small',
            textContent: 'Retry',
            title: 'Send it again (same id), attempts counted from zero',
            disabled: state.busy.has(n.id),
            dataset: { action: 'retry' },
            onclick: () => void retry(n),
          }),
        ]),
      ],
    )
  }

  function pendingItem(n) {
    return el(
      'li',
      { className: 'notification', dataset: { notificationId: n.id, state: 'pending' } },
      [
        ...notificationHead(n),
        n.lastError
          ? el('p', { className: 'notification-error' }, [
              el('span', { className: 'label', textContent: 'Last error ' }),
              el('code', { className: 'notification-last-error', textContent: n.lastError }),
            ])
          : null,
        el('p', { className: 'notification-when' }, [
          n.attempts === 0 ? 'first attempt ' : 'next attempt ',
          timeEl(n.nextAttemptAt, { until: true }),
        ]),
      ],
    )
  }

  async function retry(n) {
    state.busy.add(n.id)
    state.actionErrors.delete(n.id)
    renderOutbox()
    try {
      const answer = await api(`api/notifications/${encodeURIComponent(n.id)}/retry`, {
        method: 'POST',
      })
      state.failed = state.failed.filter((f) => f.id !== n.id)
      state.pending = [answer.notification, ...state.pending.filter((p) => p.id !== n.id)]
      state.outboxPolling = true
      scheduleOutbox(OUTBOX_BUSY_REFRESH_MS)
    } catch (err) {
      if (err.name !== 'AbortError') state.actionErrors.set(n.id, `Not retried: ${err.message}`)
    } finally {
      state.busy.delete(n.id)
    }
    renderOutbox()
  }

  // ------------------------------------------------------------------ life cycle

  function clear() {
    clearTimeout(outboxTimer)
    clearTimeout(silencesTimer)
    state.silences = []
    state.failed = []
    state.pending = []
    state.actionErrors.clear()
    state.busy.clear()
    state.outboxPolling = true
    if ($('ack-dialog').open) $('ack-dialog').close()
    state.acking = null
    rendered.failed = rendered.pending = rendered.silences = ''
    renderSilences()
    renderOutbox()
  }

  return {
    alertControls,
    /** Wires the forms; once, as the page starts. */
    start() {
      $('ack-form').addEventListener('submit', (event) => void onAckSubmit(event))
      $('ack-cancel').addEventListener('click', () => $('ack-dialog').close())
      $('ack-dialog').addEventListener('close', () => {
        state.acking = null
      })
      $('silence-form').addEventListener('submit', (event) => void onSilenceSubmit(event))
    },
    /** (Re)loads silences and the outbox: at start, after a sign-in, after a reconnect. */
    load() {
      state.outboxPolling = true
      void loadSilences()
      void loadOutbox()
    },
    refreshOutboxSoon() {
      scheduleOutbox(OUTBOX_SOON_MS)
    },
    /** The session ended: nothing of it stays on the page. */
    reset() {
      clear()
      showMessage('silences-message', null)
      showMessage('outbox-message', null)
      showMessage('silence-form-message', null)
    },
    signedOut() {
      showMessage('silences-message', 'Sign in to see the silences.')
      showMessage('outbox-message', 'Sign in to see the notifications.')
    },
    /** Silences start and end with time: re-rendered when one changed state. */
    tick(nowMs) {
      if (state.silences.some((s) => silenceState(s, nowMs) !== state.silenceStates.get(s.id))) {
        renderSilences(nowMs)
      }
    },
  }
}
