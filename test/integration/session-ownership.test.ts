import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { IClientOptions, MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { generateSecret, hashSecret } from '../../src/security/credentials.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages, refusal } from '../helpers/mqtt.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

const SECRETS = {
  'dev-b': generateSecret(),
  'readings-app': generateSecret(),
} as const
type Principal = keyof typeof SECRETS

describe('security: a persistent session belongs to the identity that created it (issue 16)', () => {
  let dir: TempDir
  let gw: TestGateway
  const clients = new Set<MqttClient>()

  const connectAs = async (who: Principal, options: IClientOptions = {}) => {
    const client = await connectClient(gw.mqttUrl, {
      clientId: who,
      username: who,
      password: SECRETS[who],
      ...options,
    })
    clients.add(client)
    return client
  }

  beforeAll(async () => {
    dir = await createTempDir('gw-sessions-')
    const file = path.join(dir.path, 'devices.yaml')
    await writeFile(
      file,
      [
        'devices:',
        '  - id: dev-b',
        `    secret: ${await hashSecret(SECRETS['dev-b'])}`,
        'apps:',
        '  - id: readings-app',
        `    secret: ${await hashSecret(SECRETS['readings-app'])}`,
        '    roles: [read-readings]',
        '',
      ].join('\n'),
    )
    gw = await startTestGateway({ DEVICES_FILE: file, LOG_LEVEL: 'info' })
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
  })
  afterAll(async () => {
    await gw.cleanup()
    await dir.remove()
  })

  it('refuses another identity the client id (CONNACK 2): the holder stays connected and gets its queued messages', async () => {
    const a = await connectAs('readings-app', { clientId: 'shared-1', clean: false })
    const got = recordMessages(a)
    await a.subscribeAsync('sensors/dev-b/#', { qos: 1 })
    const b = await connectAs('dev-b')

    // dev-b's secret is right, but shared-1 is the app's (connected): it would kick it off.
    const stolen = { clientId: 'shared-1', username: 'dev-b', password: SECRETS['dev-b'] }
    expect(await refusal(gw.mqttUrl, { ...stolen, clean: false })).toBe(2)
    expect(await refusal(gw.mqttUrl, { ...stolen, clean: true })).toBe(2)
    expect(a.connected).toBe(true)
    await b.publishAsync('sensors/dev-b/temperature', '21.5', { qos: 1 })
    await vi.waitFor(() => expect(got.map((m) => m.payload)).toEqual(['21.5']))
    expect(a.connected).toBe(true)
    expect(
      gw.logs.find(
        (l) =>
          l.msg ===
          'MQTT connection refused: client id is in use or has a session of another device or app',
      ),
    ).toMatchObject({ level: 40, clientId: 'shared-1', principal: 'dev-b', holder: 'readings-app' })

    // Disconnected, the session keeps what arrives for it, and it is still the app's.
    await a.endAsync()
    clients.delete(a)
    await b.publishAsync('sensors/dev-b/temperature', '22.5', { qos: 1 })
    expect(await refusal(gw.mqttUrl, { ...stolen, clean: false })).toBe(2)
    expect(await refusal(gw.mqttUrl, { ...stolen, clean: true })).toBe(2)

    const again = await connectClient(gw.mqttUrl, {
      clientId: 'shared-1',
      username: 'readings-app',
      password: SECRETS['readings-app'],
      clean: false,
    })
    clients.add(again)
    const queued = recordMessages(again)
    await vi.waitFor(() => expect(queued.map((m) => m.payload)).toEqual(['22.5']))
    expect(queued[0]).toMatchObject({ topic: 'sensors/dev-b/temperature', qos: 1 })

    // Its owner ends the session with a clean connect: the id is free once that one closes.
    await again.endAsync()
    clients.delete(again)
    const clean = await connectAs('readings-app', { clientId: 'shared-1', clean: true })
    await clean.endAsync()
    clients.delete(clean)
    const taken = await connectAs('dev-b', { clientId: 'shared-1', clean: true })
    expect(taken.connected).toBe(true)
  })

  it('keeps the log of 200 refused CONNECTs with a 60 KB client id bounded, the id cut with its length', async () => {
    const longId = 'x'.repeat(60_000)
    const from = gw.logs.length
    for (let batch = 0; batch < 10; batch++) {
      const tries = Array.from({ length: 20 }, (_, i) =>
        // Without a username (5), and some with a wrong password (4): two refusal reasons.
        refusal(
          gw.mqttUrl,
          i < 2
            ? { clientId: longId, username: 'u'.repeat(60_000), password: 'no' }
            : { clientId: longId },
        ),
      )
      expect(new Set(await Promise.all(tries))).toEqual(new Set([4, 5]))
    }
    const lines = gw.logs.slice(from)
    const bytes = lines.reduce((n, l) => n + JSON.stringify(l).length, 0)
    expect(lines.length).toBeLessThan(20)
    expect(bytes).toBeLessThan(20_000)
    const refused = lines.filter((l) => String(l.msg).startsWith('MQTT connection refused'))
    expect(refused.map((l) => l.msg).sort()).toEqual([
      'MQTT connection refused: bad username or password',
      'MQTT connection refused: no credentials given',
    ])
    for (const line of refused) {
      expect(line.clientId).toBe(`${'x'.repeat(128)}…[60000 chars]`)
    }
    expect(refused.find((l) => l.username !== undefined)?.username).toBe(
      `${'u'.repeat(128)}…[60000 chars]`,
    )
  })
})
