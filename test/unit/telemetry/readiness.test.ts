import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createMqttBroker, type MqttBroker } from '../../../src/broker/mqtt-broker.ts'
import { createSqliteStore, type SqliteStore } from '../../../src/store/sqlite-store.ts'
import { createReadinessCheck } from '../../../src/telemetry/readiness.ts'
import { createStoreMonitor } from '../../../src/telemetry/store-monitor.ts'
import { captureLogs } from '../../helpers/log-capture.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

describe('readiness check', () => {
  let dir: TempDir
  let store: SqliteStore
  let broker: MqttBroker

  beforeEach(async () => {
    dir = await createTempDir('readiness-')
    store = createSqliteStore({ file: join(dir.path, 'gateway.db') })
    broker = await createMqttBroker(
      { log: captureLogs('silent').log },
      { authorizePublish: (_client, _packet, callback) => callback(null) },
    )
  })
  afterEach(async () => {
    await broker.close()
    await store.close()
    await dir.remove()
  })

  it('is ready once MQTT listens and the store answers; logs each change once', async () => {
    const { log, lines } = captureLogs('info')
    const check = createReadinessCheck({ storeMonitor: createStoreMonitor(store), broker, log })

    expect(await check()).toEqual({
      ready: false,
      checks: { store: 'up', mqtt: 'not_listening' },
      reasons: ['mqtt: the TCP listener is not accepting connections'],
    })
    await check()
    await broker.listen('127.0.0.1', 0)
    expect(await check()).toEqual({
      ready: true,
      checks: { store: 'up', mqtt: 'listening' },
      reasons: [],
    })
    await check()

    await store.close()
    const down = await check()
    expect(down).toMatchObject({ ready: false, checks: { store: 'down', mqtt: 'listening' } })
    expect(down.reasons).toEqual([expect.stringMatching(/^store: probe query failed: .*closed/)])

    const changes = lines.filter((l) => l.module === 'readiness')
    expect(changes.map((l) => [l.level, l.msg])).toEqual([
      [40, 'gateway not ready'],
      [30, 'gateway ready again'],
      [40, 'gateway not ready'],
    ])
    expect(changes[2]?.reasons).toEqual(down.reasons)
  })
})
