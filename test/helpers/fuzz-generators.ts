/**
 * fast-check generators of MQTT publishes for the ingest parser: the property tests
 * (test/unit/ingest/parse-publish.property.test.ts) and the fuzz run (scripts/fuzz.ts) share them,
 * so what the fuzz run sends a million of is what the properties check a few thousand of.
 *
 * Every generator is built around a receive time (`nowMs`): timestamps are generated relative to
 * it, on both sides of the accepted window [minTimestampMs, nowMs + maxFutureSkewMs]. The
 * property tests parse with that same `nowMs`, so they may go right up to the boundaries
 * (`boundaryMarginMs: 0`); the fuzz run sends over a real network to a gateway reading its own
 * clock a few milliseconds later, so it asks for a margin around the moving future boundary
 * (and still checks each message for time sensitivity before sending it, see scripts/fuzz.ts).
 *
 * Nothing here knows what the parser answers: the generators only aim at the places where it has
 * to decide (valid, nearly valid, plainly invalid), and the oracle is the parser itself.
 */
import fc from 'fast-check'
import { isIdentifier } from '../../src/contract/identifiers.ts'
import { isGatewayTopic } from '../../src/contract/topics.ts'

export interface FuzzMessage {
  topic: string
  payload: Buffer
}

export interface FuzzOptions {
  /** The receive time timestamps are generated around (epoch ms). */
  nowMs: number
  /** The parser's future skew limit: timestamps are generated around nowMs + this. */
  maxFutureSkewMs: number
  /** The parser's oldest accepted timestamp: timestamps are generated around it too. */
  minTimestampMs: number
  /** The parser's payload size limit: a few payloads are generated around it. */
  maxPayloadBytes: number
  /**
   * No epoch-ms timestamp is generated within this many ms of nowMs + maxFutureSkewMs (0: right
   * at the boundary too). A generated value that would be is moved inside the window.
   */
  boundaryMarginMs: number
  /**
   * Share of payloads of about maxPayloadBytes (they are slow to send), per mille of the
   * messages; default 10 (1 %). 0 leaves them out.
   */
  largePayloadPerMille?: number
  /**
   * Per mille of device (and metric) ids in fuzzMessage that are fresh random identifiers rather
   * than from the pools: each fresh device is new state in the gateway (presence, rules, the
   * retained status topic). Defaults 50 (devices) and 100 (metrics).
   */
  freshDevicePerMille?: number
  freshMetricPerMille?: number
}

/** The parser's defaults (DEFAULT_PARSE_OPTIONS), at a given receive time. */
export function fuzzOptions(nowMs: number, overrides: Partial<FuzzOptions> = {}): FuzzOptions {
  return {
    nowMs,
    maxFutureSkewMs: 300_000,
    minTimestampMs: Date.UTC(2000, 0, 1),
    maxPayloadBytes: 65_536,
    boundaryMarginMs: 0,
    ...overrides,
  }
}

/** `arbitrary` in about `percent` % of the values, else undefined (a field left out). */
const maybe = <T>(arbitrary: fc.Arbitrary<T>, percent: number): fc.Arbitrary<T | undefined> =>
  fc.oneof(
    { weight: percent, arbitrary },
    { weight: 100 - percent, arbitrary: fc.constant(undefined) },
  )

// ---------------------------------------------------------------------------------------------
// Identifiers and topics

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-'
const ID_CHAR = fc.constantFrom(...ID_ALPHABET)

/** Any valid identifier, [A-Za-z0-9_.-]{1,64}. */
export const identifier = (): fc.Arbitrary<string> =>
  fc.string({ unit: ID_CHAR, minLength: 1, maxLength: 64 })

/**
 * Device ids of the fuzz: mostly from a small pool (as a fleet is), now and then a fresh one, so a
 * long run also meets many devices without every message being a new one.
 */
export const DEVICE_POOL = [
  'dev1',
  'dev-2',
  'sim-001',
  'greenhouse-sim-001',
  'a',
  'A.b_c-d',
  '0',
  '-',
  '_',
  '...',
  'urn.dev.1',
  'x'.repeat(64),
] as const

export const METRIC_POOL = [
  'temperature',
  'humidity',
  'co2',
  'temp',
  't',
  'v',
  'n',
  'ts_',
  'value',
  'unit',
  'pm2.5',
  'a_b.c-d',
  'm'.repeat(64),
] as const

