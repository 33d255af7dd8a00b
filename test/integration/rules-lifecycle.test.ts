import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { Alert, DeviceStatus } from '../../src/contract/types.ts'
import { SHIPPED_RULES, startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, type ReceivedMessage, recordMessages } from '../helpers/mqtt.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

const alertsOf = (messages: ReceivedMessage[]) =>
  messages.map((m) => {
    const alert = JSON.parse(m.payload) as Alert
    return `${m.topic} ${alert.state} ${alert.value}`
  })

describe('alert lifecycle over real MQTT', () => {
  let gw: TestGateway | null = null
  let dir: TempDir | null = null
  const clients = new Set<MqttClient>()

  const connect = async (url: string, clientId: string, options = {}) => {
    const client = await connectClient(url, { clientId, ...options })
    clients.add(client)
    return client
  }

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await gw?.stop()
    await dir?.remove()
    gw = dir = null
  })

  it('publishes exactly the transitions, in order, and the last one is retained', async () => {
    gw = await startTestGateway()
    const watcher = await connect(gw.mqttUrl, 'watcher')
    const live = recordMessages(watcher)
    await watcher.subscribeAsync('alerts/#', { qos: 1 })
    const device = await connect(gw.mqttUrl, 'dev-seq')
    // above 30, hysteresis 1: fire at 35, hold at 29.5, resolve at 28, fire at 31, resolve at 20.
    for (const value of [25, 35, 36, 29.5, 28, 31, 31.5, 20, 19]) {
      await device.publishAsync('sensors/dev-seq/temperature', String(value), { qos: 1 })
    }
    const topic = 'alerts/major/dev-seq/high-temperature'
    await vi.waitFor(() => expect(live).toHaveLength(4))
    expect(alertsOf(live)).toEqual([
      `${topic} firing 35`,
      `${topic} resolved 28`,
      `${topic} firing 31`,
      `${topic} resolved 20`,
    ])
    const ids = new Set(live.map((m) => (JSON.parse(m.payload) as Alert).id))
    expect([...ids]).toEqual(['high-temperature:dev-seq'])

    const late = await connect(gw.mqttUrl, 'late')
    const retained = recordMessages(late)
    await late.subscribeAsync('alerts/#', { qos: 1 })
    await vi.waitFor(() => expect(retained).toHaveLength(1))
    expect(retained[0]?.retain).toBe(true)
    expect(alertsOf(retained)).toEqual([`${topic} resolved 20`])
  })

  it('keeps a firing alert firing across a restart, with no duplicate', async () => {
    dir = await createTempDir('gw-alerts-restart-')
    gw = await startTestGateway({ DATA_DIR: dir.path })
    let device = await connect(gw.mqttUrl, 'dev-restart')
    await device.publishAsync('sensors/dev-restart/temperature', '35', { qos: 1 })
    await vi.waitFor(async () => {
      expect((await gw?.gateway.store.latestAlerts())?.map((a) => a.state)).toEqual(['firing'])
    })
    await endAll(clients)
    clients.clear()
    await gw.stop()

    gw = await startTestGateway({ DATA_DIR: dir.path })
    const watcher = await connect(gw.mqttUrl, 'watcher-2')
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('alerts/#', { qos: 1 })
    // The retained topic was rebuilt from the store.
    await vi.waitFor(() => expect(seen).toHaveLength(1))
    expect(seen[0]?.retain).toBe(true)
    expect(alertsOf(seen)).toEqual(['alerts/major/dev-restart/high-temperature firing 35'])

    device = await connect(gw.mqttUrl, 'dev-restart')
    await device.publishAsync('sensors/dev-restart/temperature', '36', { qos: 1 })
    await device.publishAsync('sensors/dev-restart/temperature', '20', { qos: 1 })
    await vi.waitFor(() => expect(seen).toHaveLength(2))
    expect(alertsOf(seen)[1]).toBe('alerts/major/dev-restart/high-temperature resolved 20')
    const history = await gw.gateway.store.queryAlerts({ deviceId: 'dev-restart', limit: 10 })
    expect(history.map((a) => `${a.state} ${a.value}`)).toEqual(['resolved 20', 'firing 35'])
  })

  it('applies an edited rules file within a second, refuses a broken one and keeps the old rules', async () => {
    dir = await createTempDir('gw-rules-reload-')
    const rulesFile = path.join(dir.path, 'rules.yaml')
    const shipped = await readFile(SHIPPED_RULES, 'utf8')
    await writeFile(rulesFile, shipped)
    gw = await startTestGateway({ RULES_FILE: rulesFile })
    const watcher = await connect(gw.mqttUrl, 'watcher')
    const live = recordMessages(watcher)
    await watcher.subscribeAsync('alerts/#', { qos: 1 })
    const device = await connect(gw.mqttUrl, 'dev-reload')
    const logs = gw.logs

    await device.publishAsync('sensors/dev-reload/temperature', '27', { qos: 1 })
    await writeFile(rulesFile, shipped.replace('above: 30 ', 'above: 25 '))
    await vi.waitFor(() => expect(logs.some((l) => l.msg === 'rules reloaded')).toBe(true), {
      timeout: 1_000,
      interval: 20,
    })
    await device.publishAsync('sensors/dev-reload/temperature', '27', { qos: 1 })
    await vi.waitFor(() =>
      expect(alertsOf(live)).toEqual(['alerts/major/dev-reload/high-temperature firing 27']),
    )

    await writeFile(rulesFile, shipped.replace('above: 30 ', 'above: thirty '))
    const rejected = await vi.waitFor(
      () => {
        const line = logs.find((l) => l.msg === 'rules file rejected; the rules in force are kept')
        expect(line).toBeDefined()
        return line
      },
      { timeout: 1_000, interval: 20 },
    )
    expect(String(rejected?.problems)).toContain('rule "high-temperature": field "above"')
    // The edited rule (above 25, hysteresis 1) is still in force: 24 resolves it.
    await device.publishAsync('sensors/dev-reload/temperature', '24', { qos: 1 })
    await vi.waitFor(() => expect(live).toHaveLength(2))
    expect(alertsOf(live)[1]).toBe('alerts/major/dev-reload/high-temperature resolved 24')

    // Removing a rule resolves what it had firing.
    await device.publishAsync('sensors/dev-reload/temperature', '40', { qos: 1 })
    await vi.waitFor(() => expect(live).toHaveLength(3))
    const withoutHighTemp = shipped.replace(/ {2}- id: high-temperature[\s\S]*?(?=\n {2}- id:)/, '')
    expect(withoutHighTemp).not.toContain('high-temperature')
    await writeFile(rulesFile, withoutHighTemp)
    await vi.waitFor(() => expect(live).toHaveLength(4))
    const removed = JSON.parse(live[3]?.payload ?? '{}') as Alert
    expect(removed).toMatchObject({
      ruleId: 'high-temperature',
      deviceId: 'dev-reload',
      state: 'resolved',
    })
  })
})

