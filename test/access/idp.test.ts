/**
 * The built-in OpenID provider, driven over real HTTPS by a real openid-client 6 relying party and a
 * cookie-keeping client: the code flow and its claims, refused logins, CSRF, disabled users and
 * their refresh tokens, back-channel logout, key persistence and rotation. Stores: real SQLite.
 */
import { randomBytes } from 'node:crypto';
import { Kek } from '../../src/ca/kek.js';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PASSWORD_ACR, type RunningIdentityProvider, startIdentityProvider } from '../../src/access/idp/index.js';
import type { AuditEventInput } from '../../src/audit/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { freePort } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import {
  AFTER_LOGOUT,
  addUser,
  Browser,
  CLIENT_ID,
  CLIENT_SECRET,
  codeFlow,
  REDIRECT,
  receiver,
  relyingParty,
  tlsKit,
} from './idp-harness.js';

describe('built-in OpenID provider', () => {
  const dir = tempDir();
  let store: Store;
  let kit: Awaited<ReturnType<typeof tlsKit>>;
  let idp: RunningIdentityProvider;
  let backchannel: Awaited<ReturnType<typeof receiver>>;
  let issuer: string;
  let port: number;
  const events: AuditEventInput[] = [];
  // One KEK for every start: the keys are sealed under it in the store, and must open after a restart.
  const kek = Kek.fromBytes(randomBytes(32));

  const start = () =>
    startIdentityProvider({
      kek: kek,
      issuer,
      listen: { host: '127.0.0.1', port },
      tls: kit.tls,
      store,
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [REDIRECT],
          post_logout_redirect_uris: [AFTER_LOGOUT],
          backchannel_logout_uri: backchannel.url,
        },
      ],
      record: (e) => events.push(e),
      outboundCa: kit.ca,
      attempts: { perUser: 50, perIp: 100 },
    });

  beforeAll(async () => {
    store = await openStore({ dataDir: dir });
    kit = await tlsKit(dir);
    backchannel = await receiver(kit.tls);
    port = await freePort();
    issuer = `https://localhost:${port}`;
    await addUser(store, 'alice', 'correct horse battery');
    await addUser(store, 'bob', 'bob password 1');
    await addUser(store, 'carol', 'carol password 1', { disabled: true });
    idp = await start();
  });
  afterAll(async () => {
    await idp?.close();
    backchannel?.server.close();
    await kit?.close();
    await store?.close();
  });

  const jwks = async () => (await (await kit.fetchTls(`${issuer}/jwks`)).json()) as JSONWebKeySet;

  it('runs the code flow with PKCE and puts the person in the ID token', async () => {
    const config = await relyingParty(issuer, kit.fetchTls);
    const browser = new Browser(kit.fetchTls);
    const out = await codeFlow(config, browser, 'alice', 'correct horse battery');
    expect(out.refused).toBeUndefined();
    const headers = out.loginPage.res.headers;
    expect(headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(headers.get('content-security-policy')).not.toMatch(/script-src|unsafe-inline/);
    const claims = out.tokens?.claims();
    expect(claims).toMatchObject({
      iss: issuer,
      sub: 'alice',
      aud: CLIENT_ID,
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice',
      groups: ['admins', 'staff'],
      amr: ['pwd'],
      acr: PASSWORD_ACR,
    });
    expect(typeof claims?.auth_time).toBe('number');
    expect(Math.abs((claims?.auth_time as number) - Date.now() / 1000)).toBeLessThan(30);
    expect(typeof claims?.sid).toBe('string');
    expect(decodeProtectedHeader(out.tokens?.id_token ?? '').alg).toBe('ES256');
    expect(out.tokens?.refresh_token).toBeTruthy();
    const login = events.find((e) => e.kind === 'idp.login' && e.outcome === 'allow');
    expect(login?.source?.user).toBe('alice');
    expect(JSON.stringify(events)).not.toContain('correct horse battery');
  });

  it('refuses a wrong password and an unknown user with the same answer', async () => {
    const config = await relyingParty(issuer, kit.fetchTls);
    const wrong = await codeFlow(config, new Browser(kit.fetchTls), 'bob', 'not bob password');
    const unknown = await codeFlow(config, new Browser(kit.fetchTls), 'mallory', 'whatever pass');
    expect(wrong.refused?.status).toBe(401);
    expect(unknown.refused?.status).toBe(401);
    const message = (html: string) => /<p class="error"[^>]*>([^<]*)<\/p>/.exec(html)?.[1];
    expect(message(wrong.refused?.html ?? '')).toBe('Invalid username or password.');
    expect(message(unknown.refused?.html ?? '')).toBe(message(wrong.refused?.html ?? ''));
    const denies = events.filter((e) => e.kind === 'idp.login' && e.outcome === 'deny').map((e) => e.reason);
    expect(denies).toEqual(expect.arrayContaining(['wrong password', 'unknown user']));
    expect(JSON.stringify(events)).not.toContain('not bob password');
  });

  it('refuses a login form without its CSRF token, or with another interaction’s', async () => {
    const config = await relyingParty(issuer, kit.fetchTls);
    const missing = await codeFlow(config, new Browser(kit.fetchTls), 'bob', 'bob password 1', { csrf: undefined });
    expect(missing.refused?.status).toBe(403);
    const forged = await codeFlow(config, new Browser(kit.fetchTls), 'bob', 'bob password 1', { csrf: 'A'.repeat(43) });
    expect(forged.refused?.status).toBe(403);
    expect(events.some((e) => e.reason === 'csrf token missing or wrong')).toBe(true);
  });

  it('refuses a disabled user, and a refresh once the user is disabled or removed', async () => {
    const config = await relyingParty(issuer, kit.fetchTls);
    const carol = await codeFlow(config, new Browser(kit.fetchTls), 'carol', 'carol password 1');
    expect(carol.refused?.status).toBe(401);

    const bob = await codeFlow(config, new Browser(kit.fetchTls), 'bob', 'bob password 1');
    const refresh = bob.tokens?.refresh_token ?? '';
    const again = await client.refreshTokenGrant(config, refresh);
    expect(again.claims()?.sub).toBe('bob');
    await store.users.update('bob', { disabled: true });
    await expect(client.refreshTokenGrant(config, again.refresh_token ?? refresh)).rejects.toMatchObject({
      error: 'invalid_grant',
    });
    await store.users.update('bob', { disabled: false });

    await addUser(store, 'dave', 'dave password 1');
    const dave = await codeFlow(config, new Browser(kit.fetchTls), 'dave', 'dave password 1');
    await store.users.remove('dave');
    await expect(client.refreshTokenGrant(config, dave.tokens?.refresh_token ?? '')).rejects.toMatchObject({
      error: 'invalid_grant',
    });
  });

  it('posts a verifiable logout_token to the back-channel endpoint on RP-initiated logout', async () => {
    const config = await relyingParty(issuer, kit.fetchTls);
    const browser = new Browser(kit.fetchTls);
    const out = await codeFlow(config, browser, 'alice', 'correct horse battery');
    const sid = out.tokens?.claims()?.sid;
    backchannel.bodies.length = 0;
    const endUrl = client.buildEndSessionUrl(config, {
      id_token_hint: out.tokens?.id_token ?? '',
      post_logout_redirect_uri: AFTER_LOGOUT,
    });
    const confirm = await browser.follow(endUrl.href);
    const html = await confirm.res.text();
    expect(confirm.res.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(html).not.toMatch(/<script/i);
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1] ?? '';
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
    const done = await browser.follow(new URL(action, confirm.url).href, { form: { xsrf, logout: 'yes' } });
    expect(done.url).toBe(AFTER_LOGOUT);
    expect(backchannel.bodies).toHaveLength(1);
    const token = new URLSearchParams(backchannel.bodies[0]).get('logout_token') ?? '';
    const { payload } = await jwtVerify(token, createLocalJWKSet(await jwks()), { issuer, audience: CLIENT_ID });
    expect(payload.events).toEqual({ 'http://schemas.openid.net/event/backchannel-logout': {} });
    expect(payload.sid).toBe(sid);
    expect(payload.sub).toBe('alice');
    expect(payload).not.toHaveProperty('nonce');
  });

  it('refuses a request without PKCE S256, and every response type but code', async () => {
    const base = { client_id: CLIENT_ID, redirect_uri: REDIRECT, scope: 'openid', state: 's', nonce: 'n' };
    const ask = async (params: Record<string, string>) => {
      const res = await new Browser(kit.fetchTls).go(`${issuer}/auth?${new URLSearchParams({ ...base, ...params })}`);
      return new URL(res.headers.get('location') ?? '', issuer).searchParams;
    };
    const noPkce = await ask({ response_type: 'code' });
    expect(noPkce.get('error')).toBe('invalid_request');
    expect(noPkce.get('error_description')).toMatch(/PKCE/);
    const plain = await ask({ response_type: 'code', code_challenge: 'x'.repeat(43), code_challenge_method: 'plain' });
    expect(plain.get('error')).toBe('invalid_request');
    const implicit = await new Browser(kit.fetchTls).go(
      `${issuer}/auth?${new URLSearchParams({ ...base, response_type: 'id_token' })}`,
    );
    // Not redirected with a token: refused (unsupported response type) on the provider's own page or redirect.
    expect(implicit.headers.get('location') ?? '').not.toMatch(/id_token=/);
    expect([303, 400]).toContain(implicit.status);
  });

  it('limits failed logins per username, before checking the password', async () => {
    const limitedPort = await freePort();
    const limited = await startIdentityProvider({
      kek: kek,
      issuer: `https://localhost:${limitedPort}`,
      listen: { host: '127.0.0.1', port: limitedPort },
      tls: kit.tls,
      store,
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [REDIRECT] }],
      record: (e) => events.push(e),
      attempts: { perUser: 2, perIp: 100 },
    });
    try {
      const config = await relyingParty(`https://localhost:${limitedPort}`, kit.fetchTls);
      for (let i = 0; i < 2; i++) {
        expect((await codeFlow(config, new Browser(kit.fetchTls), 'bob', 'wrong guess 123')).refused?.status).toBe(401);
      }
      // The right password is refused too while the username is limited: guessing cannot tell.
      const right = await codeFlow(config, new Browser(kit.fetchTls), 'bob', 'bob password 1');
      expect(right.refused?.status).toBe(429);
      expect(events.some((e) => e.reason === 'too many failed attempts for this username')).toBe(true);
      // Another username from the same address is not limited.
      expect(
        (await codeFlow(config, new Browser(kit.fetchTls), 'alice', 'correct horse battery')).tokens,
      ).toBeDefined();
    } finally {
      await limited.close();
    }
  });

  it('behind a TLS proxy (plain HTTP, https issuer) trusts X-Forwarded-Proto and prints no warning', async () => {
    const plainPort = await freePort();
    const warn = vi.spyOn(console, 'warn');
    const plain = await startIdentityProvider({
      kek: kek,
      issuer: 'https://idp.example.test',
      listen: { host: '127.0.0.1', port: plainPort },
      tls: false,
      store,
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [REDIRECT] }],
    });
    try {
      const res = await fetch(`http://127.0.0.1:${plainPort}/.well-known/openid-configuration`, {
        headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'idp.example.test' },
      });
      const meta = (await res.json()) as Record<string, string>;
      expect(meta.authorization_endpoint).toBe('https://idp.example.test/auth');
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
      await plain.close();
    }
  });

  it('keeps its keys across a restart and keeps old keys published after rotateKeys()', async () => {
    const config = await relyingParty(issuer, kit.fetchTls);
    const browser = new Browser(kit.fetchTls);
    const before = await codeFlow(config, browser, 'alice', 'correct horse battery');
    const oldToken = before.tokens?.id_token ?? '';
    const oldKid = decodeProtectedHeader(oldToken).kid;
    const kids = (await jwks()).keys.map((k) => k.kid);
    expect(kids).toContain(oldKid);
    expect((await jwks()).keys.map((k) => k.alg).sort()).toEqual(['ES256', 'RS256']);

    await idp.close();
    idp = await start();
    await kit.reset();
    expect((await jwks()).keys.map((k) => k.kid)).toEqual(kids);
    await expect(
      jwtVerify(oldToken, createLocalJWKSet(await jwks()), { issuer, currentDate: new Date() }),
    ).resolves.toBeTruthy();
    // The refresh token issued before the restart still works: the models are in the store.
    const refreshed = await client.refreshTokenGrant(config, before.tokens?.refresh_token ?? '');
    expect(refreshed.claims()?.sub).toBe('alice');
    // So is the person's provider session: the same browser gets a code without the login page.
    const again = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    const silent = await browser.follow(again.href);
    expect(new URL(silent.url).searchParams.get('code')).toBeTruthy();
    expect(silent.url.startsWith(REDIRECT)).toBe(true);

    await idp.rotateKeys();
    const after = (await jwks()).keys.map((k) => k.kid);
    expect(after).toEqual(expect.arrayContaining(kids));
    expect(after).toHaveLength(kids.length + 1);
    const fresh = await codeFlow(
      await relyingParty(issuer, kit.fetchTls),
      new Browser(kit.fetchTls),
      'alice',
      'correct horse battery',
    );
    const newKid = decodeProtectedHeader(fresh.tokens?.id_token ?? '').kid;
    expect(newKid).not.toBe(oldKid);
    expect(after[0]).toBe(newKid);
    await expect(jwtVerify(oldToken, createLocalJWKSet(await jwks()), { issuer })).resolves.toBeTruthy();
  });
});
