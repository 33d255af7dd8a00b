import type { FastifyInstance } from 'fastify'
import { AGGREGATE_FUNCTIONS } from '../../store/reading-store.ts'
import { fromStore, sendBadRequest } from '../errors.ts'
import {
  BAD_REQUEST,
  bucketSchema,
  identifierSchema,
  STORE_UNAVAILABLE,
  TIME_DESCRIPTION,
} from '../openapi.ts'
import { bucketJson, isoTime } from '../present.ts'
import { MAX_BUCKETS, parseAggregateQuery } from '../query-params.ts'
import type { RouteContext } from './route-context.ts'

/** OpenAPI description of `GET /api/readings/aggregate`; parseAggregateQuery validates. */
export const AGGREGATE_SCHEMA = {
  tags: ['readings'],
  summary: 'One metric of one device in time buckets',
  description:
    'Buckets of width `every` aligned to multiples of `every` since the epoch, over `[from, to)`. ' +
    `Empty buckets are omitted. More than ${MAX_BUCKETS} buckets is refused.`,
  querystring: {
    type: 'object',
    required: ['device', 'metric'],
    properties: {
      device: { ...identifierSchema, description: 'Device id', examples: ['greenhouse-sim-001'] },
      metric: { ...identifierSchema, description: 'Metric id', examples: ['temperature'] },
      from: {
        type: 'string',
        description: `Start, inclusive. ${TIME_DESCRIPTION} Default: one hour before now.`,
        examples: ['-24h'],
      },
      to: {
        type: 'string',
        description: `End, exclusive. ${TIME_DESCRIPTION} Default: now.`,
        examples: ['now'],
      },
      every: {
        type: 'string',
        description:
          'Bucket width, at least `1s`: `30s`, `5m`, `1h`, `1d` or milliseconds. Default: the ' +
          'smallest round step giving at most about 500 buckets.',
        examples: ['5m'],
      },
      fn: {
        type: 'string',
        enum: [...AGGREGATE_FUNCTIONS],
        default: 'mean',
        description: 'Aggregate of each bucket',
      },
    },
  },
  response: {
    200: {
      description: 'The buckets and the query they answer',
      type: 'object',
      required: ['device', 'metric', 'fn', 'every', 'from', 'to', 'fromMs', 'toMs', 'buckets'],
      additionalProperties: false,
      properties: {
        device: identifierSchema,
        metric: identifierSchema,
        fn: { type: 'string', enum: [...AGGREGATE_FUNCTIONS] },
        every: { type: 'integer', description: 'Bucket width in milliseconds' },
        from: { type: 'string', format: 'date-time' },
        to: { type: 'string', format: 'date-time' },
        fromMs: { type: 'integer' },
        toMs: { type: 'integer' },
        buckets: { type: 'array', items: bucketSchema },
      },
    },
    400: BAD_REQUEST,
    503: STORE_UNAVAILABLE,
  },
} as const

/** `GET /api/readings/aggregate`: one metric of one device in epoch-aligned time buckets. */
export function registerAggregateRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/api/readings/aggregate', { schema: AGGREGATE_SCHEMA }, async (request, reply) => {
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
