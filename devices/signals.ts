/**
 * Sensor signal models for the simulator: pure functions of a seed and the sample time, so a test
 * that fixes the seed sees the same series every run. No I/O, no clocks, no Math.random.
 */

export const METRICS = ['temperature', 'humidity', 'co2'] as const
export type MetricName = (typeof METRICS)[number]

/** SenML units (RFC 8428 §12.1): what a real sensor would report with each metric. */
export const METRIC_UNITS: Readonly<Record<MetricName, string>> = {
  temperature: 'Cel',
  humidity: '%RH',
  co2: 'ppm',
}

export function isMetricName(value: unknown): value is MetricName {
  return typeof value === 'string' && (METRICS as readonly string[]).includes(value)
}

export interface TemperatureParams {
  /** Mean of the cycle, °C. */
  baseCel: number
  /** Half the peak-to-peak swing of the slow (daily-ish) cycle, °C. */
  amplitudeCel: number
  /** Length of one cycle; 10 min by default so a demo shows a whole "day". */
  periodMs: number
  /** Standard deviation of the gaussian noise on each sample, °C. */
  noiseCel: number
  /** Chance per sample that a spike (a door left open in the sun, a failing fan) starts. */
  spikeChance: number
  /** Value of the first sample of a spike, °C; then it decays linearly back to the cycle. */
  spikePeakCel: number
  /** Samples a spike lasts, its peak included. */
  spikeSamples: number
}

export interface HumidityParams {
  baseRh: number
  amplitudeRh: number
  periodMs: number
  noiseRh: number
  /** Chance per sample of an excursion (a dry spell or a wet one, picked at random). */
  excursionChance: number
  /** Level held during a dry excursion, %RH (below the usual 20 % low limit). */
  dryRh: number
  /** Level held during a wet excursion, %RH (above the usual 80 % high limit). */
  wetRh: number
  excursionSamples: number
}

export interface Co2Params {
  /** Level of an empty, ventilated room, ppm. */
  basePpm: number
  noisePpm: number
  /** Chance per sample that people walk in while the room is empty. */
  occupancyChance: number
  /** Chance per sample that an occupied room empties. */
  vacancyChance: number
  /** Rise over the base when occupied, ppm (each occupancy draws 50–100 % of it). */
  occupancyPpm: number
  /** Chance per sample of a crowded, unventilated meeting that pushes CO2 past 1500 ppm. */
  crowdChance: number
  crowdPeakPpm: number
  crowdSamples: number
  /** Share of the gap to the target closed per sample (0–1): how fast the room air responds. */
  response: number
}

export interface SignalParams {
  temperature: TemperatureParams
  humidity: HumidityParams
  co2: Co2Params
}

export const DEFAULT_SIGNALS: Readonly<SignalParams> = deepFreeze({
  temperature: {
    baseCel: 22,
    amplitudeCel: 3,
    periodMs: 600_000,
    noiseCel: 0.3,
    spikeChance: 0.005,
    spikePeakCel: 35,
    spikeSamples: 6,
  },
  humidity: {
    baseRh: 45,
    amplitudeRh: 8,
    periodMs: 600_000,
    noiseRh: 1,
    excursionChance: 0.003,
    dryRh: 15,
    wetRh: 86,
    excursionSamples: 8,
  },
  co2: {
    basePpm: 600,
    noisePpm: 15,
    occupancyChance: 0.02,
    vacancyChance: 0.03,
    occupancyPpm: 450,
    crowdChance: 0.003,
    crowdPeakPpm: 1800,
    crowdSamples: 15,
    response: 0.25,
  },
})

function deepFreeze<T extends SignalParams>(params: T): Readonly<T> {
  Object.freeze(params.temperature)
  Object.freeze(params.humidity)
  Object.freeze(params.co2)
  return Object.freeze(params)
}

export type SignalOverrides = { [K in keyof SignalParams]?: Partial<SignalParams[K]> }

/** Defaults, then each override in order, one metric's parameters at a time. */
export function mergeSignals(
  base: Readonly<SignalParams>,
  ...overrides: ReadonlyArray<SignalOverrides | undefined>
): SignalParams {
  const merged: SignalParams = {
    temperature: { ...base.temperature },
    humidity: { ...base.humidity },
    co2: { ...base.co2 },
  }
  for (const override of overrides) {
    if (!override) continue
    Object.assign(merged.temperature, override.temperature)
    Object.assign(merged.humidity, override.humidity)
    Object.assign(merged.co2, override.co2)
  }
  return merged
}

