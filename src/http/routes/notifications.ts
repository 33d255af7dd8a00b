import type { FastifyInstance } from 'fastify'
import type { NotificationsView } from '../../notify/notifier.ts'
import type { OutboxState, StoredNotification } from '../../notify/outbox.ts'
import { sendBadRequest, sendError } from '../errors.ts'
import { alertSchema, BAD_REQUEST, errorResponse, limitSchema } from '../openapi.ts'
import { type AlertJson, alertJson, isoTime } from '../present.ts'
import { NOTIFICATION_STATES, parseNoQuery, parseNotificationsQuery } from '../query-params.ts'

export interface NotificationJson {
  id: string
  channel: string
  route: string
  kind: string
  state: OutboxState
  attempts: number
  /** Pending: when the next attempt is due; else when the state last changed. */
  nextAttemptAt: number
  nextAttemptTime: string
  lastError: string | null
  createdAt: number
  createdTime: string
  updatedAt: number
  updatedTime: string
  title: string
  text: string
  alerts: AlertJson[]
}

export function notificationJson(stored: StoredNotification): NotificationJson {
  const n = stored.notification
  return {
    id: n.id,
    channel: n.channel,
    route: n.route,
    kind: n.kind,
    state: stored.state,
    attempts: stored.attempts,
    nextAttemptAt: stored.nextAttemptAt,
    nextAttemptTime: isoTime(stored.nextAttemptAt),
    lastError: stored.lastError,
    createdAt: n.createdAt,
    createdTime: isoTime(n.createdAt),
    updatedAt: stored.updatedAt,
    updatedTime: isoTime(stored.updatedAt),
    title: n.title,
    text: n.text,
    alerts: n.alerts.map(alertJson),
  }
}

const epochMs = { type: 'integer', description: 'Epoch milliseconds' } as const
const isoTimeSchema = { type: 'string', format: 'date-time' } as const

const notificationSchema = {
  type: 'object',
  required: [
    'id',
    'channel',
    'route',
    'kind',
    'state',
    'attempts',
    'nextAttemptAt',
    'nextAttemptTime',
    'lastError',
    'createdAt',
    'createdTime',
    'updatedAt',
    'updatedTime',
    'title',
    'text',
    'alerts',
  ],
  additionalProperties: false,
  properties: {
    id: {
      type: 'string',
      description:
        'Stable across retries and restarts (the webhook-id header): drop duplicates by it',
    },
    channel: { type: 'string', description: 'Channel name (notifications file)' },
    route: { type: 'string', description: 'Route name (notifications file)' },
    kind: {
      type: 'string',
      enum: ['firing', 'resolved', 'flapping', 'repeat'],
      description: 'What the notification is about; `repeat`: a reminder of an alert still firing',
    },
    state: { type: 'string', enum: [...NOTIFICATION_STATES] },
    attempts: { type: 'integer', description: 'Delivery attempts made (0: not tried yet)' },
    nextAttemptAt: {
      ...epochMs,
      description: 'Pending: when the next attempt is due. Delivered or failed: when that happened',
    },
    nextAttemptTime: isoTimeSchema,
    lastError: {
      type: 'string',
      nullable: true,
      description: 'Why the last attempt failed (secrets redacted); null if none did',
    },
    createdAt: epochMs,
    createdTime: isoTimeSchema,
    updatedAt: epochMs,
    updatedTime: isoTimeSchema,
    title: { type: 'string', description: 'Rendered from the route template' },
    text: { type: 'string', description: 'Rendered from the route template' },
    alerts: {
      type: 'array',
      items: alertSchema,
      description: 'The alerts notified: one, or those a grouping window collected',
    },
  },
} as const

/** OpenAPI description of `GET /api/notifications`; parseNotificationsQuery validates. */
export const NOTIFICATIONS_SCHEMA = {
  tags: ['notifications'],
  summary: 'Notifications in the outbox: pending, dead-lettered (failed) or delivered',
  description:
    'Newest change first. `state=failed` lists the dead-lettered notifications with their last ' +
    'error (a permanent refusal, or out of attempts or age); `POST .../retry` sends one again. ' +
    'Delivered ones are kept for 24 hours. Empty without a notifications file.',
  querystring: {
    type: 'object',
    properties: {
      state: {
        type: 'string',
        enum: [...NOTIFICATION_STATES],
        default: 'pending',
        description: 'Which notifications: waiting for delivery, dead-lettered, or delivered',
      },
      channel: { type: 'string', description: 'Only this channel', examples: ['ops-webhook'] },
      limit: limitSchema('Most notifications returned'),
    },
  },
  response: {
    200: {
      description: 'Notifications, newest change first',
      type: 'object',
      required: ['notifications'],
      additionalProperties: false,
      properties: { notifications: { type: 'array', items: notificationSchema } },
    },
    400: BAD_REQUEST,
  },
} as const

/** OpenAPI description of `POST /api/notifications/{id}/retry`. */
export const NOTIFICATION_RETRY_SCHEMA = {
  tags: ['notifications'],
  summary: 'Send a dead-lettered notification again',
  description:
    'Puts a failed notification back to pending, due now, with its attempts counted from zero ' +
    'and the same id (receivers that saw it before can drop it).',
  params: {
    type: 'object',
    required: ['id'],
    properties: { id: { type: 'string', description: 'Notification id' } },
  },
  response: {
    200: {
      description: 'The notification, pending again',
      type: 'object',
      required: ['notification'],
      additionalProperties: false,
      properties: { notification: notificationSchema },
    },
    400: BAD_REQUEST,
    404: errorResponse('No notification with this id'),
    409: errorResponse('The notification is not dead-lettered (pending or delivered)'),
  },
} as const

/**
 * `GET /api/notifications` (the outbox by state) and `POST /api/notifications/{id}/retry` (a
 * dead-lettered one back to pending). Registered whether or not a notifications file is given, so
 * the API has one shape; without one there is nothing in it.
 */
export function registerNotificationsRoutes(
  app: FastifyInstance,
  view: NotificationsView | undefined,
): void {
  app.get('/api/notifications', { schema: NOTIFICATIONS_SCHEMA }, async (request, reply) => {
    const parsed = parseNotificationsQuery(request.query)
    if (!parsed.ok) return sendBadRequest(reply, parsed.message)
    const rows = view?.list(parsed.value) ?? []
    return { notifications: rows.map(notificationJson) }
  })

  app.post<{ Params: { id: string } }>(
    '/api/notifications/:id/retry',
    { schema: NOTIFICATION_RETRY_SCHEMA },
    async (request, reply) => {
      const query = parseNoQuery(request.query)
      if (!query.ok) return sendBadRequest(reply, query.message)
      const { id } = request.params
      const outcome = view?.retry(id) ?? 'not_found'
      if (outcome === 'not_found') {
        return sendError(reply, 404, 'not_found', `no notification with id ${quote(id)}`)
      }
      if (outcome === 'not_failed') {
        return sendError(
          reply,
          409,
          'conflict',
          `notification ${quote(id)} is not dead-lettered: only a failed notification can be retried`,
        )
      }
      const stored = view?.get(id)
      if (stored === undefined) {
        return sendError(reply, 404, 'not_found', `no notification with id ${quote(id)}`)
      }
      return { notification: notificationJson(stored) }
    },
  )
}

/** Ids come from the client: cut, so a hostile path cannot blow up the error. */
function quote(raw: string): string {
  return JSON.stringify(raw.length > 64 ? `${raw.slice(0, 64)}...` : raw)
}
