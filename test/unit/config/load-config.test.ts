import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig, resolveConfig } from '../../../src/config/load-config.ts'
import { CONFIG_KEYS } from '../../../src/config/schema.ts'
import { GatewayError } from '../../../src/errors.ts'

function configError(fn: () => unknown): GatewayError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  throw new Error('expected a configuration error')
}

describe('loadConfig', () => {
  it('gives the documented defaults from config/default.yaml', () => {
    const config = loadConfig({})
    expect(config.mqtt).toEqual({ host: '127.0.0.1', port: 1883, tlsPort: 8883 })
    expect(config.http).toEqual({
      host: '127.0.0.1',
      port: 8080,
      tls: false,
      corsOrigins: '',
      requestTimeoutMs: 30_000,
      headersTimeoutMs: 10_000,
      maxConnections: 1_000,
      maxConnectionsPerAddress: 100,
    })
    expect(config.dataDir).toBe('./data')
    expect(config.rulesFile).toBe('config/rules.yaml')
    expect(config.logLevel).toBe('info')
    expect(config.store.retentionMs).toBe(30 * 86_400_000)
    expect(config.ingest.maxFutureSkewMs).toBe(300_000)
  })

  it('default.yaml and the schema agree on every default', () => {
    const fromFile = loadConfig({})
    const fromSchema = resolveConfig([], {})
    expect(fromFile).toEqual(fromSchema)
  })

  it('lets environment variables override the file, port 0 included', () => {
    const config = loadConfig({
      MQTT_PORT: '0',
      HTTP_PORT: '9090',
      DATA_DIR: '/tmp/x',
      LOG_LEVEL: 'debug',
    })
    expect(config.mqtt.port).toBe(0)
    expect(config.http.port).toBe(9090)
    expect(config.dataDir).toBe('/tmp/x')
    expect(config.logLevel).toBe('debug')
  })

  it('takes a duration in the environment as a number of ms or with a unit', () => {
    const config = loadConfig({ MAX_FUTURE_SKEW: '300000', STORE_RETRY_MAX: '2s' })
    expect(config.ingest.maxFutureSkewMs).toBe(300_000)
    expect(config.store.retryMaxMs).toBe(2_000)
  })

  it('takes REDIS_URL and INSTANCE_ID, and refuses a wrong scheme or an unsafe instance name', () => {
    const config = loadConfig({ REDIS_URL: 'redis://10.0.0.5:6379', INSTANCE_ID: 'gw-1' })
    expect(config.cluster).toEqual({
      redisUrl: 'redis://10.0.0.5:6379',
      instanceId: 'gw-1',
      leaseTtlMs: 15_000,
    })
    expect(loadConfig({}).cluster).toEqual({ redisUrl: '', instanceId: '', leaseTtlMs: 15_000 })
    expect(loadConfig({ CLUSTER_LEASE_TTL: '2s' }).cluster.leaseTtlMs).toBe(2_000)
    expect(() => loadConfig({ CLUSTER_LEASE_TTL: '500ms' })).toThrow(
      /CLUSTER_LEASE_TTL \(cluster.leaseTtlMs, from environment\): must be at least 1000 ms/,
    )
    expect(() => loadConfig({ REDIS_URL: 'http://10.0.0.5', INSTANCE_ID: 'gw 1/a' })).toThrow(
      /REDIS_URL \(cluster.redisUrl, from environment\): must be a redis:\/\/ or rediss:\/\/ URL, got "http:\/\/10.0.0.5"[\s\S]*INSTANCE_ID \(cluster.instanceId, from environment\): must be 1-64 characters/,
    )
  })

  it('reads another YAML file named by CONFIG, under the environment', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cfg-'))
    try {
      const file = path.join(dir, 'site.yaml')
      await writeFile(file, 'mqtt:\n  port: 2883\nhttp:\n  port: 2880\nstore:\n  retentionMs: 7d\n')
      const config = loadConfig({ CONFIG: file, HTTP_PORT: '3000' })
      expect(config.mqtt.port).toBe(2883)
      expect(config.http.port).toBe(3000)
      expect(config.store.retentionMs).toBe(7 * 86_400_000)
    } finally {
      await rm(dir, { recursive: true })
    }
  })

  it.each([
    [
      { MQTT_PORT: 'abc' },
      'MQTT_PORT (mqtt.port, from environment): must be an integer, got "abc"',
    ],
    [
      { MQTT_PORT: '70000' },
      'MQTT_PORT (mqtt.port, from environment): must be between 0 and 65535, got 70000',
    ],
    [
      { HTTP_PORT: '-1' },
      'HTTP_PORT (http.port, from environment): must be between 0 and 65535, got -1',
    ],
    [
      { LOG_LEVEL: 'loud' },
      'LOG_LEVEL (logLevel, from environment): must be one of fatal, error, warn',
    ],
    [
      { RETENTION: 'forever' },
      'RETENTION (store.retentionMs, from environment): must be a duration',
    ],
    [
      { STORE: 'mongo' },
      'STORE (store.kind, from environment): must be one of sqlite, influx, got "mongo"',
    ],
  ])('rejects %j naming the key', (env, message) => {
    expect(configError(() => loadConfig(env)).message).toContain(message)
  })

  it.each([
    ['ftp://db:8086/sensors', 'must be an http or https URL'],
    ['http://db:8086/', 'must name the database as its path'],
    ['not a url', 'must be a URL like http://127.0.0.1:8086/sensors'],
  ])('rejects INFLUX_URL=%s', (url, message) => {
    expect(configError(() => loadConfig({ INFLUX_URL: url })).message).toContain(
      `INFLUX_URL (store.influxUrl, from environment): ${message}`,
    )
  })

  it('takes an InfluxDB store with its URL and retentions', () => {
    const config = loadConfig({
      STORE: 'influx',
      INFLUX_URL: 'http://db:8086/farm',
      INFLUX_RAW_RETENTION: '7d',
    })
    expect(config.store).toMatchObject({
      kind: 'influx',
      influxUrl: 'http://db:8086/farm',
      influxRawRetentionMs: 7 * 86_400_000,
      influxDownsampledRetentionMs: 365 * 86_400_000,
    })
  })

  it('reports every problem at once, not just the first', () => {
    const err = configError(() => loadConfig({ MQTT_PORT: 'x', HTTP_PORT: 'y', LOG_LEVEL: 'z' }))
    expect(err.code).toBe('GW_ERR_CONFIG')
    expect(err.message).toContain('mqtt.port')
    expect(err.message).toContain('http.port')
    expect(err.message).toContain('logLevel')
  })

  it('rejects unknown keys in a file, so a typo does not silently fall back to a default', () => {
    const err = configError(() =>
      resolveConfig([{ source: 'site.yaml', values: { mqtt: { prot: 1 } } }], {}),
    )
    expect(err.message).toContain('site.yaml: unknown key "mqtt.prot"')
  })

  it('names the file when CONFIG points nowhere or at broken YAML', async () => {
    expect(configError(() => loadConfig({ CONFIG: '/nonexistent/gw.yaml' })).message).toContain(
      'cannot read config file /nonexistent/gw.yaml',
    )
    const dir = await mkdtemp(path.join(tmpdir(), 'cfg-'))
    try {
      const file = path.join(dir, 'bad.yaml')
      await writeFile(file, 'mqtt: [unclosed\n')
      expect(configError(() => loadConfig({ CONFIG: file })).message).toContain(
        `config file ${file} is not valid YAML`,
      )
    } finally {
      await rm(dir, { recursive: true })
    }
  })

  it('freezes the result', () => {
    const config = loadConfig({})
    expect(Object.isFrozen(config)).toBe(true)
    expect(Object.isFrozen(config.mqtt)).toBe(true)
  })

  it('documents every key with an environment variable and a description', () => {
    for (const key of CONFIG_KEYS) {
      expect(key.env).toMatch(/^[A-Z][A-Z0-9_]+$/)
      expect(key.description.length).toBeGreaterThan(5)
    }
    expect(new Set(CONFIG_KEYS.map((k) => k.env)).size).toBe(CONFIG_KEYS.length)
  })
})
