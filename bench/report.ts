/**
 * Markdown tables from the JSON lines of `npm run bench` (what docs/benchmarks.md shows):
 *
 *   npm run bench -- --profile > results.jsonl
 *   node --import tsx bench/report.ts results.jsonl
 *
 * One table per scenario (a row per target line, the columns that matter for it), then the
 * scenario's summary line as a list of its ratios, the profile's top functions and areas.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

type Line = Record<string, unknown>

const COLUMNS: Record<string, string[]> = {
  ingest: [
    'target',
    'qos',
    'measure',
    'msgPerSec',
    'ackedPerSec',
    'sentPerSec',
    'acked',
    'sent',
    'stored',
    'storedEqualsAcked',
    'qos0Dropped',
    'lost',
    'ackP50Ms',
    'ackP99Ms',
    'readingsPerCommit',
    'latencyP50Ms',
    'latencyP99Ms',
    'targetCpu',
    'generatorCpu',
    'crashes',
    'perRound',
  ],
  passthrough: [
    'target',
    'msgPerSec',
    'ackedPerSec',
    'storedPerSec',
    'readingsPerCommit',
    'latencyP50Ms',
    'latencyP99Ms',
    'lost',
    'targetCpu',
    'generatorCpu',
    'crashes',
    'perRound',
  ],
  'alert-latency': [
    'target',
    'achievedPerSec',
    'alertP50Ms',
    'alertP99Ms',
    'alertP99PerRound',
    'alertMaxMs',
    'alertSamples',
    'webhookP50Ms',
    'webhookP99Ms',
    'webhookP99PerRound',
    'webhookMaxMs',
    'webhookTimeouts',
    'passthroughP50Ms',
    'passthroughP99Ms',
    'passthroughP99PerRound',
    'passthroughSamples',
    'readingsPerCommit',
    'targetCpu',
    'crashes',
  ],
  overload: [
    'target',
    'mode',
    'offeredPerSec',
    'msgPerSec',
    'peakPerSec',
    'vsPeak',
    'deliveredPerSec',
    'floodAckedPerSec',
    'rssStartMiB',
    'peakRssMiB',
    'rssGrowthMiB',
    'memoryBounded',
    'crashes',
    'failedRuns',
    'runs',
    'qos1Disconnects',
    'unackedAtEnd',
    'ackedAllStored',
    'lost',
  ],
  connections: [
    'target',
    'connected',
    'failed',
    'rssBeforeMiB',
    'rssAfterMiB',
    'rssPerConnKiB',
    'connectSec',
    'connectsPerSec',
    'connectP50Ms',
    'connectP99Ms',
    'crashed',
  ],
  store: ['writer', 'backend', 'points', 'pointsPerSec', 'usPerPoint', 'skipped'],
}

function cell(value: unknown): string {
  if (value === undefined) return ''
  if (Array.isArray(value)) return value.join(', ')
  if (typeof value === 'number') return value.toLocaleString('en-US', { maximumFractionDigits: 3 })
  return String(value).replaceAll('|', '\\|')
}

function table(rows: Line[], columns: string[]): string {
  const used = columns.filter((c) => rows.some((r) => r[c] !== undefined && r[c] !== null))
  const head = `| ${used.join(' | ')} |\n|${used.map(() => '---').join('|')}|`
  return [head, ...rows.map((r) => `| ${used.map((c) => cell(r[c])).join(' | ')} |`)].join('\n')
}

function summaryList(line: Line): string {
  return Object.entries(line)
    .filter(
      ([k]) =>
        !['bench', 'summary', 'crashes', 'crashDetails', 'failures', 'failureDetails'].includes(k),
    )
    .map(
      ([k, v]) =>
        `- \`${k}\`: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : cell(v)}`,
    )
    .join('\n')
}

export function report(lines: Line[]): string {
  const out: string[] = []
  for (const bench of Object.keys(COLUMNS)) {
    const rows = lines.filter((l) => l.bench === bench && l.summary !== true)
    const summary = lines.find((l) => l.bench === bench && l.summary === true)
    if (rows.length === 0 && !summary) continue
    out.push(`### ${bench}`, '', table(rows, COLUMNS[bench] as string[]), '')
    if (summary) out.push('Summary:', '', summaryList(summary), '')
  }
  const profile = lines.find((l) => l.bench === 'profile')
  if (profile && Array.isArray(profile.top)) {
    out.push(
      '### profile',
      '',
      `Stored ${cell(profile.storedPerSec)} readings/s while profiled; ${cell(profile.samples)}: busy ${cell(profile.busyMs)} ms, idle ${cell(profile.idleMs)} ms.`,
      '',
      table(profile.top as Line[], ['selfMs', 'selfPct', 'function', 'location', 'area']),
      '',
      table(profile.areas as Line[], ['area', 'selfMs', 'selfPct']),
      '',
    )
    const writer = profile.writerThread as Line | undefined
    if (writer && Array.isArray(writer.top)) {
      out.push(
        `The SQLite writer thread over the same window: busy ${cell(writer.busyMs)} ms, idle ${cell(writer.idleMs)} ms.`,
        '',
        table(writer.top as Line[], ['selfMs', 'selfPct', 'function', 'location', 'area']),
        '',
      )
    }
  }
  return out.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2]
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/report.ts results.jsonl\n')
    process.exit(2)
  }
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line)
  process.stdout.write(`${report(lines)}\n`)
}
