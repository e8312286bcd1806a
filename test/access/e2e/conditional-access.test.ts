/**
 * The seeds' conditional-access rule set (examples/policies/conditional-access) end to end through
 * the access proxy: the built-in provider, the OIDC authenticator, a real proxy for the portal
 * (`target: { spiffe_id: …/sa/portal }`), an app verifying every assertion; the policy files loaded
 * from disk as a deployment would (only the provider's issuer written in, for `requestPrincipals`).
 *
 * - The signal that exists (MFA, portal.yaml): employees use the portal; /admin and DELETE/PATCH step
 *   up (an API client gets 401 insufficient_user_authentication, a browser the challenge); alice
 *   enrolls TOTP through the proxy's pages with an admin's one-time link, answers the challenge with
 *   a code (this repository's test RFC 6238, from the secret the page shows), and the same requests
 *   are allowed.
 * - The signals that do not exist yet (device posture: device.yaml; risk: risk.yaml): their DENY rules
 *   fail closed — every request is denied, with a reason naming the missing attribute, and nothing
 *   reaches the app (docs/people.md, "Conditional access").
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OidcAuthenticator } from '../../../src/access/auth/index.js';
import type { RunningIdentityProvider } from '../../../src/access/idp/index.js';
import { createMfaService, type MfaService } from '../../../src/access/mfa/index.js';
import { parseAccessProxyConfig, type RunningAccessProxy, startAccessProxy } from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import { PersonClient, type PersonResponse, parseForms } from '../../../src/mesh/people-client.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { freePort } from '../../support/cli.js';
import { tempDir } from '../../support/tmp.js';
import { code as totpCode } from '../mfa/rfc6238.js';
import {
  type App,
  addPeople,
  makeAuthenticator,
  PEOPLE,
  rawRequest,
  SESSION_COOKIE,
  startApp,
  startBuiltinIdp,
  startTrust,
  type Trust,
} from './harness.js';

const SEEDS = resolve('examples/policies/conditional-access');
const PORTAL = 'portal.localhost';
const PORTAL_ID = 'spiffe://example.org/ns/corp/sa/portal';

let trust: Trust;
let store: Store;
let app: App;
let idp: RunningIdentityProvider;
let auth: OidcAuthenticator;
let mfa: MfaService;
const mfaEvents: AuditEventInput[] = [];
/** The whole seed set (every file) and the signals that exist (the MFA files: portal, admin-webauthn). */
const proxies: Record<
  'all' | 'signals',
  { proxy?: RunningAccessProxy; origin: string; decisions: AccessDecisionEvent[] }
> = {
  all: { origin: '', decisions: [] },
  signals: { origin: '', decisions: [] },
};
const authEvents: AuditEventInput[] = [];
const clients: PersonClient[] = [];

/** The seed files named, copied into `dir` with the built-in provider as the employees' issuer. */
function policyDir(dir: string, files: string[]): string {
  mkdirSync(dir, { recursive: true });
  for (const f of files) {
    const text = readFileSync(join(SEEDS, f), 'utf8');
    const ours = text.replaceAll('https://idp.example.org', idp.issuer);
    if (f === 'portal.yaml') expect(ours).not.toBe(text);
    writeFileSync(join(dir, f), ours);
  }
  return dir;
}

async function startPortalProxy(which: 'all' | 'signals', policies: string, port: number): Promise<void> {
  const config = parseAccessProxyConfig({
    listen: `127.0.0.1:${port}`,
    svid: { workload_api: 'unused' },
    policies,
    assertion: { server: trust.agentUrl, ttl_seconds: 60 },
    mfa: {},
    routes: [
      { name: 'portal', from: { host: PORTAL }, to: `http://127.0.0.1:${app.port}`, target: { spiffe_id: PORTAL_ID } },
    ],
  });
  const p = proxies[which];
  p.proxy = await startAccessProxy(config, {
    authenticator: auth,
    source: trust.proxySource([PORTAL]),
    recorder: { record: (e) => p.decisions.push(e) },
    mfa: { service: mfa, record: (e) => mfaEvents.push(e) },
  });
}

beforeAll(async () => {
  const dir = tempDir();
  trust = await startTrust(dir);
  store = await openStore({ dataDir: join(dir, 'store') });
  await addPeople(store);
  app = await startApp(trust);
  const ports = { all: await freePort(), signals: await freePort() };
  proxies.all.origin = `https://${PORTAL}:${ports.all}`;
  proxies.signals.origin = `https://${PORTAL}:${ports.signals}`;
  idp = await startBuiltinIdp(trust, store, [proxies.all.origin, proxies.signals.origin]);
  auth = await makeAuthenticator(trust, idp.issuer, store, join(dir, 'auth'), authEvents);
  mfa = createMfaService({ store, kek: auth.kek, record: (e) => mfaEvents.push(e) });
  const seeds = readdirSync(SEEDS).filter((f) => f.endsWith('.yaml'));
  expect(seeds).toEqual(expect.arrayContaining(['portal.yaml', 'admin-webauthn.yaml', 'device.yaml', 'risk.yaml']));
  await startPortalProxy('all', policyDir(join(dir, 'all'), seeds), ports.all);
  await startPortalProxy(
    'signals',
    policyDir(join(dir, 'signals'), ['portal.yaml', 'admin-webauthn.yaml']),
    ports.signals,
  );
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  for (const p of Object.values(proxies)) await p.proxy?.close();
  await idp?.close();
  app?.close();
  await store?.close();
  await trust?.close();
});

