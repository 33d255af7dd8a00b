/**
 * The dashboard's app token (README "Who may do what (HTTP)"). While the gateway requires
 * authentication, every API call needs `Authorization: Bearer <appId>.<secret>` and the live link
 * logs in with username appId and password secret. The page asks for the token only after the
 * gateway said so (a 401, or the live link refused as not authorized), and keeps it in
 * sessionStorage: this tab only, gone when the tab closes or on "Sign out". Never in the URL, a
 * cookie or localStorage.
 */

const STORAGE_KEY = 'sensor-gateway.token'
/** The gateway's ids (src/contract/identifiers.ts). */
const APP_ID = /^[A-Za-z0-9_.-]{1,64}$/
/** Printable ASCII, so it is valid in a header; the gateway's own secrets are base64url. */
const SECRET = /^[\x21-\x7e]+$/

/**
 * `<appId>.<secret>` as typed or pasted -> its parts, or null when it is not that. Takes the
 * whole header line `npm run app:add` prints (`Authorization: Bearer <appId>.<secret>`) as well.
 * The last `.` separates the two, as on the gateway (an app id may contain dots).
 *
 * @param {string} text
 * @returns {{ appId: string, secret: string, token: string } | null}
 */
export function parseToken(text) {
  const token = text
    .trim()
    .replace(/^authorization:\s*/i, '')
    .replace(/^bearer\s+/i, '')
  const dot = token.lastIndexOf('.')
  if (dot <= 0) return null
  const appId = token.slice(0, dot)
  const secret = token.slice(dot + 1)
  if (!APP_ID.test(appId) || !SECRET.test(secret)) return null
  return { appId, secret, token }
}

/** The token of this tab, or null. Storage that is not there (a locked-down browser): none. */
export function storedToken() {
  try {
    const text = sessionStorage.getItem(STORAGE_KEY)
    return text === null ? null : parseToken(text)
  } catch {
    return null
  }
}

/** @param {{ token: string }} token */
export function storeToken(token) {
  try {
    sessionStorage.setItem(STORAGE_KEY, token.token)
  } catch {
    // Without storage the token lasts as long as the page: still signed in until a reload.
  }
}

export function forgetToken() {
  try {
    sessionStorage.removeItem(STORAGE_KEY)
  } catch {
    // Nothing was stored.
  }
}