describe('device presence', () => {
  let gw: TestGateway | null = null
  let dir: TempDir | null = null
  const clients = new Set<MqttClient>()

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await gw?.stop()
    await dir?.remove()
    gw = dir = null
  })

  const statusesOf = (messages: ReceivedMessage[], deviceId: string) =>
    messages
      .filter((m) => m.topic === `devices/${deviceId}/status`)
      .map((m) => (JSON.parse(m.payload) as DeviceStatus).state)

  it('marks a registered device online on connect, offline when its connection dies, and drops its will', async () => {
    dir = await createTempDir('gw-presence-')
    const devicesFile = path.join(dir.path, 'devices.yaml')
    await writeFile(devicesFile, 'devices:\n  - id: dev-known\n    tags: { site: lab }\n')
    gw = await startTestGateway({ DEVICES_FILE: devicesFile })
    const watcher = await connectClient(gw.mqttUrl, { clientId: 'status-watcher' })
    clients.add(watcher)
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('devices/+/status', { qos: 1 })
    // Known from the registry: announced offline at start, retained.
    await vi.waitFor(() => expect(statusesOf(seen, 'dev-known')).toEqual(['offline']))

    const device = await connectClient(gw.mqttUrl, {
      clientId: 'dev-known',
      will: {
        topic: 'devices/dev-known/status',
        payload: Buffer.from('gone'),
        qos: 1,
        retain: true,
      },
    })
    await vi.waitFor(() => expect(statusesOf(seen, 'dev-known')).toEqual(['offline', 'online']))
    // An ungraceful end: the socket dies, the will fires; the gateway's status wins.
    device.stream.destroy()
    await vi.waitFor(() =>
      expect(statusesOf(seen, 'dev-known')).toEqual(['offline', 'online', 'offline']),
    )
    expect(seen.map((m) => m.payload)).not.toContain('gone')
    device.end(true)
  })

  it('reports a device silent when a deadman rule fires, and online again on its next reading', async () => {
    dir = await createTempDir('gw-deadman-')
    const rulesFile = path.join(dir.path, 'rules.yaml')
    await writeFile(
      rulesFile,
      [
        'rules:',
        '  - id: quiet',
        '    kind: deadman',
        '    match: { device: dev-quiet, metric: temperature }',
        '    after: 300ms',
        '    severity: minor',
        '',
      ].join('\n'),
    )
    gw = await startTestGateway({ RULES_FILE: rulesFile })
    const watcher = await connectClient(gw.mqttUrl, { clientId: 'watcher' })
    clients.add(watcher)
    const seen = recordMessages(watcher)
    await watcher.subscribeAsync('devices/+/status', { qos: 1 })
    await watcher.subscribeAsync('alerts/#', { qos: 1 })
    const device = await connectClient(gw.mqttUrl, { clientId: 'dev-quiet' })
    clients.add(device)
    await device.publishAsync('sensors/dev-quiet/temperature', '21', { qos: 1 })
    await vi.waitFor(() => expect(statusesOf(seen, 'dev-quiet')).toEqual(['online', 'silent']), {
      timeout: 5_000,
    })
    const alerts = seen.filter((m) => m.topic.startsWith('alerts/'))
    expect(alerts.map((m) => m.topic)).toEqual(['alerts/minor/dev-quiet/quiet'])
    expect(JSON.parse(alerts[0]?.payload ?? '{}')).toMatchObject({
      kind: 'deadman',
      state: 'firing',
    })

    await device.publishAsync('sensors/dev-quiet/temperature', '21.5', { qos: 1 })
    await vi.waitFor(() =>
      expect(statusesOf(seen, 'dev-quiet')).toEqual(['online', 'silent', 'online']),
    )
  })
})
