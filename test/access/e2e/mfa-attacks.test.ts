/**
 * The MFA endpoints under attack, through the whole stack over HTTPS (built-in provider, OIDC
 * authenticator, access proxy with local MFA, real store): enrollment without a link or with someone
 * else's, changes without a fresh second factor, posts without the CSRF token or from another origin,
 * the WebAuthn JSON endpoints without Origin or CSRF header or with an oversized body, an open
 * redirect through `rd`, bearer callers, and guessing codes until the lockout; each refused, with
 * nothing enrolled or elevated.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PersonClient } from '../../../src/mesh/people-client.js';
import { HOST, PEOPLE, rawRequest, SESSION_COOKIE } from './harness.js';
import { base32Decode, type MfaStack, startMfaStack, TotpDevice } from './mfa-harness.js';

const FORM = 'application/x-www-form-urlencoded';

describe('MFA endpoints under attack', () => {
  let stack: MfaStack;
  const clients: PersonClient[] = [];
  /** Alice's authenticator app, once enrolled. */
  let aliceDevice: TotpDevice;

  beforeAll(async () => {
    stack = await startMfaStack({ attempts: { user: { max: 3 } } });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) await c.close();
    await stack?.close();
  });

  /** A signed-in person: their session cookie (as a `Cookie` header) and the page's CSRF token. */
  async function signedIn(who: 'alice' | 'bob') {
    const c = new PersonClient({ ca: stack.trust.caPem });
    clients.push(c);
    expect((await c.signIn(`${stack.origin}/reports`, who, PEOPLE[who].password)).status).toBe(200);
    const cookie = `${SESSION_COOKIE}=${c.cookies(HOST).get(SESSION_COOKIE)}`;
    const page = await call('/.nevertrust/mfa', { cookie, accept: 'text/html' });
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? (await csrfOf(cookie));
    return { cookie, csrf };
  }
  /** The CSRF token from the challenge page (it has a form once the person has a factor). */
  async function csrfOf(cookie: string): Promise<string> {
    const r = await call('/.nevertrust/mfa/challenge?rd=/', { cookie, accept: 'text/html' });
    return /name="csrf" value="([^"]+)"/.exec(r.body)?.[1] ?? '';
  }
  const call = (path: string, headers: Record<string, string>, opts: { method?: string; body?: string } = {}) =>
    rawRequest(stack.trust.caPem, stack.proxy.port, path, headers, opts);
  const post = (path: string, cookie: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
    call(
      path,
      { cookie, 'content-type': FORM, accept: 'text/html', origin: stack.origin, ...headers },
      { method: 'POST', body: new URLSearchParams(fields).toString() },
    );
  const postJson = (path: string, cookie: string, body: string, headers: Record<string, string>) =>
    call(
      path,
      { cookie, 'content-type': 'application/json', accept: 'application/json', ...headers },
      { method: 'POST', body },
    );

  /** Enrolls TOTP for a signed-in person through a fresh link; returns the device. */
  async function enrollTotp(who: 'alice' | 'bob', s: { cookie: string }) {
    const link = await stack.mfa.createEnrollLink(who, 'admin', 600_000);
    const page = await call(`/.nevertrust/mfa/enroll?token=${link.token}`, { cookie: s.cookie, accept: 'text/html' });
    expect(page.status).toBe(200);
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? '';
    const begun = await post('/.nevertrust/mfa/totp', s.cookie, { csrf, token: link.token, name: 'Phone' });
    expect(begun.status).toBe(200);
    const device = new TotpDevice(base32Decode(/data-secret="([^"]+)"/.exec(begun.body)?.[1] ?? ''));
    const factor = /name="factor" value="([^"]+)"/.exec(begun.body)?.[1] ?? '';
    const done = await post('/.nevertrust/mfa/totp/confirm', s.cookie, {
      csrf,
      token: link.token,
      factor,
      code: device.code(),
    });
    expect(done.status).toBe(303);
    return { device, csrf };
  }

  it('no factor and no link: nothing to enroll with; a link for someone else, or made up, is refused', async () => {
    const bob = await signedIn('bob');
    const page = await call('/.nevertrust/mfa', { cookie: bob.cookie, accept: 'text/html' });
    expect(page.status).toBe(200);
    expect(page.body).not.toContain('id="totp-add"');
    // The token is the session's: take it from a page that has a form (the enroll page with a link).
    const aliceLink = await stack.mfa.createEnrollLink('alice', 'admin', 600_000);
    expect(
      (await call(`/.nevertrust/mfa/enroll?token=${aliceLink.token}`, { cookie: bob.cookie, accept: 'text/html' }))
        .status,
    ).toBe(403);
    expect(
      (await call(`/.nevertrust/mfa/enroll?token=${'A'.repeat(43)}`, { cookie: bob.cookie, accept: 'text/html' }))
        .status,
    ).toBe(403);
    const own = await stack.mfa.createEnrollLink('bob', 'admin', 600_000);
    const withLink = await call(`/.nevertrust/mfa/enroll?token=${own.token}`, {
      cookie: bob.cookie,
      accept: 'text/html',
    });
    const csrf = /name="csrf" value="([^"]+)"/.exec(withLink.body)?.[1] ?? '';
    expect(csrf).not.toBe('');
    // Without the link in the post, or with alice's: refused; bob still has no factor.
    expect((await post('/.nevertrust/mfa/totp', bob.cookie, { csrf, name: 'x' })).status).toBe(403);
    expect((await post('/.nevertrust/mfa/totp', bob.cookie, { csrf, name: 'x', token: aliceLink.token })).status).toBe(
      403,
    );
    expect((await stack.mfa.factors({ issuer: stack.idp.issuer, sub: 'bob', user: 'bob' })).length).toBe(0);
    // The links are still good (nothing was enrolled with them).
    expect(await stack.mfa.checkEnrollLink(own.token, 'bob')).toBe(true);
  });

  it('a link enrolls once: spent between the setup and the confirmation, the confirmation is refused', async () => {
    const bob = await signedIn('bob');
    const link = await stack.mfa.createEnrollLink('bob', 'admin', 600_000);
    const page = await call(`/.nevertrust/mfa/enroll?token=${link.token}`, {
      cookie: bob.cookie,
      accept: 'text/html',
    });
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? '';
    const begun = await post('/.nevertrust/mfa/totp', bob.cookie, { csrf, token: link.token, name: 'Phone' });
    expect(begun.status).toBe(200);
    const device = new TotpDevice(base32Decode(/data-secret="([^"]+)"/.exec(begun.body)?.[1] ?? ''));
    const factor = /name="factor" value="([^"]+)"/.exec(begun.body)?.[1] ?? '';
    // Another enrollment (another tab) spends the link first.
    expect(await stack.mfa.consumeEnrollLink(link.token, 'bob')).toBe(true);
    const done = await post('/.nevertrust/mfa/totp/confirm', bob.cookie, {
      csrf,
      token: link.token,
      factor,
      code: device.code(),
    });
    expect(done.status).toBe(403);
    const factors = await stack.mfa.factors({ issuer: stack.idp.issuer, sub: 'bob', user: 'bob' });
    expect(factors.filter((f) => f.confirmed)).toEqual([]);
  });

  it('posts without the CSRF token, with another session’s, from another origin or site are refused', async () => {
    const alice = await signedIn('alice');
    const { csrf, device } = await enrollTotp('alice', alice);
    aliceDevice = device;
    const other = await signedIn('alice');
    const cases: [string, Record<string, string>, Record<string, string>][] = [
      ['no token', { name: 'x' }, {}],
      ['wrong token', { name: 'x', csrf: 'A'.repeat(43) }, {}],
      ['another session', { name: 'x', csrf: other.csrf }, {}],
      ['cross origin', { name: 'x', csrf }, { origin: 'https://evil.example' }],
      ['null origin', { name: 'x', csrf }, { origin: 'null' }],
      ['cross site', { name: 'x', csrf }, { 'sec-fetch-site': 'cross-site' }],
    ];
    for (const [what, fields, headers] of cases) {
      const r = await post('/.nevertrust/mfa/totp', alice.cookie, fields, headers);
      expect(r.status, what).toBe(403);
    }
    const factors = await stack.mfa.factors({ issuer: stack.idp.issuer, sub: 'alice', user: 'alice' });
    expect(factors.filter((f) => !f.confirmed)).toEqual([]);

    // The WebAuthn endpoints: JSON with the token in a header and our Origin, nothing else.
    const o = { origin: stack.origin };
    const path = '/.nevertrust/mfa/webauthn/register/options';
    expect((await postJson(path, alice.cookie, '{}', { 'x-nevertrust-csrf': csrf })).status).toBe(403);
    expect((await postJson(path, alice.cookie, '{}', o)).status).toBe(403);
    expect(
      (await postJson(path, alice.cookie, '{}', { ...o, 'x-nevertrust-csrf': csrf, 'content-type': 'text/plain' }))
        .status,
    ).toBe(415);
    const big = JSON.stringify({ token: 'x'.repeat(70 * 1024) });
    expect((await postJson(path, alice.cookie, big, { ...o, 'x-nevertrust-csrf': csrf })).status).toBe(413);
    expect((await postJson(path, alice.cookie, '{"extra":1}', { ...o, 'x-nevertrust-csrf': csrf })).status).toBe(400);
    const ok = await postJson(path, alice.cookie, '{}', { ...o, 'x-nevertrust-csrf': csrf });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).options.rp).toMatchObject({ id: HOST });
  });

  it('changing factors needs MFA within 5 minutes in this session', async () => {
    const alice = await signedIn('alice');
    const csrf = await csrfOf(alice.cookie);
    // A new session, with a factor but no step-up yet: the page offers verification only.
    const page = await call('/.nevertrust/mfa', { cookie: alice.cookie, accept: 'text/html' });
    expect(page.body).toContain('id="verify"');
    expect((await post('/.nevertrust/mfa/totp', alice.cookie, { csrf, name: 'x' })).status).toBe(403);
    expect((await post('/.nevertrust/mfa/recovery-codes', alice.cookie, { csrf })).status).toBe(403);
    const factor = (await stack.mfa.factors({ issuer: stack.idp.issuer, sub: 'alice', user: 'alice' }))[0];
    expect((await post('/.nevertrust/mfa/remove', alice.cookie, { csrf, factor: factor?.id ?? '' })).status).toBe(403);
    // A step-up 6 minutes old (written to the store as another proxy would) is not fresh either.
    const sid = stack.decisions.findLast((d) => d.source?.user === 'alice')?.details?.session as string;
    await stack.store.accessSessions.updateMfa(
      sid,
      JSON.stringify({ at: Math.floor(Date.now() / 1000) - 360, methods: ['otp'] }),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect((await post('/.nevertrust/mfa/recovery-codes', alice.cookie, { csrf })).status).toBe(403);
    expect((await stack.mfa.factors({ issuer: stack.idp.issuer, sub: 'alice', user: 'alice' })).length).toBe(1);
  });

  it('rd stays on the origin; a bearer caller or no session cannot use the pages', async () => {
    const bob = await signedIn('bob');
    const { device, csrf } = await enrollTotp('bob', bob);
    // (One code left in the window after enrollment: the rd that leaves the origin; the browser
    // test follows an rd on it.)
    const r = await post('/.nevertrust/mfa/challenge', bob.cookie, {
      csrf,
      kind: 'totp',
      code: device.code(),
      rd: '//evil.example/x',
    });
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/');
    const bearer = await call('/.nevertrust/mfa', { authorization: 'Bearer abc.def.ghi', accept: 'application/json' });
    expect(bearer.status).toBe(401);
    const none = await call('/.nevertrust/mfa', { accept: 'text/html' });
    expect(none.status).toBe(302);
    expect(String(none.headers.location).startsWith(stack.idp.issuer)).toBe(true);
    const kind = await post('/.nevertrust/mfa/challenge', bob.cookie, { csrf, kind: 'sms', code: '1' });
    expect(kind.status).toBe(400);
  });

  it('guessing codes meets the lockout: then even the right code is refused; the lockout is audited', async () => {
    const alice = await signedIn('alice');
    const csrf = await csrfOf(alice.cookie);
    for (let i = 0; i < 3; i++) {
      const r = await post('/.nevertrust/mfa/challenge', alice.cookie, {
        csrf,
        kind: 'totp',
        code: String(100000 + i),
        rd: '/admin',
      });
      expect(r.status).toBe(i < 2 ? 400 : 429);
    }
    // The right code now: refused all the same.
    const right = await post('/.nevertrust/mfa/challenge', alice.cookie, {
      csrf,
      kind: 'totp',
      code: aliceDevice.code(),
      rd: '/admin',
    });
    expect(right.status).toBe(429);
    expect(right.body).toContain('Too many failed attempts');
    expect((await post('/.nevertrust/mfa/recovery-codes', alice.cookie, { csrf })).status).toBe(403);
    expect(stack.mfaEvents.some((e) => e.kind === 'mfa.lockout' && e.source?.user === 'alice')).toBe(true);
    const admin = await call('/admin', { cookie: alice.cookie, accept: 'text/html' });
    expect(admin.status).toBe(303);
  });
});

