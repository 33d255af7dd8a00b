/**
 * A load worker: one child process of the benchmark (bench/load/pool.ts forks it), doing one job
 * at a time for the orchestrator over IPC (bench/load/jobs.ts). Keeping the load in children
 * leaves the orchestrator idle and lets the generator use a core of its own.
 */
import type { Socket } from 'node:net'
import { connectAsync, type MqttClient } from 'mqtt'
import {
  type ReceivedWebhook,
  startWebhookReceiver,
  type WebhookReceiver,
} from '../../src/demo/webhook-receiver.ts'
import { SampleBuffer, sleep, wallNow } from '../lib/stats.ts'
import type {
  DevicesJob,
  DevicesResult,
  FloodJob,
  FloodResult,
  IdleGo,
  IdleJob,
  IdleResult,
  Job,
  JobResult,
  ProbeJob,
  ProbeResult,
  Reply,
  Request,
  SubscriberJob,
  SubscriberResult,
  Timing,
  WebhookReceiverResult,
} from './jobs.ts'
import {
  DISCONNECT,
  PACKET,
  packetReader,
  publishSize,
  rawConnect,
  writePublish,
} from './mqtt-raw.ts'

/** How long finish() waits for outstanding PUBACKs before it reports them as unacked. */
const DRAIN_TIMEOUT_MS = 8_000
/** finish() stops waiting once nothing has come back for this long. */
const QUIET_MS = 2_000
/** A subscriber that has received nothing for this long has received all it will. */
const SUBSCRIBER_QUIET_MS = 500
/** A subscriber waits this long at most for the backlog of a broker that fell behind. */
const SUBSCRIBER_DRAIN_MS = 5_000
const CONNECT_TIMEOUT_MS = 10_000

interface Runner {
  prepare(): Promise<unknown>
  go(timing: Timing): Promise<unknown>
  /**
   * `expected`: for a subscriber, how many messages the publishers had acknowledged. `drainMs`:
   * how long at most to wait for what is still owed.
   */
  finish(expected?: number, drainMs?: number): Promise<JobResult>
}

function cpuSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start)
  return (used.user + used.system) / 1e6
}

async function connectMqtt(url: string, clientId: string): Promise<MqttClient> {
  return connectAsync(url, {
    clientId,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    keepalive: 60,
  })
}

/** Resolves once `done()` holds, or nothing changed in `progress()` for QUIET_MS, or timeout. */
async function waitSettled(
  done: () => boolean,
  progress: () => number,
  quietMs = QUIET_MS,
  timeoutMs = DRAIN_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = progress()
  let lastChange = Date.now()
  while (!done() && Date.now() < deadline) {
    await sleep(20)
    const now = progress()
    if (now !== last) {
      last = now
      lastChange = Date.now()
    } else if (Date.now() - lastChange > quietMs) return
  }
}

interface DeviceState {
  client: MqttClient
  topic: string
  lastTs: number
  inFlight: number
  ending: boolean
}

/**
 * The send time goes into the payload twice over, so the gateway accepts it and a subscriber can
 * read it back to the microsecond: `ts` is the send time in whole milliseconds, bumped by one when
 * the device already used that millisecond (readings are keyed by device, metric and ts, so every
 * reading is new and stored == acked can be checked), and `value` is 20 plus what `ts` is short of
 * the exact send time (20.000..20.999 unless bumped). Send time = ts + value - 20.
 */
function nextPayload(dev: { lastTs: number }, sendMs: number): string {
  let ts = Math.floor(sendMs)
  if (ts <= dev.lastTs) ts = dev.lastTs + 1
  dev.lastTs = ts
  const value = Math.round((20 + sendMs - ts) * 1000) / 1000
  return `{"value":${value},"ts":${ts}}`
}

/** Send time (epoch ms) of a payload written by nextPayload; NaN for anything else. */
function sendTimeOf(payload: Buffer): number {
  try {
    const { value, ts } = JSON.parse(payload.toString('utf8')) as { value?: number; ts?: number }
    return typeof value === 'number' && typeof ts === 'number' ? ts + value - 20 : Number.NaN
  } catch {
    return Number.NaN
  }
}

