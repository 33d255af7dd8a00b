import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseDocument } from 'yaml'
import { isIdentifier } from '../src/contract/index.ts'
import { toDurationMs } from '../src/util/duration.ts'
import { isOutageMode, OUTAGE_MODES, type OutageMode, type OutageSchedule } from './outage.ts'
import { type FormChoice, isFormChoice, PAYLOAD_FORMS, type PayloadForm } from './payloads.ts'
import {
  DEFAULT_SIGNALS,
  deviceSeed,
  isMetricName,
  METRICS,
  type MetricName,
  mergeSignals,
  type SignalOverrides,
  type SignalParams,
} from './signals.ts'

/**
 * Fleet settings: defaults, then the fleet file, then command-line flags (or a caller's options),
 * each layer overriding only what it sets.
 */

/** A named set of devices that differ from the rest (a greenhouse runs hotter). */
export interface FleetGroup {
  /** Device ids are `{name}-{prefix}-{n}`, so a rule can match `{name}-*`. */
  name: string
  count: number
  form?: FormChoice
  intervalMs?: number
  metrics?: MetricName[]
  signals?: SignalOverrides
  /** Replaces the fleet-wide outage schedule for this group; null: no outages. */
  outage?: OutageSchedule | null
}

export interface FleetConfig {
  /** Total devices, group devices included. */
  devices: number
  /** Id prefix; two simulators with different prefixes never share a client id. */
  prefix: string
  intervalMs: number
  qos: 0 | 1
  form: FormChoice
  /** Share of messages (0–1) replaced by a deliberately malformed one. */
  malformedShare: number
  seed: number
  metrics: MetricName[]
  signals: SignalParams
  groups: FleetGroup[]
  /** Stop publishing after this many readings in total (a malformed message counts as one). */
  count?: number
  /** Stop publishing this long after start. */
  durationMs?: number
  /** New connections per second while starting, so 1,000 devices do not connect in one burst. */
  connectRatePerSec: number
  reconnectPeriodMs: number
  /** MQTT credentials; `{id}` in either is replaced by the device id. */
  username?: string
  password?: string
  /** Scheduled outages of every device outside a group that sets its own; null: none. */
  outage?: OutageSchedule | null
}

/** One layer: any subset of the config; signal parameters may be given one at a time. */
export type FleetSettings = Partial<Omit<FleetConfig, 'signals'>> & { signals?: SignalOverrides }

export const DEFAULT_FLEET: Readonly<FleetConfig> = Object.freeze({
  devices: 10,
  prefix: 'sim',
  intervalMs: 2_000,
  qos: 1,
  form: 'mixed',
  malformedShare: 0,
  seed: 1,
  metrics: [...METRICS],
  signals: mergeSignals(DEFAULT_SIGNALS),
  groups: [],
  connectRatePerSec: 200,
  reconnectPeriodMs: 1_000,
})

export function resolveFleet(...layers: ReadonlyArray<FleetSettings | undefined>): FleetConfig {
  const config: FleetConfig = { ...DEFAULT_FLEET, metrics: [...DEFAULT_FLEET.metrics], groups: [] }
  const signalLayers: Array<SignalOverrides | undefined> = []
  for (const layer of layers) {
    if (!layer) continue
    const { signals, ...rest } = layer
    for (const [key, value] of Object.entries(rest)) {
      if (value !== undefined) (config as unknown as Record<string, unknown>)[key] = value
    }
    signalLayers.push(signals)
  }
  config.signals = mergeSignals(DEFAULT_SIGNALS, ...signalLayers)
  return config
}

// ---------------------------------------------------------------------------------------------
// Value checks, shared by the file parser, the flag parser and createFleet. Each returns the
// value or a message that completes "<name> ...".

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string }

const NUMBER_TEXT = /^-?\d+(\.\d+)?$/

function asNumber(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null
  if (typeof value === 'string' && NUMBER_TEXT.test(value.trim())) return Number(value)
  return null
}

function describe(value: unknown): string {
  return typeof value === 'string' ? `"${value}"` : (JSON.stringify(value) ?? String(value))
}

export function checkInteger(value: unknown, min: number): Checked<number> {
  const n = asNumber(value)
  if (n === null || !Number.isInteger(n) || n < min) {
    return { ok: false, message: `must be an integer >= ${min}, got ${describe(value)}` }
  }
  return { ok: true, value: n }
}

