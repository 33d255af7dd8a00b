import { describe, expect, it } from 'vitest'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import type { Reading } from '../../../src/contract/types.ts'
import { captureLogs } from '../../helpers/log-capture.ts'

const reading: Reading = {
  deviceId: 'dev-1',
  metric: 'temperature',
  value: 21.5,
  ts: 1_764_165_915_123,
}

describe('event bus', () => {
  it('delivers the payload to every listener of the event, and only that event', () => {
    const bus = createEventBus(captureLogs().log)
    const seen: string[] = []
    bus.on('a', 'reading', (r) => seen.push(`a:${r.value}`))
    bus.on('b', 'reading', (r) => seen.push(`b:${r.value}`))
    bus.on('c', 'alert', () => seen.push('c'))
    bus.emit('reading', reading)
    expect(seen).toEqual(['a:21.5', 'b:21.5'])
  })

  it('isolates a throwing listener: logged with owner and event, the others still run', () => {
    const { log, lines } = captureLogs()
    const bus = createEventBus(log)
    const seen: string[] = []
    bus.on('broken', 'reading', () => {
      throw new Error('boom')
    })
    bus.on('healthy', 'reading', () => seen.push('healthy'))
    expect(() => bus.emit('reading', reading)).not.toThrow()
    expect(seen).toEqual(['healthy'])
    const error = lines.find((l) => l.msg === 'listener broken/reading failed')
    expect(error).toMatchObject({
      level: 50,
      owner: 'broken',
      event: 'reading',
      err: { message: 'boom' },
    })
  })

  it('removes all of an owner’s listeners and nobody else’s', () => {
    const bus = createEventBus(captureLogs().log)
    const seen: string[] = []
    bus.on('gone', 'reading', () => seen.push('gone'))
    bus.on('gone', 'alert', () => seen.push('gone-alert'))
    bus.on('kept', 'reading', () => seen.push('kept'))
    bus.removeOwner('gone')
    bus.emit('reading', reading)
    expect(seen).toEqual(['kept'])
    expect(bus.listenerCount('alert')).toBe(0)
    expect(bus.listenerCount('reading')).toBe(1)
  })
})