export interface Prng {
  /** Uniform in [0, 1). */
  next(): number
  /** Standard normal (mean 0, standard deviation 1). */
  gaussian(): number
}

/** mulberry32: tiny, fast, and good enough for noise; the same seed gives the same stream. */
export function createPrng(seed: number): Prng {
  let state = seed >>> 0
  let spare: number | null = null
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
  return {
    next,
    gaussian() {
      if (spare !== null) {
        const value = spare
        spare = null
        return value
      }
      // Box–Muller; 1 - next() keeps the logarithm's argument in (0, 1].
      const radius = Math.sqrt(-2 * Math.log(1 - next()))
      const angle = 2 * Math.PI * next()
      spare = radius * Math.sin(angle)
      return radius * Math.cos(angle)
    },
  }
}

/**
 * One seed per device from the fleet seed and the device id (FNV-1a), so a device's series does
 * not change when the fleet around it grows or is reordered.
 */
export function deviceSeed(fleetSeed: number, deviceId: string): number {
  let hash = (0x811c9dc5 ^ (fleetSeed >>> 0)) >>> 0
  for (let i = 0; i < deviceId.length; i++) {
    hash ^= deviceId.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash
}

export type Sample = Record<MetricName, number>

export interface Sensor {
  /** The next sample, taken at `nowMs`. Every call advances the sensor's state by one sample. */
  sample(nowMs: number): Sample
}

function round(value: number, decimals: number): number {
  const factor = 10 ** decimals
  return Math.round(value * factor) / factor
}

function cycle(nowMs: number, periodMs: number, phase: number): number {
  return periodMs > 0 ? Math.sin((2 * Math.PI * nowMs) / periodMs + phase) : 0
}

/** A room sensor measuring every metric; the device picks the ones it reports. */
export function createSensor(params: Readonly<SignalParams>, seed: number): Sensor {
  const prng = createPrng(seed)
  const t = params.temperature
  const h = params.humidity
  const c = params.co2
  // Random phases so a fleet is not in lockstep; humidity runs against temperature, as indoors.
  const tempPhase = prng.next() * 2 * Math.PI
  const humidityPhase = tempPhase + Math.PI
  let spikeLeft = 0
  let excursionLeft = 0
  let excursionRh = h.wetRh
  let occupiedPpm = 0
  let crowdLeft = 0
  let co2Level = c.basePpm

  const temperature = (nowMs: number): number => {
    const normal =
      t.baseCel +
      t.amplitudeCel * cycle(nowMs, t.periodMs, tempPhase) +
      t.noiseCel * prng.gaussian()
    if (spikeLeft === 0 && prng.next() < t.spikeChance) spikeLeft = Math.max(1, t.spikeSamples)
    if (spikeLeft === 0) return normal
    const weight = spikeLeft / Math.max(1, t.spikeSamples)
    spikeLeft--
    return Math.max(normal, normal + (t.spikePeakCel - normal) * weight)
  }

  const humidity = (nowMs: number): number => {
    const noise = h.noiseRh * prng.gaussian()
    if (excursionLeft === 0 && prng.next() < h.excursionChance) {
      excursionLeft = Math.max(1, h.excursionSamples)
      excursionRh = prng.next() < 0.5 ? h.dryRh : h.wetRh
    }
    let value = h.baseRh + h.amplitudeRh * cycle(nowMs, h.periodMs, humidityPhase) + noise
    if (excursionLeft > 0) {
      excursionLeft--
      value = excursionRh + noise
    }
    return Math.min(100, Math.max(0, value))
  }

  const co2 = (): number => {
    if (occupiedPpm === 0) {
      if (prng.next() < c.occupancyChance) occupiedPpm = c.occupancyPpm * (0.5 + prng.next() / 2)
    } else if (prng.next() < c.vacancyChance) {
      occupiedPpm = 0
    }
    if (crowdLeft === 0 && prng.next() < c.crowdChance) crowdLeft = Math.max(1, c.crowdSamples)
    let target = c.basePpm + occupiedPpm
    if (crowdLeft > 0) {
      crowdLeft--
      target = Math.max(target, c.crowdPeakPpm)
    }
    co2Level += (target - co2Level) * c.response
    // Outdoor air is ~420 ppm: no ventilated room reads below it.
    return Math.max(400, co2Level + c.noisePpm * prng.gaussian())
  }

  return {
    sample(nowMs) {
      // Fixed order: the PRNG stream, hence the series, depends only on seed and sample times.
      return {
        temperature: round(temperature(nowMs), 2),
        humidity: round(humidity(nowMs), 1),
        co2: Math.round(co2()),
      }
    },
  }
}
