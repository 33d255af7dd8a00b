const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/

/** Parses `250ms`, `30s`, `5m`, `1.5h`, `7d`, `2w` into milliseconds; null when malformed. */
export function parseDurationMs(text: string): number | null {
  const match = DURATION.exec(text.trim())
  if (!match) return null
  const amount = Number(match[1])
  const unit = UNIT_MS[match[2] as string] as number
  const ms = amount * unit
  return Number.isFinite(ms) ? Math.round(ms) : null
}

/** Accepts a number of milliseconds or a duration string: what YAML files and env vars hold. */
export function toDurationMs(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : null
  // An environment variable is always text: `300000` there means 300000 ms, as in YAML.
  if (typeof value === 'string') {
    return /^\s*\d+\s*$/.test(value) ? Number(value) : parseDurationMs(value)
  }
  return null
}