class DevicesRunner implements Runner {
  private devices: DeviceState[] = []
  private timing: Timing = { startAt: 0, measureFrom: 0, measureTo: 0 }
  private sending = false
  private sent = 0
  private acked = 0
  private sentInWindow = 0
  private ackedInWindow = 0
  private disconnects = 0
  private errors = 0
  private readonly ackLatency = new SampleBuffer()
  private cpu = process.cpuUsage()

  constructor(private readonly job: DevicesJob) {}

  async prepare() {
    const settled = await Promise.allSettled(
      this.job.deviceIds.map(async (id) => {
        const client = await connectMqtt(this.job.url, id)
        const dev: DeviceState = {
          client,
          topic: `sensors/${id}/${this.job.metric}`,
          lastTs: 0,
          inFlight: 0,
          ending: false,
        }
        client.on('close', () => {
          if (!dev.ending) this.disconnects++
        })
        client.on('error', () => {
          this.errors++
        })
        return dev
      }),
    )
    // The ones that did connect are kept, so finish() disconnects them even when one failed.
    this.devices = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
    return { connected: this.devices.length }
  }

  private send(dev: DeviceState): void {
    const t = wallNow()
    const payload = nextPayload(dev, t)
    dev.inFlight++
    this.sent++
    if (t >= this.timing.measureFrom && t < this.timing.measureTo) this.sentInWindow++
    dev.client.publish(dev.topic, payload, { qos: this.job.qos }, (err) => {
      dev.inFlight--
      if (err) {
        this.errors++
        return
      }
      const now = wallNow()
      this.acked++
      if (now >= this.timing.measureFrom && now < this.timing.measureTo) {
        this.ackedInWindow++
        if (this.job.qos === 1) this.ackLatency.add(now - t)
      }
      if (this.job.mode === 'closed' && this.sending && now < this.timing.measureTo) {
        // A QoS 0 callback runs inside publish() when the socket took the bytes: defer, so the
        // loop yields to I/O instead of recursing.
        if (this.job.qos === 0) setImmediate(() => this.send(dev))
        else this.send(dev)
      }
    })
  }

  async go(timing: Timing) {
    this.timing = timing
    await sleep(Math.max(0, timing.startAt - wallNow()))
    this.cpu = process.cpuUsage()
    this.sending = true
    const live = () => this.devices.filter((d) => d.client.connected)
    if (this.job.mode === 'closed') {
      const window = this.job.window ?? 1
      for (let k = 0; k < window; k++) for (const dev of live()) this.send(dev)
      await sleep(Math.max(0, timing.measureTo - wallNow()))
    } else {
      const rate = this.job.ratePerSec ?? 0
      const start = wallNow()
      let scheduled = 0
      let next = 0
      await new Promise<void>((resolve) => {
        const tick = () => {
          const now = wallNow()
          if (now >= timing.measureTo) {
            clearInterval(timer)
            resolve()
            return
          }
          const due = Math.floor(((now - start) * rate) / 1_000)
          const devices = this.devices
          while (scheduled < due) {
            scheduled++
            // Round robin over the devices still connected; a dropped one is skipped.
            for (let tries = 0; tries < devices.length; tries++) {
              const dev = devices[next++ % devices.length] as DeviceState
              if (dev.client.connected) {
                this.send(dev)
                break
              }
            }
          }
        }
        const timer = setInterval(tick, 1)
      })
    }
    this.sending = false
    return {}
  }

  async finish(_expected?: number, drainMs = DRAIN_TIMEOUT_MS): Promise<DevicesResult> {
    const outstanding = () =>
      this.devices.reduce((n, d) => n + (d.client.connected ? d.inFlight : 0), 0)
    await waitSettled(
      () => outstanding() === 0,
      () => this.acked,
      QUIET_MS,
      drainMs,
    )
    const unacked = outstanding()
    const cpuSec = cpuSince(this.cpu)
    await Promise.all(
      this.devices.map((d) => {
        d.ending = true
        return d.client.endAsync(true).catch(() => {})
      }),
    )
    return {
      kind: 'devices',
      sent: this.sent,
      acked: this.acked,
      sentInWindow: this.sentInWindow,
      ackedInWindow: this.ackedInWindow,
      unacked,
      disconnects: this.disconnects,
      errors: this.errors,
      ackLatencyMs: this.ackLatency.toArray(),
      cpuSec,
    }
  }
}

