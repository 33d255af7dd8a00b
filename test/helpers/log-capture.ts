import { Writable } from 'node:stream'
import { createLogger, type Logger } from '../../src/telemetry/logger.ts'

export type LogLine = Record<string, unknown>

/** A real pino logger whose JSON lines are parsed back, so tests assert on fields, not text. */
export function captureLogs(level = 'debug'): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n'))
        if (line) lines.push(JSON.parse(line) as LogLine)
      done()
    },
  })
  return { log: createLogger({ level, destination }), lines }
}
