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
