import { afterEach, describe, expect, it, vi } from 'vitest'
import { createFleet, type Fleet } from '../../devices/fleet.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/** The simulator and the data across a gateway restart on the same port and DATA_DIR. */
describe('gateway restart', () => {
  let fleet: Fleet | null = null
  let gw: TestGateway | null = null
  let dir: TempDir | null = null

  afterEach(async () => {
    await fleet?.stop()
    await gw?.stop()
    await dir?.remove()
    fleet = gw = dir = null
  })

  const countStored = async (httpUrl: string, deviceIds: readonly string[]) => {
    let total = 0
    for (const id of deviceIds) {
      const res = await fetch(`${httpUrl}/api/readings?device=${id}&from=-1h&limit=10000`)
      total += ((await res.json()) as { count: number }).count
    }
    return total
  }

  it('keeps stored readings, and the simulated devices reconnect and go on publishing', async () => {
    dir = await createTempDir('gw-restart-')
    gw = await startTestGateway({ DATA_DIR: dir.path })
    const port = Number(new URL(gw.mqttUrl).port)
    fleet = createFleet({
      url: gw.mqttUrl,
      devices: 3,
      intervalMs: 50,
      qos: 1,
      form: 'object',
      seed: 7,
    })
    const ids = fleet.devices.map((d) => d.id)
    await fleet.start()
    const running = fleet
    await vi.waitFor(() => expect(running.stats().acked).toBeGreaterThanOrEqual(15), {
      timeout: 10_000,
    })

    await gw.stop()
    const ackedBeforeRestart = running.stats().acked
    gw = await startTestGateway({ DATA_DIR: dir.path, MQTT_PORT: String(port) })
    const restarted = gw

    // One reading per message in the metric form: every acknowledged reading is still there...
    expect(await countStored(restarted.httpUrl, ids)).toBeGreaterThanOrEqual(ackedBeforeRestart)
    // ...and the devices come back by themselves and their new readings are stored too.
    await vi.waitFor(() => expect(running.stats().reconnects).toBeGreaterThanOrEqual(3), {
      timeout: 10_000,
    })
    await vi.waitFor(
      async () =>
        expect(await countStored(restarted.httpUrl, ids)).toBeGreaterThanOrEqual(
          ackedBeforeRestart + 15,
        ),
      { timeout: 10_000 },
    )
  })
})
