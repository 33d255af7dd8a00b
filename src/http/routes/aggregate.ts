import type { FastifyInstance } from 'fastify'
import { fromStore, sendBadRequest } from '../errors.ts'
import { bucketJson, isoTime } from '../present.ts'
import { parseAggregateQuery } from '../query-params.ts'
import type { RouteContext } from './route-context.ts'

/** `GET /api/readings/aggregate`: one metric of one device in epoch-aligned time buckets. */
export function registerAggregateRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/api/readings/aggregate', async (request, reply) => {
    const parsed = parseAggregateQuery(request.query, ctx.now())
    if (!parsed.ok) return sendBadRequest(reply, parsed.message)
    const query = parsed.value
    const buckets = await fromStore('aggregate', () => ctx.store.aggregate(query))
    return {
      device: query.deviceId,
      metric: query.metric,
      fn: query.fn,
      every: query.everyMs,
      from: isoTime(query.fromMs),
      to: isoTime(query.toMs),
      fromMs: query.fromMs,
      toMs: query.toMs,
      buckets: buckets.map(bucketJson),
    }
  })
}
