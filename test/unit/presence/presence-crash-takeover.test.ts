import { describe, expect, it } from 'vitest'
import type { PublishOptions } from '../../../src/broker/mqtt-broker.ts'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import { createPresence } from '../../../src/presence/presence.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'

/**
 * Presence when another instance reports `offline` for a device connected here: a survivor
 * that took a crashed (or cut off) instance over, src/cluster/instance-lease.ts.
 */
function setup() {
  const log = createSilentLogger()
  const bus = createEventBus(log)
  const sent: Array<{ topic: string; state: string; retain: boolean | undefined }> = []
  const clock = { now: 1_000 }
  const presence = createPresence({
    bus,
    log,
    now: () => clock.now,
    publisher: {
      async publish(topic: string, payload: string, options: PublishOptions) {
        sent.push({
          topic,
          state: (JSON.parse(payload) as { state: string }).state,
          retain: options.retain,
        })
      },
    },
  })
  return { presence, bus, sent, clock }
}

describe('presence: an offline from elsewhere for a device connected here', () => {
  it('answers with online again (retained), and still reports the device offline when it goes', () => {
    const { presence, sent, clock } = setup()
    presence.seen('client-1', 'dev-1')
    clock.now = 2_000
    presence.remoteStatus('dev-1', { state: 'offline', ts: 1_500 })
    expect(sent).toEqual([
      { topic: 'devices/dev-1/status', state: 'online', retain: true },
      { topic: 'devices/dev-1/status', state: 'online', retain: true },
    ])
    presence.clientGone('client-1')
    expect(sent.map((s) => s.state)).toEqual(['online', 'online', 'offline'])
  })

  it('answers with silent while a deadman alert is firing for it', () => {
    const { presence, bus, sent } = setup()
    presence.seen('client-1', 'dev-1')
    bus.emit('alert', {
      id: 'quiet:dev-1',
      ruleId: 'quiet',
      kind: 'deadman',
      deviceId: 'dev-1',
      metric: 'heartbeat',
      severity: 'minor',
      state: 'firing',
      value: 0,
      threshold: 60_000,
      since: 1_000,
      ts: 1_000,
      message: 'dev-1 silent',
      flapping: false,
    })
    presence.remoteStatus('dev-1', { state: 'offline', ts: 1_200 })
    expect(sent.map((s) => s.state)).toEqual(['online', 'silent', 'silent'])
  })

  it('takes an offline for a device not connected here as it is', () => {
    const { presence, sent } = setup()
    presence.remoteStatus('dev-1', { state: 'online', ts: 900 })
    presence.remoteStatus('dev-1', { state: 'offline', ts: 1_200 })
    expect(sent).toEqual([])
  })
})