/** alice, signed in through the provider's login form (the session works at both proxies: one host). */
async function aliceSignedIn(): Promise<{ client: PersonClient; cookie: string }> {
  const client = new PersonClient({ ca: trust.caPem });
  clients.push(client);
  await client.signIn(`${proxies.signals.origin}/home`, 'alice', PEOPLE.alice.password);
  const session = client.cookies(PORTAL).get(SESSION_COOKIE);
  expect(session).toBeTruthy();
  return { client, cookie: `${SESSION_COOKIE}=${session}` };
}

/** One API call (JSON, no redirects followed) through a proxy. */
function call(which: 'all' | 'signals', method: string, path: string, cookie: string) {
  const port = Number(new URL(proxies[which].origin).port);
  return rawRequest(
    trust.caPem,
    port,
    path,
    { cookie, accept: 'application/json' },
    { method, host: PORTAL, sni: PORTAL },
  );
}

describe('the whole seed set, without device posture or a risk score: the DENY rules fail closed', () => {
  it('every request is denied with a reason naming the missing attribute; nothing reaches the app', async () => {
    const { cookie } = await aliceSignedIn();
    const before = app.hits.length;
    for (const [method, path] of [
      ['GET', '/home'],
      ['GET', '/admin'],
      ['DELETE', '/docs/1'],
    ] as const) {
      const r = await call('all', method, path, cookie);
      expect(r.status, `${method} ${path}`).toBe(403);
      const body = JSON.parse(r.body) as { error: string; reason: string; decision_id: string };
      expect(body.error).toBe('forbidden');
      expect(body.reason).toMatch(
        /could not be evaluated \(request lacks (risk\.score|device\.(os_patched|managed))\); failing closed: deny/,
      );
      const d = proxies.all.decisions.at(-1);
      expect(d).toMatchObject({ outcome: 'deny', decision_id: body.decision_id, target: { path } });
      expect(d?.policy).toMatch(/^portal-(high-risk|unpatched-device|sensitive-unmanaged)$/);
    }
    expect(app.hits.length).toBe(before);
  });
});