class SubscriberRunner implements Runner {
  private client: MqttClient | undefined
  private timing: Timing = { startAt: 0, measureFrom: Infinity, measureTo: Infinity }
  private received = 0
  private receivedInWindow = 0
  private disconnects = 0
  private ending = false
  private readonly latency = new SampleBuffer()
  private cpu = process.cpuUsage()

  constructor(private readonly job: SubscriberJob) {}

  async prepare() {
    const client = await connectMqtt(this.job.url, this.job.clientId)
    this.client = client
    client.on('close', () => {
      if (!this.ending) this.disconnects++
    })
    client.on('message', (_topic, payload, packet) => {
      if (packet.retain) return
      const now = wallNow()
      this.received++
      if (now >= this.timing.measureFrom && now < this.timing.measureTo) {
        this.receivedInWindow++
        const sentAt = sendTimeOf(payload)
        if (Number.isFinite(sentAt)) this.latency.add(now - sentAt)
      }
    })
    await client.subscribeAsync(this.job.topic, { qos: this.job.qos })
    return {}
  }

  async go(timing: Timing) {
    this.timing = timing
    this.cpu = process.cpuUsage()
    return {}
  }

  async finish(expected?: number, drainMs = SUBSCRIBER_DRAIN_MS): Promise<SubscriberResult> {
    // Deliveries still on their way when the publishers stopped count in `received`.
    await waitSettled(
      () => expected !== undefined && this.received >= expected,
      () => this.received,
      SUBSCRIBER_QUIET_MS,
      drainMs,
    )
    const cpuSec = cpuSince(this.cpu)
    this.ending = true
    await this.client?.endAsync(true).catch(() => {})
    return {
      kind: 'subscriber',
      received: this.received,
      receivedInWindow: this.receivedInWindow,
      latencyMs: this.latency.toArray(),
      disconnects: this.disconnects,
      cpuSec,
    }
  }
}

/**
 * The worker's webhook receiver (`webhook-start`), apart from its jobs: the gateway is given its
 * URL before any job starts, and keeps it for the scenario's rounds. A probe with `webhook` says
 * which alert it waits for; the receiver's clock is the probe's (wallNow, same process).
 */
const webhooks: {
  receiver: WebhookReceiver | null
  verified: number
  refused: number
  waiting: { deviceId: string; state: string; ts: number; resolve: (at: number) => void } | null
} = { receiver: null, verified: 0, refused: 0, waiting: null }

function onWebhook(received: ReceivedWebhook): void {
  if (!received.verified) {
    webhooks.refused++
    return
  }
  webhooks.verified++
  const waiting = webhooks.waiting
  if (!waiting) return
  // The crossing's own alert: its device, its transition and the reading time the probe sent.
  const alerts = received.notification.alerts
  if (
    alerts.some(
      (a) => a.deviceId === waiting.deviceId && a.state === waiting.state && a.ts === waiting.ts,
    )
  ) {
    webhooks.waiting = null
    waiting.resolve(received.receivedAtMs)
  }
}

/** A probe gives up waiting for webhooks after this many timeouts without any arriving. */
const WEBHOOK_GIVE_UP = 3

class ProbeRunner implements Runner {
  private pub: MqttClient | undefined
  private sub: MqttClient | undefined
  private readonly dev = { lastTs: 0 }
  private waiting: { match: (payload: Buffer) => boolean; resolve: (at: number) => void } | null =
    null
  private probes = 0
  private timeouts = 0
  private readonly latency = new SampleBuffer()
  /** Waits for webhooks (alert mode, `webhook`), until it gives up on a target that sends none. */
  private webhookOn: boolean
  private webhooksReceived = 0
  private webhookTimeouts = 0
  private readonly webhookLatency = new SampleBuffer()
  private cpu = process.cpuUsage()

  constructor(private readonly job: ProbeJob) {
    this.webhookOn = job.mode === 'alert' && job.webhook === true
  }

