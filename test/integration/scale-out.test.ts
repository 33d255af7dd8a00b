import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import path from 'node:path'
import { InfluxDB } from 'influx'
import { Redis } from 'ioredis'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningInfluxd, startInfluxd } from '../../scripts/influxd.ts'
import { type RunningRedis, startRedis } from '../../scripts/redis-server.ts'
import type { Alert } from '../../src/contract/types.ts'
import { type AckPublisher, startAckPublisher } from '../helpers/ack-publisher.ts'
import { connectClient, endAll, type ReceivedMessage, recordMessages } from '../helpers/mqtt.ts'
import { type RunningProcess, startProcess } from '../helpers/processes.ts'
import { parsePrometheusText } from '../helpers/prometheus.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/**
 * Several gateway instances on one Redis (DESIGN §9; README, Scale-out): real child processes,
 * a real redis-server and a shared real influxd, clients over real TCP.
 */

const WAIT = { timeout: 20_000, interval: 50 }

const RULES = `rules:
  - id: hot
    kind: threshold
    match: { metric: temperature }
    above: 30
    severity: major
  - id: quiet
    kind: deadman
    match: { metric: heartbeat }
    after: 2s
    severity: minor
`

interface Instance {
  name: string
  proc: RunningProcess
  mqttUrl: string
  httpUrl: string
}

