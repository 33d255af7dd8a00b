import { describe, expect, it } from 'vitest'
import { REJECT_REASONS, UNKNOWN_DEVICE_ID } from '../../../src/contract/index.ts'
import type { Reading, RejectReason } from '../../../src/contract/types.ts'
import {
  DEFAULT_PARSE_OPTIONS,
  type ParseOptions,
  parsePublish,
  toDeadLetter,
} from '../../../src/ingest/parse-publish.ts'

/** Receive time of every publish: 2025-11-26T12:00:00.000Z. */
const NOW = Date.UTC(2025, 10, 26, 12, 0, 0)
const NOW_S = NOW / 1000
const T1 = NOW - 60_000
const ID64 = 'd'.repeat(64)
const ID65 = 'd'.repeat(65)

function r(metric: string, value: number, ts: number, unit?: string, deviceId = 'dev1'): Reading {
  return unit === undefined
    ? { deviceId, metric, value, ts }
    : { deviceId, metric, value, ts, unit }
}

const json = (value: unknown): string => JSON.stringify(value)

interface Good {
  name: string
  topic: string
  payload: string | Buffer
  readings: Reading[]
  options?: Partial<ParseOptions>
}

const good: Good[] = [
  // sensors/{d}/{m}: bare number
  {
    name: 'bare decimal',
    topic: 'sensors/dev1/temp',
    payload: '21.5',
    readings: [r('temp', 21.5, NOW)],
  },
  {
    name: 'bare negative integer',
    topic: 'sensors/dev1/temp',
    payload: '-3',
    readings: [r('temp', -3, NOW)],
  },
  {
    name: 'bare exponent',
    topic: 'sensors/dev1/temp',
    payload: '1e3',
    readings: [r('temp', 1000, NOW)],
  },
  { name: 'bare zero', topic: 'sensors/dev1/temp', payload: '0', readings: [r('temp', 0, NOW)] },
  {
    name: 'bare with whitespace and newline',
    topic: 'sensors/dev1/temp',
    payload: ' \t21.5\r\n',
    readings: [r('temp', 21.5, NOW)],
  },
  {
    name: 'bare leading dot',
    topic: 'sensors/dev1/temp',
    payload: '.5',
    readings: [r('temp', 0.5, NOW)],
  },
  {
    name: 'bare leading plus',
    topic: 'sensors/dev1/temp',
    payload: '+4',
    readings: [r('temp', 4, NOW)],
  },
  {
    name: 'JSON number with signed exponent',
    topic: 'sensors/dev1/temp',
    payload: '-2.5E-1',
    readings: [r('temp', -0.25, NOW)],
  },
  {
    name: 'identifier chars _ . - and 64 long',
    topic: `sensors/${ID64}/a_b.c-d`,
    payload: '1',
    readings: [r('a_b.c-d', 1, NOW, undefined, ID64)],
  },
  // sensors/{d}/{m}: object
  {
    name: 'object with value, ts and unit',
    topic: 'sensors/dev1/temp',
    payload: json({ value: 21.5, ts: T1, unit: 'Cel' }),
    readings: [r('temp', 21.5, T1, 'Cel')],
  },
  {
    name: 'object with value only',
    topic: 'sensors/dev1/temp',
    payload: '{"value":21.5}',
    readings: [r('temp', 21.5, NOW)],
  },
  {
    name: 'object with key order ts, unit, value',
    topic: 'sensors/dev1/temp',
    payload: `{"ts":${T1},"unit":"%RH","value":40}`,
    readings: [r('temp', 40, T1, '%RH')],
  },
  {
    name: 'fractional epoch ms is rounded',
    topic: 'sensors/dev1/temp',
    payload: `{"value":1,"ts":${T1}.6}`,
    readings: [r('temp', 1, T1 + 1)],
  },
  {
    name: 'ISO ts in UTC',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"2025-11-26T11:59:00Z"}',
    readings: [r('temp', 1, T1)],
  },
  {
    name: 'ISO ts with offset',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"2025-11-26T12:59:00+01:00"}',
    readings: [r('temp', 1, T1)],
  },
  {
    name: 'ISO ts with milliseconds',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"2025-11-26T11:59:00.123Z"}',
    readings: [r('temp', 1, T1 + 123)],
  },
  {
    name: 'ISO date alone is 00:00 UTC',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"2025-11-26"}',
    readings: [r('temp', 1, Date.UTC(2025, 10, 26))],
  },
  {
    name: 'ts exactly at the future limit',
    topic: 'sensors/dev1/temp',
    payload: `{"value":1,"ts":${NOW + 300_000}}`,
    readings: [r('temp', 1, NOW + 300_000)],
  },
  {
    name: 'ts exactly at the minimum',
    topic: 'sensors/dev1/temp',
    payload: `{"value":1,"ts":${Date.UTC(2000, 0, 1)}}`,
    readings: [r('temp', 1, Date.UTC(2000, 0, 1))],
  },
  // sensors/{d}: multi-metric object
  {
    name: 'multi-metric with ts',
    topic: 'sensors/dev1',
    payload: json({ ts: T1, temperature: 21.5, humidity: 40 }),
    readings: [r('temperature', 21.5, T1), r('humidity', 40, T1)],
  },
  {
    name: 'multi-metric without ts',
    topic: 'sensors/dev1',
    payload: '{"temperature":21.5,"humidity":40}',
    readings: [r('temperature', 21.5, NOW), r('humidity', 40, NOW)],
  },
  {
    name: 'multi-metric with ISO ts last',
    topic: 'sensors/dev1',
    payload: '{"co2":612,"ts":"2025-11-26T11:59:00.000Z"}',
    readings: [r('co2', 612, T1)],
  },
  {
    name: 'UTF-8 BOM is ignored',
    topic: 'sensors/dev1',
    payload: Buffer.from('\uFEFF{"t":1}', 'utf8'),
    readings: [r('t', 1, NOW)],
  },
  // sensors/{d}: SenML
  {
    name: 'SenML with bn (device), bt, bu, n, v, u, t',
    topic: 'sensors/dev1',
    payload: json([
      { bn: 'dev1/', bt: NOW_S - 60, bu: 'Cel', n: 'temperature', v: 21.5 },
      { n: 'humidity', u: '%RH', v: 40, t: -60 },
      { n: 'temperature', v: 21.7, t: 30 },
    ]),
    readings: [
      r('temperature', 21.5, T1, 'Cel'),
      r('humidity', 40, T1 - 60_000, '%RH'),
      r('temperature', 21.7, T1 + 30_000, 'Cel'),
    ],
  },
  {
    name: 'SenML without bn or time is now',
    topic: 'sensors/dev1',
    payload: '[{"n":"temp","v":1}]',
    readings: [r('temp', 1, NOW)],
  },
  {
    name: 'SenML relative time (t < 2^28)',
    topic: 'sensors/dev1',
    payload: '[{"n":"temp","v":1,"t":-30}]',
    readings: [r('temp', 1, NOW - 30_000)],
  },
  {
    name: 'SenML relative base time',
    topic: 'sensors/dev1',
    payload: '[{"bt":-10,"n":"a","v":1,"t":-5}]',
    readings: [r('a', 1, NOW - 15_000)],
  },
  {
    name: 'SenML fractional seconds become ms',
    topic: 'sensors/dev1',
    payload: `[{"bt":${NOW_S - 60}.25,"n":"a","v":1}]`,
    readings: [r('a', 1, T1 + 250)],
  },
  {
    name: 'SenML URN bn ending in the device id',
    topic: 'sensors/dev1',
    payload: '[{"bn":"urn:dev:mac:dev1:","n":"voltage","u":"V","v":120.1}]',
    readings: [r('voltage', 120.1, NOW, 'V')],
  },
  {
    name: 'SenML bn equal to the device id',
    topic: 'sensors/dev1',
    payload: '[{"bn":"dev1","n":"temp","v":2}]',
    readings: [r('temp', 2, NOW)],
  },
  {
    name: 'SenML bn of another thing prefixes the metric',
    topic: 'sensors/dev1',
    payload: '[{"bn":"room1.","n":"temp","v":2}]',
    readings: [r('room1.temp', 2, NOW)],
  },
  {
    name: 'SenML bn alone is the name',
    topic: 'sensors/dev1',
    payload: '[{"bn":"pressure","v":1013}]',
    readings: [r('pressure', 1013, NOW)],
  },
  {
    name: 'SenML bv is added to v',
    topic: 'sensors/dev1',
    payload: '[{"bv":100,"n":"a","v":1},{"n":"b","v":-2}]',
    readings: [r('a', 101, NOW), r('b', 98, NOW)],
  },
  {
    name: 'SenML ignores ut, l and unknown labels; bver 10 is fine',
    topic: 'sensors/dev1',
    payload: '[{"bver":10,"n":"a","v":1,"ut":60,"l":"x","foo":{"bar":1}}]',
    readings: [r('a', 1, NOW)],
  },
  {
    name: 'SenML base name changes mid-pack',
    topic: 'sensors/dev1',
    payload: '[{"bn":"dev1:","n":"a","v":1},{"bn":"b.","n":"c","v":2}]',
    readings: [r('a', 1, NOW), r('b.c', 2, NOW)],
  },
  // options
  {
    name: 'payload exactly at maxPayloadBytes',
    topic: 'sensors/dev1/temp',
    payload: '7'.padStart(65_536, ' '),
    readings: [r('temp', 7, NOW)],
  },
  {
    name: 'custom minTimestampMs and maxFutureSkewMs',
    topic: 'sensors/dev1/temp',
    payload: `{"value":1,"ts":${NOW + 3_600_000}}`,
    options: { maxFutureSkewMs: 3_600_000, minTimestampMs: 0 },
    readings: [r('temp', 1, NOW + 3_600_000)],
  },
]

