import { forgetToken, parseToken, storedToken, storeToken } from './auth.js'
import { createMetricChart } from './charts.js'
import { $, el, relativeTimeText, severityBadge, showMessage, timeEl } from './dom.js'
import { durationParam, formatAgo, formatUnit, formatValue, toLocalInput } from './format.js'
import { connectLive } from './live.js'
import { createNotificationPanels } from './notifications.js'
import { parseAlert, parseReadings, parseStatus } from './payloads.js'

/**
 * The live dashboard (DESIGN §6). Data comes from two places: the JSON API for what is stored
 * (devices and their latest values, bucketed history, alerts, rules) and MQTT over WebSocket for
 * what happens next (readings, device status, alert transitions). Every live message only
 * updates state here; one animation frame then redraws what changed. When the gateway requires
 * authentication, both carry an app token the page asks for (see "sign-in" below).
 */

const PRESET_RANGES_MS = { '15m': 900_000, '1h': 3_600_000, '24h': 86_400_000, '7d': 604_800_000 }
/** The API's own steps (src/http/query-params.ts): the first one giving at most ~500 buckets. */
const NICE_STEPS_MS = [
  1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
  1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000, 172_800_000,
  604_800_000,
]
const TARGET_BUCKETS = 500
const HISTORY_LIMIT = 50
/** Resolved alerts stay in the current list, below the firing ones, up to this many. */
const RESOLVED_SHOWN = 10
const SEVERITY_ORDER = { critical: 0, major: 1, minor: 2, warning: 3, info: 4 }
const TICK_MS = 5_000
const RULES_REFRESH_MS = 60_000

const state = {
  /** id -> { id, status, statusTs, lastSeenMs, metrics: Map<metric, { value, ts, unit }> } */
  devices: new Map(),
  selected: null,
  /** The first device list came from the API (or failed): a device may be chosen now. */
  devicesLoaded: false,
  range: { kind: '1h' },
  /** metric -> chart of the selected device */
  charts: new Map(),
  chartsAbort: null,
  /** alert id -> latest Alert */
  current: new Map(),
  /** newest first; keys in historyKeys */
  history: [],
  historyKeys: new Set(),
  rules: [],
  live: 'connecting',
}

// ---------------------------------------------------------------- rendering, one frame at a time

const dirty = { devices: new Set(), list: false, charts: new Set(), alerts: false, rules: false }
let frameRequested = false

function schedule() {
  if (frameRequested) return
  frameRequested = true
  requestAnimationFrame(() => {
    frameRequested = false
    if (dirty.list) renderDeviceList()
    for (const id of dirty.devices) renderDeviceRow(id)
    for (const chart of dirty.charts) chart.redraw()
    if (dirty.alerts) renderAlerts()
    if (dirty.rules) renderRules()
    dirty.devices.clear()
    dirty.charts.clear()
    dirty.list = dirty.alerts = dirty.rules = false
  })
}

// ---------------------------------------------------------------- HTTP API

class ApiError extends Error {
  constructor(message, status) {
    super(message)
    this.status = status
  }
}

/**
 * The answer to a request made before the last sign-in or sign-out: it belongs to a session that
 * is over, and is dropped like an aborted one.
 */
class StaleAnswer extends Error {
  constructor() {
    super('answer of an earlier session')
    this.name = 'AbortError'
  }
}

/**
 * One API call with the session's token. `body`: sent as JSON (POST); without one, no body and
 * no content type (the gateway refuses an empty JSON body). Resolves the JSON answer; rejects
 * with an ApiError carrying the gateway's message and status (401 also ends the session).
 */
