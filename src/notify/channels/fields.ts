import { describeValue } from '../../rules/describe-value.ts'
import type { ChannelProblems } from '../types.ts'

/** Field checks and text shapes the built-in channel kinds share. */

export function isMapping(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Names fields a kind does not know: a typo (`header:`) would otherwise be silently ignored. */
export function unknownFields(
  raw: Readonly<Record<string, unknown>>,
  known: readonly string[],
  kind: string,
  problems: ChannelProblems,
  prefix = '',
): void {
  const shown = known.filter((k) => !LOADER_FIELDS.includes(k))
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) {
      problems.push([`${prefix}${key}`, `is not a field of ${kind} (known: ${shown.join(', ')})`])
    }
  }
}

/**
 * An http(s) URL; null after naming the problem. `secret`: the value is not quoted back (a Slack
 * URL is its own credential).
 */
export function parseHttpUrl(
  value: unknown,
  field: string,
  problems: ChannelProblems,
  secret: boolean,
): string | null {
  if (typeof value !== 'string' || value === '') {
    problems.push([field, `is required: an http:// or https:// URL, got ${describeValue(value)}`])
    return null
  }
  const got = secret
    ? 'a string that is not one (not quoted: it is a secret)'
    : describeValue(value)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    problems.push([field, `must be an http:// or https:// URL, got ${got}`])
    return null
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    problems.push([field, `must be an http:// or https:// URL, got the scheme ${url.protocol}`])
    return null
  }
  if (url.username !== '' || url.password !== '') {
    // fetch refuses credentials in a URL; they belong in a header, where they are redacted.
    problems.push([field, 'must not hold credentials (user:password@): put them in headers'])
    return null
  }
  return value
}

/**
 * Fields of every channel that the notifications loader reads itself (`module` for a custom
 * kind); a kind's parse may see them and leaves them alone.
 */
export const LOADER_FIELDS: readonly string[] = ['name', 'kind', 'timeout', 'concurrency', 'module']
