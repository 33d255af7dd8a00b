/** Device patterns: an identifier, or a glob over the identifier alphabet with `*` and `?`. */
export const DEVICE_PATTERN = /^[A-Za-z0-9_.*?-]{1,64}$/

export type IdMatcher = (id: string) => boolean

export function isDevicePattern(value: unknown): value is string {
  return typeof value === 'string' && DEVICE_PATTERN.test(value)
}

export function isGlob(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('?')
}

const matchAll: IdMatcher = () => true

/**
 * Compiles one pattern once: `*` is any run of characters (also none), `?` exactly one, everything
 * else literal. A pattern without wildcards stays plain string equality, no regex.
 */
export function compileGlob(pattern: string): IdMatcher {
  if (/^\*+$/.test(pattern)) return matchAll
  if (!isGlob(pattern)) return (id) => id === pattern
  let source = '^'
  for (const ch of pattern) {
    if (ch === '*') source += '.*'
    else if (ch === '?') source += '.'
    else source += ch.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')
  }
  const regex = new RegExp(`${source}$`)
  return (id) => regex.test(id)
}

/**
 * Compiles a list of patterns into one matcher: exact ids go into a Set (one lookup), globs are
 * tried in order. `*` anywhere in the list makes the matcher accept everything.
 */
export function compileDeviceMatcher(patterns: readonly string[]): IdMatcher {
  const exact = new Set<string>()
  const globs: IdMatcher[] = []
  for (const pattern of patterns) {
    if (isGlob(pattern)) {
      const matcher = compileGlob(pattern)
      if (matcher === matchAll) return matchAll
      globs.push(matcher)
    } else {
      exact.add(pattern)
    }
  }
  if (globs.length === 0) {
    if (exact.size === 1) {
      const [only] = exact
      return (id) => id === only
    }
    return (id) => exact.has(id)
  }
  if (exact.size === 0 && globs.length === 1) return globs[0] as IdMatcher
  return (id) => {
    if (exact.has(id)) return true
    for (const glob of globs) if (glob(id)) return true
    return false
  }
}