async function requestJson(path, { signal, method = 'GET', body } = {}) {
  const generation = session.generation
  const headers = { accept: 'application/json' }
  if (session.token) headers.authorization = `Bearer ${session.token.token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  let res
  try {
    res = await fetch(path, {
      signal,
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
  } catch (err) {
    if (err.name === 'AbortError') throw err
    throw new ApiError('the gateway did not answer', 0)
  }
  const answer = await res.json().catch(() => null)
  if (signal?.aborted || generation !== session.generation) throw new StaleAnswer()
  if (!res.ok) {
    const message = answer?.message ?? `HTTP ${res.status}`
    if (res.status === 401) {
      onUnauthorized(message)
      // The token was dropped and the data with it: the panels already say what to do.
      if (generation !== session.generation) throw new StaleAnswer()
    }
    throw new ApiError(message, res.status)
  }
  return answer
}

const getJson = (path, signal) => requestJson(path, { signal })

/** A panel's message when its data could not be loaded. */
function loadFailure(what, err) {
  return err.status === 401
    ? `Sign in to see the ${what.toLowerCase()}.`
    : `${what} could not be loaded: ${err.message}`
}

/**
 * Silences, the outbox and the alerts' Ack buttons (notifications.js). An acknowledgement the API
 * answers is shown at once; the retained alert re-published on MQTT says the same a moment later.
 */
const notifications = createNotificationPanels({
  api: requestJson,
  loadFailure,
  onAlert: (alert) => {
    setCurrent(alert)
    dirty.alerts = true
    schedule()
  },
})

// ---------------------------------------------------------------- sign-in

/**
 * The app token in use (auth.js), or null. Without one the page works as it always has; the
 * gateway asks for one (a 401, or the live link refused) only when it requires authentication.
 * `generation` counts sign-ins and sign-outs: answers to requests made before the last one are
 * dropped (getJson).
 */
const session = { token: storedToken(), generation: 0 }
/** The live link (live.js); replaced at each sign-in and sign-out. */
let liveLink = null
/**
 * Where the sign-in form's message came from. A more specific one is not overwritten by a
 * vaguer one: the answer to the token just tried, then the gateway's 401, then the live link's
 * refusal (the API and the live link are refused at about the same time; the API says more).
 */
const MESSAGE_RANK = { live: 1, api: 2, attempt: 3 }
let signInMessageRank = 0

function showSignIn(message, source) {
  const box = $('sign-in')
  const wasHidden = box.hidden
  if (wasHidden || MESSAGE_RANK[source] >= signInMessageRank) {
    showMessage('sign-in-message', message)
    signInMessageRank = MESSAGE_RANK[source]
  }
  if (!wasHidden) return
  box.hidden = false
  $('sign-in-token').focus()
}

function hideSignIn() {
  $('sign-in').hidden = true
  showMessage('sign-in-message', null)
  signInMessageRank = 0
}

function renderSession() {
  $('session').hidden = session.token === null
  $('session-app').textContent = session.token?.appId ?? ''
}

/**
 * A session ends: its answers still on their way are dropped, and its data is no longer shown.
 * `signedOut`: the gateway is known to want a token, so the panels say so instead of waiting for
 * answers that could only be 401s.
 */
function endSession({ signedOut }) {
  session.generation++
  resetData()
  if (!signedOut) return
  showMessage('devices-message', 'Sign in to see the devices.')
  showMessage('alerts-message', 'Sign in to see the alerts.')
  showMessage('rules-message', 'Sign in to see the rules.')
  notifications.signedOut()
}

/** The gateway refused the token (401): it is wrong, or no longer valid (a new secret). */
function onUnauthorized(message) {
  if (session.token !== null) {
    forgetToken()
    session.token = null
    endSession({ signedOut: true })
    renderSession()
    liveLink?.close()
    liveLink = null
    onLiveState('signed-out')
  }
  showSignIn(message, 'api')
}

/**
 * The live link was refused: 5, no credentials (the gateway requires a token), or 4, a token
 * it does not take. The API says why in more words, and is asked about the token first.
 */
async function onLiveRefused(code) {
  const token = session.token
  if (code === 4 && token !== null) {
    const problem = await checkToken(token)
    if (session.token !== token) return
    // Else the API takes the token and only the live link refuses it: its indicator says so.
    if (problem !== null) onUnauthorized(problem)
    return
  }
  if (code === 5)
    showSignIn('live updates need an app token (the gateway said: not authorized)', 'live')
}

function startLive() {
  liveLink?.close()
  const token = session.token
  liveLink = connectLive(
    {
      onState: onLiveState,
      onConnect: onLiveConnect,
      onMessage,
      onRefused: (code) => void onLiveRefused(code),
    },
    token ? { username: token.appId, password: token.secret } : null,
  )
}

/**
 * Whether the gateway takes the token: null when it does, else its message. Any answer but 401
 * means the token is good; a 403 says the app lacks the role for devices (an app with read-alerts
 * only), which the devices panel then shows.
 */
async function checkToken(token) {
  let res
  try {
    res = await fetch('api/devices', {
      headers: { accept: 'application/json', authorization: `Bearer ${token.token}` },
    })
  } catch {
    return 'the gateway did not answer'
  }
  const body = await res.json().catch(() => null)
  return res.status === 401 ? (body?.message ?? 'HTTP 401') : null
}

async function onSignIn(event) {
  event.preventDefault()
  const input = $('sign-in-token')
  const token = parseToken(input.value)
  if (token === null) {
    showSignIn('Enter the token as <appId>.<secret>, as npm run app:add printed it.', 'attempt')
    input.focus()
    return
  }
  const button = $('sign-in-submit')
  button.disabled = true
  $('sign-in-form').setAttribute('aria-busy', 'true')
  const problem = await checkToken(token)
  button.disabled = false
  $('sign-in-form').removeAttribute('aria-busy')
  if (problem !== null) {
    showSignIn(problem, 'attempt')
    input.select()
    input.focus()
    return
  }
  input.value = ''
  session.token = token
  storeToken(token)
  endSession({ signedOut: false })
  hideSignIn()
  renderSession()
  // The form and its focused field are gone: focus goes where the skip link leads, in place.
  $('detail').focus({ preventScroll: true })
  startLive()
  loadAll()
}

function onSignOut() {
  forgetToken()
  session.token = null
  endSession({ signedOut: false })
  renderSession()
  // Anonymous again: when the gateway requires authentication, its 401 brings the form back.
  startLive()
  loadAll()
}

// ---------------------------------------------------------------- devices

function device(id) {
  let entry = state.devices.get(id)
  if (entry === undefined) {
    entry = { id, status: null, statusTs: 0, lastSeenMs: 0, metrics: new Map() }
    state.devices.set(id, entry)
    dirty.list = true
  }
  return entry
}

/** A value is shown only if it is at least as new as the one shown (live and fetched race). */
function setLatest(entry, metric, value, ts, unit) {
  const known = entry.metrics.get(metric)
  if (known && known.ts > ts) return false
  if (!known) dirty.list = true
  entry.metrics.set(metric, { value, ts, unit: unit ?? known?.unit })
  entry.lastSeenMs = Math.max(entry.lastSeenMs, ts)
  dirty.devices.add(entry.id)
  return true
}

async function loadDevices() {
  try {
    const body = await getJson('api/devices')
    for (const d of body.devices) {
      const entry = device(d.id)
      for (const [metric, m] of Object.entries(d.metrics)) {
        setLatest(entry, metric, m.value, m.ts, m.unit)
      }
    }
    showMessage('devices-message', null)
  } catch (err) {
    if (err.name === 'AbortError') return
    showMessage('devices-message', loadFailure('Devices', err))
  }
  state.devicesLoaded = true
  dirty.list = true
  schedule()
}

function optionId(id) {
  return `device-option-${id}`
}

function renderDeviceList() {
  const list = $('device-list')
  const ids = [...state.devices.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const rows = ids.map((id) => $(optionId(id)) ?? newDeviceRow(id))
  // Moves only what is out of place, so a focused row keeps its focus.
  rows.forEach((row, i) => {
    if (list.children[i] !== row) list.insertBefore(row, list.children[i] ?? null)
  })
  for (const id of ids) renderDeviceRow(id)
  $('device-count').textContent = ids.length ? `(${ids.length})` : ''
  showMessage('devices-hint', ids.length ? 'Arrow keys move through the list.' : null)
  if (ids.length === 0 && $('devices-message').hidden) {
    showMessage('devices-message', 'No devices yet: they appear with their first reading.')
  } else if (ids.length > 0 && $('devices-message').textContent.startsWith('No devices')) {
    showMessage('devices-message', null)
  }
  updateRovingTabIndex()
  // Not before the API's list: a live status message may name some other device first.
  if (state.selected === null && state.devicesLoaded && ids.length > 0) {
    const wanted = decodeURIComponent(location.hash.slice(1))
    selectDevice(state.devices.has(wanted) ? wanted : ids[0], { focus: false })
  }
}

function newDeviceRow(id) {
  return el(
    'div',
    {
      id: optionId(id),
      role: 'option',
      className: 'device',
      tabIndex: -1,
      'aria-selected': 'false',
      dataset: { device: id },
    },
    [
      el('span', { className: 'device-top' }, [
        el('span', { className: 'device-id', textContent: id }),
        el('span', { className: 'state' }),
      ]),
      el('span', { className: 'device-alerts', hidden: true }),
      el('span', { className: 'device-metrics' }),
      el('span', { className: 'device-seen' }),
    ],
  )
}

function renderDeviceRow(id) {
  const entry = state.devices.get(id)
  const row = $(optionId(id))
  if (!entry || !row) return
  setStateBadge(row.querySelector('.state'), entry.status)

  const firing = [...state.current.values()].filter(
    (a) => a.deviceId === id && a.state === 'firing',
  )
  const alerts = row.querySelector('.device-alerts')
  alerts.hidden = firing.length === 0
  if (firing.length > 0) {
    const worst = firing.reduce((a, b) =>
      SEVERITY_ORDER[b.severity] < SEVERITY_ORDER[a.severity] ? b : a,
    )
    alerts.dataset.severity = worst.severity
    alerts.textContent = `${firing.length} firing`
  }

  const metricsBox = row.querySelector('.device-metrics')
  const metrics = [...entry.metrics.keys()].sort()
  for (const metric of metrics) {
    let item = metricsBox.querySelector(`[data-metric="${metric}"]`)
    if (!item) {
      item = el('span', { className: 'metric', dataset: { metric } }, [
        el('span', { className: 'metric-name', textContent: metric }),
        ' ',
        el('span', { className: 'value' }),
        el('span', { className: 'unit' }),
      ])
      const next = [...metricsBox.children].find((c) => c.dataset.metric > metric)
      metricsBox.insertBefore(item, next ?? null)
    }
    const m = entry.metrics.get(metric)
    item.querySelector('.value').textContent = formatValue(m.value)
    const unit = formatUnit(m.unit)
    item.querySelector('.unit').textContent = unit ? ` ${unit}` : ''
  }
  const seen = row.querySelector('.device-seen')
  seen.dataset.agoMs = String(entry.lastSeenMs)
  seen.textContent = entry.lastSeenMs ? `seen ${formatAgo(entry.lastSeenMs)}` : 'no readings yet'
}

function setStateBadge(badge, status) {
  badge.dataset.state = status ?? 'unknown'
  badge.textContent = status ?? 'unknown'
  badge.title = status ? `device is ${status}` : 'no status received (live updates off)'
}

// Listbox keyboard model (WAI-ARIA APG): one tab stop, arrows move, selection follows focus.
function updateRovingTabIndex() {
  const options = [...$('device-list').querySelectorAll('[role="option"]')]
  const active = options.find((o) => o.dataset.device === state.selected) ?? options[0]
  for (const option of options) option.tabIndex = option === active ? 0 : -1
}

function onDeviceListKey(event) {
  const options = [...$('device-list').querySelectorAll('[role="option"]')]
  if (options.length === 0) return
  const current = event.target.closest('[role="option"]')
  const index = Math.max(options.indexOf(current), 0)
  let next = null
  switch (event.key) {
    case 'ArrowDown':
      next = options[Math.min(index + 1, options.length - 1)]
      break
    case 'ArrowUp':
      next = options[Math.max(index - 1, 0)]
      break
    case 'Home':
      next = options[0]
      break
    case 'End':
      next = options.at(-1)
      break
    case 'Enter':
    case ' ':
      next = current ?? options[0]
      break
    default:
      return
  }
  event.preventDefault()
  selectDevice(next.dataset.device, { focus: true })
}

function selectDevice(id, { focus }) {
  const changed = state.selected !== id
  state.selected = id
  for (const option of $('device-list').querySelectorAll('[role="option"]')) {
    option.setAttribute('aria-selected', String(option.dataset.device === id))
  }
  updateRovingTabIndex()
  const row = $(optionId(id))
  if (focus) row?.focus()
  if (!changed) return
  history.replaceState(null, '', `#${encodeURIComponent(id)}`)
  renderDetailHead()
  void loadCharts()
}

