/** How much of an untrusted string (client id, username) a log line keeps. */
export const LOG_STRING_MAX_CHARS = 128

/**
 * An untrusted string cut for a log line: a client id or username may be up to 64 KB, and a
 * refused CONNECT costs the sender nothing, so a line keeps its first LOG_STRING_MAX_CHARS
 * characters and says how long the original was (issue 16 point 4a).
 */
export function logSafe(value: string | undefined, maxChars = LOG_STRING_MAX_CHARS) {
  if (value === undefined || value.length <= maxChars) return value
  return `${value.slice(0, maxChars)}…[${value.length} chars]`
}
