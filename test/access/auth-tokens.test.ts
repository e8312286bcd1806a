/**
 * Bearer tokens, back-channel logout, provider token refresh, and session lifetimes, against a real
 * oidc-provider (its signing key signs the tokens a provider would send) on a real SQLite store.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEventInput } from '../../src/audit/event.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';
import {
  type AppServer,
  attach,
  Browser,
  CLIENT_ID,
  makeTls,
  startApp,
  startIdp,
  type TestIdp,
} from './auth-harness.js';

const BACKCHANNEL = 'http://schemas.openid.net/event/backchannel-logout';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('OIDC tokens and session lifetimes (real provider, SQLite)', () => {
  const dir = tempDir();
  let store: Store;
  let idp: TestIdp;
  let app: AppServer;
  let short: AppServer;
  const events: AuditEventInput[] = [];

  beforeAll(async () => {
    const tls = await makeTls(dir);
    app = await startApp(tls, 'app.test');
    short = await startApp(tls, 'short.test');
    // Access tokens live 2 s, so a session refreshes them after 2 s.
    idp = await startIdp(tls, [app, short], { accessTokenTtl: 2 });
    idp.accounts.set('alice', { sub: 'alice', email: 'alice@example.test', name: 'Alice', groups: ['eng'] });
    idp.accounts.set('bob', { sub: 'bob', email: 'bob@example.test', name: 'Bob', groups: [] });
    store = await openStore({ dataDir: join(dir, 'data') });
    await attach(app, idp, store, dir, {}, events);
  });
  afterAll(async () => {
    await app.auth?.close();
    await short.auth?.close();
    await app.close();
    await short.close();
    await idp.close();
    await store.close();
  });

  const sign = (
    claims: jose.JWTPayload,
    opts: { key?: jose.CryptoKey | import('node:crypto').KeyObject; alg?: string; typ?: string } = {},
  ) =>
    new jose.SignJWT(claims)
      .setProtectedHeader({ alg: opts.alg ?? 'ES256', kid: idp.kid, ...(opts.typ ? { typ: opts.typ } : {}) })
      .sign(opts.key ?? idp.privateKey);
  const now = () => Math.floor(Date.now() / 1000);
  const bearerClaims = () => ({
    iss: idp.issuer,
    aud: CLIENT_ID,
    sub: 'svc-reporter',
    email: 'reporter@example.test',
    groups: ['bots'],
    iat: now(),
    exp: now() + 300,
  });
  const asBearer = async (token: string) => {
    const res = await new Browser(idp.caFile).fetch(`${app.origin}/whoami`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return {
      status: res.status,
      body: (await res.json()) as { kind: string; code?: string; reason?: string; person?: unknown },
    };
  };

  it('bearer: a token signed by the provider for this audience identifies the caller', async () => {
    const r = await asBearer(await sign(bearerClaims()));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      kind: 'bearer',
      person: { sub: 'svc-reporter', groups: ['bots'], issuer: idp.issuer },
    });
  });

  it('bearer: forged signature, expired, wrong audience, wrong issuer, alg none, HS256 and a logout token are refused', async () => {
    const { privateKey: other } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const unsigned = (claims: object) =>
      `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
    const hs = await new jose.SignJWT(bearerClaims())
      .setProtectedHeader({ alg: 'HS256', kid: idp.kid })
      .sign(new TextEncoder().encode('a-long-client-secret-for-tests-only-0123456789'));
    const cases: [string, string][] = [
      ['forged', await sign(bearerClaims(), { key: other })],
      ['expired', await sign({ ...bearerClaims(), iat: now() - 600, exp: now() - 300 })],
      ['audience', await sign({ ...bearerClaims(), aud: 'another-app' })],
      ['issuer', await sign({ ...bearerClaims(), iss: 'https://evil.example' })],
      ['azp', await sign({ ...bearerClaims(), aud: [CLIENT_ID, 'other'], azp: 'other' })],
      ['none', unsigned(bearerClaims())],
      ['hs256', hs],
      [
        'logout token',
        await sign({
          ...bearerClaims(),
          jti: 'l1',
          events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
        }),
      ],
      ['garbage', 'not-a-jwt'],
    ];
    for (const [name, token] of cases) {
      const r = await asBearer(token);
      expect(r.status, name).toBe(401);
      expect(r.body.kind, name).toBe('invalid');
      expect(r.body.code, name).toBe('bearer_invalid');
    }
  });

  it('back-channel logout: a valid logout_token ends the session; a nonce, a bad signature or a replay is refused', async () => {
    const b = new Browser(idp.caFile);
    await b.login(app, 'alice');
    const who = await b.whoami(app);
    expect(who.status).toBe(200);
    const row = await store.db
      .selectFrom('access_sessions')
      .selectAll()
      .where('id', '=', String(who.body.sessionId))
      .executeTakeFirstOrThrow();
    expect(row.provider_sid).toBeTruthy();
    const logout = (claims: jose.JWTPayload) => ({
      iss: idp.issuer,
      aud: CLIENT_ID,
      iat: now(),
      jti: randomUUID(),
      events: { [BACKCHANNEL]: {} },
      sid: row.provider_sid ?? '',
      ...claims,
    });
    const post = (token: string) =>
      b.fetch(`${app.origin}/.nevertrust/backchannel-logout`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }).toString(),
      });
    const { privateKey: other } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const refused: [string, string][] = [
      ['nonce', await sign(logout({ nonce: 'n' }), { typ: 'logout+jwt' })],
      ['signature', await sign(logout({}), { key: other, typ: 'logout+jwt' })],
      ['no event', await sign(logout({ events: {} }), { typ: 'logout+jwt' })],
      ['old', await sign(logout({ iat: now() - 3600 }), { typ: 'logout+jwt' })],
      ['audience', await sign(logout({ aud: 'other' }), { typ: 'logout+jwt' })],
    ];
    for (const [name, token] of refused) {
      const res = await post(token);
      expect(res.status, name).toBe(400);
      expect(await res.json(), name).toMatchObject({ error: 'invalid_request' });
    }
    expect((await b.whoami(app)).status).toBe(200);

    const good = await sign(logout({}), { typ: 'logout+jwt' });
    expect((await post(good)).status).toBe(200);
    expect((await post(good)).status).toBe(400); // the same jti again
    const after = await b.whoami(app);
    expect(after).toMatchObject({ status: 401, body: { code: 'session_ended' } });
    expect(events.find((e) => e.kind === 'access.session.ended' && e.reason === 'backchannel_logout')).toMatchObject({
      details: { session: who.body.sessionId },
    });
  });

  it("back-channel logout with only sub ends every session of that person, and nobody else's", async () => {
    const bob1 = new Browser(idp.caFile);
    const bob2 = new Browser(idp.caFile);
    const alice = new Browser(idp.caFile);
    for (const [br, who] of [
      [bob1, 'bob'],
      [bob2, 'bob'],
      [alice, 'alice'],
    ] as const)
      await br.login(app, who);
    const token = await sign(
      { iss: idp.issuer, aud: CLIENT_ID, iat: now(), jti: randomUUID(), events: { [BACKCHANNEL]: {} }, sub: 'bob' },
      { typ: 'logout+jwt' },
    );
    const res = await bob1.fetch(`${app.origin}/.nevertrust/backchannel-logout`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }).toString(),
    });
    expect(res.status).toBe(200);
    expect((await bob1.whoami(app)).body.code).toBe('session_ended');
    expect((await bob2.whoami(app)).body.code).toBe('session_ended');
    expect((await alice.whoami(app)).status).toBe(200);
  });

  it('signing out at the provider ends the session here through its real back-channel logout call', async () => {
    const b = new Browser(idp.caFile);
    await b.login(app, 'alice');
    const sid = String((await b.whoami(app)).body.sessionId);
    const end = new URL('/session/end', idp.issuer);
    end.searchParams.set('client_id', CLIENT_ID);
    const page = await (await b.request(end.href)).text();
    const action = /<form[^>]*action="([^"]+)"/.exec(page)?.[1] ?? '';
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(page)?.[1] ?? '';
    expect(action).not.toBe('');
    const done = await b.request(new URL(action, idp.issuer).href, {
      method: 'POST',
      body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
    });
    expect([302, 303]).toContain(done.status);
    let code: string | undefined;
    for (let i = 0; i < 50 && code === undefined; i++) {
      code = (await b.whoami(app)).body.code;
      if (code === undefined) await sleep(50);
    }
    expect(code).toBe('session_ended');
    const ended = events.filter((e) => e.kind === 'access.session.ended' && e.reason === 'backchannel_logout');
    expect(ended.some((e) => (e.details as { session: string }).session === sid)).toBe(true);
  });

  it('provider tokens past expiry are refreshed; a failed refresh (user disabled) ends the session', async () => {
    const alice = new Browser(idp.caFile);
    const bob = new Browser(idp.caFile);
    await alice.login(app, 'alice');
    await bob.login(app, 'bob');
    const bobSession = String((await bob.whoami(app)).body.sessionId);
    const before = await store.db.selectFrom('access_sessions').select(['id', 'token_expires_at', 'tokens']).execute();
    await sleep(2200);
    idp.accounts.set('bob', { sub: 'bob', email: 'bob@example.test', name: 'Bob', groups: [], disabled: true });

    // Alice: several requests at once share one refresh; the session lives on with new tokens.
    const all = await Promise.all([alice.whoami(app), alice.whoami(app), alice.whoami(app)]);
    for (const r of all) expect(r.status).toBe(200);
    const aliceId = String(all[0]?.body.sessionId);
    const changed = await store.db
      .selectFrom('access_session_changes')
      .selectAll()
      .where('session_id', '=', aliceId)
      .execute();
    expect(changed.map((c) => c.kind)).toEqual(['updated']);
    const aliceRow = await store.db
      .selectFrom('access_sessions')
      .selectAll()
      .where('id', '=', aliceId)
      .executeTakeFirstOrThrow();
    expect(aliceRow.token_expires_at).toBeGreaterThan(before.find((r) => r.id === aliceId)?.token_expires_at ?? 0);

    // Bob was disabled at the provider: the refresh fails and the session ends everywhere.
    const r = await bob.whoami(app);
    expect(r).toMatchObject({ status: 401, body: { kind: 'invalid', code: 'session_refresh_failed' } });
    expect((await bob.whoami(app)).body.code).toBe('session_ended');
    const bobRow = await store.db
      .selectFrom('access_sessions')
      .selectAll()
      .where('id', '=', bobSession)
      .executeTakeFirstOrThrow();
    expect(bobRow.end_reason).toBe('refresh_failed');
    expect(events.find((e) => e.kind === 'access.session.ended' && e.reason === 'refresh_failed')).toMatchObject({
      details: { session: bobSession },
      source: { user: 'bob@example.test' },
    });
    const text = JSON.stringify(events);
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  });

  it('a session idle too long, or past its absolute lifetime, is refused', async () => {
    const idleEvents: AuditEventInput[] = [];
    await attach(short, idp, store, dir, { session: { idle_lifetime: '1s', absolute_lifetime: '1h' } }, idleEvents);
    const b = new Browser(idp.caFile);
    await b.login(short, 'alice');
    expect((await b.whoami(short)).status).toBe(200);
    await sleep(600);
    expect((await b.whoami(short)).status).toBe(200); // use within the idle time keeps it alive
    await sleep(600);
    expect((await b.whoami(short)).status).toBe(200);
    await sleep(1300);
    expect((await b.whoami(short)).body.code).toBe('session_idle');
    expect((await b.whoami(short)).body.code).toBe('session_ended');
    await short.auth?.close();

    await attach(short, idp, store, dir, { session: { idle_lifetime: '1h', absolute_lifetime: '1500ms' } }, idleEvents);
    const c = new Browser(idp.caFile);
    await c.login(short, 'alice');
    expect((await c.whoami(short)).status).toBe(200);
    await sleep(1600);
    expect((await c.whoami(short)).body.code).toBe('session_expired');
  });
});
