import { createFleet, type Fleet } from '../devices/fleet.ts'
import { DEFAULT_FLEET_FILE, loadFleetFile } from '../devices/fleet-config.ts'
import { runGateway } from './main.ts'

/**
 * `npm run demo`: the gateway and the device simulator in one process, for a first look.
 * Configuration is the gateway's (env, CONFIG); the fleet comes from devices/fleet.yaml with a
 * small share of malformed messages so the dead-letter topic has something to show.
 */
const DEMO_MALFORMED_SHARE = 0.02

let fleet: Fleet | null = null

await runGateway({
  async onStarted(gateway, _config, log) {
    const { mqtt, http } = gateway.addresses()
    const mqttHost =
      mqtt.address === '::' || mqtt.address === '0.0.0.0' ? '127.0.0.1' : mqtt.address
    const httpHost =
      http.address === '::' || http.address === '0.0.0.0' ? '127.0.0.1' : http.address
    const file = await loadFleetFile(DEFAULT_FLEET_FILE)
    if (!file.ok) throw new Error(`fleet file: ${file.problems.join('; ')}`)
    fleet = createFleet(
      {
        ...file.settings,
        malformedShare: DEMO_MALFORMED_SHARE,
        url: `mqtt://${mqttHost}:${mqtt.port}`,
      },
      log,
    )
    await fleet.start()
    const api = `http://${httpHost}:${http.port}`
    process.stdout.write(
      [
        '',
        '  Sensor gateway demo is running',
        `  MQTT  mqtt://${mqttHost}:${mqtt.port}    HTTP  ${api}`,
        `  Simulated devices: ${fleet.devices.length} (${fleet.devices.map((d) => d.id).join(', ')})`,
        '',
        '  Watch alerts and dead letters:',
        `    mosquitto_sub -h ${mqttHost} -p ${mqtt.port} -t 'alerts/#' -v`,
        `    mosquitto_sub -h ${mqttHost} -p ${mqtt.port} -t 'gateway/deadletter/#' -v`,
        '  Publish a reading of your own:',
        `    mosquitto_pub -h ${mqttHost} -p ${mqtt.port} -t sensors/dev-1/temperature -m 35`,
        '  Query the store:',
        `    curl '${api}/api/devices'`,
        `    curl '${api}/api/readings?device=${fleet.devices[0]?.id ?? 'dev-1'}&metric=temperature&from=-15m'`,
        `    curl '${api}/api/alerts?state=firing'`,
        '',
        '  Ctrl-C stops the simulator and the gateway.',
        '',
      ].join('\n'),
    )
  },
  async beforeStop() {
    await fleet?.stop()
  },
})
