import type { FastifyReply, FastifyRequest } from 'fastify'
import { StoreQueryLimitError } from '../store/reading-store.ts'

/** The one JSON shape of every error answer (DESIGN §6). */
export interface ErrorBody {
  error: ErrorCode
  message: string
  statusCode: number
  /** Every problem found, where a request can have several (a rule to test); `message` sums up. */
  errors?: string[]
}

export type ErrorCode =
  | 'bad_request'
  | 'not_found'
  /** The request is valid but the resource's state refuses it (acknowledging a resolved alert). */
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'internal'
  | 'store_unavailable'
  /** The store is up but cut its answer at a limit of its own (InfluxDB max-row-limit). */
  | 'store_query_limit'
  | 'rules_unavailable'

/** Stable codes of the 4xx statuses Fastify raises itself; any other 4xx is a bad request. */
const CLIENT_ERROR_CODES: Readonly<Record<number, ErrorCode>> = {
  404: 'not_found',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
}

/** A store query failed: the client gets a 503 without the cause, the log gets the cause. */
export class StoreUnavailableError extends Error {
  readonly operation: string

  constructor(operation: string, options: { cause: unknown }) {
    super(`store ${operation} failed`, options)
    this.name = 'StoreUnavailableError'
    this.operation = operation
  }
}

/**
 * Runs one store call; a failure becomes a StoreUnavailableError, except an answer the store cut
 * at its own limit (StoreQueryLimitError), which is passed on: the store is up.
 */
export async function fromStore<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    if (err instanceof StoreQueryLimitError) throw err
    throw new StoreUnavailableError(operation, { cause: err })
  }
}

export function sendBadRequest(reply: FastifyReply, message: string): FastifyReply {
  return sendError(reply, 400, 'bad_request', message)
}

export function sendError(
  reply: FastifyReply,
  statusCode: number,
  error: ErrorCode,
  message: string,
  errors?: string[],
): FastifyReply {
  const body: ErrorBody = { error, message, statusCode }
  if (errors !== undefined) body.errors = errors
  return reply.code(statusCode).send(body)
}

const MAX_PATH_ECHO = 200
/** Fastify's client-error messages echo the URL; an error body stays small whatever was sent. */
const MAX_MESSAGE_CHARS = 300

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const path = (request.url.split('?')[0] ?? '').slice(0, MAX_PATH_ECHO)
  const body: ErrorBody = {
    error: 'not_found',
    message: `no route for ${request.method} ${path}`,
    statusCode: 404,
  }
  return reply.code(404).send(body)
}

/**
 * Client errors keep Fastify's message (it names what was wrong with the request); server errors
 * answer with a fixed message, never a stack or a store's internals.
 */
export function errorHandler(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  if (error instanceof StoreUnavailableError) {
    request.log.warn({ err: error.cause, operation: error.operation }, 'store query failed')
    const body: ErrorBody = {
      error: 'store_unavailable',
      message: 'the reading store is unavailable, try again later',
      statusCode: 503,
    }
    return reply.code(503).send(body)
  }
  if (error instanceof StoreQueryLimitError) {
    request.log.warn({ err: error }, 'store answer cut at its own limit')
    return sendError(reply, 500, 'store_query_limit', error.message.slice(0, MAX_MESSAGE_CHARS))
  }
  const statusCode = clientErrorStatus(error)
  if (statusCode !== null) {
    const message =
      error instanceof Error ? error.message.slice(0, MAX_MESSAGE_CHARS) : 'bad request'
    request.log.debug({ err: error }, 'client error')
    return sendError(reply, statusCode, CLIENT_ERROR_CODES[statusCode] ?? 'bad_request', message)
  }
  request.log.error({ err: error }, 'request failed')
  const body: ErrorBody = { error: 'internal', message: 'internal server error', statusCode: 500 }
  return reply.code(500).send(body)
}

export function clientErrorStatus(error: unknown): number | null {
  if (error === null || typeof error !== 'object' || !('statusCode' in error)) return null
  const { statusCode } = error
  return typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500 ? statusCode : null
}
