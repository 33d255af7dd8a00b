import path from 'node:path'
import { Redis } from 'ioredis'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type RunningRedis, startRedis } from '../../scripts/redis-server.ts'
import type { DeviceStatus } from '../../src/contract/types.ts'
import { connectClient, endAll, type ReceivedMessage, recordMessages } from '../helpers/mqtt.ts'
import { type RunningProcess, runToEnd, startProcess } from '../helpers/processes.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/**
 * A gateway instance killed with SIGKILL on a shared Redis (README, Scale-out: when an instance
 * crashes): real child processes, a real redis-server, MQTT.js and mosquitto_sub over real TCP.
 * The lease is 2 s here, so a crash is reported within 2 s + 2/3 s (plus start-up of the
 * survivors' first full TTL of renewals).
 */

const LEASE_TTL_MS = 2_000
const WAIT = { timeout: 20_000, interval: 50 }

interface Instance {
  name: string
  proc: RunningProcess
  mqttUrl: string
  mqttPort: number
}

describe('scale-out: an instance crashes', () => {
  let redis: RunningRedis
  let dir: TempDir
  let runs = 0
  const instances: Instance[] = []
  const clients = new Set<MqttClient>()

  beforeAll(async () => {
    ;[redis, dir] = await Promise.all([startRedis(), createTempDir('gw-crash-')])
  }, 30_000)

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await Promise.all(
      instances.splice(0).map(async ({ proc }) => {
        proc.signal('SIGTERM')
        await proc.exited
      }),
    )
    await redis.halt()
    await redis.restart()
  }, 30_000)

  afterAll(async () => {
    await Promise.all([redis?.stop(), dir?.remove()])
  })

  async function startInstance(name: string): Promise<Instance> {
    const proc = startProcess('node', ['--import', 'tsx', 'src/main.ts'], {
      LOG_PRETTY: 'false',
      LOG_LEVEL: 'info',
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      DATA_DIR: path.join(dir.path, `${name}-${++runs}`),
      REDIS_URL: redis.url,
      INSTANCE_ID: name,
      CLUSTER_LEASE_TTL: `${LEASE_TTL_MS}ms`,
    })
    const mqttPort = await vi.waitFor(() => {
      const line = proc.logLines().find((l) => String(l.msg).startsWith('MQTT listening'))
      expect(line, proc.stderr()).toBeDefined()
      return line?.port as number
    }, WAIT)
    const instance = { name, proc, mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, mqttPort }
    instances.push(instance)
    return instance
  }

  async function connect(url: string, clientId: string) {
    const client = await connectClient(url, { clientId })
    // A client of the killed instance sees its connection reset; that is the point.
    client.on('error', () => {})
    clients.add(client)
    return client
  }

  const statusesOf = (messages: ReceivedMessage[], deviceId: string) =>
    messages
      .filter((m) => m.topic === `devices/${deviceId}/status` && m.payload !== '')
      .map((m) => (JSON.parse(m.payload) as DeviceStatus).state)

  /** The retained status a new subscriber gets, through mosquitto_sub. */
  async function retainedState(instance: Instance, deviceId: string): Promise<string> {
    const { code, stdout, stderr } = await runToEnd('mosquitto_sub', [
      ...['-h', '127.0.0.1', '-p', String(instance.mqttPort), '-i', `peek-${deviceId}`],
      ...['-t', `devices/${deviceId}/status`, '-C', '1', '-W', '5'],
    ])
    expect(code, stderr).toBe(0)
    return (JSON.parse(stdout.trim()) as DeviceStatus).state
  }

  it('reports the devices of a SIGKILLed instance offline, once, and keeps a device that reconnected elsewhere online', async () => {
    const [a, b, c] = await Promise.all(['gw-a', 'gw-b', 'gw-c'].map(startInstance))
    if (!a || !b || !c) throw new Error('instances missing')
    const watcher = await connect(b.mqttUrl, 'watch-status')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('devices/+/status', { qos: 1 })

    const stays = await connect(a.mqttUrl, 'dev-stays')
    const moves = await connect(a.mqttUrl, 'dev-moves')
    await stays.publishAsync('sensors/dev-stays/temperature', '21.5', { qos: 1 })
    await moves.publishAsync('sensors/dev-moves/temperature', '22.5', { qos: 1 })
    await vi.waitFor(() => {
      expect(statusesOf(seen, 'dev-stays')).toEqual(['online'])
      expect(statusesOf(seen, 'dev-moves')).toEqual(['online'])
    }, WAIT)
    // A's device set is written in Redis before the crash (a device that connected a moment
    // before a crash is covered only once this write happened).
    const inspect = new Redis(redis.url)
    try {
      await vi.waitFor(async () => {
        const members = await inspect.smembers('gateway:instances')
        const ofA = members.filter((m) => m.startsWith('gw-a/'))
        expect(ofA).toHaveLength(1)
        expect(await inspect.scard(`gateway:instance:${ofA[0]}:devices`)).toBe(2)
      }, WAIT)
    } finally {
      inspect.disconnect()
    }

    a.proc.signal('SIGKILL')
    expect(await a.proc.exited).toBe('SIGKILL')
    const crashedAtMs = Date.now()
    // dev-moves reconnects (through the load balancer) to C before the take-over.
    const movedSeen = seen.length
    const moved = await connect(c.mqttUrl, 'dev-moves')
    await moved.publishAsync('sensors/dev-moves/temperature', '22.6', { qos: 1 })
    await vi.waitFor(() => {
      expect(statusesOf(seen.slice(movedSeen), 'dev-moves')).toEqual(['online'])
    }, WAIT)

    await vi.waitFor(() => expect(statusesOf(seen, 'dev-stays')).toEqual(['online', 'offline']), {
      ...WAIT,
      timeout: 30_000,
    })
    const detectedMs = Date.now() - crashedAtMs
    console.log(`crash of gw-a reported offline after ${detectedMs} ms (lease ${LEASE_TTL_MS} ms)`)
    const offline = seen.find(
      (m) => m.topic === 'devices/dev-stays/status' && m.payload.includes('offline'),
    )
    expect(JSON.parse(offline?.payload ?? '{}')).toEqual({
      state: 'offline',
      ts: expect.any(Number),
    })

    // What a new subscriber finds: the crashed instance's device offline, the moved one online.
    expect(await retainedState(b, 'dev-stays')).toBe('offline')
    expect(await retainedState(b, 'dev-moves')).toBe('online')
    expect(statusesOf(seen, 'dev-moves')).not.toContain('offline')

    // Exactly one survivor took A over (its log line may reach stdout after its publishes).
    const tookOverLines = () =>
      [b, c].flatMap((i) =>
        i.proc
          .logLines()
          .filter((l) => l.msg === 'instance lease expired: its devices reported offline'),
      )
    await vi.waitFor(() => expect(tookOverLines().length).toBeGreaterThan(0), WAIT)
    expect(tookOverLines()).toEqual([
      expect.objectContaining({ dead: expect.stringMatching(/^gw-a\//), devices: 1 }),
    ])
  }, 90_000)

  it('an instance taken over while alive (its lease lapsed) announces its devices online again', async () => {
    const [a, b] = await Promise.all(['gw-a', 'gw-b'].map(startInstance))
    if (!a || !b) throw new Error('instances missing')
    const watcher = await connect(b.mqttUrl, 'watch-status')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('devices/+/status', { qos: 1 })
    const device = await connect(a.mqttUrl, 'dev-kept')
    await device.publishAsync('sensors/dev-kept/temperature', '21.5', { qos: 1 })
    await vi.waitFor(() => expect(statusesOf(seen, 'dev-kept')).toEqual(['online']), WAIT)

    const inspect = new Redis(redis.url)
    try {
      const memberOfA = async () =>
        (await inspect.smembers('gateway:instances')).find((m) => m.startsWith('gw-a/'))
      await vi.waitFor(async () => {
        const member = await memberOfA()
        expect(member).toBeDefined()
        expect(await inspect.sismember(`gateway:instance:${member}:devices`, 'dev-kept')).toBe(1)
      }, WAIT)
      const member = (await memberOfA()) as string
      // What A missing its renewals looks like to B (A cut off from Redis, or stalled): its
      // lease key is gone whenever B looks, until B takes A over.
      const takenOver = () =>
        b.proc
          .logLines()
          .some((l) => l.msg === 'instance lease expired: its devices reported offline')
      await vi.waitFor(
        async () => {
          // Only until B says it took A over: deleting A's renewed lease after that would make a
          // second takeover (seen under load, when B's log line came late).
          if (!takenOver()) await inspect.del(`gateway:instance:${member}`)
          expect(takenOver()).toBe(true)
        },
        { timeout: 20_000, interval: 20 },
      )

      // B said offline; A, whose connection to the device is alive, says online again, lists
      // itself again and writes its device set again. Under load a late log line can still let
      // one more deletion through: each takeover must then be answered the same way, and the
      // last word is A's online.
      await vi.waitFor(() => {
        const statuses = statusesOf(seen, 'dev-kept')
        expect(statuses.slice(0, 3)).toEqual(['online', 'offline', 'online'])
        expect(statuses.at(-1)).toBe('online')
      }, WAIT)
      await vi.waitFor(async () => {
        expect(await inspect.sismember('gateway:instances', member)).toBe(1)
        expect(await inspect.sismember(`gateway:instance:${member}:devices`, 'dev-kept')).toBe(1)
      }, WAIT)
    } finally {
      inspect.disconnect()
    }
    expect(await retainedState(b, 'dev-kept')).toBe('online')
  }, 60_000)
})
