import type { FastifyInstance } from 'fastify'

/** The result of a readiness check: every check by name, and whether all passed. */
export interface ReadinessReport {
  ready: boolean
  checks: Readonly<Record<string, string>>
}

export type ReadinessCheck = () => Promise<ReadinessReport>

const readinessBody = (status: 'ready' | 'not_ready', description: string) =>
  ({
    description,
    type: 'object',
    required: ['status', 'checks'],
    additionalProperties: false,
    properties: {
      status: { type: 'string', enum: [status] },
      checks: {
        type: 'object',
        required: ['store'],
        additionalProperties: false,
        properties: {
          store: {
            type: 'string',
            enum: ['up', 'down'],
            description:
              '`down` while the last write failed (the writer is retrying) or a probe read fails or takes over 2 s',
          },
          mqtt: {
            type: 'string',
            enum: ['listening', 'not_listening'],
            description: 'The MQTT TCP listener',
          },
          redis: {
            type: 'string',
            enum: ['up', 'down'],
            description:
              'Only with REDIS_URL (several instances): `down` when Redis does not answer a PING within 1 s',
          },
        },
      },
    },
  }) as const

/** OpenAPI description of `GET /readyz`. */
export const READY_SCHEMA = {
  tags: ['operations'],
  summary: 'Readiness',
  description:
    'Whether the gateway can take readings in and store them: 200 when every check passes, 503 ' +
    'naming the failing check otherwise. The store is probed at request time. Ignores the query string.',
  response: {
    200: readinessBody('ready', 'Every check passes'),
    503: readinessBody('not_ready', 'A check fails'),
  },
} as const

/** `GET /readyz`: 200 `{ status: 'ready', checks }`, or 503 `{ status: 'not_ready', checks }`. */
export function registerReadyRoute(app: FastifyInstance, check: ReadinessCheck): void {
  app.get('/readyz', { schema: READY_SCHEMA }, async (_request, reply) => {
    const { ready, checks } = await check()
    return reply
      .code(ready ? 200 : 503)
      .send({ status: ready ? 'ready' : 'not_ready', checks: { ...checks } })
  })
}
