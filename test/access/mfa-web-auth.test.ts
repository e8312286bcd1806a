/**
 * MFA in the authenticator: a session's step-up (`elevate`) seen at once by this proxy and through the
 * change feed by another, the provider's MFA by the `mfa` mapping, a login asking the provider for
 * more (`acr_values`, `max_age`, `prompt=login`), and what policy is sent. Real oidc-provider, TLS, SQLite.
 */
import { join } from 'node:path';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oidcAuthConfigSchema } from '../../src/access/auth/config.js';
import { withProviderMfa, withSessionMfa } from '../../src/access/auth/mfa-mapping.js';
import type { PersonIdentity } from '../../src/access/identity.js';
import { personRequest } from '../../src/access/proxy/access-request.js';
import { parseAccessProxyConfig } from '../../src/access/proxy/config.js';
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
import { until } from './e2e/harness.js';

const now = () => Math.floor(Date.now() / 1000);

describe('MFA in the authenticator (real provider, real TLS, SQLite)', () => {
  const dir = tempDir();
  let store: Store;
  let idp: TestIdp;
  let appA: AppServer;
  /** A second proxy for the same host, on the same store: sees a step-up through the change feed. */
  let appA2: AppServer;
  /** Same host, an authenticator with its own `mfa` mapping. */
  let appM: AppServer;
  const events: AuditEventInput[] = [];

  beforeAll(async () => {
    const tls = await makeTls(dir);
    appA = await startApp(tls, 'app-a.test');
    appA2 = await startApp(tls, 'app-a.test');
    appM = await startApp(tls, 'app-m.test');
    idp = await startIdp(tls, [appA, appA2, appM]);
    idp.accounts.set('alice', { sub: 'alice', email: 'alice@example.test', name: 'Alice', groups: ['eng'] });
    store = await openStore({ dataDir: join(dir, 'data') });
    await attach(appA, idp, store, join(dir, 'a'), {}, events);
    // The same key file as appA: proxies of one deployment share it (sealed provider tokens).
    await attach(appA2, idp, store, join(dir, 'a'), {}, events);
    await attach(appM, idp, store, join(dir, 'm'), {
      mfa: { amr: ['hwk'], acr: { 'urn:example:mfa': ['mfa', 'hwk'] } },
    });
  });
  afterAll(async () => {
    for (const a of [appA, appA2, appM]) {
      await a.auth?.close();
      await a.close();
    }
    await idp.close();
    await store.close();
  });

  it('elevate: the very next request sees mfaAt and the methods; another proxy sees it via the change feed', async () => {
    const b = new Browser(idp.caFile);
    expect((await b.login(appA, 'alice')).status).toBe(302);
    const token = b.jar(appA.origin).get('__Host-nevertrust_session') ?? '';
    b.jar(appA2.origin).set('__Host-nevertrust_session', token);
    const before = await b.whoami(appA);
    const other = await b.whoami(appA2);
    expect(before.body).toMatchObject({ kind: 'session' });
    const person0 = (before.body as unknown as { person: PersonIdentity }).person;
    expect(person0.mfaAt).toBeUndefined();
    expect((other.body as unknown as { person: PersonIdentity }).person.mfaAt).toBeUndefined();
    const sid = (before.body as unknown as { sessionId: string }).sessionId;

    const t0 = now();
    expect(await appA.auth?.elevate(sid, ['hwk', 'user', 'hwk'])).toBe(true);
    const stored = await store.accessSessions.findById(sid);
    expect(JSON.parse(stored?.mfa ?? 'null')).toMatchObject({ methods: ['hwk', 'user'] });
    // No wait: the next request at this proxy.
    const after = (await b.whoami(appA)).body as unknown as { person: PersonIdentity };
    expect(after.person.mfaAt).toBeGreaterThanOrEqual(t0);
    expect(after.person.amr).toEqual(expect.arrayContaining(['hwk', 'user']));
    // The other proxy had the session cached without MFA: the change feed brings the update.
    await until(async () => {
      const p = ((await b.whoami(appA2)).body as unknown as { person: PersonIdentity }).person;
      return p.mfaAt !== undefined && p.amr.includes('hwk');
    }, 3000);
  });

  it('elevate refuses an unknown or ended session', async () => {
    expect(await appA.auth?.elevate('s_00000000000000000000000000000000', ['otp'])).toBe(false);
    const b = new Browser(idp.caFile);
    await b.login(appA, 'alice');
    const sid = ((await b.whoami(appA)).body as unknown as { sessionId: string }).sessionId;
    await store.accessSessions.end(sid, 'logout');
    expect(await appA.auth?.elevate(sid, ['otp'])).toBe(false);
  });

  it("a bearer token's amr and acr count by the mapping: mfaAt is auth_time", async () => {
    const sign = (claims: jose.JWTPayload) =>
      new jose.SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: idp.kid }).sign(idp.privateKey);
    const base = {
      iss: idp.issuer,
      aud: CLIENT_ID,
      sub: 'carol',
      iat: now(),
      exp: now() + 300,
      auth_time: now() - 100,
    };
    const who = async (app: AppServer, claims: jose.JWTPayload) => {
      const r = await new Browser(idp.caFile).whoami(app, { authorization: `Bearer ${await sign(claims)}` });
      return (r.body as unknown as { person: PersonIdentity }).person;
    };
    // Default mapping: the RFC 8176 second-factor methods.
    expect((await who(appA, { ...base, amr: ['pwd', 'otp'] })).mfaAt).toBe(base.auth_time);
    expect((await who(appA, { ...base, amr: ['pwd'] })).mfaAt).toBeUndefined();
    // A mapping that counts only hwk; an acr standing for hwk.
    expect((await who(appM, { ...base, amr: ['pwd', 'otp'] })).mfaAt).toBeUndefined();
    const viaAcr = await who(appM, { ...base, amr: ['pwd'], acr: 'urn:example:mfa' });
    expect(viaAcr.mfaAt).toBe(base.auth_time);
    expect(viaAcr.amr).toEqual(['pwd', 'mfa', 'hwk']);
    // An acr not in the map, or one named like an Object property, adds nothing.
    expect((await who(appM, { ...base, amr: ['pwd'], acr: 'constructor' })).mfaAt).toBeUndefined();
    // Without auth_time the second factor counts but its time is unknown: the token's iat is when it
    // was issued (a refreshed token is new, its MFA is not), so freshness rules fail closed.
    const { auth_time: _a, ...noAuthTime } = base;
    const untimed = await who(appA, { ...noAuthTime, amr: ['hwk'] });
    expect(untimed.mfa).toBe(true);
    expect(untimed.mfaAt).toBeUndefined();
  });

  it('a login may ask the provider for acr_values, max_age and prompt=login, and completes', async () => {
    const b = new Browser(idp.caFile);
    const start = await b.request(
      `${appA.origin}/login?return_to=/admin&acr_values=${encodeURIComponent('urn:example:mfa urn:b')}&max_age=60&prompt=login`,
    );
    const u = new URL(start.headers.get('location') ?? '');
    expect(u.searchParams.get('acr_values')).toBe('urn:example:mfa urn:b');
    expect(u.searchParams.get('max_age')).toBe('60');
    expect(u.searchParams.get('prompt')?.split(' ')).toContain('login');
    const plain = new URL((await b.request(`${appA.origin}/login?return_to=/`)).headers.get('location') ?? '');
    expect(plain.searchParams.has('acr_values')).toBe(false);
    expect(plain.searchParams.has('max_age')).toBe(false);
    // max_age makes the callback demand auth_time within it: the provider's fresh login meets it.
    const b2 = new Browser(idp.caFile);
    let res = await b2.request(`${appA.origin}/login?return_to=/x&max_age=60&prompt=login`);
    for (let i = 0; i < 20 && !res.headers.get('location')?.includes('/.nevertrust/callback'); i++) {
      const loc = res.headers.get('location');
      if (loc) {
        res = await b2.request(new URL(loc, res.url).href);
        continue;
      }
      const html = await res.text();
      const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1] ?? '';
      const form = new URLSearchParams();
      for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g))
        form.set(m[1] ?? '', m[2] ?? '');
      if (/name="login"/.test(html)) {
        form.set('login', 'alice');
        form.set('password', 'any');
      }
      res = await b2.request(new URL(action, res.url).href, { method: 'POST', body: form.toString() });
    }
    const done = await b2.request(new URL(res.headers.get('location') ?? '', res.url).href);
    expect(done.status).toBe(302);
    expect(done.headers.get('location')).toBe(`${appA.origin}/x`);
  });

  it('policy is sent mfa, mfa_time and amr from the identity', () => {
    const route = parseAccessProxyConfig({
      listen: '127.0.0.1:0',
      svid: { workload_api: 'unused' },
      policies: 'p',
      routes: [{ name: 'r', from: { host: 'a.test' }, to: 'http://127.0.0.1:1' }],
    }).routes[0];
    if (!route) throw new Error('no route');
    const p: PersonIdentity = { issuer: 'https://i', sub: 's', groups: [], amr: ['pwd'], claims: {} };
    const plain = personRequest(p, route, 'a.test', '10.0.0.1', 'GET', '/');
    expect(plain.source).toMatchObject({ mfa: false, amr: ['pwd'] });
    expect(plain.source?.mfa_time).toBeUndefined();
    // amr alone is not MFA any more: the authenticator's mapping decides (mfaAt).
    const stepped = withSessionMfa(
      { ...p, amr: ['pwd', 'otp'] },
      { amr: ['otp'], acr: {} },
      { at: 1_800_000_000, methods: ['hwk'] },
    );
    expect(stepped.amr).toEqual(['pwd', 'hwk']);
    const r = personRequest(stepped, route, 'a.test', '10.0.0.1', 'GET', '/');
    expect(r.source).toMatchObject({ mfa: true, mfa_time: 1_800_000_000, amr: ['pwd', 'hwk'] });
    // A provider MFA newer than the session's step-up wins (a later login is a new session anyway).
    const newer = withProviderMfa({ ...p, amr: ['otp'], authTime: 1_900_000_000 }, { amr: ['otp'], acr: {} });
    expect(withSessionMfa(newer, { amr: ['otp'], acr: {} }, { at: 1_800_000_000, methods: ['hwk'] })).toBe(newer);
    // A second factor of unknown time: auth.mfa holds, auth.mfa_age is unknown (fails closed).
    const untimed = personRequest({ ...p, amr: ['hwk'], mfa: true }, route, 'a.test', '10.0.0.1', 'GET', '/');
    expect(untimed.source?.mfa).toBe(true);
    expect(untimed.source?.mfa_time).toBeUndefined();
    // A hostile amr list stays within the request schema's bounds.
    const many = personRequest(
      { ...p, amr: [...Array(40).keys()].map(String).concat('x'.repeat(65)) },
      route,
      'a.test',
      undefined,
      'GET',
      '/',
    );
    expect(many.source?.amr).toHaveLength(32);
  });

  it('the mfa mapping is validated', () => {
    const base = { issuer: 'https://i.test', client_id: 'c', client_secret: 's', session: { key_file: 'k' } };
    expect(oidcAuthConfigSchema.parse(base).mfa.amr).toContain('hwk');
    expect(oidcAuthConfigSchema.safeParse({ ...base, mfa: { amr: ['has space'] } }).success).toBe(false);
    expect(oidcAuthConfigSchema.safeParse({ ...base, mfa: { acr: { x: [] } } }).success).toBe(false);
    expect(oidcAuthConfigSchema.safeParse({ ...base, mfa: { extra: 1 } }).success).toBe(false);
  });
});
