/**
 * The OIDC login and session against a real oidc-provider over HTTPS, through a real HTTPS server in
 * front of the Authenticator, on a real SQLite store.
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEventInput } from '../../src/audit/event.js';
import { safeReturnTo } from '../../src/access/auth/index.js';
import { loadOrCreateKek } from '../../src/ca/kek.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';
import { type AppServer, attach, Browser, makeTls, startApp, startIdp, type TestIdp } from './auth-harness.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('OIDC login (real provider, real TLS, SQLite)', () => {
  const dir = tempDir();
  let store: Store;
  let idp: TestIdp;
  let appA: AppServer;
  let appB: AppServer;
  const events: AuditEventInput[] = [];
  const logLines: string[] = [];

  beforeAll(async () => {
    const tls = await makeTls(dir);
    appA = await startApp(tls, 'app-a.test');
    appB = await startApp(tls, 'app-b.test');
    idp = await startIdp(tls, [appA, appB]);
    idp.accounts.set('alice', { sub: 'alice', email: 'alice@example.test', name: 'Alice', groups: ['eng', 'ops'] });
    store = await openStore({ dataDir: join(dir, 'data') });
    await attach(appA, idp, store, dir, {}, events, logLines);
    await attach(appB, idp, store, dir, {}, events, logLines);
  });
  afterAll(async () => {
    await appA.auth?.close();
    await appB.auth?.close();
    await appA.close();
    await appB.close();
    await idp.close();
    await store.close();
  });

  it('logs in with code + PKCE, sets an opaque __Host- cookie, and the session identifies the person', async () => {
    const b = new Browser(idp.caFile);
    expect((await b.whoami(appA)).body).toEqual({ kind: 'none' });
    const start = await b.request(`${appA.origin}/login?return_to=/`);
    expect(start.status).toBe(302);
    const auth = new URL(start.headers.get('location') ?? '');
    expect(auth.origin).toBe(idp.issuer);
    expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
    expect(auth.searchParams.get('redirect_uri')).toBe(`${appA.origin}/.nevertrust/callback`);
    expect(auth.searchParams.get('nonce')).toBeTruthy();
    const loginCookie = start.headers.getSetCookie().find((c) => c.startsWith('__Host-nevertrust_login='));
    expect(loginCookie).toMatch(/; Path=\/; Secure; HttpOnly; SameSite=Lax; Max-Age=600$/);

    const res = await b.login(appA, 'alice', '/reports?q=1#top');
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${appA.origin}/reports?q=1#top`);
    const set = res.headers.getSetCookie();
    const session = set.find((c) => c.startsWith('__Host-nevertrust_session='));
    expect(session).toMatch(/^__Host-nevertrust_session=[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Lax/);
    // The spent state leaves the login cookie; the login started above (never finished) stays in it.
    const left = set.find((c) => c.startsWith('__Host-nevertrust_login='));
    expect(left).toMatch(
      /^__Host-nevertrust_login=[A-Za-z0-9_-]+; Path=\/; Secure; HttpOnly; SameSite=Lax; Max-Age=600$/,
    );

    const who = await b.whoami(appA);
    expect(who.status).toBe(200);
    expect(who.body).toMatchObject({
      kind: 'session',
      sessionId: expect.stringMatching(/^s_[0-9a-f]{32}$/),
      person: { issuer: idp.issuer, sub: 'alice', email: 'alice@example.test', name: 'Alice', groups: ['eng', 'ops'] },
    });
    const person = (who.body as unknown as { person: { claims: Record<string, unknown> } }).person;
    expect(person.claims.nonce).toBeUndefined();
    expect(appA.auth?.userOf(person as never)).toBe('alice@example.test');

    // The store holds a hash of the cookie, never the cookie; provider tokens sealed.
    const token = b.jar(appA.origin).get('__Host-nevertrust_session') ?? '';
    const rows = await store.db.selectFrom('access_sessions').selectAll().execute();
    const row = rows.find((r) => r.token_hash === sha(token));
    expect(row).toBeDefined();
    // The person's name at the proxy (its user claim): an admin's reset by name ends this session.
    expect(row?.user_name).toBe('alice@example.test');
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(Object.keys(JSON.parse(row?.tokens ?? '{}')).sort()).toEqual(['alg', 'ciphertext', 'iv', 'kekId', 'tag']);

    const login = events.find((e) => e.kind === 'access.login' && e.outcome === 'allow');
    expect(login).toMatchObject({ source: { user: 'alice@example.test' }, target: { host: 'app-a.test' } });
    expect(JSON.stringify(events)).not.toContain(token);
  });

  it('two logins in flight in one browser (two tabs) both complete; a spent state does not work twice', async () => {
    const b = new Browser(idp.caFile);
    const first = await b.toCallback(appA, 'alice', '/first');
    const second = await b.toCallback(appA, 'alice', '/second');
    expect(b.jar(appA.origin).get('__Host-nevertrust_login')?.split('.')).toHaveLength(2);
    const r1 = await b.request(first);
    expect(r1.status).toBe(302);
    expect(r1.headers.get('location')).toBe(`${appA.origin}/first`);
    // The second tab's state is still in the cookie; the first one's is gone.
    expect(b.jar(appA.origin).get('__Host-nevertrust_login')?.split('.')).toHaveLength(1);
    const r2 = await b.request(second);
    expect(r2.status).toBe(302);
    expect(r2.headers.get('location')).toBe(`${appA.origin}/second`);
    expect(r2.headers.getSetCookie().some((c) => c.startsWith('__Host-nevertrust_login=;'))).toBe(true);
    expect((await b.request(first)).status).toBe(400);
  });

  it('a new sign-in in the same browser ends the session it replaces (no orphan left alive)', async () => {
    const b = new Browser(idp.caFile);
    await b.login(appA, 'alice');
    const first = b.jar(appA.origin).get('__Host-nevertrust_session') ?? '';
    const firstId = (await b.whoami(appA)).body.sessionId;
    await b.login(appA, 'alice');
    const second = b.jar(appA.origin).get('__Host-nevertrust_session') ?? '';
    expect(second).not.toBe(first);
    expect((await b.whoami(appA)).status).toBe(200);
    const replay = await b.fetch(`${appA.origin}/whoami`, {
      headers: { cookie: `__Host-nevertrust_session=${first}` },
    });
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as { code: string }).code).toBe('session_ended');
    expect(events.find((e) => e.kind === 'access.logout' && e.details?.session === firstId)).toMatchObject({
      reason: 'replaced by a new sign-in',
      source: { user: 'alice@example.test' },
    });
  });

  it('refuses open-redirect return paths: the browser lands on / of this origin', async () => {
    const hostile = [
      '//evil.example/x',
      '/\\evil.example',
      'https://evil.example/',
      '/%2F%2Fevil.example',
      '/%2f%5cevil.example',
      '/%252F%252Fevil.example',
      '/\tevil',
      '/a\nb',
      'javascript:alert(1)',
      '/redirect/https://evil.example',
      '\\\\evil.example',
      '',
    ];
    for (const h of hostile) expect(safeReturnTo(h), JSON.stringify(h)).toBe('/');
    for (const ok of ['/', '/a/b?c=d&e=%20f', '/x#y']) expect(safeReturnTo(ok)).toBe(ok);
    const b = new Browser(idp.caFile);
    const res = await b.login(appA, 'alice', '//evil.example/steal');
    expect(res.headers.get('location')).toBe(`${appA.origin}/`);
  });

  it('a callback without state, with a wrong state, or without the login cookie is refused with a reason', async () => {
    const b = new Browser(idp.caFile);
    const cb = new URL(await b.toCallback(appA, 'alice'));
    const before = events.length;

    const noState = new URL(cb);
    noState.searchParams.delete('state');
    let res = await b.request(noState.href);
    expect(res.status).toBe(400);
    const page = await res.text();
    expect(page).toContain('missing_state');
    expect(page).not.toContain(cb.searchParams.get('code') ?? 'x');
    expect(res.headers.get('content-security-policy')).toMatch(/^default-src 'none'/);
    expect(res.headers.get('cache-control')).toBe('no-store');

    const wrong = new URL(cb);
    wrong.searchParams.set('state', 'forged-state-value');
    res = await b.request(wrong.href);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('state_mismatch');

    // A callback without the browser's login cookie (a login CSRF) is refused.
    res = await b.fetch(cb.href);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('missing_login_cookie');

    // The forged callbacks did not break the login in flight.
    res = await b.request(cb.href);
    expect(res.status).toBe(302);

    const denials = events.slice(before).filter((e) => e.kind === 'access.login' && e.outcome === 'deny');
    expect(denials.map((e) => e.reason)).toEqual(['missing_state', 'state_mismatch', 'missing_login_cookie']);
    expect(JSON.stringify(events)).not.toContain(cb.searchParams.get('code') ?? 'x');
  });

  it('a replayed callback (same state and code) is refused: the login state is consumed once', async () => {
    const b = new Browser(idp.caFile);
    const cb = await b.toCallback(appA, 'alice');
    const loginCookie = b.jar(appA.origin).get('__Host-nevertrust_login') ?? '';
    expect((await b.request(cb)).status).toBe(302);
    // An attacker holding the URL and the browser's login cookie tries again.
    const res = await b.fetch(cb, { headers: { cookie: `__Host-nevertrust_login=${loginCookie}` } });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('unknown_or_used_state');
  });

  it('a nonce that does not match the ID token is refused', async () => {
    const b = new Browser(idp.caFile);
    const cb = new URL(await b.toCallback(appA, 'alice'));
    const state = cb.searchParams.get('state') ?? '';
    // Alter the stored nonce (sealed with the session key) to simulate a token minted for another login.
    const { kek } = await loadOrCreateKek({ file: join(dir, 'session.key'), env: {} });
    const row = await store.db
      .selectFrom('access_login_states')
      .selectAll()
      .where('state_hash', '=', sha(state))
      .executeTakeFirstOrThrow();
    const aad = `login:${sha(state)}`;
    const login = JSON.parse(kek.open(JSON.parse(row.sealed), aad).toString()) as { nonce: string };
    login.nonce = 'another-nonce';
    await store.db
      .updateTable('access_login_states')
      .set({ sealed: JSON.stringify(kek.seal(Buffer.from(JSON.stringify(login)), aad)) })
      .where('state_hash', '=', sha(state))
      .execute();
    const res = await b.request(cb.href);
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/oauth_jwt_claim_comparison_failed/);
    // The refusal is logged, without the code, the state or either nonce.
    const logged = logLines.join('');
    expect(logged).toContain('access login refused');
    for (const secret of [cb.searchParams.get('code') ?? 'x', state, 'another-nonce'])
      expect(logged).not.toContain(secret);
    expect((await b.whoami(appA)).body.kind).toBe('none');
  });

  it('a login started on host A cannot complete on host B', async () => {
    const b = new Browser(idp.caFile);
    const cb = new URL(await b.toCallback(appA, 'alice'));
    const onB = `${appB.origin}${cb.pathname}${cb.search}`;
    const res = await b.fetch(onB, {
      headers: { cookie: `__Host-nevertrust_login=${b.jar(appA.origin).get('__Host-nevertrust_login')}` },
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('unknown_or_used_state');
  });

  it('a tampered or malformed cookie, and a cookie of host A on host B, are refused', async () => {
    const b = new Browser(idp.caFile);
    await b.login(appA, 'alice');
    const token = b.jar(appA.origin).get('__Host-nevertrust_session') ?? '';
    const tampered = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    let who = await b.whoami(appB, {});
    expect(who.body.kind).toBe('none');
    const ask = async (app: AppServer, value: string) => {
      const res = await b.fetch(`${app.origin}/whoami`, { headers: { cookie: `__Host-nevertrust_session=${value}` } });
      return { status: res.status, body: (await res.json()) as { kind: string; code?: string } };
    };
    who = await ask(appA, tampered);
    expect(who).toMatchObject({ status: 401, body: { kind: 'invalid', code: 'session_unknown' } });
    who = await ask(appA, `${token}x`);
    expect(who).toMatchObject({ status: 401, body: { kind: 'invalid', code: 'session_cookie_malformed' } });
    who = await ask(appA, "'; drop table access_sessions; --");
    expect(who.body.code).toBe('session_cookie_malformed');
    who = await ask(appB, token);
    expect(who).toMatchObject({ status: 401, body: { kind: 'invalid', code: 'session_wrong_host' } });
    who = await ask(appA, token);
    expect(who.status).toBe(200);
  });

  it('sign-out needs the CSRF token, ends the session, and goes to the provider with id_token_hint', async () => {
    const b = new Browser(idp.caFile);
    await b.login(appA, 'alice');
    const token = b.jar(appA.origin).get('__Host-nevertrust_session') ?? '';
    const sid = (await b.whoami(appA)).body.sessionId;
    const page = await b.request(`${appA.origin}/.nevertrust/sign_out`);
    const html = await page.text();
    expect(html).not.toMatch(/<script/i);
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
    expect(csrf).not.toBe('');

    // A cross-site form post without the token is refused, and the session lives on.
    let res = await b.request(`${appA.origin}/.nevertrust/sign_out`, { method: 'POST', body: 'csrf=guess' });
    expect(res.status).toBe(403);
    expect((await b.whoami(appA)).status).toBe(200);
    // An oversized form is refused with the same page (not a hang-up: the answer reaches the client).
    res = await b.request(`${appA.origin}/.nevertrust/sign_out`, {
      method: 'POST',
      body: `csrf=${csrf}&pad=${'x'.repeat(64 * 1024)}`,
    });
    expect(res.status).toBe(403);
    expect((await b.whoami(appA)).status).toBe(200);

    res = await b.request(`${appA.origin}/.nevertrust/sign_out`, { method: 'POST', body: `csrf=${csrf}` });
    expect(res.status).toBe(302);
    const to = new URL(res.headers.get('location') ?? '');
    expect(to.origin).toBe(idp.issuer);
    expect(to.searchParams.get('id_token_hint')).toMatch(/^eyJ/);
    expect(to.searchParams.get('post_logout_redirect_uri')).toBe(`${appA.origin}/.nevertrust/signed_out`);
    expect(res.headers.getSetCookie().some((c) => c.startsWith('__Host-nevertrust_session=;'))).toBe(true);

    // The old cookie is dead, here and wherever it is replayed.
    const replay = await b.fetch(`${appA.origin}/whoami`, {
      headers: { cookie: `__Host-nevertrust_session=${token}` },
    });
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as { code: string }).code).toBe('session_ended');
    expect(events.find((e) => e.kind === 'access.logout' && e.details?.session === sid)).toMatchObject({
      outcome: 'allow',
    });
    const signedOut = await b.request(`${appA.origin}/.nevertrust/signed_out`);
    expect(signedOut.status).toBe(200);
  });

  it('a flood of unknown cookies costs one read each and cannot push live sessions out of the cache', async () => {
    await appA.auth?.close();
    await attach(appA, idp, store, dir, {}, events, logLines, 2);
    const b = new Browser(idp.caFile);
    await b.login(appA, 'alice');
    expect((await b.whoami(appA)).status).toBe(200);
    const reads = store.accessSessions.sessionReads;
    for (let i = 0; i < 10; i++) {
      const forged = randomBytes(32).toString('base64url');
      const res = await b.fetch(`${appA.origin}/whoami`, {
        headers: { cookie: `__Host-nevertrust_session=${forged}` },
      });
      expect(res.status).toBe(401);
      await b.fetch(`${appA.origin}/whoami`, { headers: { cookie: `__Host-nevertrust_session=${forged}` } });
    }
    expect(store.accessSessions.sessionReads - reads).toBe(10);
    expect((await b.whoami(appA)).status).toBe(200);
    expect(store.accessSessions.sessionReads - reads).toBe(10);
  });
});
