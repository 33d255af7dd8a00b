import type { FastifyInstance } from 'fastify'

/** What GET /metrics needs: Prometheus text and its content type (src/telemetry/metrics.ts). */
export interface MetricsEndpoint {
  readonly contentType: string
  render(): Promise<string>
}

/** OpenAPI description of `GET /metrics`. */
export const METRICS_SCHEMA = {
  tags: ['operations'],
  summary: 'Prometheus metrics',
  description:
    'Prometheus text format 0.0.4: the gateway_* metrics of this gateway, then the Node.js ' +
    'process metrics (CPU, memory, event-loop lag, GC). Ignores the query string.',
  response: {
    200: {
      description: 'The metrics',
      content: { 'text/plain': { schema: { type: 'string' } } },
    },
  },
} as const

/** `GET /metrics`: what Prometheus scrapes. */
export function registerMetricsRoute(app: FastifyInstance, metrics: MetricsEndpoint): void {
  app.get('/metrics', { schema: METRICS_SCHEMA }, async (_request, reply) => {
    const text = await metrics.render()
    return reply.type(metrics.contentType).send(text)
  })
}
