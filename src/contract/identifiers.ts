/** DESIGN §3: deviceId, metric and ruleId share one alphabet so every id is safe as a topic level. */
export const IDENTIFIER_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/

export function isIdentifier(value: unknown): value is string {
  return typeof value === 'string' && IDENTIFIER_PATTERN.test(value)
}