interface Bad {
  name: string
  topic: string
  payload: string | Buffer
  reason: RejectReason
  detail: string
  deviceId?: string
  options?: Partial<ParseOptions>
}

const bad: Bad[] = [
  // topics
  {
    name: 'root only',
    topic: 'sensors',
    payload: '1',
    reason: 'bad_topic',
    detail: 'got "sensors"',
    deviceId: UNKNOWN_DEVICE_ID,
  },
  {
    name: 'root with empty device',
    topic: 'sensors/',
    payload: '1',
    reason: 'bad_topic',
    detail: '"sensors/" (2 levels)',
    deviceId: UNKNOWN_DEVICE_ID,
  },
  {
    name: 'empty device level',
    topic: 'sensors//temp',
    payload: '1',
    reason: 'bad_topic',
    detail: '(3 levels)',
    deviceId: UNKNOWN_DEVICE_ID,
  },
  {
    name: 'empty metric level',
    topic: 'sensors/dev1/',
    payload: '1',
    reason: 'bad_topic',
    detail: '"sensors/dev1/"',
  },
  {
    name: 'too many levels',
    topic: 'sensors/dev1/temp/extra',
    payload: '1',
    reason: 'bad_topic',
    detail: '(4 levels)',
  },
  {
    name: 'another root',
    topic: 'sensor/dev1',
    payload: '1',
    reason: 'bad_topic',
    detail: 'expected sensors/{deviceId} or',
    deviceId: UNKNOWN_DEVICE_ID,
  },
  {
    name: 'space in device id',
    topic: 'sensors/dev 1/temp',
    payload: '1',
    reason: 'bad_identifier',
    detail: 'deviceId "dev 1" must match',
    deviceId: UNKNOWN_DEVICE_ID,
  },
  {
    name: '+ in device id',
    topic: 'sensors/dev+1',
    payload: '{"a":1}',
    reason: 'bad_identifier',
    detail: 'deviceId "dev+1"',
    deviceId: UNKNOWN_DEVICE_ID,
  },
  {
    name: '65-char device id',
    topic: `sensors/${ID65}/temp`,
    payload: '1',
    reason: 'bad_identifier',
    detail: '…" (65 chars) must match',
    deviceId: UNKNOWN_DEVICE_ID,
  },
  {
    name: 'unicode device id',
    topic: 'sensors/dév1/temp',
    payload: '1',
    reason: 'bad_identifier',
    detail: 'deviceId "dév1"',
    deviceId: UNKNOWN_DEVICE_ID,
  },
  {
    name: 'space in metric',
    topic: 'sensors/dev1/tem p',
    payload: '1',
    reason: 'bad_identifier',
    detail: 'metric "tem p" must match [A-Za-z0-9_.-]{1,64}',
  },
  {
    name: '# in metric',
    topic: 'sensors/dev1/temp#',
    payload: '1',
    reason: 'bad_identifier',
    detail: 'metric "temp#"',
  },
  {
    name: '65-char metric',
    topic: `sensors/dev1/${ID65}`,
    payload: '1',
    reason: 'bad_identifier',
    detail: 'metric "ddd',
  },
  // payload bytes
  {
    name: 'empty payload',
    topic: 'sensors/dev1/temp',
    payload: '',
    reason: 'empty_payload',
    detail: '0 bytes',
  },
  {
    name: 'not UTF-8',
    topic: 'sensors/dev1/temp',
    payload: Buffer.from([0xff, 0xfe]),
    reason: 'not_utf8',
    detail: '2 bytes is not valid UTF-8',
  },
  {
    name: 'overlong UTF-8',
    topic: 'sensors/dev1',
    payload: Buffer.from([0x7b, 0xc0, 0xaf, 0x7d]),
    reason: 'not_utf8',
    detail: 'not valid UTF-8',
  },
  {
    name: '1 MB payload',
    topic: 'sensors/dev1/temp',
    payload: Buffer.alloc(1 << 20, 0x31),
    reason: 'payload_too_large',
    detail: 'payload is 1048576 bytes (limit 65536)',
  },
  {
    name: 'one byte over the limit',
    topic: 'sensors/dev1/temp',
    payload: '7'.padStart(65_537, ' '),
    reason: 'payload_too_large',
    detail: '65537 bytes',
  },
  {
    name: 'size is checked before UTF-8',
    topic: 'sensors/dev1/temp',
    payload: Buffer.alloc(11, 0xff),
    options: { maxPayloadBytes: 10 },
    reason: 'payload_too_large',
    detail: '(limit 10)',
  },
  // sensors/{d}/{m} values
  {
    name: 'NaN',
    topic: 'sensors/dev1/temp',
    payload: 'NaN',
    reason: 'bad_value',
    detail: 'expected a decimal number or a JSON object {"value":...}, got "NaN"',
  },
  {
    name: 'Infinity',
    topic: 'sensors/dev1/temp',
    payload: 'Infinity',
    reason: 'bad_value',
    detail: 'got "Infinity"',
  },
  {
    name: 'hex',
    topic: 'sensors/dev1/temp',
    payload: '0x10',
    reason: 'bad_value',
    detail: 'got "0x10"',
  },
  {
    name: 'decimal comma',
    topic: 'sensors/dev1/temp',
    payload: '1,5',
    reason: 'bad_value',
    detail: 'got "1,5"',
  },
  {
    name: 'boolean',
    topic: 'sensors/dev1/temp',
    payload: 'true',
    reason: 'bad_value',
    detail: 'got "true"',
  },
  {
    name: 'null',
    topic: 'sensors/dev1/temp',
    payload: 'null',
    reason: 'bad_value',
    detail: 'got "null"',
  },
  {
    name: 'whitespace only',
    topic: 'sensors/dev1/temp',
    payload: ' \n',
    reason: 'bad_value',
    detail: 'blank',
  },
  {
    name: 'empty JSON string',
    topic: 'sensors/dev1/temp',
    payload: '""',
    reason: 'bad_value',
    detail: 'got a string',
  },
  {
    name: 'quoted number',
    topic: 'sensors/dev1/temp',
    payload: '"21.5"',
    reason: 'bad_value',
    detail: 'got a string',
  },
  {
    name: 'number overflowing a double',
    topic: 'sensors/dev1/temp',
    payload: '1e999',
    reason: 'bad_value',
    detail: 'number "1e999" is out of range',
  },
  {
    name: 'array on a metric topic',
    topic: 'sensors/dev1/temp',
    payload: '[1,2]',
    reason: 'bad_value',
    detail: 'SenML packs go to sensors/{deviceId}',
  },
  {
    name: 'truncated JSON object',
    topic: 'sensors/dev1/temp',
    payload: '{"value":',
    reason: 'not_json',
    detail: 'payload is not JSON',
  },
  {
    name: 'value as string',
    topic: 'sensors/dev1/temp',
    payload: '{"value":"21.5"}',
    reason: 'bad_value',
    detail: '"value" must be a finite number, got a string',
  },
  {
    name: 'value null',
    topic: 'sensors/dev1/temp',
    payload: '{"value":null}',
    reason: 'bad_value',
    detail: 'got null',
  },
  {
    name: 'value boolean',
    topic: 'sensors/dev1/temp',
    payload: '{"value":false}',
    reason: 'bad_value',
    detail: 'got boolean false',
  },
  {
    name: 'value nested object',
    topic: 'sensors/dev1/temp',
    payload: '{"value":{"v":1}}',
    reason: 'bad_value',
    detail: 'got an object',
  },
  {
    name: 'value nested array',
    topic: 'sensors/dev1/temp',
    payload: '{"value":[1]}',
    reason: 'bad_value',
    detail: 'got an array',
  },
  {
    name: 'value overflowing a double',
    topic: 'sensors/dev1/temp',
    payload: '{"value":-1e400}',
    reason: 'bad_value',
    detail: 'got a non-finite number',
  },
  {
    name: 'unknown key',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"extra":2}',
    reason: 'bad_value',
    detail: 'unknown key "extra"; allowed keys are "value", "ts" and "unit"',
  },
  {
    name: 'missing value',
    topic: 'sensors/dev1/temp',
    payload: `{"ts":${T1}}`,
    reason: 'bad_value',
    detail: 'missing "value"',
  },
  {
    name: 'unit not a string',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"unit":5}',
    reason: 'bad_value',
    detail: '"unit" must be a string, got number 5',
  },
  {
    name: 'unit of 33 chars',
    topic: 'sensors/dev1/temp',
    payload: json({ value: 1, unit: 'u'.repeat(33) }),
    reason: 'bad_value',
    detail: 'must be 1 to 32 characters, got 33',
  },
  {
    name: 'unit with a control character',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"unit":"C\\u0000"}',
    reason: 'bad_value',
    detail: 'control characters',
  },
  // sensors/{d} values
  {
    name: 'bare number on a device topic',
    topic: 'sensors/dev1',
    payload: '21.5',
    reason: 'bad_value',
    detail: 'got number 21.5; a bare number goes to sensors/{deviceId}/{metric}',
  },
  {
    name: 'null on a device topic',
    topic: 'sensors/dev1',
    payload: 'null',
    reason: 'bad_value',
    detail: 'got null',
  },
  {
    name: 'string on a device topic',
    topic: 'sensors/dev1',
    payload: '"hi"',
    reason: 'bad_value',
    detail: 'got a string',
  },
  {
    name: 'boolean on a device topic',
    topic: 'sensors/dev1',
    payload: 'true',
    reason: 'bad_value',
    detail: 'got boolean true',
  },
  {
    name: 'garbage on a device topic',
    topic: 'sensors/dev1',
    payload: 'hello',
    reason: 'not_json',
    detail: 'payload is not JSON',
  },
  {
    name: 'broken JSON on a device topic',
    topic: 'sensors/dev1',
    payload: '{"a":1,}',
    reason: 'not_json',
    detail: 'payload is not JSON',
  },
  {
    name: 'metric as string',
    topic: 'sensors/dev1',
    payload: '{"temperature":"21.5"}',
    reason: 'bad_value',
    detail: 'field "temperature" must be a finite number, got a string',
  },
  {
    name: 'one bad field rejects all',
    topic: 'sensors/dev1',
    payload: '{"temperature":21.5,"humidity":null}',
    reason: 'bad_value',
    detail: 'field "humidity" must be a finite number, got null',
  },
  {
    name: 'nested object metric',
    topic: 'sensors/dev1',
    payload: '{"temperature":{"v":1}}',
    reason: 'bad_value',
    detail: 'got an object',
  },
  {
    name: 'nested array metric',
    topic: 'sensors/dev1',
    payload: '{"temperature":[1]}',
    reason: 'bad_value',
    detail: 'got an array',
  },
  {
    name: 'boolean metric',
    topic: 'sensors/dev1',
    payload: '{"on":true}',
    reason: 'bad_value',
    detail: 'field "on" must be a finite number, got boolean true',
  },
  {
    name: 'metric key with a space',
    topic: 'sensors/dev1',
    payload: '{"bad key":1}',
    reason: 'bad_identifier',
    detail: 'metric "bad key" must match',
  },
  {
    name: 'empty object',
    topic: 'sensors/dev1',
    payload: '{}',
    reason: 'no_metrics',
    detail: 'no metric fields',
  },
  {
    name: 'ts only',
    topic: 'sensors/dev1',
    payload: `{"ts":${T1}}`,
    reason: 'no_metrics',
    detail: 'no metric fields',
  },
  // timestamps
  {
    name: 'ts before 2000',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":1700}',
    reason: 'timestamp_out_of_range',
    detail: 'ts 1700 is before 2000-01-01T00:00:00.000Z; epoch milliseconds expected',
  },
  {
    name: 'ts in epoch seconds',
    topic: 'sensors/dev1',
    payload: `{"a":1,"ts":${NOW_S}}`,
    reason: 'timestamp_out_of_range',
    detail: `ts ${NOW_S} is before 2000`,
  },
  {
    name: 'negative ts',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":-5}',
    reason: 'timestamp_out_of_range',
    detail: 'ts -5 is before',
  },
  {
    name: 'ts an hour ahead',
    topic: 'sensors/dev1/temp',
    payload: `{"value":1,"ts":${NOW + 3_600_000}}`,
    reason: 'timestamp_out_of_range',
    detail: 'is 3600000 ms ahead of the gateway clock (limit 300000)',
  },
  {
    name: 'ts 1 ms past the limit',
    topic: 'sensors/dev1',
    payload: `{"a":1,"ts":${NOW + 300_001}}`,
    reason: 'timestamp_out_of_range',
    detail: 'is 300001 ms ahead',
  },
  {
    name: 'ISO ts ahead',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"2025-11-26T13:00:00Z"}',
    reason: 'timestamp_out_of_range',
    detail: 'ts "2025-11-26T13:00:00Z" is 3600000 ms ahead',
  },
  {
    name: 'ISO ts before 2000',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"1970-01-01T00:00:00Z"}',
    reason: 'timestamp_out_of_range',
    detail: 'is the device clock set?',
  },
  {
    name: 'ts garbage string',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"yesterday"}',
    reason: 'bad_timestamp',
    detail: 'not a valid ISO-8601 date or date-time, got "yesterday"',
  },
  {
    name: 'ts numeric string',
    topic: 'sensors/dev1/temp',
    payload: `{"value":1,"ts":"${T1}"}`,
    reason: 'bad_timestamp',
    detail: 'not a valid ISO-8601',
  },
  {
    name: 'ts time without date',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"12:00:00Z"}',
    reason: 'bad_timestamp',
    detail: 'not a valid ISO-8601',
  },
  {
    name: 'ts without offset',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"2025-11-26T11:59:00"}',
    reason: 'bad_timestamp',
    detail: 'needs an offset (Z or ±hh:mm)',
  },
  {
    name: 'ts not a calendar date',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":"2025-02-29T00:00:00Z"}',
    reason: 'bad_timestamp',
    detail: '"2025-02-29T00:00:00Z"',
  },
  {
    name: 'ts hour 25',
    topic: 'sensors/dev1',
    payload: '{"a":1,"ts":"2025-11-26T25:00:00Z"}',
    reason: 'bad_timestamp',
    detail: 'not a valid ISO-8601',
  },
  {
    name: 'ts boolean',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":true}',
    reason: 'bad_timestamp',
    detail: 'got boolean true',
  },
  {
    name: 'ts null',
    topic: 'sensors/dev1',
    payload: '{"a":1,"ts":null}',
    reason: 'bad_timestamp',
    detail: 'epoch milliseconds or an ISO-8601 string, got null',
  },
  {
    name: 'ts overflowing a double',
    topic: 'sensors/dev1/temp',
    payload: '{"value":1,"ts":1e999}',
    reason: 'bad_timestamp',
    detail: 'not finite',
  },
  // SenML
  {
    name: 'empty SenML pack',
    topic: 'sensors/dev1',
    payload: '[]',
    reason: 'no_metrics',
    detail: 'SenML pack is empty',
  },
  {
    name: 'SenML record without a name',
    topic: 'sensors/dev1',
    payload: '[{"v":1}]',
    reason: 'bad_senml',
    detail: 'record 0 has no name',
  },
  {
    name: 'SenML bn names only the device',
    topic: 'sensors/dev1',
    payload: '[{"bn":"dev1/","n":"a","v":1},{"v":2}]',
    reason: 'bad_senml',
    detail: 'record 1 has no name',
  },
  {
    name: 'SenML record without a value',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","v":1},{"n":"b"}]',
    reason: 'bad_senml',
    detail: 'record 1 has no value: "v" is missing',
  },
  {
    name: 'SenML record not an object',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","v":1},3]',
    reason: 'bad_senml',
    detail: 'record 1 must be an object, got number 3',
  },
  {
    name: 'SenML v as string',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","v":"1"}]',
    reason: 'bad_senml',
    detail: 'record 0 "v" must be a number, got a string',
  },
  {
    name: 'SenML n as number',
    topic: 'sensors/dev1',
    payload: '[{"n":5,"v":1}]',
    reason: 'bad_senml',
    detail: '"n" must be a string, got number 5',
  },
  {
    name: 'SenML string value',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","vs":"on"}]',
    reason: 'bad_senml',
    detail: 'record 0 "vs" is not supported',
  },
  {
    name: 'SenML boolean value',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","vb":true}]',
    reason: 'bad_senml',
    detail: '"vb" is not supported',
  },
  {
    name: 'SenML data value',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","vd":"AAE"}]',
    reason: 'bad_senml',
    detail: '"vd" is not supported',
  },
  {
    name: 'SenML sum',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","v":1,"s":5}]',
    reason: 'bad_senml',
    detail: '"s" (sum) is not supported',
  },
  {
    name: 'SenML base sum',
    topic: 'sensors/dev1',
    payload: '[{"bs":5,"n":"a","v":1}]',
    reason: 'bad_senml',
    detail: '"bs" (sum) is not supported',
  },
  {
    name: 'SenML must-understand label',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","v":1,"crit_":1}]',
    reason: 'bad_senml',
    detail: 'must-understand label "crit_"',
  },
  {
    name: 'SenML newer version',
    topic: 'sensors/dev1',
    payload: '[{"bver":11,"n":"a","v":1}]',
    reason: 'bad_senml',
    detail: '"bver" 11 is newer than the supported 10',
  },
  {
    name: 'SenML bt as string',
    topic: 'sensors/dev1',
    payload: '[{"bt":"now","n":"a","v":1}]',
    reason: 'bad_senml',
    detail: '"bt" must be a number, got a string',
  },
  {
    name: 'SenML empty unit',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","v":1,"u":""}]',
    reason: 'bad_senml',
    detail: 'record 0 "u" must be 1 to 32 characters, got 0',
  },
  {
    name: 'SenML bn of another device',
    topic: 'sensors/dev1',
    payload: '[{"bn":"urn:dev:mac:dev2:","n":"t","v":1}]',
    reason: 'bad_identifier',
    detail: 'record 0: metric "urn:dev:mac:dev2:t" must match',
  },
  {
    name: 'SenML bn ending in a longer id',
    topic: 'sensors/dev1',
    payload: '[{"bn":"urn:xdev1:","n":"t","v":1}]',
    reason: 'bad_identifier',
    detail: 'metric "urn:xdev1:t"',
  },
  {
    name: 'SenML relative time an hour ahead',
    topic: 'sensors/dev1',
    payload: '[{"n":"a","v":1,"t":3600}]',
    reason: 'timestamp_out_of_range',
    detail:
      'record 0: resolved time 3600 s is 3600000 ms ahead of the gateway clock (limit 300000)',
  },
  {
    name: 'SenML absolute time before 2000',
    topic: 'sensors/dev1',
    payload: '[{"bt":300000000,"n":"a","v":1}]',
    reason: 'timestamp_out_of_range',
    detail: 'resolved time 300000000 s is before 2000-01-01T00:00:00.000Z; epoch seconds expected',
  },
  {
    name: 'SenML bt in milliseconds',
    topic: 'sensors/dev1',
    payload: `[{"n":"a","v":1},{"bt":${NOW},"n":"b","v":1}]`,
    reason: 'timestamp_out_of_range',
    detail: 'record 1: resolved time',
  },
]

