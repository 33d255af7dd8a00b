const MAX_TEXT = 40

/** How a bad value appears in an error message: strings quoted (and cut), containers by type. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (typeof value === 'string') {
    const text = value.length > MAX_TEXT ? `${value.slice(0, MAX_TEXT)}...` : value
    return JSON.stringify(text)
  }
  if (Array.isArray(value)) return `a list of ${value.length}`
  if (typeof value === 'object') return 'a mapping'
  return String(value)
}
