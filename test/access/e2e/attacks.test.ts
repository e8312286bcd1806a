/**
 * Attacks on people's access through the whole stack (built-in provider, OIDC authenticator, access
 * proxy, example policies, an app that verifies the assertion): every one is refused with a reason,
 * recorded, and nothing reaches the app.
 */
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { type JWK, SignJWT, exportJWK, generateKeyPair, importJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OidcAuthenticator } from '../../../src/access/auth/index.js';
import { loadOrCreateKeys, type RunningIdentityProvider } from '../../../src/access/idp/index.js';
import type { RunningAccessProxy } from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import { PersonClient, parseForm } from '../../../src/mesh/people-client.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { freePort } from '../../support/cli.js';
import { tempDir } from '../../support/tmp.js';
import {
  type App,
  addPeople,
  CLIENT_ID,
  HOST,
  makeAuthenticator,
  OTHER_HOST,
  PEOPLE,
  rawRequest,
  SESSION_COOKIE,
  startApp,
  startBuiltinIdp,
  startProxy,
  startTrust,
  type Trust,
  toCallback as harnessToCallback,
  walkLogin as harnessWalkLogin,
  TEST_KEK,
} from './harness.js';

let trust: Trust;
let store: Store;
let app: App;
let idp: RunningIdentityProvider;
let auth: OidcAuthenticator;
let proxy: RunningAccessProxy;
let origin: string;
const decisions: AccessDecisionEvent[] = [];
const authEvents: AuditEventInput[] = [];
const clients: PersonClient[] = [];

const person = () => {
  const c = new PersonClient({ ca: trust.caPem });
  clients.push(c);
  return c;
};
const call = (path: string, headers: Record<string, string> = {}, opts: Parameters<typeof rawRequest>[4] = {}) =>
  rawRequest(trust.caPem, proxy.port, path, headers, opts);
const lastDecision = () => decisions.at(-1) as AccessDecisionEvent;
const lastAuthEvent = () => authEvents.at(-1) as AuditEventInput;
/** Codes, states, cookies and tokens the tests handled: none may appear in an event. */
const secrets: string[] = [];
const keep = (callback: string) => {
  const u = new URL(callback);
  for (const k of ['code', 'state']) {
    const v = u.searchParams.get(k);
    if (v) secrets.push(v);
  }
  return callback;
};
const toCallback = async (...a: Parameters<typeof harnessToCallback>) => keep(await harnessToCallback(...a));
const walkLogin = async (...a: Parameters<typeof harnessWalkLogin>) => keep(await harnessWalkLogin(...a));
/** A signed-in person's session cookie, as `Cookie` header. */
let bobCookie: string;

beforeAll(async () => {
  const dir = tempDir();
  trust = await startTrust(dir);
  store = await openStore({ dataDir: join(dir, 'store') });
  await addPeople(store);
  app = await startApp(trust);
  const port = await freePort();
  origin = `https://${HOST}:${port}`;
  idp = await startBuiltinIdp(trust, store, [origin]);
  auth = await makeAuthenticator(trust, idp.issuer, store, join(dir, 'auth'), authEvents);
  proxy = await startProxy(trust, { port, authenticator: auth, appPort: app.port, decisions });
  const bob = person();
  const r = await bob.signIn(`${origin}/reports`, 'bob', PEOPLE.bob.password);
  expect(r.status).toBe(200);
  bobCookie = `${SESSION_COOKIE}=${bob.cookies(HOST).get(SESSION_COOKIE)}`;
  secrets.push(bobCookie.slice(SESSION_COOKIE.length + 1));
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  await proxy?.close();
  await idp?.close();
  app?.close();
  await store?.close();
  await trust?.close();
});

/** Runs `attack` and checks that nothing reached the app meanwhile. */
async function nothingForwarded<T>(attack: () => Promise<T>): Promise<T> {
  const before = app.hits.length;
  const out = await attack();
  expect(app.hits.slice(before).map((h) => h.url)).toEqual([]);
  return out;
}

