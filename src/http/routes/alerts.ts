import type { FastifyInstance } from 'fastify'
import { fromStore, sendBadRequest } from '../errors.ts'
import { alertJson } from '../present.ts'
import { parseAlertsQuery } from '../query-params.ts'
import type { RouteContext } from './route-context.ts'

/**
 * `GET /api/alerts`: newest first. `state=firing|resolved` lists alerts whose current state is
 * that one (one entry per rule and device); `state=all`, the default, the transition history.
 */
export function registerAlertsRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/api/alerts', async (request, reply) => {
    const parsed = parseAlertsQuery(request.query, ctx.now())
    if (!parsed.ok) return sendBadRequest(reply, parsed.message)
    const alerts = await fromStore('queryAlerts', () => ctx.store.queryAlerts(parsed.value))
    return { alerts: alerts.map(alertJson) }
  })
}