export function checkNumber(value: unknown, min = Number.NEGATIVE_INFINITY): Checked<number> {
  const n = asNumber(value)
  if (n === null || n < min) {
    const bound = min === Number.NEGATIVE_INFINITY ? '' : ` >= ${min}`
    return { ok: false, message: `must be a number${bound}, got ${describe(value)}` }
  }
  return { ok: true, value: n }
}

export function checkShare(value: unknown): Checked<number> {
  const n = asNumber(value)
  if (n === null || n < 0 || n > 1) {
    return { ok: false, message: `must be a number from 0.0 to 1.0, got ${describe(value)}` }
  }
  return { ok: true, value: n }
}

export function checkDuration(value: unknown): Checked<number> {
  const ms = toDurationMs(value)
  if (ms === null || ms <= 0) {
    return {
      ok: false,
      message: `must be a positive duration like 500ms, 2s or 10m, got ${describe(value)}`,
    }
  }
  return { ok: true, value: ms }
}

export function checkQos(value: unknown): Checked<0 | 1> {
  const n = asNumber(value)
  if (n === 0 || n === 1) return { ok: true, value: n }
  return { ok: false, message: `must be 0 or 1, got ${describe(value)}` }
}

export function checkForm(value: unknown): Checked<FormChoice> {
  if (isFormChoice(value)) return { ok: true, value }
  return {
    ok: false,
    message: `must be one of ${[...PAYLOAD_FORMS, 'mixed'].join(', ')}, got ${describe(value)}`,
  }
}

/** A prefix or group name: an identifier short enough to leave room for the rest of the id. */
export function checkName(value: unknown): Checked<string> {
  if (typeof value === 'string' && isIdentifier(value) && value.length <= 40) {
    return { ok: true, value }
  }
  return {
    ok: false,
    message: `must be 1-40 characters of A-Z a-z 0-9 _ . -, got ${describe(value)}`,
  }
}

/** An outage offset: a duration, 0 included (the device starts with an outage). */
export function checkOffset(value: unknown): Checked<number> {
  const ms = toDurationMs(value)
  if (ms === null) {
    return {
      ok: false,
      message: `must be a duration like 30s or 1m (0s: start with an outage), got ${describe(value)}`,
    }
  }
  return { ok: true, value: ms }
}

export function checkOutageMode(value: unknown): Checked<OutageMode> {
  if (isOutageMode(value)) return { ok: true, value }
  return { ok: false, message: `must be one of ${OUTAGE_MODES.join(', ')}, got ${describe(value)}` }
}

export function checkMetrics(value: unknown): Checked<MetricName[]> {
  const list = typeof value === 'string' ? value.split(',').map((s) => s.trim()) : value
  if (Array.isArray(list) && list.length > 0 && list.every(isMetricName)) {
    return { ok: true, value: [...new Set(list)] }
  }
  return {
    ok: false,
    message: `must be a non-empty list of ${METRICS.join(', ')}, got ${describe(value)}`,
  }
}

// ---------------------------------------------------------------------------------------------
// The fleet file.

type Check = (value: unknown) => Checked<unknown>

/** YAML key -> config key and check. YAML keys carry no units: durations are `2s`, `10m`. */
const TOP_LEVEL: Record<string, [keyof FleetConfig, Check]> = {
  devices: ['devices', (v) => checkInteger(v, 0)],
  prefix: ['prefix', checkName],
  interval: ['intervalMs', checkDuration],
  qos: ['qos', checkQos],
  form: ['form', checkForm],
  malformed: ['malformedShare', checkShare],
  seed: ['seed', (v) => checkInteger(v, 0)],
  metrics: ['metrics', checkMetrics],
  count: ['count', (v) => checkInteger(v, 1)],
  duration: ['durationMs', checkDuration],
  connectRate: ['connectRatePerSec', (v) => checkInteger(v, 1)],
  reconnectPeriod: ['reconnectPeriodMs', checkDuration],
  username: ['username', checkText],
  password: ['password', checkText],
}

function checkText(value: unknown): Checked<string> {
  if (typeof value === 'string') return { ok: true, value }
  return { ok: false, message: `must be a string, got ${describe(value)}` }
}

