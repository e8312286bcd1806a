/** The MFA service's TOTP path on a real store: enrollment, one-time codes across proxies, lockout. */
import { describe, expect, it } from 'vitest';
import { MfaError, createMfaService } from '../../../src/access/mfa/index.js';
import { alice, bob, type Harness, harness } from './harness.js';
import { code } from './rfc6238.js';
import { createTestDatabase } from '../../support/postgres.js';

const IP = '203.0.113.7';

/** Alice with a confirmed TOTP factor; returns its base32 secret. */
async function enrolled(h: Harness): Promise<string> {
  const mfa = h.service();
  const t = await mfa.beginTotp(alice, 'phone');
  expect(await mfa.confirmTotp(alice, t.factorId, code(t.secret, h.clock.now), IP)).toMatchObject({ ok: true });
  h.clock.now += 30_000;
  return t.secret;
}

describe('MFA service: TOTP', () => {
  it('enrolls with a first valid code; the secret is sealed at rest; the URI and QR code carry it', async () => {
    const h = await harness();
    const mfa = h.service({ totpIssuer: 'Acme' });
    const t = await mfa.beginTotp(alice, '  phone ');
    expect(t.uri).toBe(`otpauth://totp/Acme:alice?secret=${t.secret}&issuer=Acme&algorithm=SHA1&digits=6&period=30`);
    expect(t.secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(t.qrSvg).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
    expect(await mfa.factors(alice)).toMatchObject([{ id: t.factorId, kind: 'totp', name: 'phone', confirmed: false }]);
    const row = await h.store.db.selectFrom('mfa_factors').selectAll().executeTakeFirstOrThrow();
    expect(row.secret).not.toContain(t.secret);
    expect(JSON.parse(row.secret as string)).toMatchObject({ alg: 'A256GCM', kekId: h.kek.id });
    // A pending factor does not verify; a wrong first code does not confirm it.
    expect(await mfa.verifyTotp(alice, code(t.secret, h.clock.now), IP)).toMatchObject({
      ok: false,
      reason: 'no_factor',
    });
    expect(await mfa.confirmTotp(alice, t.factorId, '000000', IP)).toMatchObject({ ok: false });
    expect(await mfa.confirmTotp(bob, t.factorId, code(t.secret, h.clock.now), IP)).toMatchObject({
      ok: false,
      reason: 'unknown_factor',
    });
    h.clock.now += 30_000;
    const ok = await mfa.confirmTotp(alice, t.factorId, code(t.secret, h.clock.now), IP);
    expect(ok).toEqual({ ok: true, methods: ['otp'], factorId: t.factorId });
    expect((await mfa.factors(alice))[0]).toMatchObject({ confirmed: true, lastUsedAt: h.clock.now });
    expect(h.events.filter((e) => e.kind === 'mfa.enroll').map((e) => e.outcome)).toContain('allow');
    await expect(mfa.beginTotp(alice, '')).rejects.toBeInstanceOf(MfaError);
    await expect(mfa.beginTotp(alice, 'a\u0007b')).rejects.toBeInstanceOf(MfaError);
  });

  it.each(['sqlite', 'postgres'])(
    'accepts a code once, even through a second proxy on the same store (%s); ±1 step yes, 2 steps no',
    async (engine) => {
      const h = await harness(engine === 'postgres' ? await createTestDatabase() : undefined);
      const secret = await enrolled(h);
      // Generous limits: this test is about replays, not lockout.
      const lax = { max: 100, windowMs: 60_000, lockMs: 1000 };
      const proxyA = h.service({ attempts: { user: lax, ip: lax } });
      const proxyB = h.service({ attempts: { user: lax, ip: lax } });
      const c = code(secret, h.clock.now);
      const [a, b] = await Promise.all([proxyA.verifyTotp(alice, c, IP), proxyB.verifyTotp(alice, c, IP)]);
      expect([a.ok, b.ok].filter(Boolean)).toHaveLength(1);
      expect(await proxyB.verifyTotp(alice, c, IP)).toMatchObject({ ok: false, reason: 'replayed' });
      expect(await proxyA.verifyTotp(alice, c, IP)).toMatchObject({ ok: false, reason: 'replayed' });
      // An older step than the last one accepted is refused, even inside the window.
      h.clock.now += 30_000;
      expect(await proxyA.verifyTotp(alice, code(secret, h.clock.now, -1), IP)).toMatchObject({ reason: 'replayed' });
      h.clock.now += 120_000;
      expect(await proxyA.verifyTotp(alice, code(secret, h.clock.now, -2), IP)).toMatchObject({
        reason: 'invalid_code',
      });
      expect(await proxyA.verifyTotp(alice, code(secret, h.clock.now, 2), IP)).toMatchObject({
        reason: 'invalid_code',
      });
      expect(await proxyA.verifyTotp(alice, code(secret, h.clock.now, -1), IP)).toMatchObject({ ok: true });
      expect(await proxyA.verifyTotp(alice, code(secret, h.clock.now, 1), IP)).toMatchObject({ ok: true });
      // As apps show it: `123 456`.
      h.clock.now += 60_000;
      expect(await proxyA.verifyTotp(alice, ` ${code(secret, h.clock.now).replace(/(...)/, '$1 ')}`, IP)).toMatchObject(
        {
          ok: true,
        },
      );
      // Bob's identity cannot use Alice's code.
      h.clock.now += 120_000;
      expect(await proxyA.verifyTotp(bob, code(secret, h.clock.now), IP)).toMatchObject({ reason: 'no_factor' });
    },
  );

  it('counts wrong and malformed codes; the 5th failure locks, then even the right code is locked out; the lock expires', async () => {
    const h = await harness();
    const secret = await enrolled(h);
    const mfa = h.service();
    const results = [];
    for (const bad of ['000000', '12345', 'abcdef', '999999', '111111'])
      results.push(await mfa.verifyTotp(alice, bad, IP));
    expect(results.map((r) => (r.ok ? 'ok' : r.reason))).toEqual([
      'invalid_code',
      'malformed',
      'malformed',
      'invalid_code',
      'invalid_code',
    ]);
    expect(results.map((r) => !r.ok && r.locked)).toEqual([false, false, false, false, true]);
    expect(h.events.filter((e) => e.kind === 'mfa.lockout')).toMatchObject([
      { outcome: 'deny', reason: 'user_locked', source: { user: 'alice', ip: IP }, details: { scope: 'user' } },
    ]);
    // A second proxy sees the lock too.
    const other = h.service();
    expect(await other.verifyTotp(alice, code(secret, h.clock.now), IP)).toEqual({
      ok: false,
      reason: 'locked',
      locked: true,
    });
    h.clock.now += 15 * 60_000 - 1;
    expect(await mfa.verifyTotp(alice, code(secret, h.clock.now), IP)).toMatchObject({ reason: 'locked' });
    h.clock.now += 1;
    expect(await mfa.verifyTotp(alice, code(secret, h.clock.now), IP)).toMatchObject({ ok: true });
    // A success clears the person's counter: four more failures do not lock.
    for (let i = 0; i < 4; i++) await mfa.verifyTotp(alice, '000000', IP);
    h.clock.now += 30_000;
    expect(await mfa.verifyTotp(alice, code(secret, h.clock.now), IP)).toMatchObject({ ok: true });
  });

  it('failures outside the window do not add up', async () => {
    const h = await harness();
    await enrolled(h);
    const mfa = h.service();
    for (let i = 0; i < 8; i++) {
      expect(await mfa.verifyTotp(alice, '000000', IP)).toMatchObject({ reason: 'invalid_code', locked: false });
      h.clock.now += 4 * 60_000;
    }
  });

  it('locks an address after 20 failures across people, and limits are configurable', async () => {
    const h = await harness();
    const mfa = h.service();
    let last = { ok: true } as Awaited<ReturnType<typeof mfa.verifyTotp>>;
    for (let i = 0; i < 20; i++) {
      last = await mfa.verifyTotp({ issuer: 'https://idp.example', sub: `p${i}`, user: `p${i}` }, '000000', IP);
    }
    expect(last).toMatchObject({ ok: false, locked: true });
    expect(h.events.filter((e) => e.kind === 'mfa.lockout')).toMatchObject([{ reason: 'address_locked' }]);
    expect(await mfa.verifyTotp(alice, '000000', IP)).toMatchObject({ reason: 'locked' });
    expect(await mfa.verifyTotp(alice, '000000', '198.51.100.1')).toMatchObject({ reason: 'no_factor' });
    const strict = h.service({
      attempts: {
        user: { max: 2, windowMs: 60_000, lockMs: 1000 },
        ip: { max: 100, windowMs: 60_000, lockMs: 1000 },
      },
    });
    await strict.verifyTotp(bob, '1', '198.51.100.2');
    expect(await strict.verifyTotp(bob, '1', '198.51.100.2')).toMatchObject({ locked: true });
  });

  it('refuses TOTP without the sealing key, fails closed on a secret sealed under another key', async () => {
    const h = await harness();
    const secret = await enrolled(h);
    const noKey = createMfaService({ store: h.store, now: () => h.clock.now });
    await expect(noKey.verifyTotp(alice, code(secret, h.clock.now), IP)).rejects.toMatchObject({
      code: 'ERR_MFA_KEY_MISSING',
    });
    await expect(noKey.beginTotp(alice, 'x')).rejects.toMatchObject({ code: 'ERR_MFA_KEY_MISSING' });
    const { Kek } = await import('../../../src/ca/kek.js');
    const { randomBytes } = await import('node:crypto');
    const wrong = h.service({ kek: Kek.fromBytes(randomBytes(32)) });
    await expect(wrong.verifyTotp(alice, code(secret, h.clock.now), IP)).rejects.toThrow();
    expect(await h.service().verifyTotp(alice, code(secret, h.clock.now), IP)).toMatchObject({ ok: true });
  });
});