function renderDetailHead() {
  const entry = state.devices.get(state.selected)
  $('detail-heading').textContent = entry ? entry.id : 'No device selected'
  const badge = $('detail-state')
  badge.hidden = !entry
  if (entry) setStateBadge(badge, entry.status)
}

// ---------------------------------------------------------------- charts

/** The window the range selector asks for, as API parameters and as epoch ms. */
function currentWindow(nowMs = Date.now()) {
  const range = state.range
  if (range.kind !== 'custom') {
    const rangeMs = PRESET_RANGES_MS[range.kind]
    const everyMs = stepFor(rangeMs)
    return {
      params: { from: `-${range.kind}`, to: 'now', every: durationParam(everyMs) },
      fromMs: nowMs - rangeMs,
      toMs: nowMs,
      everyMs,
      live: true,
    }
  }
  const everyMs = stepFor(range.toMs - range.fromMs)
  return {
    params: { from: String(range.fromMs), to: String(range.toMs), every: durationParam(everyMs) },
    fromMs: range.fromMs,
    toMs: range.toMs,
    everyMs,
    live: false,
  }
}

function stepFor(rangeMs) {
  const wanted = rangeMs / TARGET_BUCKETS
  return NICE_STEPS_MS.find((step) => step >= wanted) ?? Math.ceil(wanted / 86_400_000) * 86_400_000
}

