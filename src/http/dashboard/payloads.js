/**
 * The reading forms of the gateway (README, MQTT topics), read in the browser from live MQTT
 * messages. The gateway's parser (src/ingest/parse-publish.ts) is the authority: it stores what
 * it accepts and dead-letters the rest, but a subscriber on `sensors/#` sees every publish,
 * rejected ones too. So this reader follows the same main rules (finite numbers only, a message
 * is all or nothing, times in range) and returns [] for anything it does not understand: a
 * malformed publish never shows up as a value on the page.
 */

const IDENTIFIER = /^[A-Za-z0-9_.-]{1,64}$/
const BARE_NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/
/** ISO-8601 date, optionally with a time that then carries an offset. */
const ISO_TIMESTAMP =
  /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2}))?$/
const MIN_TS_MS = Date.UTC(2000, 0, 1)
const MAX_FUTURE_SKEW_MS = 300_000
/** RFC 8428 §4.5.3: SenML times below 2^28 s are relative to now. */
const SENML_RELATIVE_LIMIT_S = 2 ** 28

/**
 * @typedef {{ deviceId: string, metric: string, value: number, ts: number, unit?: string }} Reading
 */

/**
 * Readings of one publish on `sensors/{deviceId}` or `sensors/{deviceId}/{metric}`.
 * @param {string} topic
 * @param {string} text the payload as UTF-8 text
 * @param {number} nowMs the receive time, for payloads without a time
 * @returns {Reading[]}
 */
export function parseReadings(topic, text, nowMs = Date.now()) {
  const levels = topic.split('/')
  if (levels[0] !== 'sensors' || levels.length < 2 || levels.length > 3) return []
  const deviceId = levels[1]
  const metric = levels[2]
  if (!IDENTIFIER.test(deviceId)) return []
  if (metric !== undefined && !IDENTIFIER.test(metric)) return []
  const trimmed = text.trim()
  if (trimmed === '') return []
  return (
    (metric === undefined
      ? devicePayload(deviceId, trimmed, nowMs)
      : metricPayload(deviceId, metric, trimmed, nowMs)) ?? []
  )
}

function metricPayload(deviceId, metric, text, nowMs) {
  if (BARE_NUMBER.test(text)) {
    const value = Number(text)
    return Number.isFinite(value) ? [{ deviceId, metric, value, ts: nowMs }] : null
  }
  const doc = parseJson(text)
  if (!isObject(doc)) return null
  for (const key of Object.keys(doc)) if (!['value', 'ts', 'unit'].includes(key)) return null
  if (!isFiniteNumber(doc.value)) return null
  const ts = timestamp(doc.ts, nowMs)
  if (ts === null) return null
  const reading = { deviceId, metric, value: doc.value, ts }
  if (doc.unit !== undefined) {
    if (typeof doc.unit !== 'string') return null
    reading.unit = doc.unit
  }
  return [reading]
}

function devicePayload(deviceId, text, nowMs) {
  const doc = parseJson(text)
  if (Array.isArray(doc)) return senml(deviceId, doc, nowMs)
  if (!isObject(doc)) return null
  const ts = timestamp(doc.ts, nowMs)
  if (ts === null) return null
  const readings = []
  for (const [metric, value] of Object.entries(doc)) {
    if (metric === 'ts') continue
    // One bad field rejects the message, as the gateway does: never half a message.
    if (!IDENTIFIER.test(metric) || !isFiniteNumber(value)) return null
    readings.push({ deviceId, metric, value, ts })
  }
  return readings
}

function senml(deviceId, pack, nowMs) {
  let baseName = ''
  let baseNamesDevice = false
  let baseTimeS = 0
  let baseUnit
  let baseValue = 0
  const readings = []
  for (const record of pack) {
    if (!isObject(record)) return null
    if (record.bn !== undefined) {
      if (typeof record.bn !== 'string') return null
      baseName = record.bn
      baseNamesDevice = namesDevice(record.bn, deviceId)
    }
    if (record.bt !== undefined) {
      if (!isFiniteNumber(record.bt)) return null
      baseTimeS = record.bt
    }
    if (record.bu !== undefined) {
      if (typeof record.bu !== 'string') return null
      baseUnit = record.bu
    }
    if (record.bv !== undefined) {
      if (!isFiniteNumber(record.bv)) return null
      baseValue = record.bv
    }
    // Strings, booleans, data and sums are not stored by the gateway.
    if (['vs', 'vb', 'vd', 's', 'bs'].some((label) => record[label] !== undefined)) return null
    if (!isFiniteNumber(record.v)) return null
    const name = typeof record.n === 'string' ? record.n : ''
    const metric = baseNamesDevice ? name : baseName + name
    if (!IDENTIFIER.test(metric)) return null
    const timeS = baseTimeS + (isFiniteNumber(record.t) ? record.t : 0)
    const ts =
      timeS < SENML_RELATIVE_LIMIT_S ? nowMs + Math.round(timeS * 1000) : Math.round(timeS * 1000)
    if (!inRange(ts, nowMs)) return null
    const unit = typeof record.u === 'string' ? record.u : baseUnit
    const reading = { deviceId, metric, value: baseValue + record.v, ts }
    if (unit !== undefined) reading.unit = unit
    readings.push(reading)
  }
  return readings
}

/** Does a SenML base name (`dev-1:`, `urn:dev:mac:dev-1:`) name the topic's device? */
function namesDevice(baseName, deviceId) {
  const name = /[:/.]$/.test(baseName) ? baseName.slice(0, -1) : baseName
  if (name === deviceId) return true
  const start = name.length - deviceId.length
  return start > 0 && name.endsWith(deviceId) && ':/.'.includes(name[start - 1])
}

function timestamp(raw, nowMs) {
  if (raw === undefined) return nowMs
  let ms = Number.NaN
  if (isFiniteNumber(raw)) ms = Math.round(raw)
  else if (typeof raw === 'string' && ISO_TIMESTAMP.test(raw)) ms = Date.parse(raw)
  return inRange(ms, nowMs) ? ms : null
}

function inRange(ms, nowMs) {
  return ms >= MIN_TS_MS && ms - nowMs <= MAX_FUTURE_SKEW_MS
}

function parseJson(text) {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isFiniteNumber(value) {
  return typeof value === 'number' && Number.isFinite(value)
}

/**
 * `devices/{deviceId}/status` payload, or null.
 * @returns {{ deviceId: string, state: 'online' | 'offline' | 'silent', ts: number } | null}
 */
export function parseStatus(topic, text) {
  const levels = topic.split('/')
  if (levels.length !== 3 || levels[0] !== 'devices' || levels[2] !== 'status') return null
  if (!IDENTIFIER.test(levels[1])) return null
  const doc = parseJson(text)
  if (!isObject(doc) || !['online', 'offline', 'silent'].includes(doc.state)) return null
  return { deviceId: levels[1], state: doc.state, ts: isFiniteNumber(doc.ts) ? doc.ts : 0 }
}

/** `alerts/{severity}/{deviceId}/{ruleId}` payload (an Alert), or null. */
export function parseAlert(topic, text) {
  if (!topic.startsWith('alerts/')) return null
  const doc = parseJson(text)
  if (!isObject(doc)) return null
  const { id, ruleId, deviceId, state } = doc
  if (typeof id !== 'string' || typeof ruleId !== 'string' || typeof deviceId !== 'string') {
    return null
  }
  if (state !== 'firing' && state !== 'resolved') return null
  return doc
}
