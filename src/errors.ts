/** Stable error codes a user or a test can match on. A code is never reused for another meaning. */
export const ERROR_CODES = {
  config: 'GW_ERR_CONFIG',
  rules: 'GW_ERR_RULES',
  notifications: 'GW_ERR_NOTIFICATIONS',
  portInUse: 'GW_ERR_PORT_IN_USE',
  listen: 'GW_ERR_LISTEN',
  store: 'GW_ERR_STORE',
} as const

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES]

export class GatewayError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'GatewayError'
    this.code = code
  }
}

/**
 * Why a listener could not start, in words that say what to change: an occupied port names the
 * environment variable that moves it.
 */
export function listenError(
  service: 'MQTT' | 'HTTP',
  portVariable: string,
  err: NodeJS.ErrnoException,
  host: string,
  port: number,
): GatewayError {
  if (err.code === 'EADDRINUSE') {
    return new GatewayError(
      ERROR_CODES.portInUse,
      `${service} port ${port} on ${host} is already in use: set ${portVariable} to a free port (0 lets the OS choose)`,
      { cause: err },
    )
  }
  return new GatewayError(
    ERROR_CODES.listen,
    `cannot listen for ${service} on ${host}:${port}: ${err.message}`,
    { cause: err },
  )
}