const chance = checkShare
const samples: Check = (v) => checkInteger(v, 1)
const level: Check = (v) => checkNumber(v)
const positive: Check = (v) => checkNumber(v, 0)

const SIGNAL_KEYS: { [M in MetricName]: Record<string, [keyof SignalParams[M], Check]> } = {
  temperature: {
    base: ['baseCel', level],
    amplitude: ['amplitudeCel', positive],
    period: ['periodMs', checkDuration],
    noise: ['noiseCel', positive],
    spikeChance: ['spikeChance', chance],
    spikePeak: ['spikePeakCel', level],
    spikeSamples: ['spikeSamples', samples],
  },
  humidity: {
    base: ['baseRh', level],
    amplitude: ['amplitudeRh', positive],
    period: ['periodMs', checkDuration],
    noise: ['noiseRh', positive],
    excursionChance: ['excursionChance', chance],
    dry: ['dryRh', level],
    wet: ['wetRh', level],
    excursionSamples: ['excursionSamples', samples],
  },
  co2: {
    base: ['basePpm', positive],
    noise: ['noisePpm', positive],
    occupancyChance: ['occupancyChance', chance],
    vacancyChance: ['vacancyChance', chance],
    occupancy: ['occupancyPpm', positive],
    crowdChance: ['crowdChance', chance],
    crowdPeak: ['crowdPeakPpm', positive],
    crowdSamples: ['crowdSamples', samples],
    response: ['response', chance],
  },
}

const GROUP_KEYS: Record<string, [keyof FleetGroup, Check]> = {
  name: ['name', checkName],
  count: ['count', (v) => checkInteger(v, 0)],
  form: ['form', checkForm],
  interval: ['intervalMs', checkDuration],
  metrics: ['metrics', checkMetrics],
}

const OUTAGE_KEYS: Record<string, [keyof OutageSchedule, Check]> = {
  every: ['everyMs', checkDuration],
  for: ['forMs', checkDuration],
  mode: ['mode', checkOutageMode],
  offset: ['offsetMs', checkOffset],
}

/** What `outage:` takes besides a map: no outages (a group's way out of a fleet-wide one). */
const NO_OUTAGE = 'none'

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function readMap<T>(
  raw: Record<string, unknown>,
  keys: Record<string, [keyof T, Check]>,
  path: string,
  skip: readonly string[],
  problems: string[],
): Partial<T> {
  const out: Partial<T> = {}
  for (const [key, value] of Object.entries(raw)) {
    if (skip.includes(key)) continue
    const entry = keys[key]
    if (!entry) {
      problems.push(
        `${path}${key} is not a known key (known: ${Object.keys(keys).concat(skip).join(', ')})`,
      )
      continue
    }
    const checked = entry[1](value)
    if (checked.ok) (out as Record<string, unknown>)[entry[0] as string] = checked.value
    else problems.push(`${path}${key} ${checked.message}`)
  }
  return out
}

function readSignals(raw: unknown, path: string, problems: string[]): SignalOverrides | undefined {
  if (raw === undefined || raw === null) return undefined
  if (!isRecord(raw)) {
    problems.push(`${path} must be a map of ${METRICS.join(', ')}`)
    return undefined
  }
  const out: SignalOverrides = {}
  for (const [metric, params] of Object.entries(raw)) {
    if (!isMetricName(metric)) {
      problems.push(`${path}.${metric} is not a known metric (known: ${METRICS.join(', ')})`)
      continue
    }
    if (!isRecord(params)) {
      problems.push(`${path}.${metric} must be a map of parameters`)
      continue
    }
    const keys = SIGNAL_KEYS[metric] as Record<string, [never, Check]>
    ;(out as Record<string, unknown>)[metric] = readMap(
      params,
      keys,
      `${path}.${metric}.`,
      [],
      problems,
    )
  }
  return out
}