/** A pooled id, or in `freshPerMille` per mille of the values any identifier at all. */
const pooledOrFresh = (pool: readonly string[], freshPerMille: number): fc.Arbitrary<string> => {
  const fresh = Math.round(freshPerMille)
  if (fresh <= 0) return fc.constantFrom(...pool)
  if (fresh >= 1000) return identifier()
  return fc.oneof(
    { weight: 1000 - fresh, arbitrary: fc.constantFrom(...pool) },
    { weight: fresh, arbitrary: identifier() },
  )
}

/** A device id: DEVICE_POOL, and by default 5 % fresh ones (each a new device to the gateway). */
export const deviceId = (freshPerMille = 50): fc.Arbitrary<string> =>
  pooledOrFresh(DEVICE_POOL, freshPerMille)

/** A metric id: METRIC_POOL, and by default 10 % fresh ones. */
export const metricName = (freshPerMille = 100): fc.Arbitrary<string> =>
  pooledOrFresh(METRIC_POOL, freshPerMille)

const pooledDevice = (perMille: number | undefined) => deviceId(perMille)
const pooledMetric = (perMille: number | undefined) => metricName(perMille)

/** Strings that are not identifiers: each breaks one rule of [A-Za-z0-9_.-]{1,64}. */
export const badIdentifier = (): fc.Arbitrary<string> =>
  fc
    .oneof(
      fc.constantFrom(
        'x'.repeat(65),
        'dev 1',
        'dév',
        'température',
        '😀',
        '温度',
        'dev\u0000',
        'dev\t1',
        'a\u200bb',
        '$dev',
        'dev:1',
        'dev,1',
        'dev"1',
        'Ⅻ',
        'ｄｅｖ',
        '\ud800',
        'a\udc00b',
      ),
      fc
        .tuple(
          identifier(),
          fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }),
          identifier(),
        )
        .map(([a, b, c]) => `${a}${b}${c}`),
      fc.string({ unit: ID_CHAR, minLength: 65, maxLength: 300 }),
    )
    .filter((s) => !isIdentifier(s))

/** One topic level, valid or not: wildcards, empty, unicode, control characters. */
const oddLevel = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: identifier() },
    { weight: 2, arbitrary: fc.constantFrom('', '+', '#', ' ', '$', '\u0000', '\ud800', '..') },
    { weight: 2, arbitrary: badIdentifier() },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 8 }) },
  )

/** Topics that are not `sensors/{deviceId}[/{metric}]`, or are with a bad level. */
export const oddTopic = (): fc.Arbitrary<string> =>
  fc.oneof(
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        '',
        '/',
        'sensors',
        'sensors/',
        'sensors//',
        'sensors//temperature',
        'sensors/dev1/',
        'sensors/dev1//',
        'sensors/dev1/temperature/',
        'sensors/dev1/temperature/extra',
        '/sensors/dev1/temperature',
        'Sensors/dev1/temperature',
        'SENSORS/dev1',
        'sensor/dev1/temperature',
        'sensorsdev1',
        'sensors-dev1/temperature',
        'sensors /dev1',
        'foo/bar',
        'sensors/+/temperature',
        'sensors/#',
        'sensors/+',
        'sensors/dev1/+',
        'sensors/dev1/#',
        'sensors/+/+',
        '#',
        '+',
        '$SYS/broker',
        'gateway/deadletter/dev1',
        'alerts/major/dev1/rule',
        'devices/dev1/status',
      ),
    },
    // Two or three levels under `sensors`, one of them odd.
    {
      weight: 4,
      arbitrary: fc
        .tuple(oddLevel(), fc.option(oddLevel(), { nil: undefined }))
        .map(([a, b]) => (b === undefined ? `sensors/${a}` : `sensors/${a}/${b}`)),
    },
    // Any number of levels, under any root.
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom('sensors', 'sensors', 'other', '', 'Sensors'),
          fc.array(oddLevel(), { maxLength: 6 }),
        )
        .map(([root, levels]) => [root, ...levels].join('/')),
    },
    // Long: a long level, or very many levels (Aedes refuses more than 100 at the MQTT level).
    {
      weight: 1,
      arbitrary: fc.oneof(
        fc.integer({ min: 65, max: 4_000 }).map((n) => `sensors/${'d'.repeat(n)}`),
        fc.integer({ min: 65, max: 4_000 }).map((n) => `sensors/dev1/${'m'.repeat(n)}`),
        fc.integer({ min: 3, max: 150 }).map((n) => `sensors${'/a'.repeat(n)}`),
        fc.integer({ min: 1, max: 2_000 }).map((n) => `sensors/${'é'.repeat(n)}/t`),
      ),
    },
    // Arbitrary text.
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  )