function parse(topic: string, payload: string | Buffer, options?: Partial<ParseOptions>) {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload
  return parsePublish(topic, bytes, NOW, { ...DEFAULT_PARSE_OPTIONS, ...options })
}

describe('parsePublish accepts', () => {
  it.each(good)('$name', ({ topic, payload, readings, options }) => {
    const result = parse(topic, payload, options)
    expect(result).toStrictEqual({ ok: true, deviceId: readings[0]?.deviceId, readings })
  })
})

describe('parsePublish rejects', () => {
  it.each(bad)('$name -> $reason', ({ topic, payload, reason, detail, deviceId, options }) => {
    const result = parse(topic, payload, options)
    expect(result).toMatchObject({ ok: false, reason, deviceId: deviceId ?? 'dev1' })
    if (result.ok) return
    expect(result.detail).toContain(detail)
    expect(result.detail.length).toBeLessThanOrEqual(200)
  })

  it('names and echoes at most ~64 characters of untrusted input', () => {
    const long = 'x'.repeat(10_000)
    const cases = [
      parse(`sensors/dev1/${long}`, '1'),
      parse(`sensors/${long}`, '1'),
      parse(`other/${long}`, '1'),
      parse('sensors/dev1/temp', long),
      parse('sensors/dev1', `{"${long}":1}`),
      parse('sensors/dev1', `{"a":1,"ts":"${long}"}`),
      parse('sensors/dev1/temp', `{"value":1,"${long}":1}`),
    ]
    for (const result of cases) {
      expect(result.ok).toBe(false)
      if (result.ok) continue
      expect(result.detail).toMatch(/x{40}/)
      expect(result.detail).not.toMatch(/x{65}/)
    }
  })

  it('clips the JSON.parse message, which quotes input, and masks control characters', () => {
    const broken = parse('sensors/dev1', 'x'.repeat(1000))
    expect(broken).toMatchObject({ ok: false, reason: 'not_json' })
    if (!broken.ok) {
      expect(broken.detail.startsWith('payload is not JSON: ')).toBe(true)
      expect(broken.detail.length).toBeLessThanOrEqual('payload is not JSON: '.length + 49)
    }
    const control = parse('sensors/dev1', '\u0001\u0002')
    expect(control).toMatchObject({ ok: false, reason: 'not_json' })
    if (!control.ok) expect(control.detail).not.toMatch(/\p{Cc}/u)
  })

  it('never throws and always returns a known reason (seeded random payloads)', () => {
    let seed = 0x9e3779b9
    const next = () => {
      // xorshift32: deterministic, so a failure reproduces.
      seed ^= seed << 13
      seed ^= seed >>> 17
      seed ^= seed << 5
      return seed >>> 0
    }
    const alphabet = [...'{}[]",:0123456789.eE+-tnulfa \\\u00e9\u{1F600}']
    const counts = new Map<string, number>()
    for (let i = 0; i < 2_000; i++) {
      const length = next() % 40
      let bytes: Buffer
      if (i % 4 === 0) {
        bytes = Buffer.alloc(length)
        for (let j = 0; j < length; j++) bytes[j] = next() % 256
      } else {
        let text = ''
        for (let j = 0; j < length; j++) text += alphabet[next() % alphabet.length]
        bytes = Buffer.from(text)
      }
      const topic = i % 2 === 0 ? 'sensors/dev1' : 'sensors/dev1/m'
      const result = parsePublish(topic, bytes, NOW, DEFAULT_PARSE_OPTIONS)
      const key = result.ok ? 'ok' : result.reason
      counts.set(key, (counts.get(key) ?? 0) + 1)
      if (!result.ok) expect(REJECT_REASONS).toContain(result.reason)
      else for (const reading of result.readings) expect(Number.isFinite(reading.value)).toBe(true)
    }
    // The generator reaches the interesting branches, or this test proves little.
    for (const reason of ['not_utf8', 'not_json', 'bad_value', 'empty_payload']) {
      expect(counts.get(reason) ?? 0).toBeGreaterThan(0)
    }
  })
})