async function loadCharts() {
  state.chartsAbort?.abort()
  const abort = new AbortController()
  state.chartsAbort = abort
  for (const chart of state.charts.values()) chart.destroy()
  state.charts.clear()
  showMessage('charts-message', null)

  const entry = state.devices.get(state.selected)
  if (!entry) return
  const metrics = [...entry.metrics.keys()].sort()
  if (metrics.length === 0) {
    showMessage('charts-message', 'No readings from this device yet.')
    return
  }
  const frame = currentWindow()
  await Promise.all(metrics.map((metric) => loadChart(entry, metric, frame, abort.signal)))
}

function chartFor(entry, metric) {
  let chart = state.charts.get(metric)
  if (!chart) {
    const known = entry.metrics.get(metric)
    chart = createMetricChart({
      deviceId: entry.id,
      metric,
      unit: known?.unit,
      parent: $('charts'),
    })
    // Keep the charts in metric order whatever order they were created in.
    const next = [...$('charts').children].find((c) => c.dataset.metric > metric)
    if (next) $('charts').insertBefore(chart.element, next)
    if (known) chart.setLatest(known.value, known.ts, known.unit)
    state.charts.set(metric, chart)
  }
  return chart
}

async function loadChart(entry, metric, frame, signal) {
  const chart = chartFor(entry, metric)
  chart.reset(frame)
  const query = new URLSearchParams({ device: entry.id, metric, ...frame.params, fn: 'mean' })
  try {
    const body = await getJson(`api/readings/aggregate?${query}`, signal)
    chart.load(body.buckets, body.fromMs, body.toMs)
  } catch (err) {
    if (err.name === 'AbortError') return
    chart.failed(`Could not load ${metric}: ${err.message}`)
  }
}

