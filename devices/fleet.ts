import { setTimeout as delay } from 'node:timers/promises'
import { connect, type MqttClient } from 'mqtt'
import type { Reading } from '../src/contract/index.ts'
import { createSilentLogger, type Logger } from '../src/telemetry/logger.ts'
import {
  checkFleetConfig,
  type DeviceSpec,
  type FleetConfig,
  type FleetSettings,
  planDevices,
  resolveFleet,
} from './fleet-config.ts'
import { type OutagePhase, outagePhase } from './outage.ts'
import {
  buildMessages,
  createMalformedPicker,
  malformedMessage,
  type OutgoingMessage,
} from './payloads.ts'
import { createPrng, createSensor, METRIC_UNITS } from './signals.ts'

export interface FleetOptions extends FleetSettings {
  /** Broker URL: `mqtt://host:1883`, `mqtts://...`, `ws://...`. */
  url: string
  /**
   * MQTT password of each device, by id (the simulator's --credentials file): a device found here
   * logs in as its id (or the `username` template) with its own secret, which overrides the
   * `password` template.
   */
  passwords?: ReadonlyMap<string, string>
}

export interface FleetStats {
  /** Messages handed to a connected client (one per metric in the `metric` form). */
  published: number
  /** QoS 1 messages the broker acknowledged (PUBACK); stays 0 at QoS 0. */
  acked: number
  /** Published messages that were deliberately malformed. */
  malformed: number
  /** Readings published (a malformed message counts as one): what `count` bounds. */
  readings: number
  /** Devices connected right now. */
  connected: number
  /** Successful connections after a device's first one (after a broker loss or an outage). */
  reconnects: number
  /** Scheduled outages started (devices/outage.ts), silent and disconnect alike. */
  outages: number
}

export interface Fleet {
  /** Connects every device (staggered) and starts publishing; resolves once all are started. */
  start(): Promise<void>
  /** Stops publishing, waits briefly for in-flight QoS 1 acks, and disconnects every device. */
  stop(): Promise<void>
  stats(): FleetStats
  /**
   * Resolves when the fleet has nothing more to do: `count` readings are published and settled
   * (acked, or failed), or `durationMs` has passed since start, or stop() was called.
   * Without a count or duration it resolves only on stop().
   */
  finished(): Promise<void>
  /** The planned devices, for callers that want to know ids and forms. */
  readonly devices: readonly DeviceSpec[]
}

/** At most one connection warning per this window; the rest go to debug. */
const WARN_INTERVAL_MS = 10_000

/** The URL without a password, for logs. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparsable url)'
  }
}

/** Longest stop() waits for QoS 1 acks of messages already sent before it disconnects anyway. */
const DRAIN_TIMEOUT_MS = 2_000

interface Device {
  spec: DeviceSpec
  client: MqttClient | null
  timer: NodeJS.Timeout | null
  connected: boolean
  everConnected: boolean
  /** Publishes whose callback has not run yet. */
  pending: number
  tick: number
  /** When the device started: its outage schedule counts from here. */
  startedMs: number
  /** In a scheduled outage right now. */
  down: boolean
  /** Outages started so far (by the schedule's count, so a late timer cannot count one twice). */
  outagesStarted: number
  outageTimer: NodeJS.Timeout | null
  /** The disconnect and reconnect of `disconnect` outages, one after the other. */
  transition: Promise<void>
}

/**
 * A fleet of simulated sensors, each its own MQTT connection (client id = device id, clean
 * session, reconnecting every `reconnectPeriodMs` so it comes back when the gateway restarts).
 * No last will: the gateway owns `devices/{id}/status`. Throws on invalid options.
 */
