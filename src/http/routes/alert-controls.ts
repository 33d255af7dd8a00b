import type { FastifyInstance } from 'fastify'
import { isIdentifier } from '../../contract/identifiers.ts'
import { isSeverity, SEVERITIES, type Severity } from '../../contract/types.ts'
import {
  type AlertControlsService,
  MAX_OPEN_SILENCES,
  SILENCE_HISTORY_MS,
  SILENCE_STATES,
  type SilenceInput,
  type SilenceState,
  silenceState,
} from '../../notify/alert-controls.ts'
import type { Silence } from '../../notify/types.ts'
import { describeValue } from '../../rules/describe-value.ts'
import { parseTags } from '../../rules/device-registry.ts'
import { isDevicePattern } from '../../rules/glob.ts'
import { callerOf } from '../../security/http-auth.ts'
import { parseDurationMs } from '../../util/duration.ts'
import { sendBadRequest, sendError } from '../errors.ts'
import { alertSchema, BAD_REQUEST, errorResponse, TIME_DESCRIPTION } from '../openapi.ts'
import { type AlertJson, alertJson, isoTime } from '../present.ts'
import {
  MAX_TIME_MS,
  type Parsed,
  parseNoQuery,
  parseSilencesQuery,
  parseTime,
} from '../query-params.ts'

/**
 * Acknowledge and silence (README "Notifications > Acknowledge and silence"):
 * `POST /api/alerts/{id}/ack`, `POST /api/silences`, `GET /api/silences`,
 * `DELETE /api/silences/{id}`. Bodies are validated here, every 400 naming the field; the
 * service (src/notify/alert-controls.ts) keeps and persists.
 */

/** Bodies are a few hundred bytes; anything much larger is not one of ours. */
export const CONTROL_BODY_LIMIT_BYTES = 65_536
export const MAX_COMMENT_CHARS = 1_000
/** Entries per matcher list: a silence names a few rules or devices, or a glob. */
const MAX_PATTERNS = 100

const ACK_FIELDS = ['comment'] as const
const SILENCE_FIELDS = ['matchers', 'startsAt', 'endsAt', 'duration', 'comment'] as const
const MATCHER_FIELDS = ['rule', 'device', 'severity', 'metric', 'tags'] as const

export interface SilenceJson {
  id: string
  state: SilenceState
  matchers: {
    rule: readonly string[] | null
    device: readonly string[] | null
    severity: readonly Severity[] | null
    metric: readonly string[] | null
    tags: Readonly<Record<string, string>> | null
  }
  startsAt: number
  startsAtTime: string
  endsAt: number
  endsAtTime: string
  comment: string
  createdBy: string
  createdAt: number
  createdAtTime: string
}

export function silenceJson(silence: Silence, nowMs: number): SilenceJson {
  const m = silence.matchers
  return {
    id: silence.id,
    state: silenceState(silence, nowMs),
    matchers: {
      rule: m.rule,
      device: m.device,
      severity: m.severity,
      metric: m.metric ?? null,
      tags: m.tags,
    },
    startsAt: silence.startsAt,
    startsAtTime: isoTime(silence.startsAt),
    endsAt: silence.endsAt,
    endsAtTime: isoTime(silence.endsAt),
    comment: silence.comment,
    createdBy: silence.createdBy,
    createdAt: silence.createdAt,
    createdAtTime: isoTime(silence.createdAt),
  }
}

// ---- Body validation (pure) ----

const bodyFail = (field: string, detail: string): { ok: false; message: string } => ({
  ok: false,
  message: `body field "${field}": ${detail}`,
})

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function unknownField(
  body: Record<string, unknown>,
  known: readonly string[],
  prefix: string,
): { ok: false; message: string } | null {
  const extra = Object.keys(body).find((key) => !known.includes(key))
  if (extra === undefined) return null
  const name = JSON.stringify(extra.length > 64 ? `${extra.slice(0, 64)}...` : extra)
  return {
    ok: false,
    message: `request body: unknown field ${prefix}${name}; known: ${known.join(', ')}`,
  }
}

function parseComment(value: unknown, required: boolean): Parsed<string | undefined> {
  if (value === undefined && !required) return { ok: true, value: undefined }
  if (typeof value !== 'string' || value.trim() === '') {
    return bodyFail(
      'comment',
      `${required ? 'is required: ' : ''}a non-empty text, got ${describeValue(value)}`,
    )
  }
  if (value.length > MAX_COMMENT_CHARS) {
    return bodyFail('comment', `at most ${MAX_COMMENT_CHARS} characters, got ${value.length}`)
  }
  return { ok: true, value }
}

