import type { FastifyInstance } from 'fastify'
import { type Alert, SEVERITIES } from '../../contract/types.ts'
import { fromStore, sendBadRequest } from '../errors.ts'
import {
  alertSchema,
  BAD_REQUEST,
  identifierSchema,
  limitSchema,
  STORE_UNAVAILABLE,
  TIME_DESCRIPTION,
} from '../openapi.ts'
import { alertJson } from '../present.ts'
import { ALERT_STATE_FILTERS, parseAlertsQuery } from '../query-params.ts'
import type { RouteContext } from './route-context.ts'

/**
 * `GET /api/alerts`: newest first. `state=firing|resolved` lists alerts whose current state is
 * that one (one entry per rule and device); `state=all`, the default, the transition history.
 */
/** OpenAPI description of `GET /api/alerts`; parseAlertsQuery validates. */
export const ALERTS_SCHEMA = {
  tags: ['alerts'],
  summary: 'Alert transitions, or the alerts in a given state now',
  description:
    'Newest first. Without `state` (or `state=all`): the transition history. `state=firing` or ' +
    '`resolved`: alerts whose current state is that one, one per rule and device. No time ' +
    'window unless `from`/`to` are given.',
  querystring: {
    type: 'object',
    properties: {
      state: {
        type: 'string',
        enum: [...ALERT_STATE_FILTERS],
        default: 'all',
        description: '`firing`: firing now; `resolved`: resolved now; `all`: every transition',
      },
      device: { ...identifierSchema, description: 'Device id', examples: ['greenhouse-sim-001'] },
      rule: { ...identifierSchema, description: 'Rule id', examples: ['high-temperature'] },
      severity: { type: 'string', enum: [...SEVERITIES] },
      from: {
        type: 'string',
        description: `Transitions at or after this time. ${TIME_DESCRIPTION}`,
        examples: ['-7d'],
      },
      to: {
        type: 'string',
        description: `Transitions before this time. ${TIME_DESCRIPTION}`,
        examples: ['now'],
      },
      limit: limitSchema('Most alerts returned'),
    },
  },
  response: {
    200: {
      description: 'Alerts, newest first',
      type: 'object',
      required: ['alerts'],
      additionalProperties: false,
      properties: { alerts: { type: 'array', items: alertSchema } },
    },
    400: BAD_REQUEST,
    503: STORE_UNAVAILABLE,
  },
} as const

/**
 * `withAck` adds the acknowledgement of a current firing (src/notify/alert-controls.ts); the
 * store keeps transitions, not acknowledgements.
 */
export function registerAlertsRoute(
  app: FastifyInstance,
  ctx: RouteContext,
  withAck: (alert: Alert) => Alert = (alert) => alert,
): void {
  app.get('/api/alerts', { schema: ALERTS_SCHEMA }, async (request, reply) => {
    const parsed = parseAlertsQuery(request.query, ctx.now())
    if (!parsed.ok) return sendBadRequest(reply, parsed.message)
    const alerts = await fromStore('queryAlerts', () => ctx.store.queryAlerts(parsed.value))
    return { alerts: alerts.map((alert) => alertJson(withAck(alert))) }
  })
}
