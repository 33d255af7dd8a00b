import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { type Alert, SEVERITIES, type Severity } from '../../contract/types.ts'
import { clientErrorStatus, errorHandler, sendBadRequest, sendError } from '../errors.ts'
import { alertSchema, BAD_REQUEST, errorResponse, identifierSchema } from '../openapi.ts'
import { type AlertJson, alertJson } from '../present.ts'
import { parseNoQuery } from '../query-params.ts'

/** One loaded rule as the API shows it. */
export interface RuleView {
  id: string
  kind: string
  severity: Severity
  /** Which devices and metrics the rule looks at, as the engine compiled it. */
  match: unknown
  /** The rule as written in the rules file. */
  definition: Readonly<Record<string, unknown>>
  /** How many of the rule's (rule, device) alerts are firing now. */
  firing: number
}

export type DryRunResult = { ok: true; transitions: Alert[] } | { ok: false; errors: string[] }

/**
 * What the HTTP API needs of the rules: the loaded rule set and a dry run. The gateway builds it
 * from the running engine and `dryRunRule` (src/rules/dry-run.ts); http/ knows no rule code.
 */
export interface RulesView {
  list(): RuleView[]
  /** Validates `rule` (a rules.yaml entry) and `readings`, then runs them through a fresh engine. */
  dryRun(rule: unknown, readings: unknown): Promise<DryRunResult>
}

export interface RulesJson {
  rules: RuleView[]
}

export interface RuleTestJson {
  transitions: AlertJson[]
}

/**
 * A request body of `POST /api/rules/test` larger than this is refused with 413 before it is
 * read. A dry run is synchronous CPU work on the event loop, so its input stays small: 1 MiB is
 * some 15,000 readings, a day of one sensor every six seconds.
 */
export const RULE_TEST_BODY_LIMIT_BYTES = 1_048_576

const RULE_TEST_FIELDS = ['rule', 'readings'] as const

const RULES_UNAVAILABLE = errorResponse('The rule engine is not available (`rules_unavailable`)')

/** OpenAPI description of `GET /api/rules`; it takes no query parameters. */
export const RULES_SCHEMA = {
  tags: ['rules'],
  summary: 'The rules in force',
  description: 'As loaded from the rules file, with how many of their alerts fire now.',
  response: {
    200: {
      description: 'Rules',
      type: 'object',
      required: ['rules'],
      additionalProperties: false,
      properties: {
        rules: {
          type: 'array',
          items: {
            type: 'object',
            required: ['id', 'kind', 'severity', 'match', 'definition', 'firing'],
            additionalProperties: false,
            properties: {
              id: identifierSchema,
              kind: { type: 'string' },
              severity: { type: 'string', enum: [...SEVERITIES] },
              match: { description: 'Which devices and metrics the rule looks at, as compiled' },
              definition: {
                type: 'object',
                additionalProperties: true,
                description: 'The rule as written in the rules file',
              },
              firing: { type: 'integer', description: 'Alerts of the rule firing now' },
            },
          },
        },
      },
    },
    400: BAD_REQUEST,
    503: RULES_UNAVAILABLE,
  },
} as const

/** OpenAPI description of `POST /api/rules/test`; the handler validates the body. */
export const RULE_TEST_SCHEMA = {
  tags: ['rules'],
  summary: 'Dry run: what a rule would publish for given readings',
  description:
    'Validates `rule` exactly as the rules file would take it and runs it over `readings` in a ' +
    'private engine whose clock is reading time. Nothing in the running gateway changes. ' +
    `Content-Type must be application/json; bodies over ${RULE_TEST_BODY_LIMIT_BYTES} bytes are refused.`,
  body: {
    type: 'object',
    required: ['rule', 'readings'],
    additionalProperties: false,
    properties: {
      rule: {
        type: 'object',
        additionalProperties: true,
        description: 'One rule, as an entry of the rules file (id, kind, match, ...)',
        examples: [
          {
            id: 'hot',
            kind: 'threshold',
            match: { metric: 'temperature' },
            above: 30,
            severity: 'major',
          },
        ],
      },
      readings: {
        type: 'array',
        items: {
          type: 'object',
          required: ['deviceId', 'metric', 'value', 'ts'],
          additionalProperties: false,
          properties: {
            deviceId: identifierSchema,
            metric: identifierSchema,
            value: { type: 'number' },
            ts: {
              description: 'Epoch milliseconds, or ISO-8601 with an offset',
              oneOf: [{ type: 'integer' }, { type: 'string', format: 'date-time' }],
            },
            unit: { type: 'string' },
          },
        },
        examples: [
          [{ deviceId: 'dev-1', metric: 'temperature', value: 31, ts: '2026-11-26T10:00:00Z' }],
        ],
      },
    },
  },
  response: {
    200: {
      description: 'The transitions the rule would have published, in order',
      type: 'object',
      required: ['transitions'],
      additionalProperties: false,
      properties: { transitions: { type: 'array', items: alertSchema } },
    },
    400: errorResponse(
      'The body is not valid JSON, or the rule or a reading is invalid: `errors` lists every problem',
    ),
    413: errorResponse('The body is larger than the limit'),
    415: errorResponse('Content-Type is not application/json'),
    503: RULES_UNAVAILABLE,
  },
} as const

