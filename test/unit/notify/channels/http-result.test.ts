import { describe, expect, it } from 'vitest'
import {
  httpFailure,
  parseRetryAfterMs,
  redact,
} from '../../../../src/notify/channels/http-result.ts'

const NOW = Date.parse('2026-12-02T13:00:00Z')

describe('HTTP outcome mapping', () => {
  it('Retry-After: delay-seconds or an HTTP-date; anything else is ignored', () => {
    expect(parseRetryAfterMs('120', NOW)).toBe(120_000)
    expect(parseRetryAfterMs(' 0 ', NOW)).toBe(0)
    expect(parseRetryAfterMs('Wed, 02 Dec 2026 13:01:30 GMT', NOW)).toBe(90_000)
    // A date in the past: come back now.
    expect(parseRetryAfterMs('Wed, 02 Dec 2026 12:00:00 GMT', NOW)).toBe(0)
    for (const bad of [null, '', '-5', '1.5', 'soon', '2026-12-02T13:01:30Z', '5 min']) {
      expect(parseRetryAfterMs(bad, NOW), String(bad)).toBeUndefined()
    }
  })

  it('statuses: 408, 429, 5xx retryable; other 4xx and 3xx permanent; Retry-After only on 429/503', () => {
    const outcome = (status: number, retryAfter: string | null = '9') =>
      httpFailure(status, '', retryAfter, '', 'http://h/x', NOW)
    expect(outcome(408)).toEqual({ ok: false, permanent: false, error: 'HTTP 408 from http://h/x' })
    expect(outcome(429)).toMatchObject({ permanent: false, retryAfterMs: 9000 })
    expect(outcome(503)).toMatchObject({ permanent: false, retryAfterMs: 9000 })
    expect(outcome(503, null)).not.toHaveProperty('retryAfterMs')
    expect(outcome(500)).not.toHaveProperty('retryAfterMs')
    expect(outcome(504)).toMatchObject({ permanent: false })
    for (const status of [400, 401, 403, 404, 410, 413, 422, 301, 302, 307]) {
      expect(outcome(status), String(status)).toMatchObject({ ok: false, permanent: true })
    }
  })

  it('a long answer is cut and flattened in the error text', () => {
    const result = httpFailure(
      500,
      'Internal Server Error',
      null,
      `line one\n${'x'.repeat(500)}`,
      't',
      NOW,
    )
    expect(result.ok).toBe(false)
    const { error } = result as { error: string }
    expect(error.startsWith('HTTP 500 Internal Server Error from t: line one xxx')).toBe(true)
    expect(error.endsWith('...')).toBe(true)
    expect(error.length).toBeLessThan(260)
  })

  it('redact replaces every occurrence of every secret, the longer first', () => {
    expect(redact('tok=abcd1234 and abcd1234xyz', ['abcd1234', 'abcd1234xyz'])).toBe(
      'tok=[redacted] and [redacted]',
    )
    // Too short to be a secret worth cutting out of text (a 1-char header value).
    expect(redact('a b c', ['a'])).toBe('a b c')
  })
})