// ---------------------------------------------------------------------------------------------
// Numbers in every textual form

const finiteDouble = () => fc.double({ noNaN: true, noDefaultInfinity: true })

/** Text of a finite number, written the ways firmware writes numbers. */
export const numberText = (): fc.Arbitrary<string> =>
  fc.oneof(
    finiteDouble().map(String),
    fc.integer().map(String),
    fc.integer({ min: -1_000_000, max: 1_000_000 }).map((n) => (n / 100).toString()),
    fc.tuple(finiteDouble(), fc.integer({ min: 0, max: 20 })).map(([d, p]) => d.toFixed(p)),
    fc.tuple(finiteDouble(), fc.integer({ min: 0, max: 20 })).map(([d, p]) => d.toExponential(p)),
    fc.tuple(finiteDouble(), fc.integer({ min: 1, max: 21 })).map(([d, p]) => d.toPrecision(p)),
    // Built from parts: sign, digits, point, digits, exponent (some parts missing).
    fc
      .record({
        sign: fc.constantFrom('', '', '+', '-'),
        int: fc.string({ unit: fc.constantFrom(...'0123456789'), maxLength: 30 }),
        point: fc.boolean(),
        frac: fc.string({ unit: fc.constantFrom(...'0123456789'), maxLength: 20 }),
        exp: fc.option(
          fc.tuple(
            fc.constantFrom('e', 'E'),
            fc.constantFrom('', '+', '-'),
            fc.integer({ min: 0, max: 999 }),
          ),
          { nil: undefined },
        ),
      })
      .map(({ sign, int, point, frac, exp }) => {
        const mantissa = point ? `${int}.${frac}` : int || frac
        const e = exp ? `${exp[0]}${exp[1]}${exp[2]}` : ''
        return `${sign}${mantissa}${e}`
      }),
  )

/** Texts that look numeric to someone, but are not a finite decimal. */
export const notANumberText = (): fc.Arbitrary<string> =>
  fc.constantFrom(
    'NaN',
    'nan',
    'Infinity',
    '-Infinity',
    '+Infinity',
    'inf',
    '0x1A',
    '0b101',
    '0o17',
    '1_000',
    '1,5',
    '1.2.3',
    '--1',
    '+-1',
    '1e',
    'e5',
    '.',
    '-.',
    '.e1',
    '1e+',
    '٣',
    '１２',
    '½',
    '1 2',
    '21.5°C',
    '21.5abc',
    '1e400',
    '-1e400',
    '1.7976931348623159e308',
    '"21.5"',
    'true',
    'false',
    'null',
    '[]',
    '{}',
    '[21.5]',
    '21.5,',
    'ERR_SENSOR_TIMEOUT',
  )

/** Edge numbers that are finite (or round to a finite number) when read. */
export const edgeNumberText = (): fc.Arbitrary<string> =>
  fc.constantFrom(
    '0',
    '-0',
    '+0',
    '0.0',
    '00012',
    '5.',
    '.5',
    '1e-400',
    '4.9e-324',
    '5e-324',
    '1.7976931348623157e308',
    '1.7976931348623158e308',
    '9007199254740993',
    '123456789012345678901234567890',
  )

const WHITESPACE = ['', '', '', ' ', '\t', '\n', '\r\n', '\u00a0', '\ufeff', '\u2028', '\u000b']

/** A number's text with the surroundings a serial line adds. */
export const paddedNumberText = (): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.constantFrom(...WHITESPACE),
      fc.oneof(
        { weight: 6, arbitrary: numberText() },
        { weight: 2, arbitrary: edgeNumberText() },
        { weight: 2, arbitrary: notANumberText() },
      ),
      fc.constantFrom(...WHITESPACE),
    )
    .map(([a, n, b]) => `${a}${n}${b}`)

