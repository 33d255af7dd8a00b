import net, { type AddressInfo } from 'node:net'
import type { Aedes, Client, ConnectPacket } from 'aedes'
import { connectAsync, type MqttClient } from 'mqtt'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createFleet, type Fleet, type FleetOptions } from '../../devices/fleet.ts'
import { type OutageSchedule, outagePhase } from '../../devices/outage.ts'
import type { PayloadForm } from '../../devices/payloads.ts'
import { isIdentifier } from '../../src/contract/index.ts'

interface TestBroker {
  broker: Aedes
  port: number
  url: string
  /** CONNECT packets by client id, as the broker saw them. */
  connects: Map<string, ConnectPacket>
  /** Closes the listener, drops every client socket, then closes the broker. */
  close(): Promise<void>
}

async function startBroker(port = 0): Promise<TestBroker> {
  const { Aedes } = await import('aedes')
  const connects = new Map<string, ConnectPacket>()
  const broker = await Aedes.createBroker({
    preConnect(_client, packet, callback) {
      if (packet.clientId) connects.set(packet.clientId, packet)
      callback(null, true)
    },
  })
  const server = net.createServer(broker.handle)
  const sockets = new Set<net.Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
  const bound = (server.address() as AddressInfo).port
  let closed = false
  return {
    broker,
    port: bound,
    url: `mqtt://127.0.0.1:${bound}`,
    connects,
    async close() {
      if (closed) return
      closed = true
      const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
      await listenerClosed
      await new Promise<void>((resolve) => broker.close(() => resolve()))
    },
  }
}

interface Received {
  topic: string
  payload: string
}

async function subscribe(url: string): Promise<{ client: MqttClient; messages: Received[] }> {
  const client = await connectAsync(url, {
    clientId: `test-sub-${process.pid}`,
    reconnectPeriod: 0,
  })
  const messages: Received[] = []
  client.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }))
  await client.subscribeAsync('sensors/#', { qos: 1 })
  return { client, messages }
}

type Classified =
  | { ok: true; deviceId: string; form: PayloadForm; variant?: 'bare' | 'json'; metrics: string[] }
  | { ok: false; why: string }

const YEAR_2000_MS = Date.UTC(2000, 0, 1)
const NUMBER = /^-?\d+(\.\d+)?$/

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

/** The forms of DESIGN §3, checked strictly: what a well-behaved device sends. */
function classify({ topic, payload }: Received): Classified {
  const levels = topic.split('/')
  const [root, deviceId, metric, extra] = levels
  if (root !== 'sensors' || !isIdentifier(deviceId) || extra !== undefined) {
    return { ok: false, why: `topic ${topic}` }
  }
  if (metric !== undefined) {
    if (!isIdentifier(metric)) return { ok: false, why: `metric ${metric}` }
    if (NUMBER.test(payload))
      return { ok: true, deviceId, form: 'metric', variant: 'bare', metrics: [metric] }
    let body: unknown
    try {
      body = JSON.parse(payload)
    } catch {
      return { ok: false, why: `payload ${payload}` }
    }
    const { value, ts, unit } = body as { value?: unknown; ts?: unknown; unit?: unknown }
    if (
      !isFiniteNumber(value) ||
      !isFiniteNumber(ts) ||
      ts < YEAR_2000_MS ||
      typeof unit !== 'string'
    ) {
      return { ok: false, why: `payload ${payload}` }
    }
    return { ok: true, deviceId, form: 'metric', variant: 'json', metrics: [metric] }
  }
  let body: unknown
  try {
    body = JSON.parse(payload)
  } catch {
    return { ok: false, why: `payload ${payload}` }
  }
  if (Array.isArray(body)) {
    const records = body as Array<{ bt?: unknown; n?: unknown; v?: unknown }>
    const bt = records[0]?.bt
    if (!isFiniteNumber(bt) || bt * 1000 < YEAR_2000_MS)
      return { ok: false, why: `senml ${payload}` }
    if (!records.every((r) => isIdentifier(r.n) && isFiniteNumber(r.v))) {
      return { ok: false, why: `senml ${payload}` }
    }
    return { ok: true, deviceId, form: 'senml', metrics: records.map((r) => String(r.n)) }
  }
  if (typeof body === 'object' && body !== null) {
    const { ts, ...fields } = body as Record<string, unknown>
    const metrics = Object.keys(fields)
    if (!isFiniteNumber(ts) || ts < YEAR_2000_MS || metrics.length === 0) {
      return { ok: false, why: `object ${payload}` }
    }
    if (!metrics.every((m) => isIdentifier(m) && isFiniteNumber(fields[m]))) {
      return { ok: false, why: `object ${payload}` }
    }
    return { ok: true, deviceId, form: 'object', metrics }
  }
  return { ok: false, why: `payload ${payload}` }
}

