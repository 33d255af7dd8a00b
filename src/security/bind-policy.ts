import { isIP } from 'node:net'

/**
 * Safe defaults, Mosquitto 2 style (DESIGN §8): a gateway without credentials serves loopback
 * only. Listening on any other address needs credentials in the registry (then every MQTT client
 * and every HTTP API call authenticates), or ALLOW_ANONYMOUS_PUBLIC=true, which is logged loudly.
 * Checked once at start, before anything listens.
 */
export interface Listener {
  /** The environment variable that sets the address, named in the refusal (MQTT_HOST). */
  variable: string
  host: string
}

export type AuthMode =
  /** Credentials configured: every client authenticates, on any address. */
  | 'authentication-required'
  /** No credentials, every listener on loopback: anonymous clients, from this machine only. */
  | 'anonymous-loopback'
  /** No credentials, ALLOW_ANONYMOUS_PUBLIC=true and a listener off loopback. */
  | 'anonymous-public'

export type BindDecision =
  | { ok: true; mode: AuthMode; message: string; publicListeners: readonly Listener[] }
  | { ok: false; message: string }

export const FIX_HINT =
  'configure device credentials (npm run device:add) or set ALLOW_ANONYMOUS_PUBLIC=true'

/**
 * Whether `host` is a loopback address: 127.0.0.0/8 (also as ::ffff:127.x.y.z), ::1, or the name
 * localhost. `0.0.0.0`, `::` (every interface) and any other name are not.
 */
export function isLoopbackHost(host: string): boolean {
  let h = host.trim().toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h === 'localhost' || h.endsWith('.localhost')) return true
  if (h.startsWith('::ffff:') && isIP(h.slice(7)) === 4) h = h.slice(7)
  const version = isIP(h)
  if (version === 4) return h.split('.')[0] === '127'
  if (version === 6) return /^(0{0,4}:){2,7}0{0,3}1$|^::1$/.test(h)
  return false
}

export function checkBindPolicy(options: {
  listeners: readonly Listener[]
  hasCredentials: boolean
  allowAnonymousPublic: boolean
}): BindDecision {
  const publicListeners = options.listeners.filter((l) => !isLoopbackHost(l.host))
  if (options.hasCredentials) {
    return {
      ok: true,
      mode: 'authentication-required',
      message: 'authentication required',
      publicListeners,
    }
  }
  if (publicListeners.length === 0) {
    return {
      ok: true,
      mode: 'anonymous-loopback',
      message: 'anonymous clients allowed: loopback only',
      publicListeners,
    }
  }
  const named = publicListeners.map((l) => `${l.variable}=${l.host}`).join(', ')
  if (options.allowAnonymousPublic) {
    return {
      ok: true,
      mode: 'anonymous-public',
      message: `anonymous clients allowed on a non-loopback address (${named}) because ALLOW_ANONYMOUS_PUBLIC=true: anyone who can reach it can publish readings and read everything`,
      publicListeners,
    }
  }
  return {
    ok: false,
    message: `${named}: refusing to listen beyond loopback without credentials (anyone who can reach it could publish readings and read everything): ${FIX_HINT}, or listen on 127.0.0.1`,
  }
}
