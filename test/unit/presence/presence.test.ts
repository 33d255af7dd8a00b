import { describe, expect, it } from 'vitest'
import type { PublishOptions } from '../../../src/broker/mqtt-broker.ts'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import { createPresence } from '../../../src/presence/presence.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'

/** Presence with a recording publisher and a manual clock. */
function setup() {
  const log = createSilentLogger()
  const bus = createEventBus(log)
  const sent: Array<{ topic: string; state: string }> = []
  const clock = { now: 1_000 }
  const presence = createPresence({
    bus,
    log,
    now: () => clock.now,
    publisher: {
      async publish(topic: string, payload: string, _options: PublishOptions) {
        sent.push({ topic, state: (JSON.parse(payload) as { state: string }).state })
      },
    },
  })
  return { presence, sent, clock }
}

describe('presence with other gateway instances (scale-out)', () => {
  it('announces a device that arrives here even when another instance last said online', () => {
    const { presence, sent, clock } = setup()
    presence.remoteStatus('dev-1', { state: 'online', ts: 900 })
    clock.now = 2_000
    presence.seen('client-1', 'dev-1')
    expect(sent).toEqual([{ topic: 'devices/dev-1/status', state: 'online' }])
  })

  it('says nothing when a connection closes whose device another instance took over', () => {
    const { presence, sent, clock } = setup()
    presence.seen('client-1', 'dev-1')
    clock.now = 2_000
    presence.remoteStatus('dev-1', { state: 'online', ts: 1_500 })
    presence.clientGone('client-1')
    expect(sent.map((s) => s.state)).toEqual(['online'])
  })

  it('ignores a status older than the device connecting here', () => {
    const { presence, sent, clock } = setup()
    clock.now = 2_000
    presence.seen('client-1', 'dev-1')
    // The other instance's offline, sent before the device arrived here, comes in late.
    presence.remoteStatus('dev-1', { state: 'offline', ts: 1_500 })
    presence.remoteStatus('dev-1', { state: 'online', ts: 1_400 })
    presence.clientGone('client-1')
    expect(sent.map((s) => s.state)).toEqual(['online', 'offline'])
  })
})

describe('presence of idle devices (DEVICE_IDLE_RELEASE)', () => {
  /** Presence whose publisher records raw payloads (a cleared status is an empty one). */
  function rawSetup() {
    const log = createSilentLogger()
    const bus = createEventBus(log)
    const sent: Array<{ topic: string; payload: string; retain: boolean | undefined }> = []
    const online: string[] = []
    bus.on('test', 'device.online', ({ deviceId }) => online.push(deviceId))
    const presence = createPresence({
      bus,
      log,
      now: () => 1_000,
      publisher: {
        async publish(topic: string, payload: string, options: PublishOptions) {
          sent.push({ topic, payload, retain: options.retain })
        },
      },
    })
    return { presence, sent, online }
  }

  it('forgets nothing of a connected device', () => {
    const { presence, sent } = rawSetup()
    presence.seen('dev-1', 'dev-1')
    expect(presence.isConnected('dev-1')).toBe(true)
    expect(presence.forget('dev-1', { clearStatus: true, keepKnown: false })).toBe(false)
    expect(sent.map((s) => s.payload)).toEqual([expect.stringContaining('"online"')])
  })

  it('forgets a gone device: its retained offline is cleared and it is a new device on connect', () => {
    const { presence, sent, online } = rawSetup()
    presence.seen('dev-1', 'dev-1')
    presence.clientGone('dev-1')
    expect(presence.forget('dev-1', { clearStatus: true, keepKnown: false })).toBe(true)
    expect(sent.at(-1)).toEqual({ topic: 'devices/dev-1/status', payload: '', retain: true })
    // Known no more: connecting alone does not make it online, its first reading does.
    presence.clientConnected('dev-1')
    expect(online).toEqual(['dev-1'])
    presence.seen('dev-1', 'dev-1')
    expect(online).toEqual(['dev-1', 'dev-1'])
    expect(sent.at(-1)?.payload).toContain('"online"')
  })

  it('forgets a quiet device another connection spoke for, while that connection stays', () => {
    const { presence, sent, online } = rawSetup()
    presence.seen('bridge-1', 'dev-1')
    presence.seen('bridge-1', 'dev-2')
    expect(presence.isConnected('dev-1')).toBe(false)
    expect(presence.forget('dev-1', { clearStatus: true, keepKnown: false })).toBe(true)
    expect(sent.at(-1)).toEqual({ topic: 'devices/dev-1/status', payload: '', retain: true })
    // The bridge speaks for it again: announced as new. Its going reports dev-2 and dev-1 offline.
    presence.seen('bridge-1', 'dev-1')
    expect(online).toEqual(['dev-1', 'dev-2', 'dev-1'])
    presence.clientGone('bridge-1')
    expect(sent.filter((s) => s.payload.includes('offline')).map((s) => s.topic)).toEqual([
      'devices/dev-2/status',
      'devices/dev-1/status',
    ])
  })

  it('keeps a registered device known, and its status, with keepKnown', () => {
    const { presence, sent, online } = rawSetup()
    presence.addKnown(['dev-1'])
    presence.publishAllOffline()
    expect(presence.forget('dev-1', { clearStatus: false, keepKnown: true })).toBe(true)
    expect(sent.map((s) => s.payload)).toEqual([expect.stringContaining('"offline"')])
    presence.clientConnected('dev-1')
    expect(online).toEqual(['dev-1'])
  })

  it('does not clear a status another instance stands by', () => {
    const { presence, sent } = rawSetup()
    presence.remoteStatus('dev-1', { state: 'online', ts: 900 })
    expect(presence.forget('dev-1', { clearStatus: true, keepKnown: false })).toBe(true)
    expect(sent).toEqual([])
  })
})