function onRangeChange() {
  const form = $('range-form')
  const kind = form.elements.range.value
  const custom = kind === 'custom'
  $('custom-range').hidden = !custom
  if (custom) {
    // Start from what is shown, so "custom" is a small step away from it.
    const frame = currentWindow()
    if (!$('range-from').value) $('range-from').value = toLocalInput(frame.fromMs)
    if (!$('range-to').value) $('range-to').value = toLocalInput(frame.toMs)
    return
  }
  state.range = { kind }
  void loadCharts()
}

function onCustomRange(event) {
  event.preventDefault()
  const fromMs = new Date($('range-from').value).getTime()
  const toMs = new Date($('range-to').value).getTime()
  if (!Number.isFinite(fromMs) || !Number.isFinite(toMs) || fromMs >= toMs) {
    showMessage('charts-message', 'Choose a "From" time before the "To" time.')
    return
  }
  state.range = { kind: 'custom', fromMs, toMs }
  void loadCharts()
}

// ---------------------------------------------------------------- alerts

function alertKey(a) {
  return `${a.id}|${a.ts}|${a.state}|${a.flapping === true}`
}

function addHistory(alert) {
  const key = alertKey(alert)
  if (state.historyKeys.has(key)) return
  state.historyKeys.add(key)
  state.history.push(alert)
  state.history.sort((a, b) => b.ts - a.ts)
  for (const dropped of state.history.splice(HISTORY_LIMIT)) {
    state.historyKeys.delete(alertKey(dropped))
  }
}

