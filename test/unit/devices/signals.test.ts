import { describe, expect, it } from 'vitest'
import {
  createPrng,
  createSensor,
  DEFAULT_SIGNALS,
  deviceSeed,
  METRIC_UNITS,
  mergeSignals,
  type Sample,
} from '../../../devices/signals.ts'

const START_MS = Date.UTC(2025, 0, 1)
const STEP_MS = 2_000

function series(seed: number, samples: number, params = DEFAULT_SIGNALS): Sample[] {
  const sensor = createSensor(params, seed)
  return Array.from({ length: samples }, (_, i) => sensor.sample(START_MS + i * STEP_MS))
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(q * (sorted.length - 1))] as number
}

describe('createPrng', () => {
  it('repeats its stream for a seed and differs across seeds', () => {
    const a = createPrng(42)
    const b = createPrng(42)
    const c = createPrng(43)
    const first = Array.from({ length: 100 }, () => a.next())
    expect(Array.from({ length: 100 }, () => b.next())).toEqual(first)
    expect(Array.from({ length: 100 }, () => c.next())).not.toEqual(first)
    expect(first.every((x) => x >= 0 && x < 1)).toBe(true)
  })

  it('draws standard normals', () => {
    const prng = createPrng(7)
    const draws = Array.from({ length: 20_000 }, () => prng.gaussian())
    const mean = draws.reduce((s, x) => s + x, 0) / draws.length
    const variance = draws.reduce((s, x) => s + (x - mean) ** 2, 0) / draws.length
    expect(Math.abs(mean)).toBeLessThan(0.05)
    expect(Math.abs(variance - 1)).toBeLessThan(0.05)
  })
})

describe('deviceSeed', () => {
  it('depends on the fleet seed and the device id only', () => {
    expect(deviceSeed(1, 'sim-001')).toBe(deviceSeed(1, 'sim-001'))
    expect(deviceSeed(1, 'sim-001')).not.toBe(deviceSeed(1, 'sim-002'))
    expect(deviceSeed(1, 'sim-001')).not.toBe(deviceSeed(2, 'sim-001'))
  })
})

describe('createSensor', () => {
  it('gives the same series for the same seed and sample times', () => {
    expect(series(11, 500)).toEqual(series(11, 500))
    expect(series(11, 500)).not.toEqual(series(12, 500))
  })

  it('stays in plausible ranges over many samples', () => {
    const samples = series(3, 20_000)
    const temps = samples.map((s) => s.temperature)
    const humidity = samples.map((s) => s.humidity)
    const co2 = samples.map((s) => s.co2)

    expect(Math.min(...temps)).toBeGreaterThan(15)
    expect(Math.max(...temps)).toBeLessThan(40)
    expect(quantile(temps, 0.5)).toBeGreaterThan(20)
    expect(quantile(temps, 0.5)).toBeLessThan(24)

    expect(Math.min(...humidity)).toBeGreaterThanOrEqual(0)
    expect(Math.max(...humidity)).toBeLessThanOrEqual(100)
    const inBand = humidity.filter((h) => h >= 20 && h <= 80).length / humidity.length
    expect(inBand).toBeGreaterThan(0.9)
    expect(quantile(humidity, 0.5)).toBeGreaterThan(40)
    expect(quantile(humidity, 0.5)).toBeLessThan(50)

    expect(Math.min(...co2)).toBeGreaterThanOrEqual(400)
    expect(Math.max(...co2)).toBeLessThan(2_500)
    expect(quantile(co2, 0.1)).toBeGreaterThan(550)
    expect(quantile(co2, 0.5)).toBeLessThan(1_100)
    expect(co2.every(Number.isInteger)).toBe(true)
  })

  it('follows the slow cycle: its period shows in the hourly means', () => {
    const params = mergeSignals(DEFAULT_SIGNALS, {
      temperature: { noiseCel: 0, spikeChance: 0, periodMs: 3_600_000, amplitudeCel: 3 },
    })
    const temps = series(5, 1_800, params).map((s) => s.temperature)
    // 1,800 samples at 2 s = one hour = one period: max - min is twice the amplitude.
    expect(Math.max(...temps) - Math.min(...temps)).toBeGreaterThan(5.9)
    expect(Math.max(...temps) - Math.min(...temps)).toBeLessThanOrEqual(6)
  })

  it('without spikes, temperature stays below the 30 °C rule threshold', () => {
    const params = mergeSignals(DEFAULT_SIGNALS, { temperature: { spikeChance: 0 } })
    expect(Math.max(...series(9, 20_000, params).map((s) => s.temperature))).toBeLessThan(29)
  })

  it('spikes cross 30 °C within a bounded number of samples, then fall back below 29', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const temps = series(seed, 3_000).map((s) => s.temperature)
      const above = temps.findIndex((t) => t > 30)
      expect(above, `seed ${seed}`).toBeGreaterThanOrEqual(0)
      // high-temperature (above 30, hysteresis 1) resolves below 29: the spike must end.
      const back = temps.findIndex((t, i) => i > above && t < 29)
      expect(back - above, `seed ${seed}`).toBeGreaterThan(0)
      expect(back - above, `seed ${seed}`).toBeLessThanOrEqual(
        DEFAULT_SIGNALS.temperature.spikeSamples,
      )
    }
  })

  it('humidity leaves [20, 80] and CO2 passes 1500 ppm now and then', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const samples = series(seed, 5_000)
      expect(
        samples.some((s) => s.humidity < 20 || s.humidity > 80),
        `seed ${seed}`,
      ).toBe(true)
      expect(
        samples.some((s) => s.co2 > 1_500),
        `seed ${seed}`,
      ).toBe(true)
    }
  })

  it('reports SenML units', () => {
    expect(METRIC_UNITS).toEqual({ temperature: 'Cel', humidity: '%RH', co2: 'ppm' })
  })
})

describe('mergeSignals', () => {
  it('overrides one parameter at a time, later layers winning', () => {
    const merged = mergeSignals(
      DEFAULT_SIGNALS,
      { temperature: { baseCel: 27 } },
      { temperature: { amplitudeCel: 4 }, co2: { basePpm: 450 } },
    )
    expect(merged.temperature).toEqual({
      ...DEFAULT_SIGNALS.temperature,
      baseCel: 27,
      amplitudeCel: 4,
    })
    expect(merged.co2.basePpm).toBe(450)
    expect(merged.humidity).toEqual(DEFAULT_SIGNALS.humidity)
    expect(DEFAULT_SIGNALS.temperature.baseCel).toBe(22)
  })
})