/** `outage: { every: 5m, for: 90s, mode: silent, offset: 1m }`, or `none`. */
function readOutage(
  raw: unknown,
  path: string,
  problems: string[],
): OutageSchedule | null | undefined {
  if (raw === undefined || raw === null) return undefined
  if (raw === NO_OUTAGE) return null
  if (!isRecord(raw)) {
    problems.push(
      `${path} must be a map like { every: 5m, for: 90s, mode: silent } or ${NO_OUTAGE}, got ${describe(raw)}`,
    )
    return undefined
  }
  const before = problems.length
  const read = readMap<OutageSchedule>(raw, OUTAGE_KEYS, `${path}.`, [], problems)
  for (const key of ['every', 'for', 'mode']) {
    if (!(key in raw)) problems.push(`${path}.${key} is required`)
  }
  const { everyMs, forMs, mode } = read
  if (everyMs !== undefined && forMs !== undefined && forMs >= everyMs) {
    problems.push(
      `${path}.for must be shorter than ${path}.every (${String(raw.every)}), got ${describe(raw.for)}`,
    )
  }
  if (problems.length > before || everyMs === undefined || forMs === undefined || !mode) {
    return undefined
  }
  const schedule: OutageSchedule = { everyMs, forMs, mode }
  if (read.offsetMs !== undefined) schedule.offsetMs = read.offsetMs
  return schedule
}

export type FleetFileResult =
  | { ok: true; settings: FleetSettings }
  | { ok: false; problems: string[] }

/** Parses a fleet file's text; every problem is reported, each naming the file and the key. */
export function parseFleetFile(text: string, file: string): FleetFileResult {
  const doc = parseDocument(text)
  if (doc.errors.length > 0) {
    return { ok: false, problems: doc.errors.map((e) => `${file}: ${e.message}`) }
  }
  const raw: unknown = doc.toJS()
  if (raw === null || raw === undefined) return { ok: true, settings: {} }
  if (!isRecord(raw)) return { ok: false, problems: [`${file}: the top level must be a map`] }

  const problems: string[] = []
  const settings: FleetSettings = readMap<FleetConfig>(
    raw,
    TOP_LEVEL,
    '',
    ['signals', 'groups', 'outage'],
    problems,
  )
  const signals = readSignals(raw.signals, 'signals', problems)
  if (signals) settings.signals = signals
  const outage = readOutage(raw.outage, 'outage', problems)
  if (outage !== undefined) settings.outage = outage

  if (raw.groups !== undefined && raw.groups !== null) {
    if (!Array.isArray(raw.groups)) {
      problems.push('groups must be a list')
    } else {
      const groups: FleetGroup[] = []
      raw.groups.forEach((item: unknown, i) => {
        const path = `groups[${i}].`
        if (!isRecord(item)) {
          problems.push(`groups[${i}] must be a map`)
          return
        }
        const before = problems.length
        const group = readMap<FleetGroup>(item, GROUP_KEYS, path, ['signals', 'outage'], problems)
        const groupSignals = readSignals(item.signals, `${path}signals`, problems)
        const groupOutage = readOutage(item.outage, `${path}outage`, problems)
        if (group.name === undefined && !('name' in item)) problems.push(`${path}name is required`)
        if (group.count === undefined && !('count' in item))
          problems.push(`${path}count is required`)
        if (problems.length > before || group.name === undefined || group.count === undefined)
          return
        const complete: FleetGroup = { ...group, name: group.name, count: group.count }
        if (groupSignals) complete.signals = groupSignals
        if (groupOutage !== undefined) complete.outage = groupOutage
        groups.push(complete)
      })
      settings.groups = groups
    }
  }
  if (problems.length > 0) return { ok: false, problems: problems.map((p) => `${file}: ${p}`) }
  return { ok: true, settings }
}

/** The shipped fleet file, next to this module, so it is found from any working directory. */
export const DEFAULT_FLEET_FILE = fileURLToPath(new URL('./fleet.yaml', import.meta.url))

/** Reads and parses a fleet file; with `optional`, a missing file is an empty one. */
export async function loadFleetFile(
  path: string,
  options: { optional?: boolean } = {},
): Promise<FleetFileResult> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (options.optional && (err as { code?: string }).code === 'ENOENT') {
      return { ok: true, settings: {} }
    }
    const reason = err instanceof Error ? err.message : String(err)
    return { ok: false, problems: [`${path}: cannot read the fleet file: ${reason}`] }
  }
  return parseFleetFile(text, path)
}