describe('parsePublish defaults', () => {
  it('uses DEFAULT_PARSE_OPTIONS when none are given', () => {
    expect(DEFAULT_PARSE_OPTIONS).toStrictEqual({
      maxPayloadBytes: 65_536,
      maxFutureSkewMs: 300_000,
      minTimestampMs: Date.UTC(2000, 0, 1),
    })
    expect(Object.isFrozen(DEFAULT_PARSE_OPTIONS)).toBe(true)
    expect(parsePublish('sensors/dev1/temp', Buffer.alloc(65_537, 0x20), NOW)).toMatchObject({
      ok: false,
      reason: 'payload_too_large',
    })
  })
})

describe('toDeadLetter', () => {
  const rejection = { reason: 'bad_value', detail: 'some detail' } as const
  const euro = '€' // 3 bytes in UTF-8
  const grin = '\u{1F600}' // 4 bytes in UTF-8, 2 UTF-16 units

  const rows: Array<{
    name: string
    payload: Buffer
    reason?: RejectReason
    max?: number
    expected: string
    encoding: 'utf8' | 'base64'
  }> = [
    { name: 'short text as is', payload: Buffer.from('NaN'), expected: 'NaN', encoding: 'utf8' },
    {
      name: 'empty payload',
      payload: Buffer.alloc(0),
      reason: 'empty_payload',
      expected: '',
      encoding: 'utf8',
    },
    {
      name: 'long text cut at 256 chars',
      payload: Buffer.from('a'.repeat(1000)),
      expected: 'a'.repeat(256),
      encoding: 'utf8',
    },
    {
      name: 'custom bound',
      payload: Buffer.from('0123456789abcdef'),
      max: 10,
      expected: '0123456789',
      encoding: 'utf8',
    },
    {
      name: '3-byte chars fill the bound',
      payload: Buffer.from(euro.repeat(300)),
      expected: euro.repeat(256),
      encoding: 'utf8',
    },
    {
      name: 'byte prefix never splits a sequence',
      payload: Buffer.from(`a${euro}${euro}`),
      max: 2,
      expected: `a${euro}`,
      encoding: 'utf8',
    },
    {
      name: 'surrogate pairs are not split',
      payload: Buffer.from(grin.repeat(10)),
      max: 5,
      expected: grin.repeat(2),
      encoding: 'utf8',
    },
    {
      name: 'oversized payload is still shown as text',
      payload: Buffer.alloc(1 << 20, 0x31),
      reason: 'payload_too_large',
      expected: '1'.repeat(256),
      encoding: 'utf8',
    },
    {
      name: 'not UTF-8 as base64',
      payload: Buffer.from([0xff, 0xfe, 0x00]),
      reason: 'not_utf8',
      expected: '//4A',
      encoding: 'base64',
    },
    {
      name: 'invalid bytes in the shown prefix force base64',
      payload: Buffer.from([0x31, 0xff]),
      reason: 'payload_too_large',
      expected: 'Mf8=',
      encoding: 'base64',
    },
    {
      name: 'not_utf8 is base64 even when the prefix decodes',
      payload: Buffer.concat([Buffer.from('a'.repeat(1000)), Buffer.from([0xff])]),
      reason: 'not_utf8',
      expected: Buffer.from('a'.repeat(192)).toString('base64'),
      encoding: 'base64',
    },
    {
      name: 'base64 bounded to the same number of chars',
      payload: Buffer.alloc(1000, 0xff),
      expected: Buffer.alloc(192, 0xff).toString('base64'),
      encoding: 'base64',
    },
    {
      name: 'base64 with a small bound',
      payload: Buffer.alloc(1000, 0xfe),
      max: 10,
      expected: Buffer.alloc(6, 0xfe).toString('base64'),
      encoding: 'base64',
    },
  ]

  it.each(rows)('$name', ({ payload, reason, max, expected, encoding }) => {
    const letter = toDeadLetter(
      'sensors/dev1/temp',
      payload,
      { reason: reason ?? rejection.reason, detail: rejection.detail },
      NOW,
      max,
    )
    expect(letter).toStrictEqual({
      topic: 'sensors/dev1/temp',
      reason: reason ?? rejection.reason,
      detail: 'some detail',
      payload: expected,
      payloadEncoding: encoding,
      ts: NOW,
    })
    expect(letter.payload.length).toBeLessThanOrEqual(max ?? 256)
  })

  it('bounds the topic', () => {
    const letter = toDeadLetter(`sensors/${'x'.repeat(5000)}`, Buffer.from('1'), rejection, NOW)
    expect(letter.topic).toBe(`sensors/${'x'.repeat(248)}`)
  })

  it('carries a parsePublish rejection', () => {
    const payload = Buffer.from('{"value":"hot"}')
    const result = parsePublish('sensors/dev1/temp', payload, NOW, DEFAULT_PARSE_OPTIONS)
    if (result.ok) expect.unreachable('payload should be rejected')
    else {
      expect(toDeadLetter('sensors/dev1/temp', payload, result, NOW)).toStrictEqual({
        topic: 'sensors/dev1/temp',
        reason: 'bad_value',
        detail: '"value" must be a finite number, got a string',
        payload: '{"value":"hot"}',
        payloadEncoding: 'utf8',
        ts: NOW,
      })
    }
  })
})
