import { createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto'

/**
 * Secrets of devices and apps (DESIGN §8): generated at random, stored only as a scrypt hash in
 * the registry file, compared in constant time.
 *
 * Stored form: `scrypt$N$r$p$salt$hash`, salt and hash in base64url, the cost parameters inside
 * the string so they can be raised later without invalidating existing entries. Secrets are 32
 * random bytes (256 bits), so the hash does not need to slow down a dictionary attack the way a
 * human password's would; N = 2^14 (about 40 ms and 16 MiB per check) still makes a stolen
 * registry file useless for guessing while keeping a fleet's reconnect affordable.
 */
export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number
  /** Block size. */
  r: number
  /** Parallelism. */
  p: number
}

export interface SecretHash extends ScryptParams {
  salt: Buffer
  key: Buffer
  /** The stored text, as read. */
  text: string
}

export const DEFAULT_SCRYPT: Readonly<ScryptParams> = Object.freeze({ N: 16_384, r: 8, p: 1 })
const SECRET_BYTES = 32
const SALT_BYTES = 16
const KEY_BYTES = 32
const PREFIX = 'scrypt'
/** Bounds on what a registry file may ask for: enough headroom, no 4 GiB allocations. */
const MAX_N = 1 << 20
const MAX_R = 32
const MAX_P = 16
const BASE64URL = /^[A-Za-z0-9_-]+$/

/** A new secret: 32 random bytes as base64url (43 characters, no `.`, safe in a Bearer token). */
export function generateSecret(): string {
  return randomBytes(SECRET_BYTES).toString('base64url')
}

function derive(secret: Buffer, salt: Buffer, params: ScryptParams, keyBytes: number) {
  return new Promise<Buffer>((resolve, reject) => {
    // scrypt needs 128 * N * r bytes; the default maxmem (32 MiB) is too small above N = 2^14.
    const maxmem = 256 * params.N * params.r + 1024 * 1024
    scrypt(secret, salt, keyBytes, { ...params, maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    )
  })
}

/** Hashes a secret with a fresh random salt; the result is what the registry file stores. */
export async function hashSecret(
  secret: string,
  params: ScryptParams = DEFAULT_SCRYPT,
): Promise<string> {
  const checked = checkParams(params)
  if (checked !== null) throw new Error(checked)
  const salt = randomBytes(SALT_BYTES)
  const key = await derive(Buffer.from(secret, 'utf8'), salt, params, KEY_BYTES)
  return [
    PREFIX,
    params.N,
    params.r,
    params.p,
    salt.toString('base64url'),
    key.toString('base64url'),
  ].join('$')
}

function checkParams({ N, r, p }: ScryptParams): string | null {
  if (!Number.isInteger(N) || N < 2 || N > MAX_N || (N & (N - 1)) !== 0) {
    return `N must be a power of two from 2 to ${MAX_N}, got ${N}`
  }
  if (!Number.isInteger(r) || r < 1 || r > MAX_R) return `r must be 1-${MAX_R}, got ${r}`
  if (!Number.isInteger(p) || p < 1 || p > MAX_P) return `p must be 1-${MAX_P}, got ${p}`
  return null
}

export type ParsedSecretHash = { ok: true; hash: SecretHash } | { ok: false; message: string }

/**
 * Reads a stored hash. The message completes "secret ..." and never repeats the text: a
 * plain secret pasted into the file by mistake must not end up in a log.
 */
export function parseSecretHash(text: unknown): ParsedSecretHash {
  const plain = {
    ok: false as const,
    message: `must be a hash written by npm run device:add or app:add (${PREFIX}$N$r$p$salt$hash); plain secrets are not accepted`,
  }
  if (typeof text !== 'string') return plain
  const parts = text.split('$')
  if (parts.length !== 6 || parts[0] !== PREFIX) return plain
  const [, n, r, p, salt, key] = parts as [string, string, string, string, string, string]
  const params = { N: Number(n), r: Number(r), p: Number(p) }
  const problem = checkParams(params)
  if (problem !== null) return { ok: false, message: `has bad scrypt parameters: ${problem}` }
  if (!BASE64URL.test(salt) || !BASE64URL.test(key)) {
    return { ok: false, message: 'has a salt or hash that is not base64url' }
  }
  const saltBytes = Buffer.from(salt, 'base64url')
  const keyBytes = Buffer.from(key, 'base64url')
  if (saltBytes.length < 8 || keyBytes.length < 16) {
    return { ok: false, message: 'has a salt under 8 bytes or a hash under 16 bytes' }
  }
  return { ok: true, hash: { ...params, salt: saltBytes, key: keyBytes, text } }
}

/**
 * Whether `secret` is the one `hash` was made from. The derived key is compared with
 * timingSafeEqual, so the time taken says nothing about how much of it matched.
 */
export async function verifySecret(secret: string | Buffer, hash: SecretHash): Promise<boolean> {
  const given = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret
  const derived = await derive(given, hash.salt, hash, hash.key.length)
  return timingSafeEqual(derived, hash.key)
}

export interface SecretVerifier {
  /**
   * Checks a principal's secret. `hash` undefined (unknown id, or an entry without a secret)
   * still costs one scrypt run against a dummy hash, so the answer's timing does not tell
   * which ids exist; it is always false.
   */
  verify(
    principalId: string,
    secret: string | Buffer,
    hash: SecretHash | undefined,
  ): Promise<boolean>
}

/**
 * A verifier that remembers the last secret each principal proved, as a keyed digest (HMAC with
 * a per-process random key: nothing reversible is kept). A device that reconnects, or an app
 * sending its token with every HTTP request, then costs one HMAC instead of one scrypt run. The
 * cache holds at most one entry per registered principal, and registry entries are fixed until
 * a restart, so it needs no eviction.
 */
export function createSecretVerifier(): SecretVerifier {
  const processKey = randomBytes(32)
  const proven = new Map<string, Buffer>()
  const dummy: SecretHash = {
    ...DEFAULT_SCRYPT,
    salt: randomBytes(SALT_BYTES),
    key: randomBytes(KEY_BYTES),
    text: '',
  }
  const digest = (id: string, hash: SecretHash, secret: Buffer) =>
    createHmac('sha256', processKey)
      .update(id)
      .update('\u0000')
      .update(hash.text)
      .update('\u0000')
      .update(secret)
      .digest()

  return {
    async verify(principalId, secret, hash) {
      const given = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret
      if (hash === undefined) {
        await verifySecret(given, dummy)
        return false
      }
      const mine = digest(principalId, hash, given)
      const known = proven.get(principalId)
      if (known !== undefined && timingSafeEqual(known, mine)) return true
      const ok = await verifySecret(given, hash)
      if (ok) proven.set(principalId, mine)
      return ok
    },
  }
}