// ---------------------------------------------------------------------------------------------
// Timestamps

/** An epoch-ms timestamp around the window's edges and inside it, relative to options.nowMs. */
export const timestampMs = (options: FuzzOptions): fc.Arbitrary<number> => {
  const { nowMs, maxFutureSkewMs, minTimestampMs, boundaryMarginMs } = options
  const future = nowMs + maxFutureSkewMs
  const DAY = 86_400_000
  const awayFromFuture = (ms: number) =>
    boundaryMarginMs > 0 && Math.abs(ms - future) < boundaryMarginMs
      ? future - boundaryMarginMs
      : ms
  return fc
    .oneof(
      // Inside: the recent past, now, the near future.
      { weight: 6, arbitrary: fc.integer({ min: -30 * DAY, max: 0 }).map((d) => nowMs + d) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: maxFutureSkewMs }).map((d) => nowMs + d) },
      // Around the future boundary, on both sides.
      { weight: 2, arbitrary: fc.integer({ min: -2_000, max: 2_000 }).map((d) => future + d) },
      {
        weight: 1,
        arbitrary: fc
          .integer({ min: 0, max: 2_000 })
          .map((d) => future + boundaryMarginMs + d + (boundaryMarginMs > 0 ? 1 : 0)),
      },
      // Around the past boundary (fixed: no clock involved).
      {
        weight: 2,
        arbitrary: fc.integer({ min: -2_000, max: 2_000 }).map((d) => minTimestampMs + d),
      },
      // Far away: the distant future, before 2000, seconds instead of ms, fractions, extremes.
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 100 * 365 }).map((d) => future + d * DAY) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: minTimestampMs - 1 }) },
      {
        weight: 1,
        arbitrary: fc
          .integer({ min: -100_000, max: 100_000 })
          .map((d) => Math.floor(nowMs / 1000) + d),
      },
      {
        weight: 1,
        arbitrary: fc
          .tuple(
            fc.integer({ min: -DAY, max: 0 }),
            fc.constantFrom(0.5, 0.4999, 0.5001, 0.25, 0.999),
          )
          .map(([d, f]) => nowMs + d + f),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          0,
          -0,
          -1,
          -nowMs,
          1e15,
          8.64e15,
          8.64e15 + 1,
          1e20,
          Number.MAX_SAFE_INTEGER,
          Number.MAX_VALUE,
          -Number.MAX_VALUE,
          Number.MIN_VALUE,
        ),
      },
    )
    .map(awayFromFuture)
}

const pad = (n: number, width: number) => String(Math.abs(n)).padStart(width, '0')

/** ISO-8601 texts of a time, in the forms devices send, and some they should not. */
export const isoTimestamp = (options: FuzzOptions): fc.Arbitrary<string> => {
  const validDate = timestampMs(options).filter(
    (ms) => Number.isFinite(ms) && ms >= Date.UTC(0, 0, 1) && ms < Date.UTC(9999, 11, 31),
  )
  return fc.oneof(
    {
      weight: 8,
      arbitrary: fc
        .tuple(
          validDate,
          fc.constantFrom(
            'as-is',
            'seconds',
            'minutes',
            'nanos',
            'lower',
            'space',
            'offset',
            'offset-compact',
            'date-only',
            'no-offset',
          ),
          fc.integer({ min: -12 * 60, max: 14 * 60 }),
        )
        .map(([ms, form, offsetMin]) => {
          const iso = new Date(Math.round(ms)).toISOString()
          const date = iso.slice(0, 10)
          const hms = iso.slice(11, 19)
          switch (form) {
            case 'as-is':
              return iso
            case 'seconds':
              return `${date}T${hms}Z`
            case 'minutes':
              return `${date}T${hms.slice(0, 5)}Z`
            case 'nanos':
              return `${iso.slice(0, 23)}456789Z`
            case 'lower':
              return iso.replace('T', 't').replace('Z', 'z')
            case 'space':
              return iso.replace('T', ' ')
            case 'date-only':
              return date
            case 'no-offset':
              return iso.slice(0, 23)
            default: {
              // The same instant at another UTC offset.
              const local = new Date(Math.round(ms) + offsetMin * 60_000).toISOString()
              if (local.length !== 24) return iso
              const sign = offsetMin < 0 ? '-' : '+'
              const h = pad(Math.trunc(offsetMin / 60), 2)
              const m = pad(offsetMin % 60, 2)
              const offset = form === 'offset' ? `${sign}${h}:${m}` : `${sign}${h}${m}`
              return `${local.slice(0, 23)}${offset}`
            }
          }
        }),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '2024-02-30T00:00:00Z',
        '2023-02-29',
        '2024-02-29T12:00:00Z',
        '2100-02-29',
        '2000-02-29',
        '2024-13-01',
        '2024-00-10',
        '2024-01-00',
        '2024-1-1',
        ' 2024-01-01',
        '2024-01-01T25:00:00Z',
        '2024-01-01T24:00:00Z',
        '2024-01-01T23:59:60Z',
        '2024-01-01T12:00:00+25:00',
        '+002024-01-01T00:00:00Z',
        '1999-12-31T23:59:59.999Z',
        '2000-01-01T00:00:00Z',
        '2000-01-01T00:00:00.000000001Z',
        '2000-01-01T01:00:00+01:00',
        'yesterday',
        'now',
        '',
        '2024-01-01T00:00:00.0000000000Z',
        `2024-01-01T00:00:00.${'0'.repeat(40)}Z`,
      ),
    },
  )
}