describe('scale-out: gateway instances on Redis', () => {
  let redis: RunningRedis
  let influxd: RunningInfluxd
  let dir: TempDir
  let rulesFile: string
  let database: string
  let databases = 0
  const instances: Instance[] = []
  const clients = new Set<MqttClient>()
  const loads: AckPublisher[] = []

  beforeAll(async () => {
    ;[redis, influxd, dir] = await Promise.all([
      startRedis(),
      startInfluxd(),
      createTempDir('gw-scale-'),
    ])
    rulesFile = path.join(dir.path, 'rules.yaml')
    await writeFile(rulesFile, RULES)
  }, 60_000)

  afterEach(async () => {
    for (const load of loads.splice(0)) await load.stop()
    await endAll(clients)
    clients.clear()
    await Promise.all(
      instances.splice(0).map(async ({ proc }) => {
        proc.signal('SIGTERM')
        await proc.exited
      }),
    )
    // Each test starts from an empty Redis (no retained messages or sessions of the last one).
    await redis.halt()
    await redis.restart()
  }, 30_000)

  afterAll(async () => {
    await Promise.all([redis?.stop(), influxd?.stop(), dir?.remove()])
  })

  /** Starts instances on one Redis and one InfluxDB database (new per test). */
  async function startInstances(...names: string[]): Promise<Instance[]> {
    database = `scale_${process.pid}_${++databases}`
    return Promise.all(names.map((name) => startInstance(name)))
  }

  async function startInstance(name: string): Promise<Instance> {
    const proc = startProcess('node', ['--import', 'tsx', 'src/main.ts'], {
      LOG_PRETTY: 'false',
      LOG_LEVEL: 'info',
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      DATA_DIR: path.join(dir.path, `${name}-${databases}`),
      RULES_FILE: rulesFile,
      STORE: 'influx',
      INFLUX_URL: `${influxd.url}/${database}`,
      REDIS_URL: redis.url,
      INSTANCE_ID: name,
      PUBLISH_RATE: '1000000',
      PUBLISH_BURST: '1000000',
    })
    const portOf = (what: string) =>
      vi.waitFor(() => {
        const line = proc.logLines().find((l) => String(l.msg).startsWith(`${what} listening`))
        expect(line, proc.stderr()).toBeDefined()
        return line?.port as number
      }, WAIT)
    const instance = {
      name,
      proc,
      mqttUrl: `mqtt://127.0.0.1:${await portOf('MQTT')}`,
      httpUrl: `http://127.0.0.1:${await portOf('HTTP')}`,
    }
    instances.push(instance)
    return instance
  }

  async function connect(url: string, clientId: string, options = {}) {
    const client = await connectClient(url, { clientId, ...options })
    clients.add(client)
    return client
  }

  const alertsIn = (messages: ReceivedMessage[]) =>
    messages
      .filter((m) => m.topic.startsWith('alerts/') && !m.retain)
      .map((m) => JSON.parse(m.payload) as Alert)

  const influx = () => new InfluxDB({ host: '127.0.0.1', port: influxd.httpPort, database })

  it('delivers readings and alerts across instances, with each instance named in $SYS, logs and metrics', async () => {
    const [a, b] = await startInstances('gw-a', 'gw-b')
    if (!a || !b) throw new Error('instances missing')
    const watcher = await connect(b.mqttUrl, 'watcher-b')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync(['sensors/#', 'alerts/#', '$SYS/+/new/clients'], { qos: 1 })

    const device = await connect(a.mqttUrl, 'dev-x')
    await device.publishAsync('sensors/dev-x/temperature', '35', { qos: 1 })
    await vi.waitFor(() => {
      expect(seen.map((m) => m.topic)).toEqual(
        expect.arrayContaining([
          'sensors/dev-x/temperature',
          'alerts/major/dev-x/hot',
          '$SYS/gw-a/new/clients',
        ]),
      )
    }, WAIT)
    expect(alertsIn(seen)).toMatchObject([{ state: 'firing', deviceId: 'dev-x', value: 35 }])
    // A subscriber arriving later on B gets the retained alert that A published.
    const late = await connect(b.mqttUrl, 'late-b')
    const retained = recordMessages(late)
    await late.subscribeAsync('alerts/#', { qos: 1 })
    await vi.waitFor(
      () =>
        expect(retained.filter((m) => m.retain).map((m) => m.topic)).toEqual([
          'alerts/major/dev-x/hot',
        ]),
      WAIT,
    )

    for (const instance of [a, b]) {
      const metrics = parsePrometheusText(await (await fetch(`${instance.httpUrl}/metrics`)).text())
      expect(metrics.value('gateway_instance_info', { instance: instance.name })).toBe(1)
      expect(metrics.value('gateway_redis_up')).toBe(1)
      const ready = (await (await fetch(`${instance.httpUrl}/readyz`)).json()) as {
        checks: Record<string, string>
      }
      expect(ready.checks.redis).toBe('up')
      expect(
        instance.proc.logLines().filter((l) => l.instance === instance.name).length,
      ).toBeGreaterThan(0)
    }
    // Stored once: by A, whose device it is.
    const rows = await influx().query(
      'SELECT "value" FROM "raw"."reading" WHERE "device" = \'dev-x\'',
    )
    expect(rows).toHaveLength(1)
  }, 60_000)

  it('publishes exactly one alert per transition with three instances', async () => {
    const started = await startInstances('gw-a', 'gw-b', 'gw-c')
    const received: ReceivedMessage[][] = []
    for (const instance of started) {
      const watcher = await connect(instance.mqttUrl, `watch-${instance.name}`)
      received.push(recordMessages(watcher))
      await watcher.subscribeAsync('alerts/#', { qos: 1 })
    }
    // One device per instance, each crossing the threshold three times.
    await Promise.all(
      started.map(async (instance, i) => {
        const id = `dev-${i}`
        const device = await connect(instance.mqttUrl, id)
        for (const value of [35, 20, 36, 21, 37, 22]) {
          await device.publishAsync(`sensors/${id}/temperature`, String(value), { qos: 1 })
        }
      }),
    )
    const expected = ['firing', 'resolved', 'firing', 'resolved', 'firing', 'resolved']
    for (const messages of received) {
      await vi.waitFor(() => expect(alertsIn(messages)).toHaveLength(18), WAIT)
      for (const i of [0, 1, 2]) {
        expect(
          alertsIn(messages)
            .filter((alert) => alert.deviceId === `dev-${i}`)
            .map((alert) => alert.state),
        ).toEqual(expected)
      }
    }
    const stored = await influx().query('SELECT "state" FROM "alerts"."alert"')
    expect(stored).toHaveLength(18)
  }, 60_000)

  it('keeps a persistent session across instances: what was queued is delivered on another', async () => {
    const [a, b, c] = await startInstances('gw-a', 'gw-b', 'gw-c')
    if (!a || !b || !c) throw new Error('instances missing')
    const sessionOptions = { clean: false, protocolVersion: 4 as const }
    const first = await connect(a.mqttUrl, 'ops-console', sessionOptions)
    await first.subscribeAsync(['alerts/#', 'probe/#'], { qos: 1 })
    await first.endAsync()
    clients.delete(first)
    // A subscription made on A reaches B's copy of the subscription index a moment later
    // (README, Scale-out): wait until B queues a probe for the session before the real test.
    const prober = await connect(b.mqttUrl, 'prober')
    const redisClient = new Redis(redis.url)
    try {
      await vi.waitFor(async () => {
        await prober.publishAsync('probe/1', 'x', { qos: 1 })
        expect(await redisClient.llen('outgoing:ops-console')).toBeGreaterThan(0)
      }, WAIT)
    } finally {
      redisClient.disconnect()
    }

    const live = await connect(a.mqttUrl, 'live-a')
    const published = recordMessages(live)
    await live.subscribeAsync('alerts/#', { qos: 1 })
    const device = await connect(b.mqttUrl, 'dev-q')
    await device.publishAsync('sensors/dev-q/temperature', '40', { qos: 1 })
    await device.publishAsync('sensors/dev-q/temperature', '20', { qos: 1 })
    // Both transitions have gone out (seen live on A) while the session was away; then it comes
    // back, on C.
    await vi.waitFor(() => expect(alertsIn(published)).toHaveLength(2), WAIT)

    // Listening before the CONNACK: the queued messages follow it at once.
    const back = mqtt.connect(c.mqttUrl, {
      clientId: 'ops-console',
      reconnectPeriod: 0,
      ...sessionOptions,
    })
    clients.add(back)
    const delivered = recordMessages(back)
    await new Promise((resolve, reject) => {
      back.once('connect', resolve)
      back.once('error', reject)
    })
    expect(back.options.clean).toBe(false)
    // QoS 1 is at least once: a transition may come twice, never not at all, in order.
    const transitions = () => [
      ...new Set(
        delivered
          .filter((m) => m.topic === 'alerts/major/dev-q/hot')
          .map((m) => {
            const alert = JSON.parse(m.payload) as Alert
            return `${alert.state}@${alert.ts}`
          }),
      ),
    ]
    const [firing, resolved] = alertsIn(published)
    await vi.waitFor(
      () => expect(transitions()).toEqual([`firing@${firing?.ts}`, `resolved@${resolved?.ts}`]),
      WAIT,
    )
  }, 60_000)

  it('does not report a device silent when it moves to another instance', async () => {
    const [a, b] = await startInstances('gw-a', 'gw-b')
    if (!a || !b) throw new Error('instances missing')
    const watcher = await connect(a.mqttUrl, 'watch-quiet')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync(['alerts/#', 'devices/+/status'], { qos: 1 })

    const onA = await connect(a.mqttUrl, 'dev-m')
    await onA.publishAsync('sensors/dev-m/heartbeat', '1', { qos: 1 })
    await onA.endAsync()
    clients.delete(onA)
    // The device reconnects through the load balancer, to B, and keeps its heartbeat up.
    const onB = await connect(b.mqttUrl, 'dev-m')
    const beats = Date.now()
    let i = 2
    while (Date.now() - beats < 5_000) {
      await onB.publishAsync('sensors/dev-m/heartbeat', String(i++), { qos: 1 })
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    // A's deadman (2 s) would have fired by now had it not been released.
    expect(alertsIn(seen).filter((alert) => alert.ruleId === 'quiet')).toEqual([])
    const statuses = seen
      .filter((m) => m.topic === 'devices/dev-m/status')
      .map((m) => (JSON.parse(m.payload) as { state: string }).state)
    expect(statuses.at(-1)).toBe('online')
    expect(statuses).not.toContain('silent')

    // Then it goes quiet for real, on B: reported once, by B.
    await onB.endAsync()
    clients.delete(onB)
    const device2 = await connect(b.mqttUrl, 'dev-m')
    await vi.waitFor(
      () =>
        expect(
          alertsIn(seen).filter((alert) => alert.ruleId === 'quiet' && alert.state === 'firing'),
        ).toHaveLength(1),
      WAIT,
    )
    await device2.endAsync()
    clients.delete(device2)
  }, 60_000)

  it('survives a Redis restart mid-run: published, acknowledged, stored and alerted reconcile', async () => {
    const [a, b] = await startInstances('gw-a', 'gw-b')
    if (!a || !b) throw new Error('instances missing')
    const watcher = await connect(b.mqttUrl, 'watch-restart', { reconnectPeriod: 200 })
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('alerts/#', { qos: 1 })

    const startTs = Date.now() - 60_000
    const onA = await startAckPublisher({ url: a.mqttUrl, devices: 3, prefix: 'ra', startTs })
    const onB = await startAckPublisher({ url: b.mqttUrl, devices: 3, prefix: 'rb', startTs })
    loads.push(onA, onB)
    await Promise.all([onA.waitForAcks(300), onB.waitForAcks(300)])

    await redis.halt()
    await vi.waitFor(async () => {
      const ready = await fetch(`${a.httpUrl}/readyz`)
      expect(ready.status).toBe(503)
      expect(((await ready.json()) as { checks: Record<string, string> }).checks.redis).toBe('down')
    }, WAIT)
    // While Redis is away, QoS 1 readings are not acknowledged.
    const ackedDuring = onA.acked.length + onB.acked.length
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(onA.acked.length + onB.acked.length - ackedDuring).toBeLessThanOrEqual(6)

    await redis.restart()
    await Promise.all([onA.waitForAcks(300), onB.waitForAcks(300)])
    // A threshold crossing after the restart still reaches the subscriber on the other instance.
    const hot = await connect(a.mqttUrl, 'dev-hot')
    await hot.publishAsync('sensors/dev-hot/temperature', '45', { qos: 1 })
    await Promise.all([onA.stop({ drain: true }), onB.stop({ drain: true })])
    await vi.waitFor(
      () => expect(alertsIn(seen).map((alert) => alert.deviceId)).toContain('dev-hot'),
      WAIT,
    )

    for (const instance of [a, b]) {
      await vi.waitFor(async () => {
        const metrics = parsePrometheusText(
          await (await fetch(`${instance.httpUrl}/metrics`)).text(),
        )
        expect(metrics.value('gateway_redis_up')).toBe(1)
        expect(metrics.value('gateway_store_pending_readings')).toBe(0)
        expect(metrics.value('gateway_spool_items')).toBe(0)
      }, WAIT)
    }
    const acked = [...onA.acked, ...onB.acked]
    const rows = await influx().query<{ device: string }>(
      `SELECT "value", "device" FROM "raw"."reading" WHERE "device" =~ /^r[ab]-/`,
    )
    // Every acknowledged reading stored, once (one point per device and ts), and nothing else.
    expect(rows).toHaveLength(acked.length)
    const alerts = await influx().query('SELECT "state" FROM "alerts"."alert"')
    expect(alerts).toHaveLength(alertsIn(seen).length)
  }, 90_000)

  it('behind HAProxy (config/haproxy/haproxy.cfg): an instance stops, its devices move, nothing acknowledged is lost', async () => {
    const [a, b] = await startInstances('gw-a', 'gw-b')
    if (!a || !b) throw new Error('instances missing')
    const haproxy = await startHaproxy([a, b])
    try {
      const startTs = Date.now() - 60_000
      const acked = new Map<string, number[]>()
      let stopped = false
      const devices = await Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          const id = `lb-${i}`
          // Reconnects (through HAProxy, so possibly to the other instance) and resends what was
          // in flight: MQTT.js keeps an unacknowledged QoS 1 publish until its PUBACK.
          const client = await mqtt.connectAsync(haproxy.mqttUrl, {
            clientId: id,
            reconnectPeriod: 100,
            connectTimeout: 5_000,
          })
          client.on('error', () => {})
          clients.add(client)
          acked.set(id, [])
          const loop = (async () => {
            for (let seq = 0; !stopped; seq++) {
              const ts = startTs + seq
              await client.publishAsync(
                `sensors/${id}/temperature`,
                JSON.stringify({ value: seq, ts }),
                {
                  qos: 1,
                },
              )
              acked.get(id)?.push(ts)
            }
          })()
          return { id, client, loop }
        }),
      )
      const total = () => [...acked.values()].reduce((n, list) => n + list.length, 0)
      const servedBy = async (instance: Instance) =>
        parsePrometheusText(await (await fetch(`${instance.httpUrl}/metrics`)).text()).value(
          'gateway_mqtt_clients_connected',
        )
      await vi.waitFor(() => expect(total()).toBeGreaterThan(600), WAIT)
      // leastconn spreads the six devices over both instances.
      expect(await servedBy(a)).toBeGreaterThan(0)
      expect(await servedBy(b)).toBeGreaterThan(0)

      // A stops (SIGTERM: it stores what it acknowledged, then closes its connections).
      a.proc.signal('SIGTERM')
      expect(await a.proc.exited, a.proc.stderr().slice(-3000)).toBe(0)
      const atStop = total()
      await vi.waitFor(() => expect(total()).toBeGreaterThan(atStop + 600), {
        ...WAIT,
        timeout: 30_000,
      })
      expect(await servedBy(b)).toBe(6)
      stopped = true
      await Promise.all(devices.map((device) => device.loop))

      await vi.waitFor(async () => {
        const metrics = parsePrometheusText(await (await fetch(`${b.httpUrl}/metrics`)).text())
        expect(metrics.value('gateway_store_pending_readings')).toBe(0)
      }, WAIT)
      const rows = await influx().query<{ device: string; time: { getTime(): number } }>(
        `SELECT "value", "device" FROM "raw"."reading" WHERE "device" =~ /^lb-/`,
      )
      for (const [id, list] of acked) {
        const stored = new Set(
          rows.filter((row) => row.device === id).map((row) => row.time.getTime()),
        )
        for (const ts of list) expect(stored.has(ts)).toBe(true)
      }
    } finally {
      await haproxy.stop()
    }
  }, 90_000)

  /** HAProxy with the shipped config, its servers pointed at the instances' loopback ports. */
  async function startHaproxy(servers: Instance[]) {
    const [mqttPort, httpPort] = await Promise.all([freePort(), freePort()])
    const shipped = await readFile('config/haproxy/haproxy.cfg', 'utf8')
    const port = (url: string) => new URL(url).port
    const config = shipped
      // HAProxy wants two descriptors per connection; this machine's limit is lower than a host's.
      .replace(/maxconn \d+/, 'maxconn 4000')
      .replace('bind :1883', `bind 127.0.0.1:${mqttPort}`)
      .replace('bind :8080', `bind 127.0.0.1:${httpPort}`)
      .replace(/default-server check port 8080/, 'default-server check')
      .replace(
        /server (gateway-\d) gateway-\d:(1883|8080)/g,
        (_line, name: string, kind: string) => {
          const instance = servers[Number(name.slice(-1)) - 1] as Instance
          return kind === '1883'
            ? `server ${name} 127.0.0.1:${port(instance.mqttUrl)} check port ${port(instance.httpUrl)}`
            : `server ${name} 127.0.0.1:${port(instance.httpUrl)}`
        },
      )
    const file = path.join(dir.path, `haproxy-${databases}.cfg`)
    await writeFile(file, config)
    const proc = startProcess('haproxy', ['-db', '-f', file], {})
    const mqttUrl = `mqtt://127.0.0.1:${mqttPort}`
    // Ready once both instances pass their /readyz check behind it.
    await vi.waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`)
      expect(res.status, proc.stderr()).toBe(200)
    }, WAIT)
    return {
      mqttUrl,
      async stop() {
        proc.signal('SIGTERM')
        await proc.exited
      },
    }
  }
})

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        address !== null && typeof address === 'object'
          ? resolve(address.port)
          : reject(new Error('no port')),
      )
    })
  })
}