/**
 * `GET /api/rules` (the loaded rules and how many of their alerts fire now) and
 * `POST /api/rules/test` (what a rule would have done with given readings, touching nothing
 * live). Without a RulesView both answer 503 `rules_unavailable`.
 */
export function registerRulesRoutes(app: FastifyInstance, rules: RulesView | undefined): void {
  app.get('/api/rules', { schema: RULES_SCHEMA }, async (request, reply) => {
    const query = parseNoQuery(request.query)
    if (!query.ok) return sendBadRequest(reply, query.message)
    if (rules === undefined) return sendRulesUnavailable(reply)
    return { rules: rules.list() } satisfies RulesJson
  })

  app.post(
    '/api/rules/test',
    {
      schema: RULE_TEST_SCHEMA,
      bodyLimit: RULE_TEST_BODY_LIMIT_BYTES,
      // Before the body is read: a form post or a text body is refused without parsing it.
      onRequest: requireJsonContentType,
      errorHandler: ruleTestErrorHandler,
    },
    async (request, reply) => {
      const query = parseNoQuery(request.query)
      if (!query.ok) return sendBadRequest(reply, query.message)
      if (rules === undefined) return sendRulesUnavailable(reply)

      const body: unknown = request.body
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return sendInvalid(reply, [
          `request body: must be a JSON object with "rule" and "readings", got ${jsonType(body)}`,
        ])
      }
      const errors: string[] = []
      for (const key of Object.keys(body)) {
        if (!(RULE_TEST_FIELDS as readonly string[]).includes(key)) {
          errors.push(
            `request body: unknown field ${quote(key)}; known: ${RULE_TEST_FIELDS.join(', ')}`,
          )
        }
      }
      for (const field of RULE_TEST_FIELDS) {
        if (!Object.hasOwn(body, field)) errors.push(`request body: field "${field}" is required`)
      }
      if (Object.hasOwn(body, 'rule') && Object.hasOwn(body, 'readings')) {
        const { rule, readings } = body as Record<(typeof RULE_TEST_FIELDS)[number], unknown>
        const result = await rules.dryRun(rule, readings)
        if (!result.ok) errors.push(...result.errors)
        else if (errors.length === 0) {
          return { transitions: result.transitions.map(alertJson) } satisfies RuleTestJson
        }
      }
      return sendInvalid(reply, errors)
    },
  )
}

function sendRulesUnavailable(reply: FastifyReply): FastifyReply {
  return sendError(reply, 503, 'rules_unavailable', 'the rule engine is not available')
}

/** A 400 listing every problem; `message` is the first and says how many more there are. */
function sendInvalid(reply: FastifyReply, errors: string[]): FastifyReply {
  const first = errors[0] ?? 'invalid rule test request'
  const message = errors.length > 1 ? `${first} (and ${errors.length - 1} more)` : first
  return sendError(reply, 400, 'bad_request', message, errors)
}

async function requireJsonContentType(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const header = request.headers['content-type']
  const mediaType = header?.split(';')[0]?.trim().toLowerCase()
  if (mediaType === 'application/json') return
  const got = header === undefined ? 'none' : quote(header)
  await sendError(
    reply,
    415,
    'unsupported_media_type',
    `content-type must be application/json, got ${got}`,
  )
}

/**
 * Body errors of this route in its own words: the limit in the 413, and `errors` on a 400 (bad
 * JSON) as on every other 400 of the route. Everything else goes to the server's handler.
 */
function ruleTestErrorHandler(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  const status = clientErrorStatus(error)
  if (status === 413) {
    return sendError(
      reply,
      413,
      'payload_too_large',
      `request body is larger than ${RULE_TEST_BODY_LIMIT_BYTES} bytes`,
    )
  }
  if (status === 400 && error instanceof Error) {
    return sendInvalid(reply, [`request body: ${error.message.slice(0, 300)}`])
  }
  return errorHandler(error, request, reply)
}

function jsonType(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return `a ${typeof value}`
}

/** Keys come from the client: cut, so a hostile body cannot blow up the error. */
function quote(raw: string): string {
  return JSON.stringify(raw.length > 64 ? `${raw.slice(0, 64)}...` : raw)
}
