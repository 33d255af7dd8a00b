import { copyFile, mkdir } from 'node:fs/promises'
import path from 'node:path'
import { createFleet, type Fleet } from '../devices/fleet.ts'
import { DEFAULT_FLEET_FILE, loadFleetFile } from '../devices/fleet-config.ts'
import { addCredentials } from '../scripts/device-add.ts'
import { loadConfig } from './config/load-config.ts'
import { writeDemoNotificationsFile } from './demo/demo-notifications.ts'
import {
  describeReceivedWebhook,
  newWebhookSecret,
  startWebhookReceiver,
} from './demo/webhook-receiver.ts'
import { runGateway } from './main.ts'
import { loadDeviceRegistry } from './rules/device-registry.ts'

/**
 * `npm run demo`: the gateway and the device simulator in one process, for a first look.
 * Configuration is the gateway's (env, CONFIG); the fleet comes from devices/fleet.yaml with a
 * small share of malformed messages so the dead-letter topic has something to show. Alerts are
 * notified as signed webhooks to a receiver the demo runs and prints (provisionNotifications).
 */
const DEMO_MALFORMED_SHARE = 0.02

let fleet: Fleet | null = null

/**
 * Once the registry holds credentials, every MQTT client must log in, the simulator included.
 * The demo then gives the fleet's devices fresh secrets in a copy of the registry in DATA_DIR
 * (the user's file is not touched) and points this process's gateway at the copy; the secrets
 * live only in this process. Without credentials nothing changes: anonymous, loopback only.
 * A configuration error is left for runGateway to report with its usual message.
 */
async function provisionSimulator(): Promise<ReadonlyMap<string, string> | undefined> {
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig(process.env)
  } catch {
    return undefined
  }
  const registry = await loadDeviceRegistry(config.devicesFile)
  if (!registry.hasCredentials()) return undefined
  await mkdir(config.dataDir, { recursive: true })
  const copy = path.join(config.dataDir, 'demo-devices.yaml')
  await copyFile(config.devicesFile, copy)
  const { secrets } = await addCredentials({
    kind: 'device',
    ids: [],
    file: copy,
    tags: null,
    metrics: null,
    roles: null,
    // In the copy only: a fleet device the user already keyed gets a secret this process knows.
    rotate: true,
    secretsOut: null,
    fleet: DEFAULT_FLEET_FILE,
  })
  process.env.DEVICES_FILE = copy
  return secrets
}

/**
 * Unless the user names a notifications file of their own (NOTIFICATIONS_FILE, or the config
 * file), the demo shows one channel working: it starts a webhook receiver on loopback (an
 * OS-chosen port) that verifies each request's Standard Webhooks signature and prints one line per
 * notification, writes DATA_DIR/demo-notifications.yaml (a webhook channel to it with a fresh
 * secret, a route for major+ alerts) and points this process's gateway at that file.
 * Returns what the banner says about notifications.
 */
async function provisionNotifications(): Promise<string[]> {
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig(process.env)
  } catch {
    return []
  }
  if (config.notificationsFile !== '') {
    return [`  Notifications: as configured in ${config.notificationsFile}`]
  }
  const secret = newWebhookSecret()
  const receiver = await startWebhookReceiver({
    secret,
    onReceived(received) {
      process.stdout.write(`  ${describeReceivedWebhook(received)}\n`)
    },
    // The gateway keeps the process alive; a start that fails must still be able to exit.
    unref: true,
  })
  await mkdir(config.dataDir, { recursive: true })
  process.env.NOTIFICATIONS_FILE = await writeDemoNotificationsFile(config.dataDir, {
    url: receiver.url,
    secret,
  })
  return [
    `  Notifications: major and critical alerts go as signed webhooks to ${receiver.url},`,
    '    a receiver this demo runs: it verifies each signature and prints a "webhook received" line',
    `    per notification below. Channels and routes: ${process.env.NOTIFICATIONS_FILE}`,
  ]
}

const passwords = await provisionSimulator()
const notificationLines = await provisionNotifications()

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
        ...(passwords ? { passwords } : {}),
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
        ...(passwords
          ? [
              `  Authentication is on: the simulator logs in with secrets provisioned in ${process.env.DEVICES_FILE}`,
              '  (mosquitto_pub/sub below then need -u <id> -P <secret> of a device or app of yours)',
            ]
          : []),
        ...notificationLines,
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
