import { formatAgo, formatTime, formatUntil } from './format.js'

/** The few DOM helpers every panel of the page uses (app.js, notifications.js). */

export const $ = (id) => document.getElementById(id)

/** An element with properties (or attributes, when the element has no such property) and children. */
export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue
    if (key === 'dataset') Object.assign(node.dataset, value)
    else if (key in node && key !== 'role') node[key] = value
    else node.setAttribute(key, value)
  }
  node.append(...children.filter((c) => c !== null && c !== undefined))
  return node
}

/** Shows `text` in the message element `id`, or hides it when there is none. */
export function showMessage(id, text) {
  const node = $(id)
  node.textContent = text ?? ''
  node.hidden = !text
}

export function severityBadge(severity) {
  return el('span', { className: 'sev', dataset: { severity }, textContent: severity })
}

/**
 * A `<time>` as the page writes times. `ago`: with how long ago (`13:05:10 (2 min ago)`); `until`:
 * with how long from now (`15:05:10 (in 2 h)`). Both are kept current by the page's tick
 * (`data-ago-ms`, `data-ago-style`).
 */
export function timeEl(ms, { ago = false, until = false } = {}) {
  const style = until ? 'until' : ago ? 'time' : null
  return el('time', {
    dateTime: new Date(ms).toISOString(),
    title: new Date(ms).toString(),
    textContent: relativeTimeText(ms, style),
    dataset: style ? { agoMs: String(ms), agoStyle: style } : {},
  })
}

/** The text of a time element of `style` (see timeEl), at `nowMs`. */
export function relativeTimeText(ms, style, nowMs = Date.now()) {
  if (style === 'time') return `${formatTime(ms, nowMs)} (${formatAgo(ms, nowMs)})`
  if (style === 'until') return `${formatTime(ms, nowMs)} (${formatUntil(ms, nowMs)})`
  if (style === null) return formatTime(ms, nowMs)
  return `seen ${formatAgo(ms, nowMs)}`
}