/** The JSON text of a `ts` field: epoch ms, ISO, or a wrong type. */
export const timestampJson = (options: FuzzOptions): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: timestampMs(options).map(jsonNumber) },
    { weight: 3, arbitrary: isoTimestamp(options).map((s) => JSON.stringify(s)) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('null', 'true', '{}', '[]', `"${options.nowMs}"`, '[1]', '1e400'),
    },
  )

/** JSON text of a number; JSON has no -0, Infinity or NaN literal, so those are written oddly. */
function jsonNumber(n: number): string {
  if (Number.isNaN(n)) return 'null'
  if (n === Number.POSITIVE_INFINITY) return '1e400'
  if (n === Number.NEGATIVE_INFINITY) return '-1e400'
  if (Object.is(n, -0)) return '-0'
  return String(n)
}

// ---------------------------------------------------------------------------------------------
// JSON payloads

const UNITS = ['Cel', '%RH', 'ppm', '°C', 'µg/m³', 'lx', 'V', 'x'.repeat(32), 'x'.repeat(33)]

/** JSON text of a `unit`/`u`/`bu` field. */
const unitJson = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...UNITS).map((u) => JSON.stringify(u)) },
    {
      weight: 2,
      arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }).map((u) => JSON.stringify(u)),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom('""', '"a\\u0000b"', '"a\\nb"', '"\\u007f"', '1', 'null'),
    },
  )

/** JSON text of a metric's value: usually a finite number, sometimes not. */
const valueJson = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 18, arbitrary: finiteDouble().map(jsonNumber) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('-0', '1E5', '1e400', '-1e400', '1e-400', '0.0', '5e-324'),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'null',
        'true',
        'false',
        '"21.5"',
        '""',
        '[]',
        '[21.5]',
        '{}',
        '{"value":1}',
      ),
    },
  )