describe('the flow these attacks start from', () => {
  it('a signed-in person reaches the app, which verifies the proxy assertion; the session cookie stays at the proxy', async () => {
    const r = await call('/reports?month=2026-11', { cookie: `${bobCookie}; theme=dark`, accept: 'text/html' });
    expect(r.status).toBe(200);
    const hit = app.hits.at(-1);
    expect(hit?.url).toBe('/reports?month=2026-11');
    expect(hit?.who).toMatchObject({ subject: 'bob', email: 'bob@example.com', groups: ['staff'], idp: idp.issuer });
    expect(hit?.who?.sessionId).toMatch(/^s_/);
    // The app's other cookies pass; the session reference (a credential it could replay) does not.
    expect(hit?.headers.cookie).toBe('theme=dark');
    expect(lastDecision()).toMatchObject({ outcome: 'allow', decision_id: hit?.who?.decisionId });
  });
});

describe('bearer ID tokens', () => {
  let idpKey: { jwk: JWK; kid: string };
  const claims = () => ({
    iss: idp.issuer,
    aud: CLIENT_ID,
    sub: 'alice',
    email: 'alice@example.com',
    groups: ['admins', 'staff'],
    // MFA at the provider (a one-time code, just now): /admin demands a second factor.
    amr: ['pwd', 'otp'],
    auth_time: Math.floor(Date.now() / 1000),
  });
  const sign = async (payload: Record<string, unknown>, key = idpKey, exp: string | number = '5m') =>
    new SignJWT(payload)
      .setProtectedHeader({ alg: 'ES256', kid: key.kid })
      .setIssuedAt()
      .setExpirationTime(exp)
      .sign(await importJWK(key.jwk, 'ES256'));
  const bearer = (token: string) => ({ authorization: `Bearer ${token}`, accept: 'application/json' });

  beforeAll(async () => {
    // The provider's own signing key, from the store: tokens the provider could have signed.
    const jwk = (await loadOrCreateKeys(store, TEST_KEK)).signing.find((k) => k.alg === 'ES256') as JWK;
    idpKey = { jwk, kid: jwk.kid as string };
  });

  it('a token with the provider key, issuer, audience and lifetime is accepted (the control)', async () => {
    const r = await call('/admin', bearer(await sign(claims())));
    expect(r.status).toBe(200);
    expect(app.hits.at(-1)?.who).toMatchObject({ subject: 'alice', groups: ['admins', 'staff'] });
    expect(app.hits.at(-1)?.headers.authorization).toBeUndefined();
  });

  const refusals: [string, () => Promise<string>, RegExp][] = [
    [
      'forged (another key, the provider kid)',
      async () => {
        const { privateKey } = await generateKeyPair('ES256', { extractable: true });
        return sign(claims(), { jwk: await exportJWK(privateKey), kid: idpKey.kid });
      },
      /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/,
    ],
    ['expired', () => sign(claims(), undefined, Math.floor(Date.now() / 1000) - 3600), /ERR_JWT_EXPIRED/],
    ['for another audience', () => sign({ ...claims(), aud: 'another-client' }), /ERR_JWT_CLAIM_VALIDATION_FAILED/],
    [
      'from another issuer',
      () => sign({ ...claims(), iss: 'https://evil.example' }),
      /ERR_JWT_CLAIM_VALIDATION_FAILED/,
    ],
    [
      'HS256 keyed with the provider public key (algorithm confusion)',
      async () => {
        const { d: _private, ...pub } = idpKey.jwk;
        const secret = new TextEncoder().encode(JSON.stringify(pub));
        return new SignJWT(claims())
          .setProtectedHeader({ alg: 'HS256', kid: idpKey.kid })
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(secret);
      },
      /ERR_JOSE_ALG_NOT_ALLOWED/,
    ],
    [
      'alg none',
      async () => {
        const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        const now = Math.floor(Date.now() / 1000);
        return `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ ...claims(), iat: now, exp: now + 300 })}.`;
      },
      /ERR_JOSE_ALG_NOT_ALLOWED|ERR_JOSE_NOT_SUPPORTED|ERR_JWS_INVALID/,
    ],
  ];
  it.each(refusals)('%s: 401 with the reason, recorded, nothing forwarded', async (_name, make, why) => {
    const token = await make();
    secrets.push(token);
    const r = await nothingForwarded(() => call('/admin', bearer(token)));
    expect(r.status).toBe(401);
    const body = JSON.parse(r.body) as { error: string; reason: string; decision_id: string };
    expect(body.error).toBe('bearer_invalid');
    expect(body.reason).toMatch(why);
    expect(r.headers['www-authenticate']).toMatch(/error="invalid_token"/);
    expect(lastDecision()).toMatchObject({ outcome: 'deny', decision_id: body.decision_id });
    expect(lastDecision().reason).toMatch(why);
    expect(JSON.stringify(decisions)).not.toContain(token);
  });
});

