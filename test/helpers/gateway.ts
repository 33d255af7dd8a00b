import path from 'node:path'
import { loadConfig } from '../../src/config/load-config.ts'
import { createGateway, type Gateway } from '../../src/gateway.ts'
import { captureLogs, type LogLine } from './log-capture.ts'
import { createTempDir } from './temp-dir.ts'

export const SHIPPED_RULES = path.resolve('config/rules.yaml')

export interface TestGateway {
  gateway: Gateway
  mqttUrl: string
  httpUrl: string
  dataDir: string
  /** Every JSON log line the gateway wrote, parsed. */
  logs: LogLine[]
  /** Stops the gateway (idempotent). */
  stop(): Promise<void>
  /** Stops the gateway and removes its data dir. */
  cleanup(): Promise<void>
}

/**
 * Starts a real gateway in-process on 127.0.0.1 with OS-chosen ports and a fresh DATA_DIR.
 * `env` adds or overrides configuration exactly as the process environment would.
 */
export async function startTestGateway(env: Record<string, string> = {}): Promise<TestGateway> {
  const dir = env.DATA_DIR ? null : await createTempDir('gw-test-')
  const dataDir = env.DATA_DIR ?? (dir as { path: string }).path
  const config = loadConfig({
    MQTT_PORT: '0',
    HTTP_PORT: '0',
    RULES_FILE: SHIPPED_RULES,
    LOG_LEVEL: 'info',
    ...env,
    DATA_DIR: dataDir,
  })
  const { log, lines: logs } = captureLogs(config.logLevel)
  const gateway = await createGateway(config, { log })
  const { mqtt, http } = await gateway.start().catch(async (err: unknown) => {
    await dir?.remove()
    throw err
  })
  return {
    gateway,
    mqttUrl: `mqtt://127.0.0.1:${mqtt.port}`,
    httpUrl: `http://127.0.0.1:${http.port}`,
    dataDir,
    logs,
    stop: () => gateway.stop(),
    async cleanup() {
      await gateway.stop()
      await dir?.remove()
    },
  }
}
