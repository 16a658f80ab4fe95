import { randomBytes, scrypt, timingSafeEqual, createHash } from 'node:crypto'

/**
 * Secrets are stored as self-describing scrypt hashes: `scrypt$N$r$p$salt$hash`.
 * Device secrets are random 192-bit tokens, so a modest cost is enough and keeps a
 * reconnect storm of a large fleet affordable; human passwords get the full cost.
 */
export const SCRYPT_COST = { token: 1 << 10, password: 1 << 14 } as const

function scryptAsync (secret: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, 32, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) => err ? reject(err) : resolve(key))
  })
}

export function newSecret (): string {
  return randomBytes(24).toString('base64url')
}

export async function hashSecret (secret: string, N: number = SCRYPT_COST.token): Promise<string> {
  const salt = randomBytes(16)
  const key = await scryptAsync(secret, salt, N, 8, 1)
  return `scrypt$${N}$8$1$${salt.toString('base64')}$${key.toString('base64')}`
}

const DUMMY = `scrypt$${SCRYPT_COST.token}$8$1$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32).toString('base64')}`

/**
 * Constant-time comparison. With no stored hash (unknown identity) it still does the
 * work, so response time does not reveal which identities exist.
 */
export async function verifySecret (secret: string, stored: string | undefined): Promise<boolean> {
  const parts = (stored ?? DUMMY).split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string]
  const expected = Buffer.from(hash, 'base64')
  const key = await scryptAsync(secret, Buffer.from(salt, 'base64'), Number(n), Number(r), Number(p))
  return stored !== undefined && key.length === expected.length && timingSafeEqual(key, expected)
}

/** API keys are high-entropy random tokens: a SHA-256 digest is enough and is cheap per request. */
export function digestToken (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}