/** `POST /api/alerts/{id}/ack`: no body, `{}` or `{ comment }`. */
export function parseAckBody(body: unknown): Parsed<{ comment?: string }> {
  if (body === undefined || body === null) return { ok: true, value: {} }
  if (!isObject(body)) {
    return {
      ok: false,
      message: `request body: must be a JSON object like {"comment": "..."}, got ${describeValue(body)}`,
    }
  }
  const extra = unknownField(body, ACK_FIELDS, '')
  if (extra) return extra
  const comment = parseComment(body.comment, false)
  if (!comment.ok) return comment
  return { ok: true, value: comment.value === undefined ? {} : { comment: comment.value } }
}

/** `{ruleId}:{deviceId}`, both identifiers; the id's parts or a message naming `id`. */
export function parseAlertId(raw: string): Parsed<string> {
  const parts = raw.split(':')
  if (parts.length === 2 && isIdentifier(parts[0]) && isIdentifier(parts[1])) {
    return { ok: true, value: raw }
  }
  const shown = JSON.stringify(raw.length > 140 ? `${raw.slice(0, 140)}...` : raw)
  return {
    ok: false,
    message: `path parameter "id": expected {ruleId}:{deviceId} (two identifiers, URL-encoded), got ${shown}`,
  }
}

/** A matcher list: one pattern or a list of them; null (or absent) is any. */
function parsePatterns<T extends string>(
  field: string,
  value: unknown,
  accept: (item: unknown) => item is T,
  expected: string,
): Parsed<readonly T[] | null> {
  if (value === undefined || value === null) return { ok: true, value: null }
  const items = Array.isArray(value) ? value : [value]
  if (items.length === 0 || items.length > MAX_PATTERNS) {
    return bodyFail(
      field,
      `a list of 1 to ${MAX_PATTERNS} entries (or null for any), got ${items.length}`,
    )
  }
  for (const [i, item] of items.entries()) {
    if (!accept(item)) {
      const at = Array.isArray(value) ? `${field}[${i}]` : field
      return bodyFail(at, `expected ${expected}, got ${describeValue(item)}`)
    }
  }
  return { ok: true, value: Object.freeze([...new Set(items as T[])]) }
}

function parseMatchers(value: unknown): Parsed<Silence['matchers']> {
  if (!isObject(value)) {
    return bodyFail(
      'matchers',
      `is required: an object with at least one of ${MATCHER_FIELDS.join(', ')}, got ${describeValue(value)}`,
    )
  }
  const extra = unknownField(value, MATCHER_FIELDS, 'matchers.')
  if (extra) return extra
  const pattern = 'a rule, device or metric id, or a glob (* any run, ? one character)'
  const rule = parsePatterns('matchers.rule', value.rule, isDevicePattern, pattern)
  if (!rule.ok) return rule
  const device = parsePatterns('matchers.device', value.device, isDevicePattern, pattern)
  if (!device.ok) return device
  const metric = parsePatterns('matchers.metric', value.metric, isDevicePattern, pattern)
  if (!metric.ok) return metric
  const severity = parsePatterns(
    'matchers.severity',
    value.severity,
    isSeverity,
    `one of ${SEVERITIES.join(', ')}`,
  )
  if (!severity.ok) return severity
  let tags: Readonly<Record<string, string>> | null = null
  if (value.tags !== undefined && value.tags !== null) {
    const problems: Array<[string, string]> = []
    const parsed = parseTags(value.tags, 'matchers.tags', problems)
    const [first] = problems
    if (first !== undefined) return bodyFail(first[0], first[1])
    if (parsed === null || Object.keys(parsed).length === 0) {
      return bodyFail('matchers.tags', 'must name at least one tag (or null for any)')
    }
    tags = Object.freeze(parsed)
  }
  const matchers = {
    rule: rule.value,
    device: device.value,
    severity: severity.value,
    metric: metric.value,
    tags,
  }
  // Alertmanager refuses an empty matcher set too: a silence of everything is a mistake.
  if (Object.values(matchers).every((m) => m === null)) {
    return bodyFail(
      'matchers',
      `must name at least one of ${MATCHER_FIELDS.join(', ')} (device "*" silences every alert, if that is meant)`,
    )
  }
  return { ok: true, value: matchers }
}

