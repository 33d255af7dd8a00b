import { toDurationMs } from '../util/duration.ts'

/** The validated, frozen configuration every module receives (parts of it). */
export interface GatewayConfig {
  mqtt: { host: string; port: number; tlsPort: number }
  http: {
    host: string
    port: number
    tls: boolean
    corsOrigins: string
    requestTimeoutMs: number
    headersTimeoutMs: number
    maxConnections: number
    maxConnectionsPerAddress: number
  }
  dataDir: string
  rulesFile: string
  rulesWatch: boolean
  /** Notifications file (channels, routes); '' (the default): no notifications are sent. */
  notificationsFile: string
  /** State of a device not heard from this long is released; 0: never; 'auto': from the rules. */
  deviceIdleReleaseMs: number | 'auto'
  devicesFile: string
  logLevel: LogLevel
  logPretty: boolean | 'auto'
  store: {
    kind: 'sqlite' | 'influx'
    sqliteFile: string
    retentionMs: number
    maxBatchSize: number
    retryBaseMs: number
    retryMaxMs: number
    spoolMaxBytes: number
    spoolAfterMs: number
    queueLimit: number
    influxUrl: string
    influxRawRetentionMs: number
    influxDownsampledRetentionMs: number
  }
  ingest: {
    maxPayloadBytes: number
    maxFutureSkewMs: number
    deadLetterLogIntervalMs: number
  }
  auth: {
    /** Serve a non-loopback address with no credentials configured (logged loudly). */
    allowAnonymousPublic: boolean
  }
  tls: {
    /** PEM files; the TLS listeners (mqtts, HTTPS/WSS) exist only when cert and key are set. */
    certFile: string
    keyFile: string
    caFile: string
    clientCert: 'off' | 'optional' | 'required'
  }
  cluster: {
    /** Empty: one instance, in-memory broker state. Set: broker state and messages on Redis. */
    redisUrl: string
    /** This instance's name in logs, metrics and $SYS; empty: `{hostname}-{pid}`. */
    instanceId: string
    /** Lease in Redis: a crashed instance's devices are reported offline within 4/3 of it. */
    leaseTtlMs: number
  }
  limits: {
    maxPacketBytes: number
    publishRatePerSec: number
    publishBurst: number
    disconnectAfterRejected: number
    maxConnections: number
    connectTimeoutMs: number
    keepaliveLimitSec: number
    maxInflightInbound: number
    drainTimeoutMs: number
  }
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** A key's value parser: returns the value, or a message saying what is wrong. */
type Parse = (raw: unknown) => { ok: true; value: unknown } | { ok: false; message: string }

export interface ConfigKey {
  /** Dotted path in the YAML file and in GatewayConfig. */
  path: string
  /** Environment variable that overrides the file. */
  env: string
  default: unknown
  description: string
  parse: Parse
}

const ok = (value: unknown) => ({ ok: true as const, value })
const fail = (message: string) => ({ ok: false as const, message })
const show = (raw: unknown) => JSON.stringify(raw) ?? String(raw)

function integer(min: number, max: number): Parse {
  return (raw) => {
    const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw
    if (typeof n !== 'number' || !Number.isInteger(n))
      return fail(`must be an integer, got ${show(raw)}`)
    if (n < min || n > max) return fail(`must be between ${min} and ${max}, got ${n}`)
    return ok(n)
  }
}

const port = integer(0, 65_535)

function text(raw: unknown) {
  if (typeof raw !== 'string' || raw.trim() === '')
    return fail(`must be a non-empty string, got ${show(raw)}`)
  return ok(raw.trim())
}

function oneOf<T extends string>(values: readonly T[]): Parse {
  return (raw) =>
    typeof raw === 'string' && (values as readonly string[]).includes(raw)
      ? ok(raw)
      : fail(`must be one of ${values.join(', ')}, got ${show(raw)}`)
}

function duration(minMs: number): Parse {
  return (raw) => {
    const ms = toDurationMs(raw)
    if (ms === null)
      return fail(`must be a duration like 500ms, 30s, 5m, 7d or a number of ms, got ${show(raw)}`)
    if (ms < minMs) return fail(`must be at least ${minMs} ms, got ${ms}`)
    return ok(ms)
  }
}

function influxUrl(raw: unknown) {
  const given = text(raw)
  if (!given.ok) return given
  let url: URL
  try {
    url = new URL(given.value as string)
  } catch {
    return fail(`must be a URL like http://127.0.0.1:8086/sensors, got ${show(raw)}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return fail(`must be an http or https URL, got ${show(raw)}`)
  }
  const database = decodeURIComponent(url.pathname.replace(/^\/+|\/+$/g, ''))
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(database)) {
    return fail(`must name the database as its path (http://host:8086/sensors), got ${show(raw)}`)
  }
  return ok(url.href)
}

function optionalText(raw: unknown) {
  if (raw === null || raw === undefined || raw === '') return ok('')
  if (typeof raw !== 'string') return fail(`must be a string, got ${show(raw)}`)
  return ok(raw.trim())
}

function redisUrl(raw: unknown) {
  const given = optionalText(raw)
  if (!given.ok || given.value === '') return given
  let url: URL
  try {
    url = new URL(given.value as string)
  } catch {
    return fail(`must be a URL like redis://127.0.0.1:6379, got ${show(raw)}`)
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    return fail(`must be a redis:// or rediss:// URL, got ${show(raw)}`)
  }
  return given
}

function instanceId(raw: unknown) {
  const given = optionalText(raw)
  if (!given.ok || given.value === '') return given
  // It becomes an MQTT topic level ($SYS/{id}/...) and a Prometheus label value.
  return /^[A-Za-z0-9_.-]{1,64}$/.test(given.value as string)
    ? given
    : fail(`must be 1-64 characters of A-Z a-z 0-9 _ . -, got ${show(raw)}`)
}

function idleRelease(raw: unknown) {
  if (raw === '' || raw === 'auto') return ok('auto')
  const ms = duration(0)(raw)
  return ms.ok ? ms : fail(`must be auto, 0 (never) or a duration like 36h, got ${show(raw)}`)
}

function flag(raw: unknown) {
  if (raw === true || raw === 'true') return ok(true)
  if (raw === false || raw === 'false') return ok(false)
  return fail(`must be true or false, got ${show(raw)}`)
}

function prettyFlag(raw: unknown) {
  if (raw === true || raw === 'true') return ok(true)
  if (raw === false || raw === 'false') return ok(false)
  if (raw === 'auto') return ok('auto')
  return fail(`must be true, false or auto, got ${show(raw)}`)
}

/** Every key with its default and description (STYLE habit 5). The README's table mirrors this. */
export const CONFIG_KEYS: readonly ConfigKey[] = [
  {
    path: 'mqtt.host',
    env: 'MQTT_HOST',
    default: '127.0.0.1',
    description: 'MQTT TCP listener address',
    parse: text,
  },
  {
    path: 'mqtt.port',
    env: 'MQTT_PORT',
    default: 1883,
    description: 'MQTT TCP port; 0 lets the OS choose',
    parse: port,
  },
  {
    path: 'http.host',
    env: 'HTTP_HOST',
    default: '127.0.0.1',
    description: 'HTTP API address',
    parse: text,
  },
  {
    path: 'http.port',
    env: 'HTTP_PORT',
    default: 8080,
    description: 'HTTP API port; 0 lets the OS choose',
    parse: port,
  },
  {
    path: 'mqtt.tlsPort',
    env: 'MQTTS_PORT',
    default: 8883,
    description: 'MQTT over TLS port, when TLS_CERT and TLS_KEY are set; 0 lets the OS choose',
    parse: port,
  },
  {
    path: 'http.tls',
    env: 'HTTP_TLS',
    default: false,
    description: 'Serve HTTP (and MQTT over WebSocket) over TLS with TLS_CERT and TLS_KEY',
    parse: flag,
  },
  {
    path: 'http.corsOrigins',
    env: 'CORS_ORIGINS',
    default: '',
    description:
      'Comma-separated origins allowed to call the HTTP API from a browser; empty: CORS off',
    parse: optionalText,
  },
  {
    path: 'http.requestTimeoutMs',
    env: 'HTTP_REQUEST_TIMEOUT',
    default: '30s',
    description:
      'A request whose headers and body have not all arrived within this is answered 408 and closed (never applies to WebSocket connections at /mqtt)',
    parse: duration(100),
  },
  {
    path: 'http.headersTimeoutMs',
    env: 'HTTP_HEADERS_TIMEOUT',
    default: '10s',
    description:
      'A request whose headers have not all arrived within this is answered 408 and closed (at most HTTP_REQUEST_TIMEOUT)',
    parse: duration(100),
  },
  {
    path: 'http.maxConnections',
    env: 'HTTP_MAX_CONNECTIONS',
    default: 1_000,
    description:
      'HTTP sockets open at once, MQTT over WebSocket included; more are closed unanswered',
    parse: integer(1, 10_000_000),
  },
  {
    path: 'http.maxConnectionsPerAddress',
    env: 'HTTP_MAX_CONNECTIONS_PER_ADDRESS',
    default: 100,
    description:
      'HTTP sockets open at once from one client address, MQTT over WebSocket included; more are answered 503 and closed',
    parse: integer(1, 10_000_000),
  },
  {
    path: 'auth.allowAnonymousPublic',
    env: 'ALLOW_ANONYMOUS_PUBLIC',
    default: false,
    description: 'Listen on a non-loopback address without credentials (unsafe; logged loudly)',
    parse: flag,
  },
  {
    path: 'tls.certFile',
    env: 'TLS_CERT',
    default: '',
    description: 'PEM certificate of the TLS listeners',
    parse: optionalText,
  },
  {
    path: 'tls.keyFile',
    env: 'TLS_KEY',
    default: '',
    description: 'PEM private key of the TLS listeners',
    parse: optionalText,
  },
  {
    path: 'tls.caFile',
    env: 'TLS_CA',
    default: '',
    description: 'PEM CA that signs device client certificates (with TLS_CLIENT_CERT)',
    parse: optionalText,
  },
  {
    path: 'tls.clientCert',
    env: 'TLS_CLIENT_CERT',
    default: 'off',
    description:
      'Client certificates on mqtts: off, optional, required; the device id is the certificate CN',
    parse: oneOf(['off', 'optional', 'required']),
  },
  {
    path: 'cluster.redisUrl',
    env: 'REDIS_URL',
    default: '',
    description:
      'Redis for several gateway instances behind a load balancer (broker messages, sessions, retained); empty: one instance',
    parse: redisUrl,
  },
  {
    path: 'cluster.instanceId',
    env: 'INSTANCE_ID',
    default: '',
    description: 'Name of this instance in logs, metrics and $SYS topics; empty: {hostname}-{pid}',
    parse: instanceId,
  },
  {
    path: 'cluster.leaseTtlMs',
    env: 'CLUSTER_LEASE_TTL',
    default: 15_000,
    description:
      "With REDIS_URL: each instance's lease in Redis, renewed every third of it; a crashed instance's devices are reported offline by a survivor within 4/3 of it",
    parse: duration(1_000),
  },
  {
    path: 'limits.maxPacketBytes',
    env: 'MAX_PACKET_BYTES',
    default: 262_144,
    description:
      'Largest MQTT packet. A larger PUBLISH is dropped unread, acknowledged and dead-lettered; any other larger packet closes the connection',
    parse: integer(1_024, 268_435_455),
  },
  {
    path: 'limits.publishRatePerSec',
    env: 'PUBLISH_RATE',
    default: 100,
    description:
      'Publishes per second per client (token bucket); over it, QoS 1/2 publishes wait for a token (the PUBACK with them), QoS 0 ones are dropped and counted',
    parse: integer(1, 1_000_000),
  },
  {
    path: 'limits.publishBurst',
    env: 'PUBLISH_BURST',
    default: 1_000,
    description: 'Token bucket size: publishes a client may send at once above its rate',
    parse: integer(1, 10_000_000),
  },
  {
    path: 'limits.disconnectAfterRejected',
    env: 'RATE_DISCONNECT_AFTER',
    default: 1_000,
    description:
      'Publishes a client may get ahead of its token bucket before it is disconnected: QoS 1/2 ones waiting for a token plus QoS 0 ones dropped and not yet earned back by the refill (one per token); reached only far over the rate (QoS 0 above twice it, QoS 1 with more than this many in flight)',
    parse: integer(1, 100_000_000),
  },
  {
    path: 'limits.maxConnections',
    env: 'MAX_CONNECTIONS',
    default: 10_000,
    description: 'MQTT connections at most (TCP, TLS and WebSocket together)',
    parse: integer(1, 10_000_000),
  },
  {
    path: 'limits.connectTimeoutMs',
    env: 'CONNECT_TIMEOUT',
    default: '10s',
    description: 'A connection that sends no CONNECT within this is closed',
    parse: duration(100),
  },
  {
    path: 'limits.keepaliveLimitSec',
    env: 'KEEPALIVE_LIMIT',
    default: 1_200,
    description:
      'Longest keepalive (seconds) the broker holds a client to: one asking for more is accepted and disconnected after 1.5 x this without a packet (MQTT 3.1.1 §3.1.2.10); keepalive 0 is accepted and left to TCP keepalive; 0: no limit',
    parse: integer(0, 65_535),
  },
  {
    path: 'limits.maxInflightInbound',
    env: 'MAX_INFLIGHT_INBOUND',
    default: 1_000,
    description: 'Inbound QoS 2 messages awaiting PUBREL per client',
    parse: integer(0, 65_535),
  },
  {
    path: 'limits.drainTimeoutMs',
    env: 'DRAIN_TIMEOUT',
    default: '10s',
    description: 'A subscriber that does not read its socket for this long is disconnected',
    parse: duration(100),
  },
  {
    path: 'dataDir',
    env: 'DATA_DIR',
    default: './data',
    description: 'Folder of the SQLite file',
    parse: text,
  },
  {
    path: 'rulesFile',
    env: 'RULES_FILE',
    default: 'config/rules.yaml',
    description: 'Rules file',
    parse: text,
  },
  {
    path: 'rulesWatch',
    env: 'RULES_WATCH',
    default: true,
    description: 'Apply edits of the rules file without a restart',
    parse: flag,
  },
  {
    path: 'notificationsFile',
    env: 'NOTIFICATIONS_FILE',
    default: '',
    description:
      'Notifications file: channels and routes (see config/notifications.example.yaml); empty: no notifications are sent',
    parse: optionalText,
  },
  {
    path: 'deviceIdleReleaseMs',
    env: 'DEVICE_IDLE_RELEASE',
    default: 'auto',
    description:
      'Release the in-memory state of a device not heard from this long (firing alerts and armed deadman deadlines keep theirs); auto: 4x the longest rule window, at least 1d, recomputed on rules reload; 0: never',
    parse: idleRelease,
  },
  {
    path: 'devicesFile',
    env: 'DEVICES_FILE',
    default: 'config/devices.yaml',
    description: 'Registry of devices and apps: ids, tags, credential hashes, roles; optional',
    parse: text,
  },
  {
    path: 'logLevel',
    env: 'LOG_LEVEL',
    default: 'info',
    description: 'pino log level',
    parse: oneOf(LOG_LEVELS),
  },
  {
    path: 'logPretty',
    env: 'LOG_PRETTY',
    default: 'auto',
    description: 'Human-readable logs: true, false, or auto (pretty on a terminal, JSON otherwise)',
    parse: prettyFlag,
  },
  {
    path: 'store.kind',
    env: 'STORE',
    default: 'sqlite',
    description: 'Time-series store',
    parse: oneOf(['sqlite', 'influx']),
  },
  {
    path: 'store.sqliteFile',
    env: 'SQLITE_FILE',
    default: 'gateway.db',
    description: 'SQLite file name, relative to dataDir',
    parse: text,
  },
  {
    path: 'store.retentionMs',
    env: 'RETENTION',
    default: '30d',
    description: 'How long raw readings are kept; 0 keeps them forever',
    parse: duration(0),
  },
  {
    path: 'store.maxBatchSize',
    env: 'STORE_MAX_BATCH',
    default: 5000,
    description: 'Most readings written in one store transaction',
    parse: integer(1, 100_000),
  },
  {
    path: 'store.retryBaseMs',
    env: 'STORE_RETRY_BASE',
    default: '100ms',
    description: 'First retry delay after a failed store write (doubles each time)',
    parse: duration(1),
  },
  {
    path: 'store.retryMaxMs',
    env: 'STORE_RETRY_MAX',
    default: '10s',
    description: 'Longest retry delay after failed store writes',
    parse: duration(1),
  },
  {
    path: 'store.spoolMaxBytes',
    env: 'SPOOL_MAX_BYTES',
    default: 268_435_456,
    description:
      'Size limit of the on-disk spool (DATA_DIR/spool.db) that takes batches while the store is down or slow; 0 disables it (QoS 1 acks then wait for the store)',
    parse: integer(0, Number.MAX_SAFE_INTEGER),
  },
  {
    path: 'store.spoolAfterMs',
    env: 'SPOOL_AFTER',
    default: '2s',
    description: 'A store write still in flight after this long sends newer batches to the spool',
    parse: duration(1),
  },
  {
    path: 'store.queueLimit',
    env: 'STORE_QUEUE_LIMIT',
    default: 100_000,
    description:
      'Most readings waiting in memory for the store or the spool; beyond it QoS 0 readings are dropped (counted)',
    parse: integer(1, 10_000_000),
  },
  {
    path: 'store.influxUrl',
    env: 'INFLUX_URL',
    default: 'http://127.0.0.1:8086/sensors',
    description: 'InfluxDB 1.x base URL; the path names the database (STORE=influx)',
    parse: influxUrl,
  },
  {
    path: 'store.influxRawRetentionMs',
    env: 'INFLUX_RAW_RETENTION',
    default: '30d',
    description: 'Retention of raw readings in InfluxDB (policy "raw")',
    parse: duration(3_600_000),
  },
  {
    path: 'store.influxDownsampledRetentionMs',
    env: 'INFLUX_DOWNSAMPLED_RETENTION',
    default: '365d',
    description: 'Retention of the 1-minute aggregates in InfluxDB (policy "downsampled")',
    parse: duration(3_600_000),
  },
  {
    path: 'ingest.maxPayloadBytes',
    env: 'MAX_PAYLOAD_BYTES',
    default: 65_536,
    description: 'Larger sensor payloads are dead-lettered as payload_too_large',
    parse: integer(16, 16 * 1024 * 1024),
  },
  {
    path: 'ingest.maxFutureSkewMs',
    env: 'MAX_FUTURE_SKEW',
    default: '5m',
    description: 'Readings stamped further ahead of the gateway clock are dead-lettered',
    parse: duration(0),
  },
  {
    path: 'ingest.deadLetterLogIntervalMs',
    env: 'DEADLETTER_LOG_INTERVAL',
    default: '10s',
    description: 'At most one warn log line per device and reason in this interval',
    parse: duration(0),
  },
]
