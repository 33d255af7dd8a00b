import { type DestinationStream, type Logger, pino } from 'pino'

export type { Logger } from 'pino'

export interface LoggerOptions {
  level: string
  /** Pretty-print for humans; JSON (the default off a terminal) for machines. */
  pretty?: boolean
  /** Tests pass a stream to read the JSON lines back. */
  destination?: DestinationStream
}

export function createLogger(options: LoggerOptions): Logger {
  const base = { level: options.level, base: { service: 'sensor-gateway' } }
  if (options.destination) return pino(base, options.destination)
  if (options.pretty) {
    return pino({
      ...base,
      transport: {
        target: 'pino-pretty',
        options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' },
      },
    })
  }
  return pino(base)
}

/** A logger that drops everything: for unit tests that do not look at logs. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' })
}
