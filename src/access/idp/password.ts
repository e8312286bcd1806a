/**
 * Password hashing for the built-in provider's users: scrypt (node:crypto), a 16-byte random salt,
 * stored self-describing as `scrypt$N$r$p$salt$hash` (base64url) so the cost can rise later without
 * breaking old hashes.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';

/** 2^15 (32 MiB per hash): 239 ms per hash on the 2-core build machine under load, 2^14 took 77 ms. */
export const SCRYPT_N = 2 ** 15;
const R = 8;
const P = 1;
const KEY_LEN = 32;

function scrypt(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    // maxmem: scrypt needs 128·N·r bytes; the default 32 MiB is just short of it at N=2^15.
    scryptCb(password, salt, KEY_LEN, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/**
 * A new hash of `password`.
 *
 * @example
 * const stored = await hashPassword('correct horse'); // 'scrypt$32768$8$1$…$…'
 */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT_N, R, P);
  return ['scrypt', SCRYPT_N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

// Verified against when the user does not exist, so an unknown username costs the same time.
let dummy: Promise<string> | undefined;

/**
 * Whether `password` matches `stored`; with `stored` undefined (no such user) it still spends one
 * scrypt and answers false, so timing does not tell which usernames exist. A malformed hash is false.
 */
export async function verifyPassword(password: string, stored: string | undefined): Promise<boolean> {
  if (stored === undefined) {
    dummy ??= hashPassword(randomBytes(16).toString('hex'));
    await verifyPassword(password, await dummy);
    return false;
  }
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [n, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  // Refuse absurd parameters from a tampered row instead of burning memory.
  if (!(n >= 2 ** 10 && n <= 2 ** 20 && (n & (n - 1)) === 0 && r >= 1 && r <= 32 && p >= 1 && p <= 16)) return false;
  const salt = Buffer.from(parts[4] ?? '', 'base64url');
  const want = Buffer.from(parts[5] ?? '', 'base64url');
  if (salt.length < 16 || want.length !== KEY_LEN) return false;
  const got = await scrypt(password, salt, n, r, p);
  return timingSafeEqual(got, want);
}

/** A strong generated password (for `user add` without one): 24 base64url characters, 144 bits. */
export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}