/** A JSON object written by hand from [key, value text] entries (duplicate keys allowed). */
function objectText(entries: ReadonlyArray<readonly [string, string]>): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`
}

const shuffledEntries = (
  entries: fc.Arbitrary<Array<readonly [string, string]>>,
): fc.Arbitrary<string> =>
  entries
    .chain((list) => fc.shuffledSubarray(list, { minLength: list.length, maxLength: list.length }))
    .map(objectText)

/** `sensors/{d}/{m}` payload `{"value","ts","unit"}`, sometimes with a typo or an extra key. */
export const valueObjectPayload = (options: FuzzOptions): fc.Arbitrary<string> =>
  shuffledEntries(
    fc
      .record({
        value: maybe(valueJson(), 95),
        ts: maybe(timestampJson(options), 60),
        unit: maybe(unitJson(), 40),
        extra: maybe(
          fc.tuple(
            fc.constantFrom('Value', 'vaule', 'timestamp', 'u', 'units', 'value ', '', 'v', 'ts'),
            valueJson(),
          ),
          10,
        ),
      })
      .map(({ value, ts, unit, extra }) => {
        const entries: Array<readonly [string, string]> = []
        if (value !== undefined) entries.push(['value', value])
        if (ts !== undefined) entries.push(['ts', ts])
        if (unit !== undefined) entries.push(['unit', unit])
        if (extra !== undefined) entries.push(extra)
        return entries
      }),
  )

/** A key of a multi-metric object: usually a metric id, sometimes not an identifier. */
const metricKey = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 40, arbitrary: metricName() },
    {
      weight: 1,
      arbitrary: fc.constantFrom('', ' ', 'a b', 'é', '__proto__', 'constructor', 'ts ', 'TS'),
    },
    { weight: 1, arbitrary: badIdentifier() },
  )

/** `sensors/{d}` payload `{"ts", metric: value, ...}`. */
export const multiMetricPayload = (options: FuzzOptions): fc.Arbitrary<string> =>
  shuffledEntries(
    fc
      .tuple(
        maybe(timestampJson(options), 60),
        fc.array(fc.tuple(metricKey(), valueJson()), { maxLength: 5 }),
      )
      .map(([ts, metrics]) => (ts === undefined ? metrics : [['ts', ts] as const, ...metrics])),
  )

/** A SenML time in seconds: relative (below 2^28), absolute around now, or odd. */
const senmlTimeJson = (options: FuzzOptions): fc.Arbitrary<string> =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.double({ min: -3_600, max: 60, noNaN: true }).map(jsonNumber),
    },
    { weight: 4, arbitrary: timestampMs(options).map((ms) => jsonNumber(ms / 1000)) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('268435455', '268435456', '0', '-0', '1e400', '"1"', 'null'),
    },
  )

/** A base name that names the topic's device (or not quite). */
const baseNameJson = (device: string): fc.Arbitrary<string> =>
  fc
    .oneof(
      {
        weight: 9,
        arbitrary: fc.constantFrom(
          `${device}:`,
          `${device}/`,
          `${device}.`,
          device,
          `urn:dev:mac:${device}:`,
          `urn:dev:mac:${device}`,
          `x/${device}/`,
        ),
      },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          'room1.',
          'room1',
          'other:',
          `${device}::`,
          `${device}x:`,
          ':',
          '',
        ),
      },
      { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
    )
    .map((s) => JSON.stringify(s))

/** One SenML record's labels; `first` records carry the base fields more often. */
const senmlRecord = (options: FuzzOptions, device: string, first: boolean) =>
  fc
    .record({
      bn: maybe(baseNameJson(device), first ? 30 : 5),
      bt: maybe(senmlTimeJson(options), first ? 50 : 5),
      bu: maybe(unitJson(), first ? 15 : 3),
      bv: maybe(valueJson(), 5),
      bver: maybe(fc.constantFrom('10', '5', '11', '"10"'), 5),
      n: fc.option(
        fc.oneof(
          { weight: 9, arbitrary: metricName() },
          { weight: 1, arbitrary: fc.oneof(badIdentifier(), fc.constant('')) },
        ),
        { nil: undefined, freq: 12 },
      ),
      u: maybe(unitJson(), 30),
      v: maybe(valueJson(), 95),
      t: maybe(senmlTimeJson(options), 20),
      odd: maybe(
        fc.tuple(
          fc.constantFrom('vs', 'vb', 'vd', 's', 'bs', 'foo_', 'l', 'ut', 'x', 'rt'),
          fc.constantFrom('"a"', 'true', '1', '"aGk="'),
        ),
        5,
      ),
    })
    .map((labels) => {
      const entries: Array<readonly [string, string]> = []
      for (const [label, text] of Object.entries(labels)) {
        if (text === undefined) continue
        if (label === 'odd') entries.push(text as readonly [string, string])
        else if (label === 'n') entries.push(['n', JSON.stringify(text)])
        else entries.push([label, text as string])
      }
      return entries
    })

/** A SenML pack for `sensors/{device}`. */
export const senmlPayload = (options: FuzzOptions, device: string): fc.Arbitrary<string> =>
  fc
    .tuple(
      senmlRecord(options, device, true),
      fc.array(senmlRecord(options, device, false), { maxLength: 6 }),
      fc.nat({ max: 19 }),
    )
    .map(([head, rest, shape]) => {
      const records = [head, ...rest].map(objectText)
      // Now and then a pack that is not a list of records.
      if (shape === 0) return '[]'
      if (shape === 1) return `[${[...records, '1'].join(',')}]`
      if (shape === 2) return `[${[...records, '[]'].join(',')}]`
      return `[${records.join(',')}]`
    })

// ---------------------------------------------------------------------------------------------
// Raw bytes and broken text

/** Corrupts a text: truncated, a byte changed, or a character inserted or dropped. */
const corrupted = (text: fc.Arbitrary<string>): fc.Arbitrary<Buffer> =>
  fc
    .tuple(text, fc.nat(), fc.constantFrom('cut', 'flip', 'insert', 'drop'), fc.nat({ max: 255 }))
    .map(([t, at, how, byte]) => {
      const bytes = Buffer.from(t, 'utf8')
      if (bytes.length === 0) return Buffer.from([byte])
      const i = at % bytes.length
      switch (how) {
        case 'cut':
          return bytes.subarray(0, i)
        case 'flip': {
          const copy = Buffer.from(bytes)
          copy[i] = byte
          return copy
        }
        case 'insert':
          return Buffer.concat([bytes.subarray(0, i), Buffer.from([byte]), bytes.subarray(i)])
        default:
          return Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)])
      }
    })

/** Byte strings that are not UTF-8 or not text at all. */
const oddBytes = (): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        Buffer.from([0xff]),
        Buffer.from([0xc0, 0x80]),
        Buffer.from([0xed, 0xa0, 0x80]),
        Buffer.from([0xf4, 0x90, 0x80, 0x80]),
        Buffer.from('21.5\u0000', 'utf8'),
        Buffer.from([0xef, 0xbb, 0xbf, 0x32, 0x31]),
        Buffer.from('{"value":21.5}', 'utf16le'),
        Buffer.from('\ufeff{"value":1}', 'utf8'),
        Buffer.from([0x32, 0x31, 0xe2, 0x82]),
      ),
    },
    // Valid text with an invalid byte at the end (cut inside a multi-byte character).
    {
      weight: 1,
      arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).map((s) => {
        const b = Buffer.from(s, 'utf8')
        return b.subarray(0, Math.max(0, b.length - 1))
      }),
    },
  )

/** Payloads around the size limit, and a deeply nested one. */
const largePayload = (options: FuzzOptions): fc.Arbitrary<Buffer> => {
  const limit = options.maxPayloadBytes
  return fc.oneof(
    fc.constantFrom(-1, 0, 1, 100).map((extra) => {
      const size = limit + extra
      return Buffer.from(`${' '.repeat(Math.max(0, size - 4))}21.5`.slice(-size), 'utf8')
    }),
    fc.constantFrom(0, 1).map((extra) => Buffer.alloc(limit + extra, 0xff)),
    fc
      .integer({ min: 100, max: Math.floor(limit / 2) - 1 })
      .map((depth) => Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`)),
    fc
      .integer({ min: 100, max: Math.floor(limit / 8) })
      .map((n) =>
        Buffer.from(JSON.stringify(Array.from({ length: n }, (_, i) => ({ n: `m${i}`, v: i })))),
      ),
  )
}