function parseBodyTime(field: string, value: unknown, nowMs: number): Parsed<number> {
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0 && value <= MAX_TIME_MS) {
      return { ok: true, value }
    }
    return bodyFail(field, `epoch milliseconds must be an integer from 0 to ${MAX_TIME_MS}`)
  }
  if (typeof value === 'string') {
    const parsed = parseTime(field, value, nowMs)
    return parsed.ok
      ? parsed
      : { ok: false, message: parsed.message.replace('query parameter', 'body field') }
  }
  return bodyFail(field, `${TIME_DESCRIPTION} Got ${describeValue(value)}`)
}

function parseDuration(value: unknown): Parsed<number> {
  const ms =
    typeof value === 'string'
      ? parseDurationMs(value)
      : typeof value === 'number' && Number.isInteger(value)
        ? value
        : null
  if (ms === null || ms <= 0) {
    return bodyFail(
      'duration',
      `expected a positive duration like 30m, 2h or 1d (or milliseconds), got ${describeValue(value)}`,
    )
  }
  return { ok: true, value: ms }
}

/**
 * `POST /api/silences`: `{ matchers, startsAt?, endsAt | duration, comment }`. `startsAt`
 * defaults to now; the end must be in the future and after the start.
 */
export function parseSilenceBody(body: unknown, nowMs: number): Parsed<SilenceInput> {
  if (!isObject(body)) {
    return {
      ok: false,
      message: `request body: must be a JSON object with matchers, endsAt (or duration) and comment, got ${describeValue(body)}`,
    }
  }
  const extra = unknownField(body, SILENCE_FIELDS, '')
  if (extra) return extra
  const matchers = parseMatchers(body.matchers)
  if (!matchers.ok) return matchers
  const startsAt =
    body.startsAt === undefined
      ? ({ ok: true, value: nowMs } as const)
      : parseBodyTime('startsAt', body.startsAt, nowMs)
  if (!startsAt.ok) return startsAt
  let endsAtMs: number
  if (body.endsAt !== undefined && body.duration !== undefined) {
    return bodyFail('duration', 'give endsAt or duration, not both')
  }
  if (body.endsAt !== undefined) {
    const endsAt = parseBodyTime('endsAt', body.endsAt, nowMs)
    if (!endsAt.ok) return endsAt
    endsAtMs = endsAt.value
  } else if (body.duration !== undefined) {
    const duration = parseDuration(body.duration)
    if (!duration.ok) return duration
    endsAtMs = startsAt.value + duration.value
    if (endsAtMs > MAX_TIME_MS) return bodyFail('duration', 'ends past the last representable time')
  } else {
    return bodyFail('endsAt', 'is required (or duration): when the silence ends')
  }
  if (endsAtMs <= startsAt.value) {
    return bodyFail(
      'endsAt',
      `must be after startsAt, got ${isoTime(endsAtMs)} <= ${isoTime(startsAt.value)}`,
    )
  }
  if (endsAtMs <= nowMs) {
    return bodyFail(
      'endsAt',
      `${isoTime(endsAtMs)} is not in the future: the silence would never act`,
    )
  }
  const comment = parseComment(body.comment, true)
  if (!comment.ok) return comment
  return {
    ok: true,
    value: {
      matchers: matchers.value,
      startsAt: startsAt.value,
      endsAt: endsAtMs,
      comment: comment.value as string,
    },
  }
}

// ---- OpenAPI descriptions (documentation only; the code above validates) ----

const patternList = (description: string) =>
  ({
    description: `${description}: one, or a list; globs as in rules (\`greenhouse-*\`); null or absent: any`,
    nullable: true,
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }],
  }) as const

