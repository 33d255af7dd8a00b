/**
 * Where a V8 CPU profile (`node --cpu-prof`, a .cpuprofile file) spent its time: the top
 * functions by self time with file:line, and the self time summed per area of the gateway
 * (Aedes, the MQTT parser, our ingest parser, SQLite, logging, rate limiter, ACL, metrics, bus...).
 *
 *   node --import tsx bench/top-functions.ts FILE.cpuprofile [--top N] [--json]
 *
 * Self time of a sample is the time until the next sample (as Chrome DevTools counts it). Under
 * tsx, V8 reports positions in the code tsx generated (esbuild, whitespace minified: nearly all on
 * line 1); for the repository's own .ts files they are mapped back to source lines by transforming
 * the file again the way tsx does and reading esbuild's source map (checked against the function's
 * name; a function that does not check out is looked up by name in the source instead).
 * `(idle)` is the event loop waiting; `(program)` is V8 and native code not attributed to a JS
 * function; `(garbage collector)` is GC. Percentages are of the busy time (everything but idle).
 */
import { readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}

interface ProfileNode {
  id: number
  callFrame: CallFrame
}

export interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface FunctionCost {
  function: string
  /** path:line, relative to the repository for its own files and node_modules. */
  location: string
  area: string
  selfMs: number
  /** Percent of busy (non-idle) time. */
  selfPct: number
}

export interface ProfileSummary {
  totalMs: number
  busyMs: number
  idleMs: number
  top: FunctionCost[]
  areas: Array<{ area: string; selfMs: number; selfPct: number }>
}

const REPO = fileURLToPath(new URL('..', import.meta.url))

