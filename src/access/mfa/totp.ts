/**
 * TOTP (RFC 6238) over otpauth's HOTP: SHA-1, 30-second steps, 6 digits in production, a window of
 * ±1 step. Matching returns the time step the code belongs to, so that the caller can refuse that
 * step (and every older one) from then on: a code is accepted at most once.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { HOTP, Secret } from 'otpauth';

export const TOTP_PERIOD_S = 30;
export const TOTP_DIGITS = 6;
/** Steps accepted either side of the current one (clock drift, a code typed at a step's end). */
export const TOTP_WINDOW = 1;
/** 160 bits, the HMAC-SHA-1 block-friendly size RFC 4226 recommends. */
export const TOTP_SECRET_BYTES = 20;

/** A new random TOTP secret. */
export function newTotpSecret(): Buffer {
  return randomBytes(TOTP_SECRET_BYTES);
}

/** RFC 4648 base32 (no padding), as authenticator apps take it. */
export function toBase32(secret: Uint8Array): string {
  return new Secret({ buffer: Uint8Array.from(secret).buffer }).base32;
}

/** The time step of an instant (epoch ms). */
export function totpStep(atMs: number): number {
  return Math.floor(atMs / 1000 / TOTP_PERIOD_S);
}

/** The code of one time step. `digits` is a parameter for the RFC 6238 vectors; production uses 6. */
export function totpCode(secret: Uint8Array, step: number, digits = TOTP_DIGITS): string {
  return HOTP.generate({
    secret: new Secret({ buffer: Uint8Array.from(secret).buffer }),
    algorithm: 'SHA1',
    digits,
    counter: step,
  });
}

/**
 * A code as typed, or undefined when it is not a code: spaces are removed (apps show `123 456`),
 * then exactly `digits` ASCII digits must remain.
 */
export function normalizeTotpCode(input: string, digits = TOTP_DIGITS): string | undefined {
  const code = input.replace(/\s+/g, '');
  return code.length === digits && /^[0-9]+$/.test(code) ? code : undefined;
}

/**
 * The time step whose code `code` is, within ±`window` steps of `atMs`, or undefined. The current
 * step is tried first, then the previous, then the next; every candidate is compared in constant time.
 *
 * @example
 * const step = matchTotp(secret, '287082', Date.now());
 * if (step !== undefined && (await store.mfa.useTotpStep(factorId, step, Date.now()))) { … }
 */
export function matchTotp(
  secret: Uint8Array,
  code: string,
  atMs: number,
  opts: { digits?: number; window?: number } = {},
): number | undefined {
  const digits = opts.digits ?? TOTP_DIGITS;
  const window = opts.window ?? TOTP_WINDOW;
  if (code.length !== digits || !/^[0-9]+$/.test(code)) return undefined;
  const given = Buffer.from(code, 'ascii');
  const now = totpStep(atMs);
  const order = [0];
  for (let d = 1; d <= window; d++) order.push(-d, d);
  let found: number | undefined;
  for (const d of order) {
    const step = now + d;
    if (step < 0) continue;
    const same = timingSafeEqual(Buffer.from(totpCode(secret, step, digits), 'ascii'), given);
    if (same && found === undefined) found = step;
  }
  return found;
}

/**
 * The `otpauth://` URI an authenticator app scans:
 * `otpauth://totp/<issuer>:<user>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
 */
export function totpUri(issuer: string, user: string, secret: Uint8Array): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(user)}`;
  const q = new URLSearchParams({
    secret: toBase32(secret),
    issuer,
    algorithm: 'SHA1',
    digits: String(TOTP_DIGITS),
    period: String(TOTP_PERIOD_S),
  });
  return `otpauth://totp/${label}?${q.toString().replace(/\+/g, '%20')}`;
}