  async prepare() {
    const { deviceId, url } = this.job
    this.sub = await connectMqtt(url, `${deviceId}-sub`)
    this.sub.on('message', (_topic, payload, packet) => {
      if (packet.retain || !this.waiting) return
      const at = wallNow()
      if (this.waiting.match(payload)) {
        const { resolve } = this.waiting
        this.waiting = null
        resolve(at)
      }
    })
    const topic =
      this.job.mode === 'alert' ? `alerts/+/${deviceId}/+` : `sensors/${deviceId}/temperature`
    await this.sub.subscribeAsync(topic, { qos: 1 })
    this.pub = await connectMqtt(url, deviceId)
    return {}
  }

  async go(timing: Timing) {
    const pub = this.pub as MqttClient
    const topic = `sensors/${this.job.deviceId}/temperature`
    await sleep(Math.max(0, timing.startAt - wallNow()))
    this.cpu = process.cpuUsage()
    let high = true
    while (wallNow() < timing.measureTo) {
      const t0 = wallNow()
      let payload: string
      let match: (p: Buffer) => boolean
      let webhookAnswered: Promise<number> | null = null
      if (this.job.mode === 'alert') {
        // 35 crosses the shipped rule high-temperature (above 30); 20 resolves it (hysteresis 1).
        const state = high ? 'firing' : 'resolved'
        let ts = Math.floor(t0)
        if (ts <= this.dev.lastTs) ts = this.dev.lastTs + 1
        this.dev.lastTs = ts
        payload = `{"value":${high ? 35 : 20},"ts":${ts}}`
        if (this.webhookOn) {
          const deviceId = this.job.deviceId
          webhookAnswered = new Promise<number>((resolve) => {
            webhooks.waiting = { deviceId, state, ts, resolve }
          })
        }
        match = (p) => {
          try {
            const alert = JSON.parse(p.toString('utf8')) as { state?: string; ts?: number }
            return alert.state === state
          } catch {
            return false
          }
        }
      } else {
        payload = nextPayload(this.dev, t0)
        const expected = payload
        match = (p) => p.toString('utf8') === expected
      }
      const answered = new Promise<number>((resolve) => {
        this.waiting = { match, resolve }
      })
      pub.publish(topic, payload, { qos: this.job.qos })
      const at = await Promise.race([answered, sleep(this.job.timeoutMs).then(() => -1)])
      this.probes++
      if (at < 0) {
        this.waiting = null
        webhooks.waiting = null
        this.timeouts++
        // Whatever state the rule is in now, the next crossing starts from a known one.
        high = true
      } else {
        if (t0 >= timing.measureFrom) this.latency.add(at - t0)
        high = !high
        // The same crossing's notification, within the same bound from the same publish.
        if (webhookAnswered) await this.awaitWebhook(webhookAnswered, t0, timing)
      }
      // A little jitter, so the probe does not lock step with a timer in the broker.
      await sleep(this.job.gapMs + Math.random() * this.job.gapMs)
    }
    return {}
  }

  private async awaitWebhook(answered: Promise<number>, t0: number, timing: Timing) {
    const leftMs = Math.max(0, t0 + this.job.timeoutMs - wallNow())
    const at = await Promise.race([answered, sleep(leftMs).then(() => -1)])
    if (at < 0) {
      webhooks.waiting = null
      this.webhookTimeouts++
      // A gateway that sends no notifications (BENCH_GATEWAY_DIR of an older revision) must not
      // hold every crossing for the timeout: its webhook figures are then empty.
      if (this.webhooksReceived === 0 && this.webhookTimeouts >= WEBHOOK_GIVE_UP) {
        this.webhookOn = false
      }
      return
    }
    this.webhooksReceived++
    if (t0 >= timing.measureFrom) this.webhookLatency.add(at - t0)
  }

  async finish(): Promise<ProbeResult> {
    const cpuSec = cpuSince(this.cpu)
    webhooks.waiting = null
    await Promise.all(
      [this.pub?.endAsync(true), this.sub?.endAsync(true)].map((p) => p?.catch(() => {})),
    )
    return {
      kind: 'probe',
      probes: this.probes,
      timeouts: this.timeouts,
      latencyMs: this.latency.toArray(),
      ...(this.job.mode === 'alert' && this.job.webhook
        ? { webhookLatencyMs: this.webhookLatency.toArray(), webhookTimeouts: this.webhookTimeouts }
        : {}),
      cpuSec,
    }
  }
}

/** Publishes written per socket write: big enough to be cheap, small enough to stay responsive. */
const FLOOD_BATCH = 200