// ---------------------------------------------------------------------------------------------
// Messages

const utf8 = (text: fc.Arbitrary<string>) => text.map((t) => Buffer.from(t, 'utf8'))

/** A payload that makes sense on `sensors/{d}/{m}`: a number's text or a value object. */
export const metricPayload = (options: FuzzOptions): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 5, arbitrary: utf8(paddedNumberText()) },
    { weight: 5, arbitrary: utf8(valueObjectPayload(options)) },
  )

/** A payload that makes sense on `sensors/{d}`: an object of metrics or a SenML pack. */
export const devicePayload = (options: FuzzOptions, device: string): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 5, arbitrary: utf8(multiMetricPayload(options)) },
    { weight: 5, arbitrary: utf8(senmlPayload(options, device)) },
  )

/** Any payload at all: any of the above on the wrong topic kind, broken, raw bytes, empty. */
export const anyPayload = (options: FuzzOptions): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 3, arbitrary: metricPayload(options) },
    { weight: 3, arbitrary: devicePayload(options, 'dev1') },
    {
      weight: 2,
      arbitrary: corrupted(
        fc.oneof(
          valueObjectPayload(options),
          multiMetricPayload(options),
          senmlPayload(options, 'dev1'),
        ),
      ),
    },
    { weight: 2, arbitrary: oddBytes() },
    { weight: 1, arbitrary: fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
    {
      weight: 1,
      arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((s) => Buffer.from(s)),
    },
    { weight: 1, arbitrary: fc.constantFrom(Buffer.alloc(0), Buffer.from(' '), Buffer.from('\n')) },
  )

