import type { FastifyInstance } from 'fastify'

/**
 * Liveness only: answers while the process serves HTTP, whatever the store does. It ignores the
 * query string on purpose: a probe must never fail over a cache-buster parameter.
 */
export function registerHealthRoute(app: FastifyInstance): void {
  app.get('/healthz', async () => ({ status: 'ok' as const }))
}