describe('the login callback', () => {
  const refusedLogin = (r: { status: number; body: string }, reason: RegExp) => {
    expect(r.status).toBe(400);
    // The page shows the reason (HTML-escaped), the audit event records it.
    const named: Record<string, string> = { quot: '"', amp: '&', lt: '<', gt: '>' };
    const text = r.body
      .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
      .replace(/&(quot|amp|lt|gt);/g, (_, n: string) => named[n] as string);
    expect(text).toMatch(reason);
    expect(lastAuthEvent()).toMatchObject({ kind: 'access.login', outcome: 'deny' });
    expect(lastAuthEvent().reason).toMatch(reason);
  };

  it('a replayed authorization code is refused: in its own flow (state spent) and in another flow (code spent)', async () => {
    const victim = person();
    const cb = await toCallback(victim, `${origin}/reports`, 'bob', PEOPLE.bob.password);
    const loginCookie = victim.cookies(HOST).get('__Host-nevertrust_login') as string;
    expect((await victim.send('GET', cb)).status).toBe(302);
    // The same callback again, with the login cookie it was started with.
    const again = await nothingForwarded(() =>
      call(new URL(cb).pathname + new URL(cb).search, { cookie: `__Host-nevertrust_login=${loginCookie}` }),
    );
    refusedLogin(again, /unknown_or_used_state/);
    // An attacker starts a login of their own and injects the victim's code into it.
    const attacker = person();
    const start = await attacker.send('GET', `${origin}/reports`);
    const state = new URL(start.headers.location as string).searchParams.get('state') as string;
    const injected = new URL(cb);
    injected.searchParams.set('state', state);
    const r = await nothingForwarded(() => attacker.send('GET', injected.href));
    refusedLogin(r, /token_endpoint_invalid_grant/);
    expect(attacker.cookies(HOST).has(SESSION_COOKIE)).toBe(false);
  });

  it('a missing or wrong state is refused before the code is used', async () => {
    const c = person();
    const cb = new URL(await toCallback(c, `${origin}/reports`, 'bob', PEOPLE.bob.password));
    const noState = new URL(cb);
    noState.searchParams.delete('state');
    refusedLogin(await nothingForwarded(() => c.send('GET', noState.href)), /missing_state/);
    const wrong = new URL(cb);
    wrong.searchParams.set('state', 'A'.repeat(43));
    refusedLogin(await nothingForwarded(() => c.send('GET', wrong.href)), /state_mismatch/);
    // Without the browser's login cookie (a callback link sent to a victim).
    const other = person();
    refusedLogin(await nothingForwarded(() => other.send('GET', cb.href)), /missing_login_cookie/);
    // The refusals spent nothing: the real callback still completes the login.
    expect((await c.send('GET', cb.href)).status).toBe(302);
    expect(c.cookies(HOST).has(SESSION_COOKIE)).toBe(true);
  });

  it('an ID token whose nonce is not the one sent is refused', async () => {
    const c = person();
    const cb = await toCallback(c, `${origin}/reports`, 'bob', PEOPLE.bob.password, (u) => {
      u.searchParams.set('nonce', 'attacker-chosen-nonce-0123456789abcdef');
      return u;
    });
    refusedLogin(
      await nothingForwarded(() => c.send('GET', cb)),
      /oauth_jwt_claim_comparison_failed: unexpected ID Token "nonce" claim value/,
    );
    expect(c.cookies(HOST).has(SESSION_COOKIE)).toBe(false);
  });

  it('a callback naming another issuer (mix-up), or carrying a provider error, is refused', async () => {
    const c = person();
    const cb = new URL(await toCallback(c, `${origin}/reports`, 'bob', PEOPLE.bob.password));
    expect(cb.searchParams.get('iss')).toBe(idp.issuer);
    const mixUp = new URL(cb);
    mixUp.searchParams.set('iss', 'https://evil.example');
    const mixed = await nothingForwarded(() => c.send('GET', mixUp.href));
    refusedLogin(mixed, /oauth_invalid_response: unexpected "iss" \(issuer\) response parameter value/);
    expect(c.cookies(HOST).has(SESSION_COOKIE)).toBe(false);
    const c2 = person();
    const start = await c2.send('GET', `${origin}/reports`);
    const state = new URL(start.headers.location as string).searchParams.get('state') as string;
    const denied = `${origin}/.nevertrust/callback?error=access_denied&state=${state}&iss=${encodeURIComponent(idp.issuer)}`;
    refusedLogin(await nothingForwarded(() => c2.send('GET', denied)), /provider_access_denied/);
  });

  it('a code obtained for another PKCE challenge is refused', async () => {
    const c = person();
    const cb = await toCallback(c, `${origin}/reports`, 'bob', PEOPLE.bob.password, (u) => {
      u.searchParams.set('code_challenge', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
      return u;
    });
    refusedLogin(await nothingForwarded(() => c.send('GET', cb)), /token_endpoint_invalid_grant/);
  });
});

describe('session cookies', () => {
  it('a tampered session cookie is refused: 401 to an API client, a new login to a browser', async () => {
    const value = bobCookie.slice(SESSION_COOKIE.length + 1);
    const flipped = `${value.slice(0, -1)}${value.endsWith('A') ? 'B' : 'A'}`;
    const api = await nothingForwarded(() =>
      call('/reports', { cookie: `${SESSION_COOKIE}=${flipped}`, accept: 'application/json' }),
    );
    expect(api.status).toBe(401);
    expect(JSON.parse(api.body)).toMatchObject({ error: 'session_unknown' });
    expect(lastDecision()).toMatchObject({ outcome: 'deny', reason: 'invalid credential: no such session' });
    for (const bad of [`${value}x`, value.slice(0, 20), 'not-a-session', `${value}%00`]) {
      const r = await nothingForwarded(() =>
        call('/reports', { cookie: `${SESSION_COOKIE}=${bad}`, accept: 'text/html' }),
      );
      expect(r.status).toBe(302);
      expect(new URL(r.headers.location as string).origin).toBe(idp.issuer);
    }
  });

  it('a sign-out post without the form token is refused and the session lives on', async () => {
    const r = await call(
      '/.nevertrust/sign_out',
      {
        cookie: bobCookie,
        'content-type': 'application/x-www-form-urlencoded',
        origin: 'https://evil.example',
      },
      { method: 'POST', body: 'csrf=forged' },
    );
    expect(r.status).toBe(403);
    expect((await call('/reports', { cookie: bobCookie, accept: 'application/json' })).status).toBe(200);
  });

  it('a session of one host replayed at another host of the same proxy is refused', async () => {
    // Browsers keep __Host- cookies to their host; an attacker holding one can send it anywhere.
    const r = await nothingForwarded(() =>
      call('/reports', { cookie: bobCookie, accept: 'application/json' }, { host: OTHER_HOST, sni: OTHER_HOST }),
    );
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'session_wrong_host' });
    expect(lastDecision()).toMatchObject({
      outcome: 'deny',
      reason: 'invalid credential: the session belongs to another host',
    });
  });

  it('a cookie used after sign-out is refused, and the sign-out is recorded', async () => {
    const c = person();
    await c.signIn(`${origin}/reports`, 'bob', PEOPLE.bob.password);
    const cookie = `${SESSION_COOKIE}=${c.cookies(HOST).get(SESSION_COOKIE)}`;
    expect((await call('/reports', { cookie, accept: 'application/json' })).status).toBe(200);
    const page = await c.send('GET', `${origin}/.nevertrust/sign_out`);
    const form = parseForm(page.body);
    expect(form?.fields.csrf).toBeTruthy();
    const out = await c.send('POST', new URL(form?.action ?? '', origin).href, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form?.fields).toString(),
    });
    expect(out.status).toBe(302);
    expect(new URL(out.headers.location as string).origin).toBe(idp.issuer);
    expect(authEvents.some((e) => e.kind === 'access.logout' && e.outcome === 'allow')).toBe(true);
    const r = await nothingForwarded(() => call('/reports', { cookie, accept: 'application/json' }));
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'session_ended' });
    expect(lastDecision().reason).toMatch(/invalid credential: the session was ended \(logout\)/);
  });
});