const silenceSchema = {
  type: 'object',
  required: [
    'id',
    'state',
    'matchers',
    'startsAt',
    'startsAtTime',
    'endsAt',
    'endsAtTime',
    'comment',
    'createdBy',
    'createdAt',
    'createdAtTime',
  ],
  additionalProperties: false,
  properties: {
    id: { type: 'string', format: 'uuid' },
    state: { type: 'string', enum: [...SILENCE_STATES] },
    matchers: {
      type: 'object',
      required: ['rule', 'device', 'severity', 'metric', 'tags'],
      additionalProperties: false,
      properties: {
        rule: { type: 'array', items: { type: 'string' }, nullable: true },
        device: { type: 'array', items: { type: 'string' }, nullable: true },
        severity: {
          type: 'array',
          items: { type: 'string', enum: [...SEVERITIES] },
          nullable: true,
        },
        metric: { type: 'array', items: { type: 'string' }, nullable: true },
        tags: { type: 'object', additionalProperties: { type: 'string' }, nullable: true },
      },
    },
    startsAt: { type: 'integer' },
    startsAtTime: { type: 'string', format: 'date-time' },
    endsAt: { type: 'integer', description: 'Exclusive; set to the time of a DELETE' },
    endsAtTime: { type: 'string', format: 'date-time' },
    comment: { type: 'string' },
    createdBy: { type: 'string' },
    createdAt: { type: 'integer' },
    createdAtTime: { type: 'string', format: 'date-time' },
  },
} as const

const oneSilence = (description: string) =>
  ({
    description,
    type: 'object',
    required: ['silence'],
    additionalProperties: false,
    properties: { silence: silenceSchema },
  }) as const

const BODY_BAD_REQUEST = errorResponse(
  'The body or a parameter is invalid; the message names the field',
)
const idParam = (description: string) =>
  ({
    type: 'object',
    required: ['id'],
    properties: { id: { type: 'string', description } },
  }) as const

export const ACK_SCHEMA = {
  tags: ['alerts'],
  summary: 'Acknowledge a firing alert',
  description:
    'Marks the current firing of the alert as acknowledged by the caller (the app id of the ' +
    'token, or `loopback`): no repeat notifications until it resolves. The retained MQTT ' +
    'alert is published again with `acknowledged` (same state, same `ts`), and `GET /api/alerts` ' +
    'shows it. It ends when the alert resolves; a later firing starts unacknowledged. Again on ' +
    'an acknowledged alert: the newer acknowledgement replaces the older.',
  params: idParam('`{ruleId}:{deviceId}`, URL-encoded'),
  body: {
    type: 'object',
    additionalProperties: false,
    properties: { comment: { type: 'string', maxLength: MAX_COMMENT_CHARS } },
  },
  response: {
    200: {
      description: 'The alert as it is now, acknowledged',
      type: 'object',
      required: ['alert'],
      additionalProperties: false,
      properties: { alert: alertSchema },
    },
    400: BODY_BAD_REQUEST,
    404: errorResponse('No alert with this id'),
    409: errorResponse('The alert is resolved: only a firing alert can be acknowledged'),
  },
} as const

export const SILENCE_CREATE_SCHEMA = {
  tags: ['silences'],
  summary: 'Create a silence',
  description:
    'Alerts the matchers take, while the silence is active, are recorded and published on MQTT ' +
    'as always but not notified. Every matcher given must match (rule, device, metric: globs; ' +
    'severity: a list; tags: the device tags of the registry, values are globs). Give `endsAt` ' +
    'or `duration`; `startsAt` defaults to now.',
  body: {
    type: 'object',
    required: ['matchers', 'comment'],
    additionalProperties: false,
    properties: {
      matchers: {
        type: 'object',
        minProperties: 1,
        additionalProperties: false,
        properties: {
          rule: patternList('Rule ids'),
          device: patternList('Device ids'),
          metric: patternList('Metrics'),
          severity: {
            description: 'Severities: one, or a list; null or absent: any',
            nullable: true,
            oneOf: [
              { type: 'string', enum: [...SEVERITIES] },
              { type: 'array', items: { type: 'string', enum: [...SEVERITIES] }, minItems: 1 },
            ],
          },
          tags: {
            type: 'object',
            nullable: true,
            additionalProperties: { type: 'string' },
            description: 'Device tags that must all match (values are globs)',
          },
        },
        examples: [{ device: 'greenhouse-*', rule: 'high-temperature' }],
      },
      startsAt: {
        description: `Default now. ${TIME_DESCRIPTION} Or epoch ms as a number.`,
        oneOf: [{ type: 'string' }, { type: 'integer' }],
      },
      endsAt: {
        description: `Exclusive, in the future. ${TIME_DESCRIPTION} Or epoch ms as a number.`,
        oneOf: [{ type: 'string' }, { type: 'integer' }],
      },
      duration: {
        description: 'Instead of endsAt: `30m`, `2h`, `1d`, or milliseconds',
        oneOf: [{ type: 'string' }, { type: 'integer', minimum: 1 }],
        examples: ['2h'],
      },
      comment: { type: 'string', minLength: 1, maxLength: MAX_COMMENT_CHARS },
    },
  },
  response: {
    201: oneSilence('The silence created'),
    400: BODY_BAD_REQUEST,
    409: errorResponse(`Too many silences active or pending at once (${MAX_OPEN_SILENCES})`),
  },
} as const

