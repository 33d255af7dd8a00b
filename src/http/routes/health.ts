import type { FastifyInstance } from 'fastify'

/**
 * Liveness only: answers while the process serves HTTP, whatever the store does. It ignores the
 * query string on purpose: a probe must never fail over a cache-buster parameter.
 */
export function registerHealthRoute(app: FastifyInstance): void {
  app.get('/healthz', { schema: HEALTH_SCHEMA }, async () => ({ status: 'ok' as const }))
}

/** OpenAPI description of `GET /healthz`. */
export const HEALTH_SCHEMA = {
  tags: ['operations'],
  summary: 'Liveness',
  description:
    'Answers while the process serves HTTP, whatever the store does. Ignores the query string.',
  response: {
    200: {
      description: 'The process is alive',
      type: 'object',
      required: ['status'],
      additionalProperties: false,
      properties: { status: { type: 'string', enum: ['ok'] } },
    },
  },
} as const
