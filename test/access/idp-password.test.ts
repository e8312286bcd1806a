/** Password hashing of the built-in provider: format, verification, tampered hashes, unknown users. */
import { describe, expect, it } from 'vitest';
import { hashPassword, SCRYPT_N, verifyPassword } from '../../src/access/idp/index.js';

describe('password hashing', () => {
  it('stores scrypt$N$r$p$salt$hash with a fresh salt and verifies only the right password', async () => {
    const a = await hashPassword('correct horse battery');
    const b = await hashPassword('correct horse battery');
    expect(a).toMatch(new RegExp(`^scrypt\\$${SCRYPT_N}\\$8\\$1\\$[A-Za-z0-9_-]{22}\\$[A-Za-z0-9_-]{43}$`));
    expect(a).not.toBe(b);
    expect(SCRYPT_N).toBeGreaterThanOrEqual(2 ** 14);
    expect(await verifyPassword('correct horse battery', a)).toBe(true);
    expect(await verifyPassword('correct horse batterY', a)).toBe(false);
    expect(await verifyPassword('', a)).toBe(false);
  });

  it('answers false for malformed or tampered hashes instead of throwing or burning memory', async () => {
    const good = await hashPassword('pw pw pw pw pw');
    const parts = good.split('$');
    const tampered = [
      '',
      'plain',
      `bcrypt$${parts.slice(1).join('$')}`,
      ['scrypt', 2 ** 30, ...parts.slice(2)].join('$'),
      ['scrypt', 1000, ...parts.slice(2)].join('$'),
      [...parts.slice(0, 4), 'c2hvcnQ', parts[5]].join('$'),
      [...parts.slice(0, 5), 'AAAA'].join('$'),
    ];
    for (const t of tampered) expect(await verifyPassword('pw pw pw pw pw', t), t).toBe(false);
  });

  it('spends one scrypt for an unknown user too, so timing does not reveal which usernames exist', async () => {
    const stored = await hashPassword('pw pw pw pw pw');
    await verifyPassword('warm up', undefined);
    // Interleaved, so a change in machine load hits both sides alike.
    let known = 0;
    let unknown = 0;
    for (let i = 0; i < 4; i++) {
      let t = performance.now();
      await verifyPassword('wrong password', stored);
      known += performance.now() - t;
      t = performance.now();
      await verifyPassword('wrong password', undefined);
      unknown += performance.now() - t;
    }
    expect(await verifyPassword('anything', undefined)).toBe(false);
    expect(unknown / known).toBeGreaterThan(0.5);
    expect(unknown / known).toBeLessThan(2);
  });
});
