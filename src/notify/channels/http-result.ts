import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { DeliveryResult } from '../types.ts'

/**
 * What the HTTP channels (webhook, slack) share: one POST with the attempt's AbortSignal, and the
 * mapping of its outcome to a DeliveryResult (README "Notifications > Channels"): 2xx delivered;
 * 408, 429 and 5xx retryable, with the receiver's `Retry-After` on 429/503; any other answer
 * permanent; network errors and an aborted attempt (timeout, shutdown) retryable. Never throws.
 */

/** How much of a refusal's body an error text quotes (Slack says why in it: `invalid_payload`). */
const BODY_SNIPPET_CHARS = 200
/** Bytes read of a response body at most: a receiver cannot make us buffer a large answer. */
const MAX_BODY_BYTES = 4096
const REDACTED = '[redacted]'

/**
 * Milliseconds a `Retry-After` value asks for: delay-seconds or an HTTP-date (RFC 9110 §10.2.3);
 * undefined when absent or unreadable. A date in the past is 0.
 */
export function parseRetryAfterMs(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  // An HTTP-date always names a weekday and a GMT zone; Date.parse would also take '5 min'.
  if (!/^[A-Za-z]{3},? .*GMT$/.test(text)) return undefined
  const at = Date.parse(text)
  if (!Number.isFinite(at)) return undefined
  return Math.max(0, at - nowMs)
}

/** Whether a status is worth another try: timeouts, rate limits and server errors. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500
}

/** Replaces every secret (longest first, so a secret containing another is cut whole). */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text
  const sorted = secrets.filter((s) => s.length >= 4).sort((a, b) => b.length - a.length)
  for (const secret of sorted) out = out.split(secret).join(REDACTED)
  return out
}

export interface PostJsonOptions {
  /** The URL posted to. */
  url: string
  /** How error texts name the receiver: the URL when it holds no secret, else its origin. */
  target: string
  headers: Readonly<Record<string, string>>
  body: string
  signal: AbortSignal
  /** Strings that must never appear in an error text (secret, header values, the URL). */
  secrets: readonly string[]
}

/** At most MAX_BODY_BYTES of an answer's body; the rest is not read (the socket is let go). */
function readSnippet(response: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = () => {
      response.removeAllListeners('data')
      resolve(Buffer.concat(chunks).toString('utf8', 0, Math.min(size, MAX_BODY_BYTES)))
    }
    response.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      size += chunk.length
      // A long answer is cut off here: its connection is closed rather than read to the end.
      if (size >= MAX_BODY_BYTES) {
        response.destroy()
        done()
      }
    })
    response.on('end', done)
    // A body cut off mid-way changes nothing about the status we already have.
    response.on('error', done)
    response.on('close', done)
  })
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > BODY_SNIPPET_CHARS ? `${flat.slice(0, BODY_SNIPPET_CHARS)}...` : flat
}

/** The text of a network error: Node's names its code (`connect ECONNREFUSED 127.0.0.1:9`). */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = (err as NodeJS.ErrnoException).code
  return code !== undefined && !err.message.includes(code) ? `${code} ${err.message}` : err.message
}

function abortReason(signal: AbortSignal): string {
  const reason: unknown = signal.reason
  if (reason instanceof Error) return reason.message || reason.name
  return reason === undefined ? 'aborted' : String(reason)
}

/** The outcome of an HTTP answer that was not delivered, as a DeliveryResult. */
export function httpFailure(
  status: number,
  statusText: string,
  retryAfter: string | null,
  bodyText: string,
  target: string,
  nowMs: number,
): DeliveryResult {
  const said = snippet(bodyText)
  const error = `HTTP ${status}${statusText === '' ? '' : ` ${statusText}`} from ${target}${said === '' ? '' : `: ${said}`}`
  if (status >= 300 && status < 400) {
    // Redirects are not followed: a 301/302 turns a POST into a GET on the way.
    return {
      ok: false,
      permanent: true,
      error: `${error} (redirects are not followed: set the url to where it points)`,
    }
  }
  if (!isRetryableStatus(status)) return { ok: false, permanent: true, error }
  const result: DeliveryResult = { ok: false, permanent: false, error }
  if (status === 429 || status === 503) {
    const retryAfterMs = parseRetryAfterMs(retryAfter, nowMs)
    if (retryAfterMs !== undefined) result.retryAfterMs = retryAfterMs
  }
  return result
}

/**
 * Connections kept open between deliveries, one pool per protocol. Node's own request costs a
 * quarter of the CPU of global fetch (undici and WHATWG streams): 84-175 us against 338-573 us a
 * POST to a local receiver, client and receiver together (one process, 3,000 requests). An agent
 * drops an idle connection before the receiver's announced `Keep-Alive: timeout` runs out.
 */
const AGENTS = {
  'http:': new HttpAgent({ keepAlive: true }),
  'https:': new HttpsAgent({ keepAlive: true }),
} as const

/** One POST, answered with its status, headers and the first bytes of its body. */
function post(
  url: URL,
  headers: Readonly<Record<string, string>>,
  body: string,
  signal: AbortSignal,
): Promise<{ response: IncomingMessage; bodyText: string }> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    const agent = url.protocol === 'https:' ? AGENTS['https:'] : AGENTS['http:']
    const req = send(
      url,
      {
        method: 'POST',
        agent,
        signal,
        headers: {
          ...headers,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
        },
      },
      (response) => {
        readSnippet(response).then((bodyText) => resolve({ response, bodyText }), reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/** POSTs a JSON body once and maps the outcome; never throws. Redirects are not followed. */
export async function postJson(options: PostJsonOptions): Promise<DeliveryResult> {
  const { signal, secrets, target } = options
  let answer: { response: IncomingMessage; bodyText: string }
  try {
    if (signal.aborted) throw signal.reason
    answer = await post(new URL(options.url), options.headers, options.body, signal)
  } catch (err) {
    const error = signal.aborted
      ? `no answer from ${target} before the attempt was aborted (${abortReason(signal)})`
      : `cannot reach ${target}: ${describeError(err)}`
    return { ok: false, permanent: false, error: redact(error, secrets) }
  }
  const { response, bodyText } = answer
  const status = response.statusCode ?? 0
  if (status >= 200 && status < 300) return { ok: true }
  const retryAfter = response.headers['retry-after']
  const result = httpFailure(
    status,
    response.statusMessage ?? '',
    typeof retryAfter === 'string' ? retryAfter : null,
    bodyText,
    target,
    Date.now(),
  )
  if (!result.ok) result.error = redact(result.error, secrets)
  return result
}

/**
 * A notification the channel cannot turn into a request (a malformed one from the outbox): the
 * same stored notification would fail the same way on every attempt, so it is permanent.
 */
export function unbuildable(err: unknown): DeliveryResult {
  const message = err instanceof Error ? err.message : String(err)
  return { ok: false, permanent: true, error: `cannot build the message: ${message}` }
}

/** `https://host:port` of a URL: how an error names a receiver whose URL is a secret. */
export function originOf(url: string): string {
  return new URL(url).origin
}