function setCurrent(alert) {
  const known = state.current.get(alert.id)
  if (known && known.ts > alert.ts) return
  state.current.set(alert.id, alert)
  dirty.devices.add(alert.deviceId)
}

async function loadAlerts() {
  try {
    const [firing, recent] = await Promise.all([
      getJson('api/alerts?state=firing'),
      getJson(`api/alerts?limit=${HISTORY_LIMIT}`),
    ])
    for (const alert of firing.alerts) setCurrent(alert)
    for (const alert of recent.alerts) addHistory(alert)
    showMessage('alerts-message', null)
  } catch (err) {
    if (err.name === 'AbortError') return
    showMessage('alerts-message', loadFailure('Alerts', err))
  }
  dirty.alerts = true
  schedule()
}

function renderAlerts() {
  const all = [...state.current.values()]
  const firing = all
    .filter((a) => a.state === 'firing')
    .sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity] || b.since - a.since)
  const resolved = all
    .filter((a) => a.state === 'resolved')
    .sort((a, b) => b.ts - a.ts)
    .slice(0, RESOLVED_SHOWN)
  $('alerts-current').replaceChildren(...[...firing, ...resolved].map(currentAlertItem))
  $('alerts-current-empty').hidden = firing.length > 0
  $('firing-count').textContent = firing.length ? `(${firing.length} firing)` : ''

  $('alerts-history').replaceChildren(...state.history.map(historyItem))
  $('alerts-history-empty').hidden = state.history.length > 0
}

function currentAlertItem(a) {
  const acknowledged = a.state === 'firing' && a.acknowledged ? 'true' : 'false'
  return el(
    'li',
    {
      className: 'alert',
      dataset: { alertId: a.id, state: a.state, severity: a.severity, acknowledged },
    },
    [
      el('div', { className: 'alert-top' }, [
        severityBadge(a.severity),
        el('span', {
          className: 'alert-state',
          textContent: a.flapping ? `${a.state}, flapping` : a.state,
        }),
        el('strong', { className: 'alert-rule', textContent: a.ruleId }),
        el('span', { className: 'alert-device', textContent: a.deviceId }),
      ]),
      a.message ? el('p', { className: 'alert-message', textContent: a.message }) : null,
      el('dl', { className: 'alert-facts' }, [
        fact('Value', formatValue(a.value), 'value'),
        fact('Threshold', formatValue(a.threshold), 'threshold'),
        fact('Since', timeEl(a.since, { ago: true }), 'since'),
      ]),
      notifications.alertControls(a),
    ],
  )
}

function fact(label, value, name) {
  return el('div', { dataset: { fact: name } }, [
    el('dt', { textContent: label }),
    el('dd', {}, [value]),
  ])
}

