/** Recovery codes, removal, enrollment links and the admin functions of the MFA service, on a real store. */
import { describe, expect, it } from 'vitest';
import {
  attemptLimitsSchema,
  createMfaService,
  DEFAULT_ATTEMPT_LIMITS,
  MAX_FACTORS,
  normalizeRecoveryCode,
  recoveryCodeHash,
} from '../../../src/access/mfa/index.js';
import { alice, bob, harness } from './harness.js';
import { code } from './rfc6238.js';

const IP = '192.0.2.10';

describe('MFA service: recovery codes', () => {
  it('makes 10 codes of 80 bits; each works once; a used or foreign one is refused; only hashes are stored', async () => {
    const h = await harness();
    const mfa = h.service();
    const codes = await mfa.newRecoveryCodes(alice);
    expect(codes).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    for (const c of codes) expect(c).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/);
    const rows = await h.store.db.selectFrom('mfa_recovery_codes').selectAll().execute();
    expect(rows).toHaveLength(10);
    const stored = rows.map((r) => r.code_hash).sort();
    expect(stored).toEqual(codes.map((c) => recoveryCodeHash(normalizeRecoveryCode(c) as string)).sort());
    for (const r of rows) {
      expect(r.code_hash).toMatch(/^[0-9a-f]{64}$/);
      for (const c of codes) expect(r.code_hash).not.toContain(c.replace(/-/g, ''));
    }
    const [first, second] = codes as [string, string];
    expect(await mfa.verifyRecoveryCode(bob, first, IP)).toMatchObject({ ok: false, reason: 'invalid_code' });
    expect(await mfa.verifyRecoveryCode(alice, first.toLowerCase().replace(/-/g, ' '), IP)).toEqual({
      ok: true,
      methods: ['mfa'],
    });
    expect(await mfa.verifyRecoveryCode(alice, first, IP)).toMatchObject({ ok: false, reason: 'invalid_code' });
    expect(await mfa.verifyRecoveryCode(alice, 'not a code', IP)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(h.events.find((e) => e.kind === 'mfa.verify' && e.outcome === 'allow')).toMatchObject({
      source: { user: 'alice', ip: IP },
      details: { factor: 'recovery_code', remaining: 9 },
    });
    // A new set replaces the old one.
    await mfa.newRecoveryCodes(alice);
    expect(await mfa.verifyRecoveryCode(alice, second, IP)).toMatchObject({ ok: false });
  });

  it('recovery codes share the attempt limits', async () => {
    const h = await harness();
    const mfa = h.service();
    const [good] = (await mfa.newRecoveryCodes(alice)) as [string];
    for (let i = 0; i < 5; i++) await mfa.verifyRecoveryCode(alice, 'AAAA-AAAA-AAAA-AAAA', IP);
    expect(await mfa.verifyRecoveryCode(alice, good, IP)).toEqual({ ok: false, reason: 'locked', locked: true });
  });
});

