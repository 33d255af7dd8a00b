/** Small numeric helpers shared by the benchmark suite (bench/run.ts). */

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now()
}

export function round(n: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

/** Median of the values (the mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** Nearest-rank percentile (q in [0, 1]) of samples sorted ascending; NaN for none. */
export function percentileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank] as number
}

/** Concatenates sample arrays and sorts them ascending. */
export function mergeSorted(parts: ReadonlyArray<ArrayLike<number>>): Float64Array {
  let length = 0
  for (const p of parts) length += p.length
  const out = new Float64Array(length)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out.sort()
}

/** p50 / p99 / max of samples in ms, rounded to microseconds; null when there are none. */
export function latencySummary(
  samples: ArrayLike<number>,
): { p50Ms: number; p99Ms: number; maxMs: number; samples: number } | null {
  if (samples.length === 0) return null
  const sorted = samples instanceof Float64Array ? samples.slice().sort() : mergeSorted([samples])
  return {
    p50Ms: round(percentileSorted(sorted, 0.5), 3),
    p99Ms: round(percentileSorted(sorted, 0.99), 3),
    maxMs: round(sorted[sorted.length - 1] as number, 3),
    samples: sorted.length,
  }
}

/**
 * A bounded sample of latencies: keeps every value until `cap`, then every other one (and so on),
 * so a long run stays cheap to ship between processes while staying uniform over time.
 */
export class SampleBuffer {
  private values: Float64Array
  private length = 0
  private stride = 1
  private skipped = 0

  constructor(private readonly cap = 50_000) {
    this.values = new Float64Array(cap)
  }

  add(value: number): void {
    if (++this.skipped < this.stride) return
    this.skipped = 0
    if (this.length === this.cap) {
      // Keep every other value: the buffer now samples at twice the stride.
      for (let i = 0; i < this.cap / 2; i++) this.values[i] = this.values[i * 2] as number
      this.length = this.cap / 2
      this.stride *= 2
    }
    this.values[this.length++] = value
  }

  toArray(): Float64Array {
    return this.values.slice(0, this.length)
  }
}

export function ratio(a: number | undefined, b: number | undefined, digits = 3): number | null {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0)
    return null
  return round(a / b, digits)
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