function historyItem(a) {
  return el(
    'li',
    { className: 'history', dataset: { alertId: a.id, state: a.state, severity: a.severity } },
    [
      timeEl(a.ts),
      ' ',
      severityBadge(a.severity),
      ' ',
      el('span', { className: 'alert-state', textContent: a.state }),
      ' ',
      el('strong', { textContent: a.ruleId }),
      ` ${a.deviceId} · ${a.metric} ${formatValue(a.value)} (threshold ${formatValue(a.threshold)})`,
    ],
  )
}

// ---------------------------------------------------------------- rules

let rulesTimer = null

function refreshRulesSoon() {
  clearTimeout(rulesTimer)
  rulesTimer = setTimeout(loadRules, 500)
}

async function loadRules() {
  clearTimeout(rulesTimer)
  rulesTimer = setTimeout(loadRules, RULES_REFRESH_MS)
  try {
    const body = await getJson('api/rules')
    state.rules = body.rules
    showMessage('rules-message', null)
  } catch (err) {
    if (err.name === 'AbortError') return
    showMessage('rules-message', loadFailure('Rules', err))
  }
  dirty.rules = true
  schedule()
}

function matchText(match) {
  const parts = []
  const devices = match?.devices ?? []
  parts.push(`device ${devices.join(', ') || '*'}`)
  if (match?.metric) parts.push(`metric ${match.metric}`)
  if (match?.tags) {
    parts.push(
      `tags ${Object.entries(match.tags)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}`,
    )
  }
  return parts.join(' · ')
}

/** The rule's condition in a few words, from its definition in the rules file. */
function conditionText(d) {
  const extra = []
  if (d.for) extra.push(`for ${d.for}`)
  if (d.hysteresis) extra.push(`hysteresis ${d.hysteresis}`)
  if (d.clear !== undefined) extra.push(`clear ${d.clear}`)
  let main = ''
  if (d.above !== undefined) main = `> ${d.above}`
  else if (d.below !== undefined) main = `< ${d.below}`
  else if (d.outside) main = `outside [${d.outside.join(', ')}]`
  else if (d.inside) main = `inside [${d.inside.join(', ')}]`
  else if (d.kind === 'rate')
    main = `Δ ≥ ${d.delta} per ${d.per}${d.direction ? `, ${d.direction}` : ''}`
  else if (d.kind === 'deadman') main = `no reading for ${d.after}`
  else if (d.handler) main = String(d.handler).split('/').at(-1)
  return [main, ...extra].filter(Boolean).join(', ')
}

function renderRules() {
  const rows = state.rules.map((r) =>
    el('tr', { dataset: { rule: r.id } }, [
      el('th', { scope: 'row' }, [el('code', { textContent: r.id })]),
      el('td', { textContent: r.kind }),
      el('td', {}, [severityBadge(r.severity)]),
      el('td', {}, [
        el('span', { className: 'match', textContent: matchText(r.match) }),
        el('span', { className: 'condition', textContent: conditionText(r.definition ?? {}) }),
      ]),
      el('td', {
        className: r.firing > 0 ? 'num firing' : 'num',
        textContent: String(r.firing),
        dataset: { firing: String(r.firing) },
      }),
    ]),
  )
  $('rules-table').tBodies[0].replaceChildren(...rows)
  $('rule-count').textContent = state.rules.length ? `(${state.rules.length})` : ''
}

// ---------------------------------------------------------------- live messages

