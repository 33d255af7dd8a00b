import { pathToFileURL } from 'node:url'
import { loadConfig } from './config/load-config.ts'
import type { GatewayConfig } from './config/schema.ts'
import { GatewayError } from './errors.ts'
import { createGateway, type Gateway } from './gateway.ts'
import { createLogger, type Logger } from './telemetry/logger.ts'

/**
 * The process entry: the only place that reads the environment and handles signals.
 * Exit codes: 0 after a clean stop, 1 for bad configuration or a failed start.
 */
export async function runGateway(
  onStarted?: (gateway: Gateway, config: GatewayConfig) => void,
): Promise<void> {
  let config: GatewayConfig
  try {
    config = loadConfig(process.env)
  } catch (err) {
    return fail(err)
  }
  const log = createLogger({
    level: config.logLevel,
    pretty: config.logPretty === 'auto' ? Boolean(process.stdout.isTTY) : config.logPretty,
  })
  let gateway: Gateway
  try {
    gateway = await createGateway(config, { log })
    await gateway.start()
  } catch (err) {
    return fail(err, log)
  }
  onStarted?.(gateway, config)

  let signalled = false
  const shutdown = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting without waiting for the flush')
      process.exit(1)
    }
    signalled = true
    log.info({ signal }, 'shutting down')
    gateway.stop().then(
      () => flushAndExit(log, 0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        flushAndExit(log, 1)
      },
    )
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
}

function fail(err: unknown, log?: Logger): void {
  const message =
    err instanceof GatewayError
      ? `${err.code}: ${err.message}`
      : String((err as Error)?.stack ?? err)
  if (log) log.fatal({ err }, 'gateway failed to start')
  process.stderr.write(`sensor-gateway: ${message}\n`)
  process.exitCode = 1
  if (log) flushAndExit(log, 1)
}

function flushAndExit(log: Logger, code: number): void {
  log.flush(() => process.exit(code))
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runGateway()
}
