/** One sample line of the Prometheus text format: `name{label="value",...} value`. */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Scrape {
  samples: Sample[]
  /** `# TYPE` of each metric family, by family name. */
  types: Map<string, string>
  /**
   * The value of the one sample of `name` whose labels include `labels`; undefined when there is
   * none, an error when several match (a test must say which one it means).
   */
  value(name: string, labels?: Record<string, string>): number | undefined
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/g

/** Parses Prometheus text format 0.0.4, strictly enough that a malformed line fails the test. */
export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line)
      if (type) types.set(type[1] as string, type[2] as string)
      else if (!line.startsWith('# HELP ')) throw new Error(`unexpected comment line: ${line}`)
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, raw] of (m[2] ?? '').matchAll(LABEL)) {
      labels[key as string] = (raw as string).replace(/\\(.)/g, (_, c: string) =>
        c === 'n' ? '\n' : c,
      )
    }
    samples.push({ name: m[1] as string, labels, value: parseValue(m[3] as string) })
  }
  return {
    samples,
    types,
    value(name, labels = {}) {
      const found = samples.filter(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      )
      if (found.length > 1) {
        throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`)
      }
      return found[0]?.value
    },
  }
}

function parseValue(raw: string): number {
  if (raw === '+Inf') return Number.POSITIVE_INFINITY
  if (raw === '-Inf') return Number.NEGATIVE_INFINITY
  // prom-client writes NaN as `Nan`; Prometheus reads it case-insensitively.
  if (raw.toLowerCase() === 'nan') return Number.NaN
  const value = Number(raw)
  if (Number.isNaN(value)) throw new Error(`not a sample value: ${raw}`)
  return value
}
