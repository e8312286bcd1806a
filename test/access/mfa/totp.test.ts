/** TOTP (RFC 6238) through our module: the Appendix B vectors, matching, the code format and the URI. */
import { describe, expect, it } from 'vitest';
import {
  matchTotp,
  normalizeTotpCode,
  TOTP_SECRET_BYTES,
  newTotpSecret,
  toBase32,
  totpCode,
  totpStep,
  totpUri,
} from '../../../src/access/mfa/index.js';

// RFC 6238 Appendix B, the SHA-1 rows: secret "12345678901234567890", 8 digits.
const secret = Buffer.from('12345678901234567890', 'ascii');
const vectors: Array<[number, string]> = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];

describe('TOTP', () => {
  it.each(vectors)('RFC 6238 Appendix B: T=%i gives %s', (t, code) => {
    const at = t * 1000;
    expect(totpCode(secret, totpStep(at), 8)).toBe(code);
    expect(matchTotp(secret, code, at, { digits: 8 })).toBe(totpStep(at));
    // The 6-digit code is the same HOTP value, truncated to 6 digits.
    expect(totpCode(secret, totpStep(at))).toBe(code.slice(2));
  });

  it('matches ±1 step, not two steps away, and names the step matched', () => {
    const at = 1_700_000_000_000;
    const now = totpStep(at);
    for (const d of [-1, 0, 1]) expect(matchTotp(secret, totpCode(secret, now + d), at)).toBe(now + d);
    for (const d of [-2, 2]) expect(matchTotp(secret, totpCode(secret, now + d), at)).toBeUndefined();
    expect(matchTotp(secret, '12345', at)).toBeUndefined();
    expect(matchTotp(secret, '１２３４５６', at)).toBeUndefined();
  });

  it('takes exactly six digits once spaces are removed', () => {
    expect(normalizeTotpCode('287 082')).toBe('287082');
    expect(normalizeTotpCode(' 287082\n')).toBe('287082');
    for (const bad of ['', '28708', '2870821', '28708a', '-28708', '٢٨٧٠٨٢', '287082 1', '+287082', '0x1234']) {
      expect(normalizeTotpCode(bad)).toBeUndefined();
    }
  });

  it('makes 20-byte secrets and the otpauth URI apps scan', () => {
    const s = newTotpSecret();
    expect(s).toHaveLength(TOTP_SECRET_BYTES);
    expect(newTotpSecret().equals(s)).toBe(false);
    expect(toBase32(secret)).toBe('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
    expect(totpUri('Acme Corp', 'alice@example.com', secret)).toBe(
      'otpauth://totp/Acme%20Corp:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Corp&algorithm=SHA1&digits=6&period=30',
    );
  });
});
