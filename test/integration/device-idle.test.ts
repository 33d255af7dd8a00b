import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { parsePrometheusText, type Scrape } from '../helpers/prometheus.ts'

/**
 * DEVICE_IDLE_RELEASE through real MQTT: devices that go quiet are released (the tracked-devices
 * gauge falls, their retained status is cleared), a firing alert and a connection keep theirs,
 * and a released device that comes back is handled as a new one.
 */
describe('idle device release (DEVICE_IDLE_RELEASE)', () => {
  let gw: TestGateway | undefined
  const clients = new Set<MqttClient>()

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await gw?.cleanup()
    gw = undefined
  })

  const connect = async (url: string, clientId: string) => {
    const client = await connectClient(url, { clientId })
    clients.add(client)
    return client
  }
  const scrape = async (g: TestGateway): Promise<Scrape> =>
    parsePrometheusText(await (await fetch(`${g.httpUrl}/metrics`)).text())

  it('releases quiet devices, keeps connected and firing ones, and takes a returning one as new', async () => {
    gw = await startTestGateway({ DEVICE_IDLE_RELEASE: '1s' })
    const g = gw
    const quiet = ['churn-1', 'churn-2', 'churn-3', 'churn-4']
    for (const id of quiet) {
      const device = await connect(g.mqttUrl, id)
      await device.publishAsync(`sensors/${id}/temperature`, '20', { qos: 1 })
      await device.endAsync()
      clients.delete(device)
    }
    // Fires high-temperature (above 30) and stays firing after it goes.
    const hot = await connect(g.mqttUrl, 'churn-hot')
    await hot.publishAsync('sensors/churn-hot/temperature', '35', { qos: 1 })
    await hot.endAsync()
    clients.delete(hot)
    // Connected all along, silent.
    const idleButConnected = await connect(g.mqttUrl, 'churn-connected')
    await idleButConnected.publishAsync('sensors/churn-connected/temperature', '21', { qos: 1 })

    await vi.waitFor(
      async () => {
        const s = await scrape(g)
        expect(s.value('gateway_devices_released_total')).toBe(4)
        // The firing one and the connected one.
        expect(s.value('gateway_devices_tracked')).toBe(2)
        // churn-hot's firing key, churn-connected's two temperature rules.
        expect(s.value('gateway_rule_keys')).toBe(3)
        expect(s.value('gateway_alerts_firing')).toBe(1)
      },
      { timeout: 15_000, interval: 200 },
    )
    expect(g.logs.some((l) => l.msg === 'idle devices released' && Number(l.released) > 0)).toBe(
      true,
    )

    // Released devices have no retained status left; the firing device keeps its offline.
    const watcher = await connect(g.mqttUrl, 'status-watcher')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('devices/+/status', { qos: 1 })
    await watcher.subscribeAsync('alerts/#', { qos: 1 })
    // (The registry's sim-* devices are never forgotten, their statuses stay too.)
    await vi.waitFor(() =>
      expect(
        seen
          .filter((m) => m.topic.startsWith('devices/churn-'))
          .map((m) => m.topic)
          .sort(),
      ).toEqual(['devices/churn-connected/status', 'devices/churn-hot/status']),
    )

    // A released device comes back too hot: it is a new device, so its alert fires (once).
    const back = await connect(g.mqttUrl, 'churn-1')
    await back.publishAsync('sensors/churn-1/temperature', '36', { qos: 1 })
    await back.publishAsync('sensors/churn-1/temperature', '37', { qos: 1 })
    await vi.waitFor(async () => {
      const s = await scrape(g)
      expect(s.value('gateway_alerts_firing')).toBe(2)
      expect(s.value('gateway_devices_tracked')).toBe(3)
    })
    const firing = seen.filter(
      (m) => m.topic === 'alerts/major/churn-1/high-temperature' && !m.retain,
    )
    expect(firing.map((m) => (JSON.parse(m.payload) as { state: string }).state)).toEqual([
      'firing',
    ])
    // And the firing device that went quiet still resolves with its clearing reading.
    const hotAgain = await connect(g.mqttUrl, 'churn-hot')
    await hotAgain.publishAsync('sensors/churn-hot/temperature', '20', { qos: 1 })
    await vi.waitFor(() =>
      expect(
        seen
          .filter((m) => m.topic === 'alerts/major/churn-hot/high-temperature' && !m.retain)
          .map((m) => (JSON.parse(m.payload) as { state: string }).state),
      ).toEqual(['resolved']),
    )
  })

  it('releases quiet devices a connection that stays open spoke for (a bridge)', async () => {
    gw = await startTestGateway({ DEVICE_IDLE_RELEASE: '1s' })
    const g = gw
    const watcher = await connect(g.mqttUrl, 'status-watcher')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('devices/+/status', { qos: 1 })
    const bridge = await connect(g.mqttUrl, 'bridge-1')
    await bridge.publishAsync('sensors/behind-1/temperature', '20', { qos: 1 })
    await bridge.publishAsync('sensors/behind-2/temperature', '20', { qos: 1 })
    await vi.waitFor(
      async () => {
        const s = await scrape(g)
        expect(s.value('gateway_devices_released_total')).toBe(2)
        expect(s.value('gateway_devices_tracked')).toBe(0)
        expect(s.value('gateway_rule_keys')).toBe(0)
      },
      { timeout: 15_000, interval: 200 },
    )
    // Announced online, then cleared (an empty retained message), while the bridge stays.
    await vi.waitFor(() =>
      expect(
        seen
          .filter((m) => m.topic === 'devices/behind-1/status')
          .map((m) => (m.payload === '' ? 'cleared' : JSON.parse(m.payload).state)),
      ).toEqual(['online', 'cleared']),
    )
    expect(bridge.connected).toBe(true)
    // Its next reading announces it again.
    await bridge.publishAsync('sensors/behind-1/temperature', '21', { qos: 1 })
    await vi.waitFor(() =>
      expect(seen.filter((m) => m.topic === 'devices/behind-1/status').at(-1)?.payload).toContain(
        '"online"',
      ),
    )
  })
})