/** Aedes 1.x sets `_disconnected` on a client that closed with a DISCONNECT packet (cleanly). */
function sentDisconnect(client: Client): boolean {
  return (client as unknown as { _disconnected?: boolean })._disconnected === true
}

interface ConnectionEvent {
  event: 'connect' | 'disconnect'
  clean?: boolean
  ms: number
}

/** The broker's connects and disconnects of one client id, in order. */
function watchClient(broker: Aedes, clientId: string): ConnectionEvent[] {
  const events: ConnectionEvent[] = []
  broker.on('client', (client) => {
    if (client.id === clientId) events.push({ event: 'connect', ms: Date.now() })
  })
  broker.on('clientDisconnect', (client) => {
    if (client.id === clientId)
      events.push({ event: 'disconnect', clean: sentDisconnect(client), ms: Date.now() })
  })
  return events
}

/** Sample times (the `ts` of object-form payloads) of one device's messages. */
function sampleTimes(messages: Received[], deviceId: string): number[] {
  return messages
    .filter((m) => m.topic === `sensors/${deviceId}`)
    .map((m) => (JSON.parse(m.payload) as { ts: number }).ts)
}

/**
 * Sample times inside an outage whatever the device's exact start: the fleet started it between
 * `fromMs` and `toMs`, and an outage window is down for every start in between when it is down
 * for both ends and the same outage (windows are shorter than a period).
 */
function inOutage(
  schedule: OutageSchedule,
  fromMs: number,
  toMs: number,
  times: number[],
): number[] {
  return times.filter((ts) => {
    const early = outagePhase(schedule, fromMs, ts)
    const late = outagePhase(schedule, toMs, ts)
    return early.down && late.down && early.started === late.started
  })
}

