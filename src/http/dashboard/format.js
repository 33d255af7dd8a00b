/** How the page writes numbers, units and times: the reader's locale, short forms. */

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 })
const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
})
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
})

/** SenML unit names (RFC 8428 §12.1) as people write them. */
const UNIT_SYMBOLS = { Cel: '°C', degF: '°F', K: 'K', '%RH': '% RH', '/': '' }

export function formatValue(value) {
  return typeof value === 'number' && Number.isFinite(value) ? numberFormat.format(value) : '–'
}

export function formatUnit(unit) {
  if (typeof unit !== 'string') return ''
  return Object.hasOwn(UNIT_SYMBOLS, unit) ? UNIT_SYMBOLS[unit] : unit
}

/** Today's times as a time of day; older ones with their date. */
export function formatTime(ms, nowMs = Date.now()) {
  if (!Number.isFinite(ms)) return '–'
  const sameDay = new Date(ms).toDateString() === new Date(nowMs).toDateString()
  return (sameDay ? timeFormat : dateTimeFormat).format(ms)
}

export function formatAgo(ms, nowMs = Date.now()) {
  if (!Number.isFinite(ms) || ms <= 0) return 'never'
  const s = Math.round((nowMs - ms) / 1000)
  if (s < 5) return 'just now'
  if (s < 60) return `${s} s ago`
  const min = Math.floor(s / 60)
  if (min < 60) return `${min} min ago`
  const h = Math.floor(min / 60)
  if (h < 48) return `${h} h ago`
  return `${Math.floor(h / 24)} d ago`
}

/** How long until a time to come: `in 5 min`; `now` once it is (about) here. */
export function formatUntil(ms, nowMs = Date.now()) {
  if (!Number.isFinite(ms)) return '–'
  const s = Math.round((ms - nowMs) / 1000)
  if (s < 5) return 'now'
  if (s < 60) return `in ${s} s`
  const min = Math.floor(s / 60)
  if (min < 60) return `in ${min} min`
  const h = Math.floor(min / 60)
  if (h < 48) return `in ${h} h`
  return `in ${Math.floor(h / 24)} d`
}

/** A duration in the API's own notation (`10s`, `5m`, `1h`, `1d`). */
export function durationParam(ms) {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ]) {
    if (ms % size === 0) return `${ms / size}${unit}`
  }
  return String(ms)
}

/** The same for people: `10 s`, `5 min`. */
export function durationText(ms) {
  const param = durationParam(ms)
  const unit = { s: 's', m: 'min', h: 'h', d: 'd' }[param.at(-1)]
  return unit ? `${param.slice(0, -1)} ${unit}` : `${ms} ms`
}

/** `YYYY-MM-DDTHH:MM:SS` in local time: the value a datetime-local input takes. */
export function toLocalInput(ms) {
  const d = new Date(ms)
  const pad = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}
