import { pathToFileURL } from 'node:url'
import { loadConfig } from './config/load-config.ts'
import type { GatewayConfig } from './config/schema.ts'
import { GatewayError } from './errors.ts'
import { createGateway, type Gateway } from './gateway.ts'
import { createLogger, type Logger } from './telemetry/logger.ts'
import { onShutdownSignals } from './util/shutdown-signals.ts'

/**
 * The process entry: the only place that reads the environment and handles signals.
 * Exit codes: 0 after a clean stop, 1 for bad configuration or a failed start.
 */
export interface RunHooks {
  /** Called once the gateway listens, with the ports actually bound. */
  onStarted?: (gateway: Gateway, config: GatewayConfig, log: Logger) => Promise<void> | void
  /** Called on SIGINT/SIGTERM before the gateway stops (the demo stops its simulator here). */
  beforeStop?: () => Promise<void>
}

export async function runGateway(hooks: RunHooks = {}): Promise<void> {
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
    await hooks.onStarted?.(gateway, config, log)
  } catch (err) {
    return fail(err, log)
  }

  onShutdownSignals(
    (signal) => {
      log.info({ signal }, 'shutting down')
      const stopped = (hooks.beforeStop?.() ?? Promise.resolve()).then(() => gateway.stop())
      stopped.then(
        () => flushAndExit(log, 0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed')
          flushAndExit(log, 1)
        },
      )
    },
    (signal) => {
      log.warn({ signal }, 'second signal: exiting without waiting for the flush')
      process.exit(1)
    },
  )
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