interface FloodSocket {
  socket: Socket
  sent: number
  acked: number
  /** Set while the pump waits for PUBACKs (a batch more would pass maxOutstanding). */
  resume: (() => void) | null
}

class FloodRunner implements Runner {
  private conns: FloodSocket[] = []
  private sentInWindow = 0
  private ackedInWindow = 0
  private disconnects = 0
  private ending = false
  private timing: Timing = { startAt: 0, measureFrom: Infinity, measureTo: Infinity }
  private cpu = process.cpuUsage()

  constructor(private readonly job: FloodJob) {}

  private get sent() {
    return this.conns.reduce((n, c) => n + c.sent, 0)
  }

  private get acked() {
    return this.conns.reduce((n, c) => n + c.acked, 0)
  }

  async prepare() {
    const settled = await Promise.allSettled(
      this.job.deviceIds.map((id) =>
        rawConnect(this.job.host, this.job.port, id, 600, CONNECT_TIMEOUT_MS),
      ),
    )
    this.conns = settled.flatMap((r) =>
      r.status === 'fulfilled' ? [{ socket: r.value, sent: 0, acked: 0, resume: null }] : [],
    )
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) {
      for (const { socket } of this.conns) socket.destroy()
      throw failed.reason
    }
    for (const conn of this.conns) {
      conn.socket.on(
        'data',
        packetReader((type) => {
          if (type !== PACKET.puback) return
          conn.acked++
          const now = wallNow()
          if (now >= this.timing.measureFrom && now < this.timing.measureTo) this.ackedInWindow++
          // Room for another batch under the cap: the pump goes on.
          if (conn.resume && conn.sent - conn.acked <= this.job.maxOutstanding - FLOOD_BATCH) {
            const resume = conn.resume
            conn.resume = null
            resume()
          }
        }),
      )
      conn.socket.on('error', () => {})
      conn.socket.on('close', () => {
        if (!this.ending) this.disconnects++
        conn.resume?.()
      })
    }
    return {}
  }

  async go(timing: Timing) {
    this.timing = timing
    await sleep(Math.max(0, timing.startAt - wallNow()))
    this.cpu = process.cpuUsage()
    const { qos, metric, maxOutstanding } = this.job
    await Promise.all(
      this.conns.map(
        (conn, i) =>
          new Promise<void>((resolve) => {
            const { socket } = conn
            const topic = Buffer.from(`sensors/${this.job.deviceIds[i]}/${metric}`)
            // A day in the past and one millisecond apart: unique, and far from the future limit
            // however fast the flood goes.
            let ts = Math.floor(Date.now()) - 86_400_000
            let packetId = 0
            const size = publishSize(topic.length, `{"value":20.5,"ts":${ts}}`.length + 2, qos)
            // If the pump stopped for the cap and the window ends meanwhile, it still ends.
            const deadline = setTimeout(() => conn.resume?.(), timing.measureTo - wallNow() + 1)
            const pump = () => {
              const now = wallNow()
              if (now >= timing.measureTo || socket.destroyed) {
                clearTimeout(deadline)
                resolve()
                return
              }
              if (qos === 1 && conn.sent - conn.acked > maxOutstanding - FLOOD_BATCH) {
                conn.resume = pump
                return
              }
              const buf = Buffer.allocUnsafe(size * FLOOD_BATCH)
              let at = 0
              for (let k = 0; k < FLOOD_BATCH; k++) {
                packetId = packetId === 65_535 ? 1 : packetId + 1
                at = writePublish(buf, at, topic, `{"value":20.5,"ts":${ts++}}`, qos, packetId)
              }
              conn.sent += FLOOD_BATCH
              if (now >= timing.measureFrom) this.sentInWindow += FLOOD_BATCH
              if (socket.write(buf.subarray(0, at))) setImmediate(pump)
              else socket.once('drain', pump)
            }
            pump()
          }),
      ),
    )
    return {}
  }

  async finish(_expected?: number, drainMs = DRAIN_TIMEOUT_MS): Promise<FloodResult> {
    if (this.job.qos === 1) {
      await waitSettled(
        () => this.acked >= this.sent,
        () => this.acked,
        QUIET_MS,
        drainMs,
      )
    }
    const cpuSec = cpuSince(this.cpu)
    this.ending = true
    for (const { socket } of this.conns) socket.end(DISCONNECT)
    await sleep(50)
    for (const { socket } of this.conns) socket.destroy()
    return {
      kind: 'flood',
      sent: this.sent,
      acked: this.acked,
      sentInWindow: this.sentInWindow,
      ackedInWindow: this.ackedInWindow,
      disconnects: this.disconnects,
      cpuSec,
    }
  }
}