describe('the return URL after login', () => {
  // Each is either refused by the proxy before any login (400), or the login comes back to this origin.
  it.each([
    '//evil.example',
    '//evil.example/reports',
    '/\\evil.example',
    '/\\/evil.example',
    '/%2F%2Fevil.example',
    '/%2f%2fevil.example',
    '/%5Cevil.example',
    '/%5C%5Cevil.example',
    '/%252F%252Fevil.example',
    '/%09/evil.example',
    '/reports/https://evil.example',
    '/https:%2F%2Fevil.example',
  ])('%s never sends the browser off the origin', async (path) => {
    // Sent raw: a URL parser on the client side would normalize some of these away.
    const first = await call(path, { accept: 'text/html' });
    if (first.status === 400) {
      expect(lastDecision()).toMatchObject({ outcome: 'deny' });
      return;
    }
    expect(first.status).toBe(302);
    const login = first.headers['set-cookie']?.find((c) => c.startsWith('__Host-nevertrust_login='));
    const c = person();
    const cb = new URL(await walkLogin(c, first.headers.location as string, origin, 'bob', PEOPLE.bob.password));
    const back = await call(cb.pathname + cb.search, { cookie: (login ?? '').split(';')[0] as string });
    expect(back.status).toBe(302);
    const to = back.headers.location as string;
    expect(new URL(to).origin).toBe(origin);
    expect(to.startsWith(`${origin}/`)).toBe(true);
    // A browser resolving the location lands on this origin too.
    expect(new URL(to, origin).host).toBe(new URL(origin).host);
  });

  it('an absolute-form request target is refused (400), never a login', async () => {
    const r = await nothingForwarded(() => call('https://evil.example/', { accept: 'text/html' }));
    expect(r.status).toBe(400);
    expect(lastDecision()).toMatchObject({ outcome: 'deny' });
  });
});

