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

async function readSnippet(response: Response): Promise<string> {
  if (response.body === null) return ''
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    while (size < MAX_BODY_BYTES) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      size += value.byteLength
    }
  } catch {
    // A body cut off mid-way changes nothing about the status we already have.
  } finally {
    // Frees the connection without waiting for the rest of a long answer.
    reader.cancel().catch(() => {})
  }
  return Buffer.concat(chunks).toString('utf8', 0, Math.min(size, MAX_BODY_BYTES))
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > BODY_SNIPPET_CHARS ? `${flat.slice(0, BODY_SNIPPET_CHARS)}...` : flat
}

/** The text of a thrown network error: fetch says `fetch failed` and hides the cause's code. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const cause = err.cause
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code
    return code !== undefined && !cause.message.includes(code)
      ? `${err.message}: ${code} ${cause.message}`
      : `${err.message}: ${cause.message}`
  }
  return err.message
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

/** POSTs a JSON body once and maps the outcome; never throws. */
export async function postJson(options: PostJsonOptions): Promise<DeliveryResult> {
  const { signal, secrets, target } = options
  let response: Response
  try {
    response = await fetch(options.url, {
      method: 'POST',
      headers: { ...options.headers, 'content-type': 'application/json' },
      body: options.body,
      signal,
      redirect: 'manual',
    })
  } catch (err) {
    const error = signal.aborted
      ? `no answer from ${target} before the attempt was aborted (${abortReason(signal)})`
      : `cannot reach ${target}: ${describeError(err)}`
    return { ok: false, permanent: false, error: redact(error, secrets) }
  }
  const bodyText = await readSnippet(response)
  if (response.status >= 200 && response.status < 300) {
    return { ok: true }
  }
  const result = httpFailure(
    response.status,
    response.statusText,
    response.headers.get('retry-after'),
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