/** Problems with an outage schedule built in code; `path` names it (`groups[0].outage`). */
export function checkOutageSchedule(schedule: unknown, path: string): string[] {
  if (schedule === null || schedule === undefined) return []
  if (!isRecord(schedule))
    return [`${path} must be an outage schedule or null, got ${describe(schedule)}`]
  const problems: string[] = []
  const check = (key: string, result: Checked<unknown>) => {
    if (!result.ok) problems.push(`${path}.${key} ${result.message}`)
  }
  const every = checkNumber(schedule.everyMs, 1)
  const duration = checkNumber(schedule.forMs, 1)
  check('everyMs', every)
  check('forMs', duration)
  check('mode', checkOutageMode(schedule.mode))
  if (schedule.offsetMs !== undefined) check('offsetMs', checkNumber(schedule.offsetMs, 0))
  if (every.ok && duration.ok && duration.value >= every.value) {
    problems.push(
      `${path}.forMs must be less than ${path}.everyMs (${every.value}), got ${duration.value}`,
    )
  }
  return problems
}

/** Problems with a resolved config (for options built in code rather than read from a file). */
export function checkFleetConfig(config: FleetConfig): string[] {
  const problems: string[] = []
  const check = (name: string, result: Checked<unknown>) => {
    if (!result.ok) problems.push(`${name} ${result.message}`)
  }
  check('devices', checkInteger(config.devices, 0))
  check('prefix', checkName(config.prefix))
  check('intervalMs', checkNumber(config.intervalMs, 1))
  check('qos', checkQos(config.qos))
  check('form', checkForm(config.form))
  check('malformedShare', checkShare(config.malformedShare))
  check('seed', checkInteger(config.seed, 0))
  check('metrics', checkMetrics(config.metrics))
  check('connectRatePerSec', checkNumber(config.connectRatePerSec, 1))
  check('reconnectPeriodMs', checkInteger(config.reconnectPeriodMs, 0))
  if (config.count !== undefined) check('count', checkInteger(config.count, 1))
  if (config.durationMs !== undefined) check('durationMs', checkNumber(config.durationMs, 1))
  problems.push(...checkOutageSchedule(config.outage, 'outage'))
  const names = new Set<string>()
  config.groups.forEach((group, i) => {
    check(`groups[${i}].name`, checkName(group.name))
    check(`groups[${i}].count`, checkInteger(group.count, 0))
    problems.push(...checkOutageSchedule(group.outage, `groups[${i}].outage`))
    if (names.has(group.name)) problems.push(`groups[${i}].name "${group.name}" is used twice`)
    names.add(group.name)
  })
  return problems
}

// ---------------------------------------------------------------------------------------------
// The device plan.

export interface DeviceSpec {
  id: string
  /** Position in the fleet: start order, and the rotation of the `mixed` form. */
  index: number
  group: string | null
  form: PayloadForm
  intervalMs: number
  metrics: MetricName[]
  signals: SignalParams
  seed: number
  /** Scheduled outages, from the device's start; null: never. */
  outage: OutageSchedule | null
}

function pad(n: number, total: number): string {
  return String(n).padStart(Math.max(3, String(total).length), '0')
}

/**
 * Every device of the fleet. Groups take their devices first, in file order, up to `devices` in
 * total; the rest are `{prefix}-{n}` with the fleet-wide settings. `mixed` rotates the three
 * forms over the fleet's positions, so any three neighbours cover every form.
 */
export function planDevices(config: FleetConfig): DeviceSpec[] {
  const specs: DeviceSpec[] = []
  const add = (id: string, group: FleetGroup | null) => {
    const index = specs.length
    const choice = group?.form ?? config.form
    const form =
      choice === 'mixed' ? (PAYLOAD_FORMS[index % PAYLOAD_FORMS.length] as PayloadForm) : choice
    specs.push({
      id,
      index,
      group: group?.name ?? null,
      form,
      intervalMs: group?.intervalMs ?? config.intervalMs,
      metrics: group?.metrics ?? config.metrics,
      signals: mergeSignals(config.signals, group?.signals),
      seed: deviceSeed(config.seed, id),
      outage: (group && group.outage !== undefined ? group.outage : config.outage) ?? null,
    })
  }
  let left = config.devices
  for (const group of config.groups) {
    const count = Math.min(group.count, left)
    for (let n = 1; n <= count; n++)
      add(`${group.name}-${config.prefix}-${pad(n, group.count)}`, group)
    left -= count
  }
  for (let n = 1; n <= left; n++) add(`${config.prefix}-${pad(n, left)}`, null)
  return specs
}