class IdleRunner implements Runner {
  private sockets: Socket[] = []
  private dropped = 0
  private ending = false
  private cpu = process.cpuUsage()

  constructor(private readonly job: IdleJob) {}

  async prepare() {
    return {}
  }

  async go(): Promise<IdleGo> {
    const { host, port, count, concurrency, clientIdPrefix, keepaliveSec } = this.job
    this.cpu = process.cpuUsage()
    const connectMs = new Float64Array(count)
    let connected = 0
    let failed = 0
    let firstError: string | undefined
    let next = 0
    const started = wallNow()
    const lane = async () => {
      while (next < count) {
        const i = next++
        const t0 = wallNow()
        try {
          const socket = await rawConnect(host, port, `${clientIdPrefix}${i}`, keepaliveSec, 30_000)
          connectMs[connected++] = wallNow() - t0
          socket.on('error', () => {})
          socket.on('close', () => {
            if (!this.ending) this.dropped++
          })
          // Nothing is read after the CONNACK; idle means idle.
          this.sockets.push(socket)
        } catch (err) {
          failed++
          firstError ??= err instanceof Error ? err.message : String(err)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane))
    return {
      connected,
      failed,
      ...(firstError ? { firstError } : {}),
      elapsedMs: wallNow() - started,
      connectMs: connectMs.slice(0, connected),
    }
  }

  async finish(): Promise<IdleResult> {
    const stillOpen = this.sockets.length - this.dropped
    const cpuSec = cpuSince(this.cpu)
    this.ending = true
    for (const socket of this.sockets) socket.end(DISCONNECT)
    await sleep(100)
    for (const socket of this.sockets) socket.destroy()
    this.sockets = []
    return { kind: 'idle', stillOpen, cpuSec }
  }
}

function runnerFor(job: Job): Runner {
  switch (job.kind) {
    case 'devices':
      return new DevicesRunner(job)
    case 'subscriber':
      return new SubscriberRunner(job)
    case 'probe':
      return new ProbeRunner(job)
    case 'flood':
      return new FloodRunner(job)
    case 'idle':
      return new IdleRunner(job)
  }
}

let runner: Runner | undefined

async function handle(request: Request): Promise<unknown> {
  switch (request.op) {
    case 'prepare':
      // A job left behind by a failed run is wound up first.
      if (runner) await runner.finish().catch(() => undefined)
      runner = runnerFor(request.job)
      return runner.prepare()
    case 'go':
      if (!runner) throw new Error('go before prepare')
      return runner.go(request.timing)
    case 'finish': {
      if (!runner) throw new Error('finish before prepare')
      const current = runner
      runner = undefined
      return current.finish(request.expected, request.drainMs)
    }
    case 'webhook-start': {
      if (webhooks.receiver) throw new Error('the webhook receiver is already running')
      webhooks.verified = 0
      webhooks.refused = 0
      webhooks.receiver = await startWebhookReceiver({
        secret: request.secret,
        now: wallNow,
        onReceived: onWebhook,
      })
      return { url: webhooks.receiver.url }
    }
    case 'webhook-stop': {
      const receiver = webhooks.receiver
      webhooks.receiver = null
      await receiver?.close()
      const result: WebhookReceiverResult = {
        verified: webhooks.verified,
        refused: webhooks.refused,
      }
      return result
    }
  }
}

const reply = (message: Reply) => process.send?.(message)

process.on('message', (request: Request) => {
  handle(request).then(
    (data) => reply({ op: 'reply', id: request.id, data }),
    (err: unknown) =>
      reply({
        op: 'error',
        id: request.id,
        message: `${request.op}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      }),
  )
})
// The orchestrator going away (even by SIGKILL) closes the channel: nothing must outlive it.
process.on('disconnect', () => process.exit(0))
reply({ op: 'hello' })
