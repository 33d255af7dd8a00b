/**
 * In-page check of WCAG 2 text contrast: every visible element that holds text directly, its
 * colour against the background it is drawn on (ancestors' backgrounds composited, the page's
 * canvas colour last). Returned as a string to evaluate, so no transpiler helper leaks into it.
 * Canvas text (uPlot's axes) is not in the DOM and is not checked here.
 */
export const CONTRAST_FAILURES_SCRIPT = `(() => {
  const MIN_RATIO = 4.5
  const parse = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/)
    if (!m) return null
    const parts = m[1].split(/[ ,/]+/).filter(Boolean).map(Number)
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 }
  }
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  })
  const channel = (c) => {
    const s = c / 255
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4
  }
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x)
    return (hi + 0.05) / (lo + 0.05)
  }
  const dark = matchMedia('(prefers-color-scheme: dark)').matches
  const canvas = dark ? { r: 18, g: 18, b: 18, a: 1 } : { r: 255, g: 255, b: 255, a: 1 }
  const background = (el) => {
    const layers = []
    for (let node = el; node; node = node.parentElement) {
      const bg = parse(getComputedStyle(node).backgroundColor)
      if (bg && bg.a > 0) layers.push(bg)
      if (bg && bg.a === 1) break
    }
    return layers.reverse().reduce((acc, layer) => over(layer, acc), canvas)
  }
  const failures = []
  let checked = 0
  for (const el of document.querySelectorAll('body *')) {
    const hasText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim() !== '')
    if (!hasText || el.closest('[hidden], [aria-hidden="true"]')) continue
    const style = getComputedStyle(el)
    if (style.visibility === 'hidden' || el.getClientRects().length === 0) continue
    if (el.closest('.skip-link') && document.activeElement !== el) continue
    const fg = parse(style.color)
    if (!fg) continue
    const bg = background(el)
    const value = ratio(over(fg, bg), bg)
    checked++
    if (value < MIN_RATIO) {
      failures.push({ text: el.textContent.trim().slice(0, 40), color: style.color, ratio: Math.round(value * 100) / 100 })
    }
  }
  return { checked, failures }
})()`
