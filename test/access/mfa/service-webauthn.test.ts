/** The MFA service's WebAuthn path with a software authenticator, on a real store. */
import { describe, expect, it } from 'vitest';
import type { MfaService, MfaSubject, RelyingParty } from '../../../src/access/mfa/index.js';
import { alice, bob, type Harness, harness } from './harness.js';
import { SoftAuthenticator } from './soft-authenticator.js';
import { createTestDatabase } from '../../support/postgres.js';

const IP = '203.0.113.9';
const rp: RelyingParty = {
  id: 'example.test',
  origins: ['https://app.example.test', 'https://example.test'],
  name: 'Example',
};
const lax = { max: 1000, windowMs: 60_000, lockMs: 1000 };

interface Options {
  challenge: string;
  excludeCredentials?: Array<{ id: string }>;
  allowCredentials?: Array<{ id: string }>;
  userVerification?: string;
  authenticatorSelection?: { userVerification?: string };
  attestation?: string;
  rp?: { id: string; name: string };
}

async function register(
  mfa: MfaService,
  who: MfaSubject,
  session: string,
  auth: SoftAuthenticator,
  name = 'key',
): Promise<string> {
  const { challengeId, options } = await mfa.registrationOptions(who, session, rp);
  const r = await mfa.finishRegistration(who, session, challengeId, auth.register(options as Options), rp, name, IP);
  if (!r.ok) throw new Error(`registration refused: ${r.reason}`);
  return r.factorId as string;
}

async function challenge(mfa: MfaService, who: MfaSubject, session: string) {
  const c = await mfa.authenticationOptions(who, session, rp);
  if (!c) throw new Error('no WebAuthn credential');
  return { challengeId: c.challengeId, options: c.options as Options };
}

const newKey = (over: Partial<SoftAuthenticator['defaults']> = {}) =>
  new SoftAuthenticator({ origin: 'https://app.example.test', rpId: 'example.test', ...over });

async function setup(url?: string): Promise<{ h: Harness; mfa: MfaService; key: SoftAuthenticator; factorId: string }> {
  const h = await harness(url);
  const mfa = h.service({ attempts: { user: lax, ip: lax } });
  const key = newKey();
  const factorId = await register(mfa, alice, 's1', key);
  return { h, mfa, key, factorId };
}