describe('what the client sends', () => {
  it('a client-sent X-Nevertrust-Jwt-Assertion never reaches the app; the app sees only the proxy one', async () => {
    // Another person's real assertion, as seen by the app earlier, replayed by bob in every case.
    const alice = person();
    await alice.signIn(`${origin}/reports`, 'alice', PEOPLE.alice.password);
    const stolen = app.hits.at(-1)?.headers['x-nevertrust-jwt-assertion'] as string;
    expect(app.hits.at(-1)?.who?.subject).toBe('alice');
    for (const name of ['X-Nevertrust-Jwt-Assertion', 'x-nevertrust-jwt-assertion', 'X-NEVERTRUST-JWT-ASSERTION']) {
      const r = await call('/reports', { cookie: bobCookie, [name]: stolen, accept: 'text/html' });
      expect(r.status).toBe(200);
      const hit = app.hits.at(-1);
      expect(hit?.headers['x-nevertrust-jwt-assertion']).not.toBe(stolen);
      expect(hit?.who?.subject).toBe('bob');
    }
    // Not even on a path bob may not use: denied, nothing forwarded.
    const denied = await nothingForwarded(() =>
      call('/admin', { cookie: bobCookie, 'x-nevertrust-jwt-assertion': stolen }),
    );
    expect(denied.status).toBe(403);
  });

  it.each([
    ['/app/../admin', 400],
    ['/app/%2e%2e/admin', 400],
    ['/app/%2E%2E/admin', 400],
    ['/app/.%2e/admin', 400],
    ['/app%2F..%2Fadmin', 400],
    ['/app/..;/admin', 400],
    ['/reports/../admin', 400],
    ['//admin', 403],
    ['/app//admin', 403],
    ['/ADMIN', 403],
  ])('path trick %s: %i, recorded with the reason, nothing forwarded', async (path, status) => {
    const r = await nothingForwarded(() => call(path, { cookie: bobCookie, accept: 'application/json' }));
    expect(r.status).toBe(status);
    const body = JSON.parse(r.body) as { reason: string; decision_id: string };
    expect(body.reason).not.toBe('');
    expect(lastDecision()).toMatchObject({ outcome: 'deny', decision_id: body.decision_id });
    expect(lastDecision().reason).toBe(body.reason);
  });

  it('a Host that no route serves: 404, recorded, nothing forwarded (with a valid session)', async () => {
    for (const host of [
      'evil.example',
      'backoffice.localhost.evil.example',
      'localhost',
      'backoffice.localhost.evil',
      'xbackoffice.localhost',
    ]) {
      const r = await nothingForwarded(() =>
        call('/reports', { cookie: bobCookie, accept: 'application/json' }, { host }),
      );
      expect(r.status).toBe(404);
      expect(JSON.parse(r.body)).toMatchObject({ error: 'unknown_host' });
      expect(lastDecision()).toMatchObject({ outcome: 'deny', reason: 'no application is served at this host' });
    }
  });

  it('oversized headers: 431, recorded, nothing forwarded', async () => {
    const before = decisions.length;
    const r = await nothingForwarded(() =>
      call('/reports', { cookie: bobCookie, 'x-big': 'a'.repeat(20 * 1024), accept: 'application/json' }),
    );
    expect(r.status).toBe(431);
    expect(decisions.slice(before)).toEqual([
      expect.objectContaining({ outcome: 'deny', reason: expect.stringMatching(/header/i) }),
    ]);
  });

  it('a request Node cannot parse: 400, recorded, nothing forwarded', async () => {
    const before = decisions.length;
    const answer = await nothingForwarded(
      () =>
        new Promise<string>((resolve, reject) => {
          const socket = tlsConnect({ host: '127.0.0.1', port: proxy.port, servername: HOST, ca: trust.caPem }, () => {
            socket.write(
              `GET /reports HTTP/1.1\r\nHost: ${HOST}\r\nBad Header: x\r\n${bobCookie ? `Cookie: ${bobCookie}\r\n` : ''}\r\n`,
            );
          });
          let text = '';
          socket.setEncoding('latin1');
          socket.on('data', (d: string) => {
            text += d;
          });
          socket.on('end', () => resolve(text));
          socket.on('error', reject);
        }),
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(decisions.slice(before)).toEqual([
      expect.objectContaining({ outcome: 'deny', reason: expect.stringMatching(/malformed HTTP request/) }),
    ]);
  });
});

describe('the audit trail', () => {
  it('holds no code, state, cookie or token value the tests used', () => {
    expect(secrets.length).toBeGreaterThan(10);
    const trail = JSON.stringify([decisions, authEvents]);
    for (const s of secrets) expect(trail).not.toContain(s);
    // Every refusal carries a reason.
    for (const d of decisions.filter((e) => e.outcome !== 'allow')) expect(d.reason).not.toBe('');
    for (const e of authEvents.filter((x) => x.outcome === 'deny')) expect(e.reason).toBeTruthy();
  });
});