describe('the signals that exist (portal.yaml): MFA steps up, then allows', () => {
  it('an employee reads ordinary pages without MFA; /admin and DELETE/PATCH step up until she passes TOTP', async () => {
    const signedIn = await aliceSignedIn();
    const { cookie } = signedIn;
    const home = await call('signals', 'GET', '/home', cookie);
    expect(home.status).toBe(200);
    expect(app.hits.at(-1)?.who).toMatchObject({ subject: 'alice' });
    expect(proxies.signals.decisions.at(-1)).toMatchObject({ outcome: 'allow', policy: 'portal-employees' });
    const before = app.hits.length;
    for (const [method, path, rule] of [
      ['GET', '/admin/users', 'admin-needs-mfa'],
      ['DELETE', '/docs/1', 'write-needs-mfa'],
      ['PATCH', '/docs/1', 'write-needs-mfa'],
    ] as const) {
      const r = await call('signals', method, path, cookie);
      expect(r.status, `${method} ${path}`).toBe(401);
      expect(r.headers['www-authenticate']).toMatch(/error="insufficient_user_authentication"/);
      expect(proxies.signals.decisions.at(-1)).toMatchObject({
        outcome: 'step_up',
        policy: 'portal-sensitive-mfa',
        rule,
        target: { path },
      });
    }
    expect(app.hits.length).toBe(before);

    // A browser is sent to the challenge; alice has no factor yet, so she enrolls with an admin's link.
    const { client } = signedIn;
    const challenge = await client.get(`${proxies.signals.origin}/admin/users`);
    expect(new URL(challenge.url).pathname).toBe('/.nevertrust/mfa/challenge');
    expect(challenge.body).toContain('id="no-factor"');
    const { token } = await mfa.createEnrollLink('alice@example.com', 'test admin', 3600_000);
    const manage = await client.get(`${proxies.signals.origin}/.nevertrust/mfa/enroll?token=${token}`);
    const setup = await post(client, manage, '/totp', { name: 'phone' });
    const secret = /data-secret="([A-Z2-7]+)"/.exec(setup.body)?.[1] as string;
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    const start = Date.now();
    const done = await post(client, setup, '/totp/confirm', { code: totpCode(secret, start) });
    expect(parseForms(done.body).some((f) => f.action.endsWith('/totp/confirm'))).toBe(false);
    expect(mfaEvents).toContainEqual(expect.objectContaining({ kind: 'mfa.enroll', outcome: 'allow' }));

    // Enrolling passed a factor in this session: the sensitive requests are allowed now.
    const sessionId = app.hits.at(-1)?.who?.sessionId;
    expect(sessionId).toMatch(/^s_/);
    for (const [method, path] of [
      ['GET', '/admin/users'],
      ['DELETE', '/docs/1'],
      ['PATCH', '/docs/1'],
    ] as const) {
      const r = await call('signals', method, path, cookie);
      expect(r.status, `${method} ${path}`).toBe(200);
      expect(app.hits.at(-1)).toMatchObject({ method, url: path, who: { subject: 'alice', sessionId } });
      expect(app.hits.at(-1)?.who?.amr).toContain('otp');
      expect(proxies.signals.decisions.at(-1)).toMatchObject({ outcome: 'allow', policy: 'portal-employees' });
    }
    // A DELETE under /admin wants more: WebAuthn within 15 minutes (admin-webauthn.yaml). TOTP does
    // not meet it: API clients are told max_age, browsers are offered only WebAuthn.
    const del = await call('signals', 'DELETE', '/admin/users/bob', cookie);
    expect(del.status).toBe(401);
    expect(del.headers['www-authenticate']).toMatch(/error="insufficient_user_authentication".*max_age=900/);
    expect(proxies.signals.decisions.at(-1)).toMatchObject({
      outcome: 'step_up',
      policy: 'portal-admin-delete-webauthn',
      rule: 'webauthn',
    });
    const port = Number(new URL(proxies.signals.origin).port);
    const page = await rawRequest(
      trust.caPem,
      port,
      '/admin/users/bob',
      { cookie, accept: 'text/html', origin: proxies.signals.origin, referer: `${proxies.signals.origin}/admin/users` },
      { method: 'DELETE', host: PORTAL, sni: PORTAL },
    );
    expect(page.status).toBe(303);
    const webauthnOnly = new URL(String(page.headers.location), proxies.signals.origin);
    expect(webauthnOnly.searchParams.get('m')).toBe('hwk,swk');
    // alice has only TOTP: the page offers neither her code app nor a recovery code (neither would
    // pass), and says to add a key.
    const offered = await rawRequest(
      trust.caPem,
      port,
      webauthnOnly.pathname + webauthnOnly.search,
      {
        cookie,
        accept: 'text/html',
      },
      { host: PORTAL, sni: PORTAL },
    );
    expect(offered.status).toBe(200);
    expect(offered.body).toContain('id="add-factor"');
    expect(offered.body).not.toContain('id="totp-code"');
    expect(offered.body).not.toMatch(/recovery/i);

    // A new session (a second browser) steps up again and passes the challenge with a later code.
    const second = await aliceSignedIn();
    const again = await second.client.get(`${proxies.signals.origin}/admin/users`);
    expect(new URL(again.url).pathname).toBe('/.nevertrust/mfa/challenge');
    const replayed = await post(second.client, again, '/challenge', { code: totpCode(secret, start) });
    expect(new URL(replayed.url).pathname).toBe('/.nevertrust/mfa/challenge'); // the step was used
    const passed = await post(second.client, replayed, '/challenge', { code: totpCode(secret, start, 1) });
    expect(passed.status).toBe(200);
    expect(new URL(passed.url).pathname).toBe('/admin/users');
    expect(mfaEvents).toContainEqual(expect.objectContaining({ kind: 'mfa.verify', outcome: 'deny' }));
    expect(mfaEvents).toContainEqual(expect.objectContaining({ kind: 'mfa.verify', outcome: 'allow' }));

    // The MFA does not lift the rules of the signals that are missing: the whole set still denies.
    const all = await call('all', 'GET', '/admin/users', cookie);
    expect(all.status).toBe(403);
    expect(proxies.all.decisions.at(-1)?.reason).toMatch(/request lacks/);
  });
});

/** Posts the form of `page` whose action ends with `/.nevertrust/mfa<suffix>`, with `fields`, following redirects. */
async function post(
  client: PersonClient,
  page: PersonResponse,
  suffix: string,
  fields: Record<string, string>,
): Promise<PersonResponse> {
  const form = parseForms(page.body).find(
    (f) => f.action.endsWith(`/.nevertrust/mfa${suffix}`) && f.fields.kind !== 'recovery',
  );
  if (!form) throw new Error(`no ${suffix} form at ${page.url} (${page.status})`);
  return client.navigate('POST', new URL(form.action, page.url).toString(), {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ ...form.fields, ...fields }).toString(),
  });
}