describe('MFA service: factors and admin', () => {
  it('removes only the person’s own factors, audited', async () => {
    const h = await harness();
    const mfa = h.service();
    const t = await mfa.beginTotp(alice, 'phone');
    expect(await mfa.removeFactor(bob, t.factorId)).toBe(false);
    expect(await mfa.removeFactor(alice, 'nope')).toBe(false);
    expect(await mfa.removeFactor(alice, t.factorId)).toBe(true);
    expect(await mfa.factors(alice)).toEqual([]);
    expect(h.events.filter((e) => e.kind === 'mfa.remove').map((e) => e.outcome)).toEqual(['deny', 'deny', 'allow']);
  });

  it('bounds the factors of one person', async () => {
    const h = await harness();
    const mfa = h.service();
    for (let i = 0; i < MAX_FACTORS; i++) {
      await h.store.mfa.addFactor({
        id: `f${i}`,
        ...{ issuer: alice.issuer, sub: alice.sub },
        userName: 'alice',
        kind: 'webauthn',
        name: `key ${i}`,
        secret: null,
        credentialId: `cred${i}`,
        publicKey: 'pk',
        counter: 0,
        transports: [],
        aaguid: null,
        createdAt: i,
        confirmedAt: i,
      });
    }
    await expect(mfa.beginTotp(alice, 'one more')).rejects.toMatchObject({ code: 'ERR_MFA_INPUT', status: 400 });
    const rp = { id: 'example.test', origins: ['https://example.test'], name: 'x' };
    await expect(mfa.registrationOptions(alice, 's', rp)).rejects.toMatchObject({ code: 'ERR_MFA_INPUT' });
    expect(await mfa.beginTotp(bob, 'fine')).toMatchObject({ factorId: expect.any(String) });
  });

  it('lists and resets a user without a KEK: factors and codes go, sessions end, audited', async () => {
    const h = await harness();
    const mfa = h.service();
    const t = await mfa.beginTotp(alice, 'phone');
    await mfa.confirmTotp(alice, t.factorId, code(t.secret, h.clock.now), IP);
    await mfa.newRecoveryCodes(alice);
    await mfa.beginTotp(bob, 'bob phone');
    const session = {
      host: 'app.example.test',
      issuer: alice.issuer,
      sub: alice.sub,
      providerSid: null,
      person: '{}',
      tokens: '{}',
      tokenExpiresAt: null,
      createdAt: Date.now(),
      expiresAt: Date.now() + 3_600_000,
      lastSeenAt: Date.now(),
    };
    await h.store.accessSessions.create('cookie-a', { ...session, id: 'sa' });
    await h.store.accessSessions.create('cookie-b', { ...session, id: 'sb', sub: bob.sub });
    const admin = createMfaService({ store: h.store, record: h.record, now: () => h.clock.now });
    const listed = await admin.listByUser('alice');
    expect(listed).toMatchObject([
      { kind: 'totp', name: 'phone', confirmed: true, issuer: alice.issuer, sub: alice.sub },
    ]);
    expect(await admin.resetUser('alice', 'root')).toEqual({ factors: 1, sessions: 1 });
    expect(await admin.listByUser('alice')).toEqual([]);
    expect(await h.store.mfa.countRecoveryCodes(alice)).toBe(0);
    expect((await h.store.accessSessions.findById('sa'))?.endReason).toBe('mfa_reset');
    expect((await h.store.accessSessions.findById('sb'))?.endedAt).toBeNull();
    expect(await admin.listByUser('bob')).toHaveLength(1);
    expect(h.events.find((e) => e.kind === 'mfa.reset')).toMatchObject({
      outcome: 'allow',
      source: { user: 'root' },
      details: { user: 'alice', factors: 1, sessions: 1 },
    });
    await expect(admin.listByUser('')).rejects.toMatchObject({ code: 'ERR_MFA_INPUT' });
  });

  it('enrollment links: hashed, one-time, expire, bound to the user name; made without a KEK', async () => {
    const h = await harness();
    const admin = createMfaService({ store: h.store, record: h.record, now: () => h.clock.now });
    const link = await admin.createEnrollLink('alice', 'root', 3_600_000);
    expect(link.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(link.expiresAt).toBe(h.clock.now + 3_600_000);
    const row = await h.store.db.selectFrom('mfa_enroll_links').selectAll().executeTakeFirstOrThrow();
    expect(row.token_hash).not.toContain(link.token);
    expect(row).toMatchObject({ user_name: 'alice', created_by: 'root' });
    const proxy = h.service();
    expect(await proxy.checkEnrollLink(link.token, 'bob')).toBe(false);
    expect(await proxy.consumeEnrollLink(link.token, 'bob')).toBe(false);
    expect(await proxy.checkEnrollLink(`${link.token}x`, 'alice')).toBe(false);
    expect(await proxy.checkEnrollLink(link.token, 'alice')).toBe(true);
    expect(await proxy.consumeEnrollLink(link.token, 'alice')).toBe(true);
    expect(await proxy.consumeEnrollLink(link.token, 'alice')).toBe(false);
    expect(await proxy.checkEnrollLink(link.token, 'alice')).toBe(false);
    const late = await admin.createEnrollLink('alice', 'root', 1000);
    h.clock.now += 1000;
    expect(await proxy.checkEnrollLink(late.token, 'alice')).toBe(false);
    expect(await proxy.consumeEnrollLink(late.token, 'alice')).toBe(false);
    for (const ttl of [0, -1, 1.5, 31 * 86_400_000]) {
      await expect(admin.createEnrollLink('alice', 'root', ttl)).rejects.toMatchObject({ code: 'ERR_MFA_INPUT' });
    }
    expect(h.events.filter((e) => e.kind === 'mfa.enroll_link').map((e) => e.reason)).toEqual([
      'created',
      'unusable',
      'used',
      'unusable',
      'created',
      'unusable',
    ]);
  });

  it('reads attempt limits from config in seconds, with the defaults of the design', () => {
    expect(attemptLimitsSchema.parse({})).toEqual(DEFAULT_ATTEMPT_LIMITS);
    expect(DEFAULT_ATTEMPT_LIMITS).toEqual({
      user: { max: 5, windowMs: 900_000, lockMs: 900_000 },
      ip: { max: 20, windowMs: 900_000, lockMs: 900_000 },
    });
    expect(attemptLimitsSchema.parse({ user: { max: 3, lock_seconds: 60 } })).toEqual({
      user: { max: 3, windowMs: 900_000, lockMs: 60_000 },
      ip: DEFAULT_ATTEMPT_LIMITS.ip,
    });
    expect(attemptLimitsSchema.safeParse({ user: { max: 0 } }).success).toBe(false);
    expect(attemptLimitsSchema.safeParse({ users: {} }).success).toBe(false);
  });
});