export const SILENCES_SCHEMA = {
  tags: ['silences'],
  summary: 'Silences, newest first',
  description: `Active, pending and expired ones (kept for ${SILENCE_HISTORY_MS / 86_400_000} days after their end).`,
  querystring: {
    type: 'object',
    properties: {
      state: {
        type: 'string',
        enum: [...SILENCE_STATES],
        description: 'Only silences in this state now; absent: every one kept',
      },
    },
  },
  response: {
    200: {
      description: 'Silences',
      type: 'object',
      required: ['silences'],
      additionalProperties: false,
      properties: { silences: { type: 'array', items: silenceSchema } },
    },
    400: BAD_REQUEST,
  },
} as const

export const SILENCE_EXPIRE_SCHEMA = {
  tags: ['silences'],
  summary: 'Expire a silence now',
  description:
    'Its end becomes now (a pending one never starts); it stays listed as expired. Expiring an ' +
    'expired silence changes nothing.',
  params: idParam('The silence id'),
  response: {
    200: oneSilence('The silence, expired'),
    400: BAD_REQUEST,
    404: errorResponse('No silence with this id'),
  },
} as const

/** Registers the four routes; `now` is the API's clock (for `state`). */
export function registerAlertControlsRoutes(
  app: FastifyInstance,
  controls: AlertControlsService,
  now: () => number,
): void {
  const routeOptions = { bodyLimit: CONTROL_BODY_LIMIT_BYTES } as const

  app.post<{ Params: { id: string } }>(
    '/api/alerts/:id/ack',
    { ...routeOptions, schema: ACK_SCHEMA },
    async (request, reply) => {
      const query = parseNoQuery(request.query)
      if (!query.ok) return sendBadRequest(reply, query.message)
      const id = parseAlertId(request.params.id)
      if (!id.ok) return sendBadRequest(reply, id.message)
      const body = parseAckBody(request.body)
      if (!body.ok) return sendBadRequest(reply, body.message)
      const result = controls.acknowledge(id.value, callerOf(request), body.value.comment)
      if (!result.ok) {
        return result.reason === 'not_found'
          ? sendError(reply, 404, 'not_found', result.message)
          : sendError(reply, 409, 'conflict', result.message)
      }
      return { alert: alertJson(result.alert) } satisfies { alert: AlertJson }
    },
  )

  app.post(
    '/api/silences',
    { ...routeOptions, schema: SILENCE_CREATE_SCHEMA },
    async (request, reply) => {
      const query = parseNoQuery(request.query)
      if (!query.ok) return sendBadRequest(reply, query.message)
      const nowMs = now()
      const input = parseSilenceBody(request.body, nowMs)
      if (!input.ok) return sendBadRequest(reply, input.message)
      const result = controls.createSilence(input.value, callerOf(request))
      if (!result.ok) return sendError(reply, 409, 'conflict', result.message)
      return reply.code(201).send({ silence: silenceJson(result.silence, now()) })
    },
  )

  app.get('/api/silences', { schema: SILENCES_SCHEMA }, async (request, reply) => {
    const query = parseSilencesQuery(request.query)
    if (!query.ok) return sendBadRequest(reply, query.message)
    const nowMs = now()
    return { silences: controls.silences(query.value.state).map((s) => silenceJson(s, nowMs)) }
  })

  app.delete<{ Params: { id: string } }>(
    '/api/silences/:id',
    { schema: SILENCE_EXPIRE_SCHEMA },
    async (request, reply) => {
      const query = parseNoQuery(request.query)
      if (!query.ok) return sendBadRequest(reply, query.message)
      const silence = controls.expireSilence(request.params.id)
      if (silence === undefined) {
        const shown = JSON.stringify(request.params.id.slice(0, 100))
        return sendError(reply, 404, 'not_found', `no silence ${shown}`)
      }
      return { silence: silenceJson(silence, now()) }
    },
  )
}