describe('first_login_enrollment: true', () => {
  let stack: MfaStack;
  let client: PersonClient;

  beforeAll(async () => {
    stack = await startMfaStack({ firstLoginEnrollment: true });
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await stack?.close();
  });

  it('a person with no factor enrolls without a link; once enrolled, removes it with fresh MFA', async () => {
    client = new PersonClient({ ca: stack.trust.caPem });
    expect((await client.signIn(`${stack.origin}/reports`, 'bob', PEOPLE.bob.password)).status).toBe(200);
    const cookie = `${SESSION_COOKIE}=${client.cookies(HOST).get(SESSION_COOKIE)}`;
    const call = (path: string, headers: Record<string, string>, opts: { method?: string; body?: string } = {}) =>
      rawRequest(stack.trust.caPem, stack.proxy.port, path, { cookie, ...headers }, opts);
    const post = (path: string, fields: Record<string, string>) =>
      call(
        path,
        { 'content-type': FORM, accept: 'text/html', origin: stack.origin },
        { method: 'POST', body: new URLSearchParams(fields).toString() },
      );
    const page = await call('/.nevertrust/mfa', { accept: 'text/html' });
    expect(page.body).toContain('id="totp-add"');
    expect(page.body).toContain('id="wa-register"');
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? '';
    const begun = await post('/.nevertrust/mfa/totp', { csrf, name: 'Phone' });
    expect(begun.status).toBe(200);
    const device = new TotpDevice(base32Decode(/data-secret="([^"]+)"/.exec(begun.body)?.[1] ?? ''));
    const factor = /name="factor" value="([^"]+)"/.exec(begun.body)?.[1] ?? '';
    // A pending factor is no factor: the challenge offers nothing yet.
    expect((await call('/.nevertrust/mfa/challenge?rd=/', { accept: 'text/html' })).body).toContain('id="no-factor"');
    expect((await post('/.nevertrust/mfa/totp/confirm', { csrf, factor, code: device.code() })).status).toBe(303);
    const subject = { issuer: stack.idp.issuer, sub: 'bob', user: 'bob' };
    expect((await stack.mfa.factors(subject)).filter((f) => f.confirmed)).toHaveLength(1);
    // Enrolling passed a factor: fresh, so it may be removed (another person's factor id may not).
    expect((await post('/.nevertrust/mfa/remove', { csrf, factor: 'f_not_mine' })).status).toBe(404);
    const removed = await post('/.nevertrust/mfa/remove', { csrf, factor });
    expect(removed.status).toBe(303);
    expect(removed.headers.location).toBe('/.nevertrust/mfa?done=removed');
    expect(await stack.mfa.factors(subject)).toEqual([]);
    expect(stack.mfaEvents.some((e) => e.kind === 'mfa.remove')).toBe(true);
  });
});