/**
 * One publish. Mostly well-aimed (a sensible payload on a valid topic, where most of the
 * interesting decisions are), then a sensible payload on the other topic kind, odd topics, and any
 * payload anywhere.
 */
export const fuzzMessage = (options: FuzzOptions): fc.Arbitrary<FuzzMessage> => {
  // The pools with this run's share of fresh ids (shadowing the exported defaults).
  const deviceId = () => pooledDevice(options.freshDevicePerMille)
  const metricName = () => pooledMetric(options.freshMetricPerMille)
  // Weights per mille of the messages.
  const large = Math.round(options.largePayloadPerMille ?? 10)
  const arbitraries: Array<fc.WeightedArbitrary<FuzzMessage>> = [
    {
      weight: 350,
      arbitrary: fc
        .tuple(deviceId(), metricName(), metricPayload(options))
        .map(([d, m, payload]) => ({ topic: `sensors/${d}/${m}`, payload })),
    },
    {
      weight: 350,
      arbitrary: deviceId().chain((d) =>
        devicePayload(options, d).map((payload) => ({ topic: `sensors/${d}`, payload })),
      ),
    },
    {
      weight: 110,
      arbitrary: fc
        .tuple(deviceId(), fc.option(metricName(), { nil: undefined }), anyPayload(options))
        .map(([d, m, payload]) => ({
          topic: m === undefined ? `sensors/${d}` : `sensors/${d}/${m}`,
          payload,
        })),
    },
    {
      weight: 110,
      arbitrary: fc
        .tuple(oddTopic(), anyPayload(options))
        .map(([topic, payload]) => ({ topic, payload })),
    },
    {
      weight: 70,
      arbitrary: fc
        .tuple(fc.oneof(badIdentifier(), deviceId()), fc.oneof(badIdentifier(), metricName()))
        .chain(([d, m]) =>
          metricPayload(options).map((payload) => ({ topic: `sensors/${d}/${m}`, payload })),
        ),
    },
  ]
  if (large > 0) {
    arbitraries.push({
      weight: large,
      arbitrary: fc
        .tuple(deviceId(), fc.option(metricName(), { nil: undefined }), largePayload(options))
        .map(([d, m, payload]) => ({
          topic: m === undefined ? `sensors/${d}` : `sensors/${d}/${m}`,
          payload,
        })),
    })
  }
  return fc.oneof(...arbitraries)
}

// ---------------------------------------------------------------------------------------------
// What may go over the wire

/** Levels Aedes accepts in a PUBLISH topic (its maxTopicLevels default). */
export const AEDES_MAX_TOPIC_LEVELS = 100

/**
 * Whether a client may send this publish without the broker closing its connection, so that the
 * gateway's ingest sees it: an MQTT-valid topic name (non-empty, no wildcards, no U+0000, UTF-8
 * that survives encoding, at most 65,535 bytes), not more levels than Aedes takes, not a topic
 * only the gateway publishes on (or `$`), and a packet under MAX_PACKET_BYTES.
 */
export function isPublishable(message: FuzzMessage, maxPacketBytes: number): boolean {
  const { topic } = message
  if (topic === '' || topic.startsWith('$') || isGatewayTopic(topic)) return false
  if (topic.includes('+') || topic.includes('#') || topic.includes('\u0000')) return false
  const topicBytes = Buffer.from(topic, 'utf8')
  if (topicBytes.length > 65_535 || topicBytes.toString('utf8') !== topic) return false
  let levels = 1
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f) levels++
  if (levels > AEDES_MAX_TOPIC_LEVELS) return false
  // Fixed header (at most 5 bytes), topic length (2), topic, packet id (2), payload.
  return 5 + 2 + topicBytes.length + 2 + message.payload.length <= maxPacketBytes
}