function cleanUrl(url: string): string {
  if (!url) return ''
  // tsx's tsImport (the SQLite writer thread's loader) tags its modules' URLs with a query.
  const bare = url.replace(/\?tsx-namespace=[^#]*$/, '')
  const path = bare.startsWith('file://') ? fileURLToPath(bare) : bare
  if (!path.startsWith('/')) return path
  const rel = relative(REPO, path)
  return rel.startsWith('..') ? path : rel
}

/** The part of the gateway (or of its dependencies) a function belongs to. */
export function areaOf(functionName: string, url: string): string {
  if (functionName === '(idle)') return 'idle'
  if (functionName === '(garbage collector)') return 'garbage collector'
  if (functionName === '(program)') return 'V8/native (unattributed)'
  if (functionName === '(root)') return 'root'
  const u = cleanUrl(url)
  const rules: Array<[RegExp, string]> = [
    [/node_modules\/mqtt-packet\//, 'mqtt-packet (MQTT parse/serialise)'],
    [/node_modules\/(aedes-packet|aedes-persistence)\//, 'Aedes (persistence, packets)'],
    [/node_modules\/aedes\//, 'Aedes (broker)'],
    [
      /node_modules\/(mqemitter|qlobber|hyperid|fastparallel|fastseries|fastfall|reusify)/,
      'Aedes deps (mqemitter, qlobber, fast*)',
    ],
    [/node_modules\/better-sqlite3\//, 'SQLite (better-sqlite3)'],
    [/node_modules\/(pino|sonic-boom|thread-stream|fast-redact|quick-format)/, 'logging (pino)'],
    [/node_modules\/prom-client\//, 'metrics (prom-client)'],
    [/node_modules\/(fastify|@fastify|find-my-way|avvio|light-my-request)/, 'HTTP (fastify)'],
    [
      /node_modules\/(bl|readable-stream|end-of-stream|duplexify)\//,
      'streams (bl, readable-stream)',
    ],
    [/node_modules\/(tsx|esbuild|get-tsconfig)\//, 'tsx loader'],
    [/node_modules\/debug\//, 'debug() calls, disabled (mqtt-packet)'],
    [/node_modules\//, 'other dependencies'],
    [/^src\/ingest\/parse-publish/, 'gateway: ingest parser'],
    [/^src\/ingest\//, 'gateway: ingest'],
    [/^src\/store\/store-writer/, 'gateway: store writer'],
    [/^src\/store\//, 'gateway: SQLite store (JS side)'],
    [/^src\/security\/rate-limit/, 'gateway: rate limiter'],
    [/^src\/security\//, 'gateway: auth / ACL'],
    [/^src\/broker\//, 'gateway: broker glue (listeners, packet guard)'],
    [/^src\/rules\//, 'gateway: rules'],
    [/^src\/bus\//, 'gateway: event bus'],
    [/^src\/telemetry\//, 'gateway: metrics / telemetry'],
    [/^src\/presence\//, 'gateway: presence'],
    [/^src\/alerts\//, 'gateway: alerts'],
    [/^src\/contract\//, 'gateway: topics / contract'],
    [/^src\//, 'gateway: other'],
    [/^node:internal\/(streams|stream_base_commons|net)|^node:net/, 'Node: net / streams'],
    [/^node:internal\/timers|^node:timers/, 'Node: timers'],
    [/^node:/, 'Node: other core'],
  ]
  for (const [pattern, area] of rules) if (pattern.test(u)) return area
  return u ? 'other' : 'native / builtins'
}

/**
 * Only samples inside [fromUs, toUs) when given: profile timestamps are CLOCK_MONOTONIC
 * microseconds, the clock of process.hrtime() in any process on the machine.
 */
export interface SampleWindow {
  fromUs: number
  toUs: number
}

/**
 * How tsx loaded the repository's modules in the profiled thread: 'esm' (`--import tsx`, the main
 * thread) or 'cjs' (its CommonJS hooks: the SQLite writer thread); the generated code differs.
 */
export type ModuleFormat = 'esm' | 'cjs'

export async function summarise(
  profile: CpuProfile,
  top = 25,
  window?: SampleWindow,
  format: ModuleFormat = 'esm',
): Promise<ProfileSummary> {
  const byId = new Map<number, ProfileNode>()
  for (const node of profile.nodes) byId.set(node.id, node)
  const selfUs = new Map<number, number>()
  const { samples, timeDeltas } = profile
  let at = profile.startTime
  for (let i = 0; i < samples.length; i++) {
    at += timeDeltas[i] ?? 0
    if (window && (at < window.fromUs || at >= window.toUs)) continue
    // A sample lasts until the next one; the last one gets nothing.
    const duration = i + 1 < timeDeltas.length ? (timeDeltas[i + 1] as number) : 0
    const id = samples[i] as number
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, duration))
  }
  const locate = await sourceLocator()
  const functions = new Map<string, { fn: string; location: string; area: string; us: number }>()
  let totalUs = 0
  let idleUs = 0
  for (const [id, us] of selfUs) {
    const node = byId.get(id)
    if (!node) continue
    const { functionName, url, lineNumber, columnNumber } = node.callFrame
    const fn = functionName || '(anonymous)'
    const area = areaOf(fn, url)
    totalUs += us
    if (area === 'idle') idleUs += us
    const file = cleanUrl(url)
    const location = file ? locate(file, functionName, lineNumber, columnNumber, format) : ''
    const key = `${fn}\u0000${location}`
    const entry = functions.get(key)
    if (entry) entry.us += us
    else functions.set(key, { fn, location, area, us })
  }
  const busyUs = Math.max(1, totalUs - idleUs)
  const pct = (us: number) => Math.round((us / busyUs) * 1_000) / 10
  const ms = (us: number) => Math.round(us / 100) / 10
  const ranked = [...functions.values()]
    .filter((f) => f.area !== 'idle')
    .sort((a, b) => b.us - a.us)
  const areas = new Map<string, number>()
  for (const f of ranked) areas.set(f.area, (areas.get(f.area) ?? 0) + f.us)
  return {
    totalMs: ms(totalUs),
    busyMs: ms(busyUs),
    idleMs: ms(idleUs),
    top: ranked.slice(0, top).map((f) => ({
      function: f.fn,
      location: f.location,
      area: f.area,
      selfMs: ms(f.us),
      selfPct: pct(f.us),
    })),
    areas: [...areas.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, selfMs: ms(us), selfPct: pct(us) })),
  }
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

/** Source map `mappings` decoded: per generated line, [generated column, original line] pairs. */
function decodeMappings(mappings: string): Array<Array<[number, number]>> {
  const lines: Array<Array<[number, number]>> = []
  let sourceLine = 0
  for (const lineText of mappings.split(';')) {
    const segments: Array<[number, number]> = []
    let column = 0
    for (const segment of lineText.split(',')) {
      if (!segment) continue
      const fields: number[] = []
      let value = 0
      let shift = 0
      for (const ch of segment) {
        const digit = BASE64.indexOf(ch)
        value += (digit & 31) << shift
        if (digit & 32) shift += 5
        else {
          fields.push(value & 1 ? -(value >>> 1) : value >>> 1)
          value = 0
          shift = 0
        }
      }
      column += fields[0] ?? 0
      if (fields.length >= 4) {
        sourceLine += fields[2] ?? 0
        segments.push([column, sourceLine])
      }
    }
    lines.push(segments)
  }
  return lines
}

type Locate = (
  file: string,
  functionName: string,
  line: number,
  column: number,
  format: ModuleFormat,
) => string

/**
 * file:line for a profile frame. Repository .ts files run through tsx: transformed again with
 * esbuild as tsx does (same options), the generated position is mapped to the source line when the
 * generated code there is the function's own (named functions are checked); otherwise the function
 * is looked up by name in the source; otherwise the generated position is shown as is.
 */
async function sourceLocator(): Promise<Locate> {
  let transform:
    | ((code: string, file: string, format: ModuleFormat) => { code: string; map: string })
    | null = null
  try {
    const esbuild = await import('esbuild')
    let tsconfigRaw = '{}'
    try {
      tsconfigRaw = readFileSync(join(REPO, 'tsconfig.json'), 'utf8')
    } catch {
      // No tsconfig: esbuild's defaults.
    }
    transform = (code, file, format) =>
      esbuild.transformSync(code, {
        loader: 'ts',
        format,
        target: `node${process.versions.node}`,
        sourcemap: 'external',
        sourcefile: file,
        minifyWhitespace: true,
        keepNames: true,
        tsconfigRaw,
      })
  } catch {
    // esbuild (tsx's) not available: name lookup only.
  }
  const cache = new Map<
    string,
    { source: string[]; code?: string[]; map?: Array<Array<[number, number]>> }
  >()
  const load = (file: string, format: ModuleFormat) => {
    const key = `${format} ${file}`
    let entry = cache.get(key)
    if (entry) return entry
    let text = ''
    try {
      text = readFileSync(join(REPO, file), 'utf8')
    } catch {
      // Gone since: nothing to map with.
    }
    entry = { source: text.split('\n') }
    if (transform && text) {
      try {
        const out = transform(text, join(REPO, file), format)
        entry.code = out.code.split('\n')
        entry.map = decodeMappings((JSON.parse(out.map) as { mappings: string }).mappings)
      } catch {
        // Not TypeScript esbuild understands: name lookup only.
      }
    }
    cache.set(key, entry)
    return entry
  }
  const byName = (source: string[], name: string): number => {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const patterns = [
      new RegExp(`function\\*?\\s+${escaped}\\b`),
      new RegExp(`\\b${escaped}\\s*[:=]\\s*(async\\s*)?(function|\\(|[A-Za-z_$][\\w$]*\\s*=>)`),
      new RegExp(`^\\s*(async\\s+|get\\s+|set\\s+|static\\s+|private\\s+)*${escaped}\\s*\\(`),
    ]
    for (const pattern of patterns) {
      const i = source.findIndex((l) => pattern.test(l))
      if (i >= 0) return i + 1
    }
    return 0
  }
  return (file, functionName, line, column, format) => {
    const generated = `${file}:${line + 1}`
    if (!/\.(ts|mts|cts)$/.test(file) || file.startsWith('/') || file.startsWith('node_modules')) {
      return generated
    }
    const entry = load(file, format)
    const simpleName = /^[A-Za-z_$][\w$]*$/.test(functionName) ? functionName : ''
    // tsx's CommonJS hooks put one line (`__filename=...;(()=>{`) before esbuild's output.
    const at = format === 'cjs' ? line - 1 : line
    if (entry.code && entry.map && at >= 0) {
      const text = entry.code[at] ?? ''
      // V8 puts a function at its parameter list: a named one is right after its name.
      const ownCode =
        !simpleName ||
        text.slice(Math.max(0, column - simpleName.length - 12), column + 1).includes(simpleName)
      const segments = entry.map[at] ?? []
      let original = -1
      for (const [col, srcLine] of segments) {
        if (col > column) break
        original = srcLine
      }
      if (ownCode && original >= 0) return `${file}:${original + 1}`
    }
    const found = simpleName ? byName(entry.source, simpleName) : 0
    return found ? `${file}:${found}` : `${generated} (generated)`
  }
}

export function readProfile(file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
}

/** A plain-text table of the summary (what the CLI prints without --json). */
export function formatSummary(summary: ProfileSummary): string {
  const lines = [
    `busy ${summary.busyMs} ms, idle ${summary.idleMs} ms (percentages are of busy time)`,
    '',
    'self ms   self %  function (file:line)  [area]',
  ]
  for (const f of summary.top) {
    lines.push(
      `${String(f.selfMs).padStart(8)}  ${f.selfPct.toFixed(1).padStart(6)}  ${f.function} (${f.location || 'native'})  [${f.area}]`,
    )
  }
  lines.push('', 'self ms   self %  area')
  for (const a of summary.areas) {
    lines.push(`${String(a.selfMs).padStart(8)}  ${a.selfPct.toFixed(1).padStart(6)}  ${a.area}`)
  }
  return lines.join('\n')
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: 'string', default: '25' },
      json: { type: 'boolean', default: false },
      // The SQLite writer thread's profile: its modules were loaded through tsx's CommonJS hooks.
      cjs: { type: 'boolean', default: false },
    },
  })
  const file = positionals[0]
  if (!file) {
    process.stderr.write(
      'usage: node --import tsx bench/top-functions.ts FILE.cpuprofile [--top N] [--json] [--cjs]\n',
    )
    process.exit(2)
  }
  const format = values.cjs ? 'cjs' : 'esm'
  const summary = await summarise(readProfile(file), Number(values.top), undefined, format)
  process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : `${formatSummary(summary)}\n`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main()
