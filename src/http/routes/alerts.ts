import type { FastifyInstance } from 'fastify'
import { fromStore, sendBadRequest } from '../errors.ts'
import { alertJson } from '../present.ts'
import { parseAlertsQuery } from '../query-params.ts'
import type { RouteContext } from './route-context.ts'

/** `GET /api/alerts`: alert transitions (firing, resolved), newest first. */
export function registerAlertsRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/api/alerts', async (request, reply) => {
    const parsed = parseAlertsQuery(request.query, ctx.now())
    if (!parsed.ok) return sendBadRequest(reply, parsed.message)
    const alerts = await fromStore('queryAlerts', () => ctx.store.queryAlerts(parsed.value))
    return { alerts: alerts.map(alertJson) }
  })
}
