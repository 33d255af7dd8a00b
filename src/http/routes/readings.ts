import type { FastifyInstance } from 'fastify'
import { fromStore, sendBadRequest } from '../errors.ts'
import { isoTime, readingJson } from '../present.ts'
import { parseReadingsQuery } from '../query-params.ts'
import type { RouteContext } from './route-context.ts'

/** `GET /api/readings`: raw readings of one device (one metric or all) in `[from, to)`. */
export function registerReadingsRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/api/readings', async (request, reply) => {
    const parsed = parseReadingsQuery(request.query, ctx.now())
    if (!parsed.ok) return sendBadRequest(reply, parsed.message)
    const query = parsed.value
    // One row more than asked tells whether the range holds more than `limit` readings.
    const rows = await fromStore('queryReadings', () =>
      ctx.store.queryReadings({ ...query, limit: query.limit + 1 }),
    )
    const truncated = rows.length > query.limit
    const readings = (truncated ? rows.slice(0, query.limit) : rows).map(readingJson)
    return {
      device: query.deviceId,
      metric: query.metric ?? null,
      from: isoTime(query.fromMs),
      to: isoTime(query.toMs),
      fromMs: query.fromMs,
      toMs: query.toMs,
      order: query.order,
      limit: query.limit,
      count: readings.length,
      truncated,
      readings,
    }
  })
}
