import { type DestinationStream, type Logger, pino } from 'pino'

export type { Logger } from 'pino'

export interface LoggerOptions {
  level: string
  /** Pretty-print for humans; JSON (the default off a terminal) for machines. */
  pretty?: boolean
  /** Tests pass a stream to read the JSON lines back. */
  destination?: DestinationStream
}

/**
 * Fields that may hold a secret, wherever a log call puts them: censored by pino before the line
 * is written (DESIGN §8: credentials never appear in logs). The code logs none of these; this is
 * the net under a future mistake (an `err` carrying request headers, a connect packet).
 */
export const REDACTED_PATHS = [
  'password',
  'secret',
  'authorization',
  '*.password',
  '*.secret',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
  'packet.password',
]

export function createLogger(options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    base: { service: 'sensor-gateway' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  }
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
