/** Placeholders a rule's `message` template may use; the engine fills them from the alert. */
export const MESSAGE_PLACEHOLDERS = [
  'deviceId',
  'metric',
  'value',
  'threshold',
  'ruleId',
  'state',
  'severity',
  'kind',
] as const

export type MessagePlaceholder = (typeof MESSAGE_PLACEHOLDERS)[number]

const PLACEHOLDER = /\{([^{}]*)\}/g

/**
 * A number as people read it: 12 significant digits, so float noise (26.1 - 21 = 5.100000000000001)
 * shows as 5.1. Messages only; alert values keep full precision unless a kind rounds them.
 */
export function formatNumber(value: number): string {
  if (Number.isInteger(value) || !Number.isFinite(value)) return String(value)
  return String(Number(value.toPrecision(12)))
}

/**
 * Fills `{name}` placeholders; an unknown name is left as written. Notification templates pass
 * more names (`{count}`, `{message}`: src/notify/templates.ts).
 */
export function renderMessage<Name extends string = MessagePlaceholder>(
  template: string,
  values: Readonly<Partial<Record<Name, string | number>>>,
): string {
  return template.replace(PLACEHOLDER, (whole, name: string) => {
    const value = values[name as Name]
    if (value === undefined) return whole
    return typeof value === 'number' ? formatNumber(value) : value
  })
}

/**
 * Problems of a template (not text, empty, unknown placeholders); empty when it is fine. `known`:
 * the placeholders allowed, the rule message ones unless a notification template asks for more.
 */
export function templateProblems(
  value: unknown,
  describe: (v: unknown) => string,
  known: readonly string[] = MESSAGE_PLACEHOLDERS,
): string[] {
  if (typeof value !== 'string' || value.trim() === '') {
    return [`must be a non-empty text, got ${describe(value)}`]
  }
  const problems: string[] = []
  for (const [, name] of value.matchAll(PLACEHOLDER)) {
    if (!known.includes(name as string)) {
      problems.push(`unknown placeholder {${name}}; known: ${known.map((p) => `{${p}}`).join(' ')}`)
    }
  }
  return problems
}
