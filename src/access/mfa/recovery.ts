/**
 * Recovery codes: 10 one-time codes of 80 random bits, shown once, stored only as SHA-256 hex. Written
 * in Crockford base32 (no I, L, O, U) as four groups of four, and read forgivingly: case, spaces and
 * dashes are ignored and the letters people confuse with digits are mapped to them.
 */
import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../../store/access-sessions.js';

export const RECOVERY_CODE_COUNT = 10;
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** One code: 80 bits as 16 base32 characters, `XXXX-XXXX-XXXX-XXXX`. */
export function newRecoveryCode(): string {
  const bytes = randomBytes(10);
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  let out = '';
  for (let i = 0; i < 16; i++) {
    out = (ALPHABET[Number(bits & 31n)] as string) + out;
    bits >>= 5n;
  }
  return out.match(/.{4}/g)?.join('-') ?? out;
}

export function newRecoveryCodes(n = RECOVERY_CODE_COUNT): string[] {
  return Array.from({ length: n }, newRecoveryCode);
}

/** The canonical form of a typed code, or undefined when it cannot be one. */
export function normalizeRecoveryCode(input: string): string | undefined {
  const c = input
    .toUpperCase()
    .replace(/[\s-]+/g, '')
    .replace(/O/g, '0')
    .replace(/[IL]/g, '1');
  return /^[0-9A-HJKMNP-TV-Z]{16}$/.test(c) ? c : undefined;
}

/** What the store keeps of a code (of its canonical form). */
export function recoveryCodeHash(canonical: string): string {
  return sha256Hex(`nevertrust-recovery:${canonical}`);
}
