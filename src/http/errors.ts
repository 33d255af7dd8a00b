import type { FastifyReply, FastifyRequest } from 'fastify'

/** The one JSON shape of every error answer (DESIGN §6). */
export interface ErrorBody {
  error: 'bad_request' | 'not_found' | 'internal' | 'store_unavailable'
  message: string
  statusCode: number
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

/** Runs one store call; any failure, thrown or rejected, becomes a StoreUnavailableError. */
export async function fromStore<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    throw new StoreUnavailableError(operation, { cause: err })
  }
}

export function sendBadRequest(reply: FastifyReply, message: string): FastifyReply {
  return reply
    .code(400)
    .send({ error: 'bad_request', message, statusCode: 400 } satisfies ErrorBody)
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
  const statusCode = clientErrorStatus(error)
  if (statusCode !== null) {
    const message =
      error instanceof Error ? error.message.slice(0, MAX_MESSAGE_CHARS) : 'bad request'
    request.log.debug({ err: error }, 'client error')
    const body: ErrorBody = {
      error: statusCode === 404 ? 'not_found' : 'bad_request',
      message,
      statusCode,
    }
    return reply.code(statusCode).send(body)
  }
  request.log.error({ err: error }, 'request failed')
  const body: ErrorBody = { error: 'internal', message: 'internal server error', statusCode: 500 }
  return reply.code(500).send(body)
}

function clientErrorStatus(error: unknown): number | null {
  if (error === null || typeof error !== 'object' || !('statusCode' in error)) return null
  const { statusCode } = error
  return typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500 ? statusCode : null
}