function onMessage(topic, text, retained) {
  if (topic.startsWith('sensors/')) {
    const readings = parseReadings(topic, text)
    for (const r of readings) {
      const entry = device(r.deviceId)
      setLatest(entry, r.metric, r.value, r.ts, r.unit)
      if (r.deviceId !== state.selected) continue
      const chart = state.charts.get(r.metric)
      if (chart) {
        chart.add(r)
        dirty.charts.add(chart)
      } else {
        // A metric new to the chart area: fetched like the others (the store has this reading).
        showMessage('charts-message', null)
        state.chartsAbort ??= new AbortController()
        void loadChart(entry, r.metric, currentWindow(), state.chartsAbort.signal)
      }
    }
  } else if (topic.startsWith('devices/')) {
    const status = parseStatus(topic, text)
    if (!status) return
    const entry = device(status.deviceId)
    if (status.ts < entry.statusTs) return
    entry.status = status.state
    entry.statusTs = status.ts
    dirty.devices.add(entry.id)
    if (entry.id === state.selected) renderDetailHead()
  } else if (topic.startsWith('alerts/')) {
    const alert = parseAlert(topic, text)
    if (!alert) return
    setCurrent(alert)
    addHistory(alert)
    dirty.alerts = true
    if (!retained) {
      refreshRulesSoon()
      // A transition is what puts notifications in the outbox.
      notifications.refreshOutboxSoon()
    }
  }
  schedule()
}

function onLiveState(linkState, detail) {
  state.live = linkState
  const box = $('live')
  box.dataset.state = linkState
  const text = {
    connecting: 'Connecting to live updates…',
    live: 'Live',
    reconnecting: 'Connection lost, reconnecting…',
    unavailable: 'Live updates unavailable, retrying',
    'signed-out': 'Sign in for live updates',
  }[linkState]
  box.querySelector('.live-text').textContent = text
  box.title = detail ? `${text} (${detail})` : text
}

function onLiveConnect(resumed) {
  if (!resumed) return
  // Back after a gap: what happened meanwhile is in the store, not in the live stream.
  void Promise.all([loadDevices(), loadAlerts(), loadRules()]).then(() => loadCharts())
  notifications.load()
}

function loadAll() {
  void loadDevices()
  void loadAlerts()
  void loadRules()
  notifications.load()
}

/** Forgets every device, chart, alert and rule shown (a session ended); loadAll fills them again. */
function resetData() {
  state.chartsAbort?.abort()
  state.chartsAbort = null
  for (const chart of state.charts.values()) chart.destroy()
  state.charts.clear()
  state.devices.clear()
  state.selected = null
  state.devicesLoaded = false
  $('device-list').replaceChildren()
  state.current.clear()
  state.history = []
  state.historyKeys.clear()
  state.rules = []
  for (const id of ['devices-message', 'charts-message', 'alerts-message', 'rules-message']) {
    showMessage(id, null)
  }
  notifications.reset()
  renderDetailHead()
  dirty.devices.clear()
  dirty.charts.clear()
  dirty.list = dirty.alerts = dirty.rules = true
  schedule()
}

// ---------------------------------------------------------------- start

function tick() {
  const now = Date.now()
  for (const node of document.querySelectorAll('[data-ago-ms]')) {
    const ms = Number(node.dataset.agoMs)
    if (!ms) continue
    node.textContent = relativeTimeText(ms, node.dataset.agoStyle ?? 'seen', now)
  }
  notifications.tick(now)
  for (const chart of state.charts.values()) chart.redraw(now)
}

function start() {
  $('device-list').addEventListener('keydown', onDeviceListKey)
  $('device-list').addEventListener('click', (event) => {
    const option = event.target.closest('[role="option"]')
    if (option) selectDevice(option.dataset.device, { focus: true })
  })
  $('range-form').addEventListener('change', (event) => {
    if (event.target.name === 'range') onRangeChange()
  })
  $('range-form').addEventListener('submit', onCustomRange)
  addEventListener('hashchange', () => {
    const wanted = decodeURIComponent(location.hash.slice(1))
    if (state.devices.has(wanted)) selectDevice(wanted, { focus: false })
  })

  new ResizeObserver(() => {
    for (const chart of state.charts.values()) chart.resize()
  }).observe($('charts'))
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    for (const chart of state.charts.values()) chart.retheme()
  })
  setInterval(tick, TICK_MS)

  $('sign-in-form').addEventListener('submit', (event) => void onSignIn(event))
  $('sign-out').addEventListener('click', onSignOut)
  notifications.start()
  renderSession()
  startLive()
  loadAll()
}

start()
