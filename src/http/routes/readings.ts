import type { FastifyInstance } from 'fastify'
import { fromStore, sendBadRequest } from '../errors.ts'
import {
  BAD_REQUEST,
  identifierSchema,
  limitSchema,
  readingSchema,
  STORE_UNAVAILABLE,
  TIME_DESCRIPTION,
} from '../openapi.ts'
import { isoTime, readingJson } from '../present.ts'
import { parseReadingsQuery } from '../query-params.ts'
import type { RouteContext } from './route-context.ts'

/** OpenAPI description of `GET /api/readings`; parseReadingsQuery validates. */
export const READINGS_SCHEMA = {
  tags: ['readings'],
  summary: 'Raw readings of one device',
  description:
    'Readings of one device (one metric or all) in the half-open range `[from, to)`, oldest ' +
    'first unless `order=desc`. `truncated` is true when the range holds more than `limit`.',
  querystring: {
    type: 'object',
    required: ['device'],
    properties: {
      device: { ...identifierSchema, description: 'Device id', examples: ['greenhouse-sim-001'] },
      metric: {
        ...identifierSchema,
        description: 'Metric id; all metrics when absent',
        examples: ['temperature'],
      },
      from: {
        type: 'string',
        description: `Start, inclusive. ${TIME_DESCRIPTION} Default: one hour before now.`,
        examples: ['-1h'],
      },
      to: {
        type: 'string',
        description: `End, exclusive (\`now\` includes a reading stamped now). ${TIME_DESCRIPTION} Default: now.`,
        examples: ['now'],
      },
      limit: limitSchema('Most readings returned'),
      order: { type: 'string', enum: ['asc', 'desc'], default: 'asc', description: 'By time' },
    },
  },
  response: {
    200: {
      description: 'The readings and the range they were taken from',
      type: 'object',
      required: [
        'device',
        'metric',
        'from',
        'to',
        'fromMs',
        'toMs',
        'order',
        'limit',
        'count',
        'truncated',
        'readings',
      ],
      additionalProperties: false,
      properties: {
        device: identifierSchema,
        metric: { ...identifierSchema, nullable: true, description: 'null: every metric' },
        from: { type: 'string', format: 'date-time' },
        to: { type: 'string', format: 'date-time' },
        fromMs: { type: 'integer' },
        toMs: { type: 'integer' },
        order: { type: 'string', enum: ['asc', 'desc'] },
        limit: { type: 'integer' },
        count: { type: 'integer' },
        truncated: { type: 'boolean' },
        readings: { type: 'array', items: readingSchema },
      },
    },
    400: BAD_REQUEST,
    503: STORE_UNAVAILABLE,
  },
} as const

/** `GET /api/readings`: raw readings of one device (one metric or all) in `[from, to)`. */
export function registerReadingsRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/api/readings', { schema: READINGS_SCHEMA }, async (request, reply) => {
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