describe('MFA service: WebAuthn', () => {
  it('registers (attestation none, UV required, existing credentials excluded) and authenticates', async () => {
    const h = await harness();
    const mfa = h.service();
    expect(await mfa.authenticationOptions(alice, 's1', rp)).toBeUndefined();
    const first = await mfa.registrationOptions(alice, 's1', rp);
    const opts = first.options as Options;
    expect(opts).toMatchObject({
      attestation: 'none',
      rp: { id: 'example.test', name: 'Example' },
      authenticatorSelection: { userVerification: 'required' },
      excludeCredentials: [],
    });
    const key = newKey();
    const reg = await mfa.finishRegistration(alice, 's1', first.challengeId, key.register(opts), rp, 'Laptop', IP);
    expect(reg).toMatchObject({ ok: true, methods: ['hwk', 'user'] });
    const row = await h.store.db.selectFrom('mfa_factors').selectAll().executeTakeFirstOrThrow();
    expect(row).toMatchObject({ kind: 'webauthn', name: 'Laptop', credential_id: key.id, user_name: 'alice' });
    expect(row.public_key).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(JSON.parse(row.transports as string)).toEqual(['internal']);
    const second = await mfa.registrationOptions(alice, 's1', rp);
    expect((second.options as Options).excludeCredentials?.map((c) => c.id)).toEqual([key.id]);

    const c = await challenge(mfa, alice, 's1');
    expect(c.options.allowCredentials?.map((x) => x.id)).toEqual([key.id]);
    expect(c.options.userVerification).toBe('required');
    const ok = await mfa.verifyWebauthn(alice, 's1', c.challengeId, key.assert(c.options), rp, IP);
    expect(ok).toEqual({ ok: true, methods: ['hwk', 'user'], factorId: reg.ok ? reg.factorId : '' });
    expect(Number((await h.store.mfa.findByCredentialId(key.id))?.counter)).toBe(1);
    // Another origin of the RP ID is accepted too.
    const c2 = await challenge(mfa, alice, 's1');
    const viaApex = key.assert(c2.options, { origin: 'https://example.test' });
    expect(await mfa.verifyWebauthn(alice, 's1', c2.challengeId, viaApex, rp, IP)).toMatchObject({ ok: true });
    expect(h.events.filter((e) => e.kind === 'mfa.verify').map((e) => e.outcome)).toEqual(['allow', 'allow']);
  });

  it('a synced passkey gives swk; a counter of zero on both sides is accepted (passkeys do not count)', async () => {
    const h = await harness();
    const mfa = h.service();
    const passkey = newKey({ backedUp: true, counterStep: 0 });
    await register(mfa, alice, 's1', passkey);
    for (let i = 0; i < 2; i++) {
      const c = await challenge(mfa, alice, 's1');
      expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, passkey.assert(c.options), rp, IP)).toMatchObject({
        ok: true,
        methods: ['swk', 'user'],
      });
    }
  });

  it('refuses a wrong origin, a wrong RP ID, a missing UV or UP flag, a wrong type and a forged signature', async () => {
    const { mfa, key } = await setup();
    const cases: Array<[Parameters<SoftAuthenticator['assert']>[1], string]> = [
      [{ origin: 'https://evil.example' }, 'wrong_origin'],
      [{ origin: 'http://app.example.test' }, 'wrong_origin'],
      [{ rpId: 'evil.example' }, 'wrong_rp_id'],
      [{ uv: false }, 'user_not_verified'],
      [{ up: false, uv: false }, 'user_not_present'],
      [{ type: 'webauthn.create' }, 'wrong_type'],
      [{ signWith: newKey() }, 'bad_signature'],
    ];
    for (const [ceremony, reason] of cases) {
      const c = await challenge(mfa, alice, 's1');
      expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, key.assert(c.options, ceremony), rp, IP)).toEqual({
        ok: false,
        reason,
        locked: false,
      });
    }
    // None of these moved the counter: the right answer still works.
    const c = await challenge(mfa, alice, 's1');
    expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, key.assert(c.options), rp, IP)).toMatchObject({
      ok: true,
    });
  });

  it('refuses a replayed challenge, another session’s challenge, and an answer to another challenge', async () => {
    const { mfa, key } = await setup();
    const c = await challenge(mfa, alice, 's1');
    const answer = key.assert(c.options);
    expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, answer, rp, IP)).toMatchObject({ ok: true });
    expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, answer, rp, IP)).toMatchObject({
      reason: 'unknown_challenge',
    });
    const c2 = await challenge(mfa, alice, 's1');
    // A challenge taken to another session is not found there, and stays for its own session.
    expect(await mfa.verifyWebauthn(alice, 's2', c2.challengeId, key.assert(c2.options), rp, IP)).toMatchObject({
      reason: 'unknown_challenge',
    });
    // The answer signed over c2's challenge, sent with c3's id.
    const c3 = await challenge(mfa, alice, 's1');
    expect(await mfa.verifyWebauthn(alice, 's1', c3.challengeId, key.assert(c2.options), rp, IP)).toMatchObject({
      reason: 'wrong_challenge',
    });
    // c3 was used up by that refusal; c2 still works for s1.
    expect(await mfa.verifyWebauthn(alice, 's1', c2.challengeId, key.assert(c2.options), rp, IP)).toMatchObject({
      ok: true,
    });
    // A registration challenge does not serve an assertion.
    const reg = await mfa.registrationOptions(alice, 's1', rp);
    const regAnswer = key.assert({ challenge: (reg.options as Options).challenge });
    expect(await mfa.verifyWebauthn(alice, 's1', reg.challengeId, regAnswer, rp, IP)).toMatchObject({
      reason: 'unknown_challenge',
    });
  });

  it('refuses a counter that goes backwards or stands still, and an expired challenge', async () => {
    const { h, mfa, key } = await setup();
    let c = await challenge(mfa, alice, 's1');
    expect(
      await mfa.verifyWebauthn(alice, 's1', c.challengeId, key.assert(c.options, { counter: 5 }), rp, IP),
    ).toMatchObject({
      ok: true,
    });
    for (const counter of [5, 4, 0]) {
      c = await challenge(mfa, alice, 's1');
      expect(
        await mfa.verifyWebauthn(alice, 's1', c.challengeId, key.assert(c.options, { counter }), rp, IP),
      ).toMatchObject({
        ok: false,
        reason: 'counter',
      });
    }
    expect(Number((await h.store.mfa.findByCredentialId(key.id))?.counter)).toBe(5);
    c = await challenge(mfa, alice, 's1');
    h.clock.now += 5 * 60_000;
    expect(
      await mfa.verifyWebauthn(alice, 's1', c.challengeId, key.assert(c.options, { counter: 6 }), rp, IP),
    ).toMatchObject({
      reason: 'unknown_challenge',
    });
  });

  it.each(['sqlite', 'postgres'])(
    'accepts one of two concurrent answers with the same counter (two proxies, %s)',
    async (engine) => {
      const { h, key } = await setup(engine === 'postgres' ? await createTestDatabase() : undefined);
      const p1 = h.service({ attempts: { user: lax, ip: lax } });
      const p2 = h.service({ attempts: { user: lax, ip: lax } });
      const c1 = await challenge(p1, alice, 's1');
      const c2 = await challenge(p2, alice, 's1');
      const rs = await Promise.all([
        p1.verifyWebauthn(alice, 's1', c1.challengeId, key.assert(c1.options, { counter: 7 }), rp, IP),
        p2.verifyWebauthn(alice, 's1', c2.challengeId, key.assert(c2.options, { counter: 7 }), rp, IP),
      ]);
      expect(rs.filter((r) => r.ok)).toHaveLength(1);
      expect(rs.find((r) => !r.ok)).toMatchObject({ reason: 'counter' });
    },
  );

  it('refuses an unknown credential and another person’s credential; malformed answers are refused', async () => {
    const { h, mfa, key } = await setup();
    const bobKey = newKey();
    await register(mfa, bob, 'sb', bobKey);
    let c = await challenge(mfa, alice, 's1');
    expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, newKey().assert(c.options), rp, IP)).toMatchObject({
      reason: 'unknown_credential',
    });
    c = await challenge(mfa, alice, 's1');
    expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, bobKey.assert(c.options), rp, IP)).toMatchObject({
      reason: 'unknown_credential',
    });
    for (const bad of [null, 'x', {}, { ...key.assert({ challenge: 'x' }), type: 'password' }, { id: 'a b' }]) {
      c = await challenge(mfa, alice, 's1');
      expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, bad, rp, IP)).toMatchObject({ reason: 'malformed' });
      // The challenge was used up by the malformed answer.
      expect(await mfa.verifyWebauthn(alice, 's1', c.challengeId, key.assert(c.options), rp, IP)).toMatchObject({
        reason: 'unknown_challenge',
      });
    }
    expect(h.events.filter((e) => e.kind === 'mfa.verify' && e.outcome === 'deny').length).toBeGreaterThan(5);
  });

  it('refuses registrations without UV, from a wrong origin or RP ID, replayed, or of a known credential', async () => {
    const { mfa, key } = await setup();
    for (const [ceremony, reason] of [
      [{ uv: false }, 'user_not_verified'],
      [{ origin: 'https://evil.example' }, 'wrong_origin'],
      [{ rpId: 'evil.example' }, 'wrong_rp_id'],
    ] as const) {
      const r = await mfa.registrationOptions(alice, 's1', rp);
      expect(
        await mfa.finishRegistration(
          alice,
          's1',
          r.challengeId,
          newKey().register(r.options as Options, ceremony),
          rp,
          'k',
          IP,
        ),
      ).toMatchObject({ ok: false, reason });
    }
    const r = await mfa.registrationOptions(alice, 's1', rp);
    const answer = newKey().register(r.options as Options);
    expect(await mfa.finishRegistration(alice, 's2', r.challengeId, answer, rp, 'k', IP)).toMatchObject({
      reason: 'unknown_challenge',
    });
    expect(await mfa.finishRegistration(alice, 's1', r.challengeId, answer, rp, 'k', IP)).toMatchObject({ ok: true });
    expect(await mfa.finishRegistration(alice, 's1', r.challengeId, answer, rp, 'k', IP)).toMatchObject({
      reason: 'unknown_challenge',
    });
    const again = await mfa.registrationOptions(bob, 'sb', rp);
    expect(
      await mfa.finishRegistration(bob, 'sb', again.challengeId, key.register(again.options as Options), rp, 'k', IP),
    ).toMatchObject({ reason: 'already_registered' });
    expect((await mfa.factors(alice)).filter((f) => f.kind === 'webauthn')).toHaveLength(2);
  });
});
