/** Stable error codes a user or a test can match on. A code is never reused for another meaning. */
export const ERROR_CODES = {
  config: 'GW_ERR_CONFIG',
  rules: 'GW_ERR_RULES',
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
