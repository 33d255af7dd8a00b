import type { ChannelKind } from '../../../src/notify/types.ts'
import { describeValue } from '../../../src/rules/describe-value.ts'

export interface HookConfig {
  url: string
  secret?: string
}

/**
 * A small channel kind for the loader and router tests (the built-in kinds are tested on their
 * own): `url` required, `secret` a secret field. Its parse quotes a bad secret back on purpose,
 * as a careless custom kind would, so the tests show the loader redacts it.
 */
export const hookKind: ChannelKind<HookConfig> = {
  kind: 'hook',
  secretFields: ['secret'],
  parse(raw, problems) {
    const known = ['url', 'secret']
    for (const key of Object.keys(raw)) {
      if (!known.includes(key)) problems.push([key, `is not a field of hook`])
    }
    if (typeof raw.url !== 'string' || !/^https?:\/\//.test(raw.url)) {
      problems.push(['url', `must be an http(s) URL, got ${describeValue(raw.url)}`])
    }
    if (raw.secret !== undefined && (typeof raw.secret !== 'string' || raw.secret.length < 16)) {
      problems.push(['secret', `must be 16 characters or more, got ${describeValue(raw.secret)}`])
    } else if (typeof raw.secret === 'string' && raw.secret.includes('"')) {
      problems.push(['secret', `must not hold quotes, got ${describeValue(raw.secret)}`])
    }
    if (problems.length > 0) return null
    return raw.secret === undefined
      ? { url: raw.url as string }
      : { url: raw.url as string, secret: raw.secret as string }
  },
  create(name) {
    return {
      name,
      kind: 'hook',
      deliver: async () => ({ ok: true }),
      close: async () => {},
    }
  },
}

export const TEST_KINDS: ReadonlyMap<string, ChannelKind> = new Map<string, ChannelKind>([
  ['hook', hookKind as ChannelKind],
])
