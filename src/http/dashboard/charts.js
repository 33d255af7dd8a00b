import { durationText, formatTime, formatUnit, formatValue } from './format.js'
import uPlot from './uPlot.esm.js'

const CHART_HEIGHT_PX = 180

/** Colours come from styles.css, so the charts follow the light or dark scheme like the rest. */
function theme() {
  const style = getComputedStyle(document.documentElement)
  const read = (name) => style.getPropertyValue(name).trim()
  return {
    line: read('--chart-line'),
    fill: read('--chart-fill'),
    grid: read('--chart-grid'),
    axis: read('--fg-muted'),
    font: `12px ${read('--font-sans') || 'system-ui, sans-serif'}`,
  }
}

/**
 * One metric of one device: a uPlot line of time buckets (the aggregate API's mean per bucket)
 * that live readings keep extending. A live reading joins the bucket its time falls in (buckets
 * align to multiples of `everyMs` since the epoch, as the API's do), so the line stays what a
 * fresh fetch would show: each bucket keeps its sum and count, and the mean is their ratio.
 *
 * @param {{ deviceId: string, metric: string, unit?: string, parent: HTMLElement }} options
 */
export function createMetricChart({ deviceId, metric, unit, parent }) {
  const figure = document.createElement('figure')
  figure.className = 'chart'
  figure.dataset.metric = metric
  const caption = document.createElement('figcaption')
  const title = document.createElement('span')
  title.className = 'chart-title'
  const latest = document.createElement('span')
  latest.className = 'chart-latest'
  caption.append(title, latest)
  const plotBox = document.createElement('div')
  plotBox.className = 'chart-plot'
  plotBox.setAttribute('role', 'img')
  const status = document.createElement('p')
  status.className = 'chart-status'
  figure.append(caption, plotBox, status)
  parent.append(figure)

  /** @type {{ ts: number, sum: number, count: number }[]} ascending by ts */
  let buckets = []
  let frame = { fromMs: Date.now() - 3_600_000, toMs: Date.now(), everyMs: 10_000, live: true }
  let rangeMs = 3_600_000
  let loading = false
  /** Live readings that arrived while the buckets were being fetched. */
  let pending = []
  let last = null
  let currentUnit = unit
  let plot = null

  const build = () => {
    plot?.destroy()
    const colors = theme()
    const axis = {
      stroke: colors.axis,
      font: colors.font,
      grid: { stroke: colors.grid, width: 1 },
      ticks: { stroke: colors.grid, width: 1 },
    }
    plot = new uPlot(
      {
        width: Math.max(plotBox.clientWidth, 200),
        height: CHART_HEIGHT_PX,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true, range: () => [frame.fromMs / 1000, frame.toMs / 1000] },
          y: {
            range: (_u, min, max) => {
              if (min === null || max === null) return [0, 1]
              const pad = Math.max((max - min) * 0.1, Math.abs(max) * 0.02, 0.5)
              return [min - pad, max + pad]
            },
          },
        },
        axes: [axis, { ...axis, size: 56 }],
        series: [
          {},
          {
            label: metric,
            stroke: colors.line,
            fill: colors.fill,
            width: 2,
            spanGaps: false,
            points: { show: (u) => u.data[0].length < 60 },
          },
        ],
      },
      data(),
      plotBox,
    )
  }

  const data = () => {
    const xs = new Array(buckets.length)
    const ys = new Array(buckets.length)
    for (let i = 0; i < buckets.length; i++) {
      xs[i] = buckets[i].ts / 1000
      ys[i] = buckets[i].sum / buckets[i].count
    }
    return [xs, ys]
  }

  const describe = () => {
    title.textContent = currentUnit ? `${metric} (${formatUnit(currentUnit)})` : metric
    if (last) {
      latest.replaceChildren(
        'latest ',
        Object.assign(document.createElement('strong'), {
          textContent: formatValue(last.value),
        }),
        ` at ${formatTime(last.ts)}`,
      )
      latest.dataset.value = String(last.value)
    }
    const values = buckets.map((b) => b.sum / b.count)
    const span = frame.live ? 'live' : `${formatTime(frame.fromMs)} to ${formatTime(frame.toMs)}`
    const summary =
      values.length === 0
        ? 'no readings in this range'
        : `${values.length} points, mean per ${durationText(frame.everyMs)}, min ${formatValue(Math.min(...values))}, max ${formatValue(Math.max(...values))}`
    plotBox.setAttribute('aria-label', `${metric} of ${deviceId}, ${span}: ${summary}`)
    plotBox.dataset.points = String(values.length)
    status.textContent = loading
      ? 'Loading…'
      : values.length === 0
        ? 'No readings in this range.'
        : ''
    status.hidden = status.textContent === ''
  }

  const addToBucket = (ts, value) => {
    const start = Math.floor(ts / frame.everyMs) * frame.everyMs
    if (start < frame.fromMs - frame.everyMs) return
    // Readings come in time order nearly always: search from the end.
    let i = buckets.length - 1
    while (i >= 0 && buckets[i].ts > start) i--
    if (i >= 0 && buckets[i].ts === start) {
      buckets[i].sum += value
      buckets[i].count += 1
    } else {
      buckets.splice(i + 1, 0, { ts: start, sum: value, count: 1 })
    }
  }

  const slideTo = (nowMs) => {
    if (!frame.live) return
    frame.toMs = Math.max(nowMs, (buckets.at(-1)?.ts ?? 0) + frame.everyMs)
    frame.fromMs = nowMs - rangeMs
    const first = buckets.findIndex((b) => b.ts >= frame.fromMs - frame.everyMs)
    if (first > 0) buckets = buckets.slice(first)
    else if (first === -1) buckets = []
  }

  const chart = {
    metric,
    element: figure,

    /** A new range: the chart waits for `load` (live readings meanwhile are kept for it). */
    reset(next) {
      frame = { ...next }
      rangeMs = next.toMs - next.fromMs
      buckets = []
      pending = []
      loading = true
      chart.redraw()
    },

    /** The API's answer for the range. */
    load(answer, fromMs, toMs) {
      buckets = answer.map((b) => ({ ts: b.ts, sum: b.value * b.count, count: b.count }))
      frame.fromMs = fromMs
      frame.toMs = toMs
      loading = false
      // A reading stamped before the answer's end may already be in it: better one point missing
      // until the next fetch than one counted twice.
      for (const reading of pending) if (reading.ts >= toMs) addToBucket(reading.ts, reading.value)
      pending = []
      chart.redraw()
    },

    failed(message) {
      loading = false
      pending = []
      chart.redraw()
      status.textContent = message
      status.hidden = false
    },

    /** A live reading of this metric; returns whether it changed the chart. */
    add(reading) {
      if (reading.unit !== undefined) currentUnit = reading.unit
      if (!last || reading.ts >= last.ts) last = { value: reading.value, ts: reading.ts }
      if (!frame.live) return
      if (loading) pending.push(reading)
      else addToBucket(reading.ts, reading.value)
    },

    setLatest(value, ts, latestUnit) {
      if (latestUnit !== undefined) currentUnit = latestUnit
      if (!last || ts >= last.ts) last = { value, ts }
    },

    /** Draws the current buckets (and moves a live frame to now). */
    redraw(nowMs = Date.now()) {
      slideTo(nowMs)
      if (plot === null) build()
      else plot.setData(data())
      describe()
    },

    resize() {
      if (plot !== null)
        plot.setSize({ width: Math.max(plotBox.clientWidth, 200), height: CHART_HEIGHT_PX })
    },

    /** The colour scheme changed: uPlot keeps colours in its options, so build it again. */
    retheme() {
      build()
    },

    destroy() {
      plot?.destroy()
      plot = null
      figure.remove()
    },
  }
  return chart
}
