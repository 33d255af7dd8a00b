import type { FastifyInstance } from 'fastify'
import type { LatestReading } from '../../store/reading-store.ts'
import { fromStore, sendBadRequest } from '../errors.ts'
import { BAD_REQUEST, identifierSchema, STORE_UNAVAILABLE } from '../openapi.ts'
import { isoTime } from '../present.ts'
import { parseNoQuery } from '../query-params.ts'
import type { RouteContext } from './route-context.ts'

export interface DeviceMetricJson {
  value: number
  ts: number
  time: string
  unit?: string
}

export interface DeviceJson {
  id: string
  lastSeen: string
  lastSeenMs: number
  metrics: Record<string, DeviceMetricJson>
}

/** OpenAPI description of `GET /api/devices`; it takes no query parameters. */
export const DEVICES_SCHEMA = {
  tags: ['devices'],
  summary: 'Every device with a stored reading, and its newest value per metric',
  description: 'Sorted by device id; any query parameter is a 400.',
  response: {
    200: {
      description: 'Devices',
      type: 'object',
      required: ['devices'],
      additionalProperties: false,
      properties: {
        devices: {
          type: 'array',
          items: {
            type: 'object',
            required: ['id', 'lastSeen', 'lastSeenMs', 'metrics'],
            additionalProperties: false,
            properties: {
              id: identifierSchema,
              lastSeen: { type: 'string', format: 'date-time' },
              lastSeenMs: { type: 'integer' },
              metrics: {
                type: 'object',
                description: 'Metric id -> its newest reading',
                additionalProperties: {
                  type: 'object',
                  required: ['value', 'ts', 'time'],
                  additionalProperties: false,
                  properties: {
                    value: { type: 'number' },
                    ts: { type: 'integer' },
                    time: { type: 'string', format: 'date-time' },
                    unit: { type: 'string' },
                  },
                },
              },
            },
          },
        },
      },
    },
    400: BAD_REQUEST,
    503: STORE_UNAVAILABLE,
  },
} as const

/** `GET /api/devices`: every device the store has a reading of, with its newest value per metric. */
export function registerDevicesRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/api/devices', { schema: DEVICES_SCHEMA }, async (request, reply) => {
    const query = parseNoQuery(request.query)
    if (!query.ok) return sendBadRequest(reply, query.message)
    const latest = await fromStore('latest', () => ctx.store.latest())
    return { devices: devicesJson(latest) }
  })
}

export function devicesJson(latest: readonly LatestReading[]): DeviceJson[] {
  const byDevice = new Map<string, LatestReading[]>()
  for (const reading of latest) {
    const readings = byDevice.get(reading.deviceId)
    if (readings) readings.push(reading)
    else byDevice.set(reading.deviceId, [reading])
  }
  return [...byDevice.entries()]
    .sort(([a], [b]) => compareIds(a, b))
    .map(([id, readings]) => {
      readings.sort((a, b) => compareIds(a.metric, b.metric))
      const lastSeenMs = Math.max(...readings.map((reading) => reading.ts))
      return {
        id,
        lastSeen: isoTime(lastSeenMs),
        lastSeenMs,
        // fromEntries defines own properties: a metric named `__proto__` (a valid id) stays a key.
        metrics: Object.fromEntries(
          readings.map((reading) => [reading.metric, metricJson(reading)]),
        ),
      }
    })
}

function metricJson(reading: LatestReading): DeviceMetricJson {
  const json: DeviceMetricJson = { value: reading.value, ts: reading.ts, time: isoTime(reading.ts) }
  if (reading.unit !== undefined) json.unit = reading.unit
  return json
}

/** Code-unit order, not locale order: the same answer on every server. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