describe('device simulator against a real broker', () => {
  const cleanups: Array<() => Promise<unknown>> = []
  const track = <T>(resource: T, close: (r: T) => Promise<unknown>): T => {
    cleanups.push(() => close(resource))
    return resource
  }
  const fleetOn = (options: FleetOptions): Fleet =>
    track(createFleet({ connectRatePerSec: 500, seed: 7, ...options }), (f) => f.stop())

  afterEach(async () => {
    // Newest first: the fleet before the subscriber before the broker.
    for (const close of cleanups.splice(0).reverse()) await close()
  })

  it('connects every device and publishes the contract forms, QoS 1 all acked', async () => {
    const broker = track(await startBroker(), (b) => b.close())
    const sub = track(await subscribe(broker.url), (s) => s.client.endAsync())
    const fleet = fleetOn({
      url: broker.url,
      devices: 5,
      intervalMs: 50,
      qos: 1,
      form: 'mixed',
      count: 150,
    })

    await fleet.start()
    await fleet.finished()

    const ids = fleet.devices.map((d) => d.id)
    expect(ids).toEqual(['sim-001', 'sim-002', 'sim-003', 'sim-004', 'sim-005'])
    expect([...broker.connects.keys()].filter((id) => id.startsWith('sim-')).sort()).toEqual(ids)
    for (const id of ids) {
      const packet = broker.connects.get(id)
      expect(packet?.clean, id).toBe(true)
      // The gateway owns devices/{id}/status: a device sets no last will.
      expect(packet?.will, id).toBeFalsy()
    }
    const stats = fleet.stats()
    expect(stats.connected).toBe(5)
    expect(stats.readings).toBe(150)
    expect(stats.malformed).toBe(0)
    expect(stats.published).toBeGreaterThan(0)
    expect(stats.acked).toBe(stats.published)

    await vi.waitFor(() => expect(sub.messages).toHaveLength(stats.published), { timeout: 5_000 })
    const classified = sub.messages.map(classify)
    const bad = classified.filter((c) => !c.ok)
    expect(bad).toEqual([])
    const metricsSeen = classified.reduce((sum, c) => sum + (c.ok ? c.metrics.length : 0), 0)
    expect(metricsSeen).toBe(150)

    // Each device publishes in its planned form; mixed rotates metric, object, senml.
    for (const device of fleet.devices) {
      const own = classified.filter((c) => c.ok && c.deviceId === device.id)
      expect(own.length, device.id).toBeGreaterThan(0)
      expect(new Set(own.map((c) => c.ok && c.form)), device.id).toEqual(new Set([device.form]))
    }
    expect(fleet.devices.map((d) => d.form)).toEqual([
      'metric',
      'object',
      'senml',
      'metric',
      'object',
    ])
    const variants = new Set(classified.map((c) => c.ok && c.variant))
    expect(variants.has('bare') && variants.has('json')).toBe(true)
  })

  it('publishes only malformed messages at share 1.0', async () => {
    const broker = track(await startBroker(), (b) => b.close())
    const sub = track(await subscribe(broker.url), (s) => s.client.endAsync())
    const fleet = fleetOn({
      url: broker.url,
      devices: 5,
      intervalMs: 50,
      count: 40,
      malformedShare: 1,
    })

    await fleet.start()
    await fleet.finished()

    const stats = fleet.stats()
    expect(stats).toMatchObject({ published: 40, malformed: 40, readings: 40, acked: 40 })
    await vi.waitFor(() => expect(sub.messages).toHaveLength(40), { timeout: 5_000 })
    const good = sub.messages.filter((m) => classify(m).ok)
    expect(good).toEqual([])
    expect(sub.messages.every((m) => m.topic.startsWith('sensors/sim-'))).toBe(true)
  })

  it('at QoS 0 publishes without acks', async () => {
    const broker = track(await startBroker(), (b) => b.close())
    const sub = track(await subscribe(broker.url), (s) => s.client.endAsync())
    const fleet = fleetOn({
      url: broker.url,
      devices: 5,
      intervalMs: 50,
      qos: 0,
      form: 'object',
      count: 30,
    })

    await fleet.start()
    await fleet.finished()

    expect(fleet.stats()).toMatchObject({ published: 10, readings: 30, acked: 0, malformed: 0 })
    await vi.waitFor(() => expect(sub.messages).toHaveLength(10), { timeout: 5_000 })
    expect(sub.messages.every((m) => classify(m).ok)).toBe(true)
  })

  it('reconnects every device when the broker comes back on the same port', async () => {
    const first = track(await startBroker(), (b) => b.close())
    const before = track(await subscribe(first.url), (s) => s.client.endAsync())
    const fleet = fleetOn({
      url: first.url,
      devices: 5,
      intervalMs: 50,
      form: 'senml',
      durationMs: 60_000,
    })
    await fleet.start()
    const ids = fleet.devices.map((d) => d.id)
    const senders = (messages: Received[]) => new Set(messages.map((m) => m.topic.split('/')[1]))

    await vi.waitFor(
      () => {
        expect(fleet.stats().connected).toBe(5)
        expect(senders(before.messages)).toEqual(new Set(ids))
      },
      { timeout: 5_000 },
    )

    await before.client.endAsync(true)
    await first.close()
    await vi.waitFor(() => expect(fleet.stats().connected).toBe(0), { timeout: 5_000 })

    const second = track(await startBroker(first.port), (b) => b.close())
    const after = track(await subscribe(second.url), (s) => s.client.endAsync())
    await vi.waitFor(
      () => {
        expect(fleet.stats()).toMatchObject({ connected: 5, reconnects: 5 })
        expect(senders(after.messages)).toEqual(new Set(ids))
      },
      { timeout: 10_000, interval: 50 },
    )
    expect([...second.connects.keys()].filter((id) => ids.includes(id)).sort()).toEqual(ids)
    expect(after.messages.every((m) => classify(m).ok)).toBe(true)
  })

  it('a disconnect outage closes the connection cleanly, then reconnects and publishes', async () => {
    const broker = track(await startBroker(), (b) => b.close())
    const sub = track(await subscribe(broker.url), (s) => s.client.endAsync())
    const id = 'flaky-sim-001'
    const events = watchClient(broker.broker, id)
    const schedule: OutageSchedule = { everyMs: 400, forMs: 200, mode: 'disconnect' }
    const fromMs = Date.now()
    const fleet = fleetOn({
      url: broker.url,
      devices: 1,
      intervalMs: 25,
      form: 'object',
      groups: [{ name: 'flaky', count: 1, outage: schedule }],
    })
    await fleet.start()
    const toMs = Date.now()
    expect(fleet.devices.map((d) => d.id)).toEqual([id])

    // Connected, then a clean disconnect at the first outage, then back, publishing again.
    await vi.waitFor(
      () => {
        expect(events.map((e) => e.event).slice(0, 3)).toEqual(['connect', 'disconnect', 'connect'])
        const back = events[2]!.ms
        expect(sampleTimes(sub.messages, id).filter((ts) => ts >= back).length).toBeGreaterThan(2)
      },
      { timeout: 5_000, interval: 20 },
    )
    const [, disconnected, reconnected] = events
    expect(disconnected?.clean, 'DISCONNECT sent').toBe(true)
    // The first outage starts one period after start (no offset) and lasts `for`.
    expect(disconnected!.ms).toBeGreaterThanOrEqual(fromMs + schedule.everyMs)
    expect(reconnected!.ms).toBeGreaterThanOrEqual(fromMs + schedule.everyMs + schedule.forMs)
    const times = sampleTimes(sub.messages, id)
    expect(times.filter((ts) => ts < disconnected!.ms).length, 'before').toBeGreaterThan(2)
    expect(inOutage(schedule, fromMs, toMs, times)).toEqual([])
    expect(fleet.stats().outages).toBeGreaterThanOrEqual(1)
    expect(fleet.stats().reconnects).toBeGreaterThanOrEqual(1)

    await fleet.stop()
    const stats = fleet.stats()
    expect(stats.connected).toBe(0)
    expect(stats.acked).toBe(stats.published)
  })

  it('a silent outage publishes nothing for its window while staying connected', async () => {
    const broker = track(await startBroker(), (b) => b.close())
    const sub = track(await subscribe(broker.url), (s) => s.client.endAsync())
    const id = 'stuck-sim-001'
    const events = watchClient(broker.broker, id)
    // Windows wide enough that a loaded CI machine's timer jitter cannot blur them.
    const schedule: OutageSchedule = { everyMs: 1_000, forMs: 500, mode: 'silent', offsetMs: 300 }
    const fromMs = Date.now()
    const fleet = fleetOn({
      url: broker.url,
      devices: 1,
      intervalMs: 40,
      form: 'object',
      groups: [{ name: 'stuck', count: 1, outage: schedule }],
    })
    await fleet.start()
    const toMs = Date.now()

    // Two whole outages, each followed by readings again.
    const secondEndMs = toMs + schedule.offsetMs! + schedule.everyMs + schedule.forMs
    await vi.waitFor(
      () => {
        expect(fleet.stats().outages).toBeGreaterThanOrEqual(2)
        const after = sampleTimes(sub.messages, id).filter((ts) => ts >= secondEndMs)
        expect(after.length).toBeGreaterThan(2)
      },
      { timeout: 10_000, interval: 20 },
    )
    const times = sampleTimes(sub.messages, id)
    // Readings between the two outages too: the device is silent only in its windows.
    const between = times.filter(
      (ts) =>
        ts >= toMs + schedule.offsetMs! + schedule.forMs &&
        ts < fromMs + schedule.offsetMs! + schedule.everyMs,
    )
    expect(between.length, 'between').toBeGreaterThan(2)
    expect(inOutage(schedule, fromMs, toMs, times)).toEqual([])
    // At 40 ms a sample would have come every 40 ms: the windows are the gaps.
    const gaps = times.slice(1).map((ts, i) => ts - times[i]!)
    expect(gaps.filter((gap) => gap >= schedule.forMs - 30).length).toBeGreaterThanOrEqual(2)

    // One connection all along.
    expect(events).toEqual([{ event: 'connect', ms: expect.any(Number) }])
    expect(fleet.stats()).toMatchObject({ connected: 1, reconnects: 0 })

    await fleet.stop()
    const stats = fleet.stats()
    expect(stats.acked).toBe(stats.published)
    await vi.waitFor(
      () =>
        expect(events.map((e) => [e.event, e.clean])).toEqual([
          ['connect', undefined],
          ['disconnect', true],
        ]),
      { timeout: 5_000 },
    )
  })

  it('stop() disconnects every device cleanly', async () => {
    const broker = track(await startBroker(), (b) => b.close())
    const fleet = fleetOn({ url: broker.url, devices: 5, intervalMs: 50 })
    const disconnected: string[] = []
    broker.broker.on('clientDisconnect', (client) => disconnected.push(client.id))

    await fleet.start()
    await vi.waitFor(() => expect(fleet.stats().connected).toBe(5), { timeout: 5_000 })
    await fleet.stop()

    expect(fleet.stats().connected).toBe(0)
    await vi.waitFor(() => expect(disconnected.sort()).toEqual(fleet.devices.map((d) => d.id)), {
      timeout: 5_000,
    })
    await fleet.finished()
  })
})