export function createFleet(options: FleetOptions, log: Logger = createSilentLogger()): Fleet {
  const { url, passwords, ...settings } = options
  const config: FleetConfig = resolveFleet(settings)
  const problems = checkFleetConfig(config)
  if (problems.length > 0) throw new Error(`invalid fleet options: ${problems.join('; ')}`)
  const flog = log.child({ module: 'simulator' })
  const safeUrl = redactUrl(url)
  const specs = planDevices(config)
  const devices: Device[] = specs.map((spec) => ({
    spec,
    client: null,
    timer: null,
    connected: false,
    everConnected: false,
    pending: 0,
    tick: 0,
    startedMs: 0,
    down: false,
    outagesStarted: 0,
    outageTimer: null,
    transition: Promise.resolve(),
  }))

  const stats: FleetStats = {
    published: 0,
    acked: 0,
    malformed: 0,
    readings: 0,
    connected: 0,
    reconnects: 0,
    outages: 0,
  }
  let publishing = false
  let stopping = false
  let started = false
  let pendingTotal = 0
  let durationTimer: NodeJS.Timeout | null = null
  const startAbort = new AbortController()
  const malformedChance = createPrng(config.seed ^ 0x5eed)
  const pickMalformed = createMalformedPicker(config.seed ^ 0xbad)

  let resolveFinished: () => void = () => {}
  const finishedPromise = new Promise<void>((resolve) => {
    resolveFinished = resolve
  })
  const budgetSpent = () => config.count !== undefined && stats.readings >= config.count
  const checkFinished = () => {
    if (budgetSpent() && pendingTotal === 0) {
      publishing = false
      resolveFinished()
    }
  }

  // With 1,000 devices a broker restart means 1,000 errors a second: warn once per window.
  let lastWarnMs = Number.NEGATIVE_INFINITY
  const warnLimited = (fields: Record<string, unknown>, msg: string) => {
    const nowMs = Date.now()
    if (nowMs - lastWarnMs < WARN_INTERVAL_MS) return flog.debug(fields, msg)
    lastWarnMs = nowMs
    flog.warn({ ...fields, url: safeUrl, connected: stats.connected }, msg)
  }

  const credentials = (id: string) => {
    const creds: { username?: string; password?: string } = {}
    if (config.username !== undefined) creds.username = config.username.replaceAll('{id}', id)
    if (config.password !== undefined) creds.password = config.password.replaceAll('{id}', id)
    const own = passwords?.get(id)
    if (own !== undefined) {
      creds.username ??= id
      creds.password = own
    }
    return creds
  }

  const send = (device: Device, message: OutgoingMessage) => {
    const client = device.client
    if (!client) return
    device.pending++
    pendingTotal++
    stats.published++
    client.publish(message.topic, message.payload, { qos: config.qos }, (err) => {
      device.pending--
      pendingTotal--
      if (err) flog.debug({ err, deviceId: device.spec.id }, 'publish failed')
      else if (config.qos === 1) stats.acked++
      checkFinished()
    })
  }

  const publishSample = (device: Device, sensor: ReturnType<typeof createSensor>) => {
    const { spec } = device
    const nowMs = Date.now()
    // Sample on every tick, connected or not, so the series follows wall time without gaps.
    const sample = sensor.sample(nowMs)
    const tick = device.tick++
    // The schedule, not the outage timer, decides: a sample never slips into an outage.
    syncOutage(device, nowMs)
    // A device without a connection drops the sample: battery sensors have no buffer to speak of.
    if (!publishing || device.down || !device.connected || budgetSpent()) return
    if (config.malformedShare > 0 && malformedChance.next() < config.malformedShare) {
      stats.readings++
      stats.malformed++
      send(device, malformedMessage(pickMalformed(), spec.id, nowMs))
      return
    }
    let metrics = spec.metrics
    if (config.count !== undefined) metrics = metrics.slice(0, config.count - stats.readings)
    const readings: Reading[] = metrics.map((metric) => ({
      deviceId: spec.id,
      metric,
      value: sample[metric],
      ts: nowMs,
      unit: METRIC_UNITS[metric],
    }))
    stats.readings += readings.length
    for (const message of buildMessages(spec.form, spec.id, nowMs, readings, tick))
      send(device, message)
  }

  /** One MQTT connection of a device; a `disconnect` outage ends it and opens a new one after. */
  const connectDevice = (device: Device) => {
    const { spec } = device
    const client = connect(url, {
      clientId: spec.id,
      clean: true,
      protocolVersion: 4,
      reconnectPeriod: config.reconnectPeriodMs,
      connectTimeout: 10_000,
      keepalive: 30,
      ...credentials(spec.id),
    })
    device.client = client
    // This connection's own state: a closing one must not count against its successor.
    let up = false
    client.on('connect', () => {
      if (!up) stats.connected++
      up = true
      if (device.client === client) device.connected = true
      if (device.everConnected) stats.reconnects++
      device.everConnected = true
      flog.debug({ deviceId: spec.id }, 'device connected')
      if (stats.connected === devices.length) {
        flog.info(
          { connected: stats.connected, reconnects: stats.reconnects },
          'all devices connected',
        )
      }
    })
    client.on('close', () => {
      if (up) {
        stats.connected--
        if (!stopping && !device.down)
          warnLimited({ deviceId: spec.id }, 'device lost its connection, reconnecting')
      }
      up = false
      if (device.client === client) device.connected = false
    })
    client.on('error', (err) => {
      // Refused connections, bad credentials: MQTT.js keeps retrying every reconnectPeriodMs.
      warnLimited({ err, deviceId: spec.id }, 'device cannot connect, retrying')
    })
  }

  /** Waits briefly for in-flight publishes, then ends the connection (DISCONNECT when it can). */
  const closeClient = async (device: Device): Promise<void> => {
    const client = device.client
    if (!client) return
    if (client.connected && device.pending > 0) {
      const deadline = Date.now() + DRAIN_TIMEOUT_MS
      while (device.pending > 0 && client.connected && Date.now() < deadline) await delay(20)
    }
    // MQTT.js' graceful end() waits for the outgoing queue to empty, forever if the broker is
    // gone; so end gracefully only when nothing is in flight, and force otherwise.
    const force = !client.connected || device.pending > 0
    await new Promise<void>((resolve) => client.end(force, {}, () => resolve()))
    if (device.client === client) {
      device.client = null
      device.connected = false
    }
  }

  /** Runs a device's disconnect and reconnect steps in order, each after the one before. */
  const queue = (device: Device, step: () => void | Promise<void>) => {
    device.transition = device.transition.then(step).catch((err: unknown) => {
      flog.warn({ err, deviceId: device.spec.id }, 'simulated outage step failed')
    })
  }

  /** Brings the device's outage state up to its schedule at `nowMs`; the phase, if scheduled. */
  const syncOutage = (device: Device, nowMs: number): OutagePhase | null => {
    const { spec } = device
    if (!spec.outage || stopping) return null
    const { mode, forMs } = spec.outage
    const phase = outagePhase(spec.outage, device.startedMs, nowMs)
    // A new outage by the schedule's count. Still down from the one before (its end came and
    // went while the event loop was busy): the two make one long outage, counted once.
    const fresh = phase.started > device.outagesStarted
    device.outagesStarted = phase.started
    if (phase.down && fresh && !device.down) {
      device.down = true
      stats.outages++
      flog.info({ deviceId: spec.id, mode, forMs }, 'simulated outage starts')
      if (mode === 'disconnect') queue(device, () => closeClient(device))
    } else if (!phase.down && device.down) {
      device.down = false
      flog.info({ deviceId: spec.id, mode }, 'simulated outage ends')
      if (mode === 'disconnect') {
        queue(device, () => {
          if (!stopping && !device.down && !device.client) connectDevice(device)
        })
      }
    }
    return phase
  }

  /** Applies the schedule now and again at each of its changes, until stop(). */
  const followOutages = (device: Device) => {
    const nowMs = Date.now()
    const phase = syncOutage(device, nowMs)
    if (!phase) return
    device.outageTimer = setTimeout(
      () => followOutages(device),
      Math.max(0, phase.nextChangeMs - nowMs),
    )
  }

  const startDevice = (device: Device) => {
    const { spec } = device
    device.startedMs = Date.now()
    // An offset of 0 starts with an outage: a `disconnect` device then connects when it ends.
    if (spec.outage) followOutages(device)
    if (!(device.down && spec.outage?.mode === 'disconnect')) connectDevice(device)
    const sensor = createSensor(spec.signals, spec.seed)
    // A random phase within the interval spreads a fleet's publishes evenly over time.
    const offsetMs = Math.floor(createPrng(spec.seed).next() * spec.intervalMs)
    device.timer = setTimeout(() => {
      publishSample(device, sensor)
      device.timer = setInterval(() => publishSample(device, sensor), spec.intervalMs)
    }, offsetMs)
  }

  /** Stops the device's timers, lets an outage's disconnect or reconnect finish, then closes. */
  const stopDevice = async (device: Device): Promise<void> => {
    if (device.timer) {
      clearTimeout(device.timer)
      clearInterval(device.timer)
      device.timer = null
    }
    if (device.outageTimer) {
      clearTimeout(device.outageTimer)
      device.outageTimer = null
    }
    await device.transition
    await closeClient(device)
  }

  return {
    devices: specs,

    async start() {
      if (started) throw new Error('fleet already started')
      started = true
      publishing = true
      flog.info(
        {
          url: safeUrl,
          devices: devices.length,
          intervalMs: config.intervalMs,
          qos: config.qos,
          form: config.form,
          withOutages: specs.filter((spec) => spec.outage).length,
        },
        'starting simulated devices',
      )
      if (config.durationMs !== undefined) {
        durationTimer = setTimeout(() => {
          publishing = false
          resolveFinished()
        }, config.durationMs)
      }
      const gapMs = 1_000 / config.connectRatePerSec
      const t0 = Date.now()
      for (const [i, device] of devices.entries()) {
        if (stopping) break
        startDevice(device)
        // Pace against the start time, not per device, so timer slack does not add up.
        const waitMs = t0 + (i + 1) * gapMs - Date.now()
        if (waitMs >= 1 && i < devices.length - 1) {
          try {
            await delay(waitMs, undefined, { signal: startAbort.signal })
          } catch {
            break
          }
        }
      }
      if (devices.length === 0 && config.count !== undefined) resolveFinished()
    },

    async stop() {
      if (stopping) return
      stopping = true
      publishing = false
      startAbort.abort()
      if (durationTimer) clearTimeout(durationTimer)
      await Promise.all(devices.map(stopDevice))
      flog.info({ ...stats }, 'simulated devices stopped')
      resolveFinished()
    },

    stats() {
      return { ...stats }
    },

    finished() {
      return finishedPromise
    },
  }
}
