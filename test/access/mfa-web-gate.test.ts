/**
 * The gate's answers to a `step_up` decision, through a real proxy (HTTPS, real policy files, a real
 * MFA service on a real store, the fixed-token authenticator): a browser with a session is sent
 * (303) to the challenge with the return path and the methods the rule accepts; a form post comes
 * back to the page it was posted from (never replayed); API clients and bearer callers get the RFC
 * 9470 401; a route with `step_up: {via: provider}` sends the browser to the provider's login with
 * acr_values, max_age and prompt=login. Every step-up is a recorded decision.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relyingPartyFor } from '../../src/access/mfa/handler.js';
import { createMfaService } from '../../src/access/mfa/index.js';
import { parseAccessProxyConfig, type RunningAccessProxy, startAccessProxy } from '../../src/access/proxy/index.js';
import { Kek } from '../../src/ca/kek.js';
import { certificatesToPem } from '../../src/ca/index.js';
import type { AccessDecisionEvent } from '../../src/pep/decision.js';
import { MemorySvidSource } from '../../src/pep/mtls/index.js';
import type { RunningServer } from '../../src/server/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { startAssertionServer } from '../pep/assertion-server.js';
import { tempDir } from '../support/tmp.js';
import { rawRequest } from './e2e/harness.js';
import { FixedAuthenticator, LOGIN_URL, person } from './fixed-authenticator.js';

const TD = 'example.org';
const HOST = 'wiki.example.test';
const PROV = 'prov.example.test';
const BARE = 'bare.example.test';
const SESSION = { cookie: '__Host-test=alice-token' };
const PAGE = { ...SESSION, accept: 'text/html,application/xhtml+xml' };

const POLICIES = `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: wiki-staff }
spec:
  action: ALLOW
  target: { services: [wiki] }
  rules:
    - to: [{ paths: ["/*"] }]
      when:
        - key: request.auth.claims[groups]
          values: [staff]
---
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: wiki-mfa }
spec:
  action: STEP_UP
  target: { services: [wiki] }
  rules:
    - name: secure
      to: [{ paths: ["/secure*"] }]
      when: [{ key: auth.mfa, equals: false }]
    - name: keys
      to: [{ paths: ["/keys*"] }]
      when: [{ key: auth.methods, notValues: [hwk, swk] }]
    - name: fresh
      to: [{ paths: ["/fresh*"] }]
      when: [{ key: auth.mfa_age, gt: 60 }]
`;

describe('the gate on a step_up decision', () => {
  let server: RunningServer;
  let proxy: RunningAccessProxy;
  let bare: RunningAccessProxy;
  let store: Store;
  let app: Server;
  let caPem: string;
  const auth = new FixedAuthenticator({ 'alice-token': person('alice', ['staff']) });
  const bareAuth = new FixedAuthenticator({ 'alice-token': person('alice', ['staff']) });
  const decisions: AccessDecisionEvent[] = [];
  const forwarded: string[] = [];

  beforeAll(async () => {
    const started = await startAssertionServer(TD);
    server = started.server;
    const bundle = started.ca.handle.current().bundle();
    caPem = bundle.toPem();
    const m = started.ca.handle.current().mintX509Svid({
      spiffeId: `spiffe://${TD}/ns/edge/sa/access-proxy`,
      dnsNames: [HOST, PROV, BARE],
      ttlSeconds: 3600,
    });
    const source = () =>
      new MemorySvidSource(
        {
          spiffeId: `spiffe://${TD}/ns/edge/sa/access-proxy`,
          certChainPem: certificatesToPem(m.chain),
          privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        },
        [bundle],
      );
    app = createServer((req, res) => {
      forwarded.push(`${req.method} ${req.url}`);
      res.end('app');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const appUrl = `http://127.0.0.1:${(app.address() as { port: number }).port}`;
    const dir = tempDir();
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'wiki.yaml'), POLICIES);
    store = await openStore({ dataDir: join(dir, 'store') });
    const cfg = (routes: unknown[]) =>
      parseAccessProxyConfig({
        listen: '127.0.0.1:0',
        svid: { workload_api: 'unused' },
        policies: join(dir, 'policies'),
        mfa: {},
        routes,
      });
    proxy = await startAccessProxy(
      cfg([
        { name: 'wiki', from: { host: HOST }, to: appUrl },
        {
          name: 'prov',
          from: { host: PROV },
          to: appUrl,
          target: { service: 'wiki' },
          step_up: { via: 'provider', acr_values: ['urn:example:mfa', 'urn:example:hwk'] },
        },
      ]),
      {
        authenticator: auth,
        source: source(),
        recorder: { record: (e) => decisions.push(e) },
        mfa: { service: createMfaService({ store, kek: Kek.fromBytes(randomBytes(32)) }), record: () => {} },
      },
    );
    // No local MFA: a browser can only be told.
    bare = await startAccessProxy(
      cfg([{ name: 'bare', from: { host: BARE }, to: appUrl, target: { service: 'wiki' } }]),
      {
        authenticator: bareAuth,
        source: source(),
        recorder: { record: (e) => decisions.push(e) },
      },
    );
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await bare?.close();
    app?.closeAllConnections();
    app?.close();
    await store?.close();
    await server?.close();
  });

  const get = (
    path: string,
    headers: Record<string, string>,
    opts: { method?: string; host?: string; port?: number } = {},
  ) =>
    rawRequest(caPem, opts.port ?? proxy.port, path, headers, {
      host: opts.host ?? HOST,
      sni: opts.host ?? HOST,
      ...(opts.method ? { method: opts.method } : {}),
    });

  it('a browser with a session is sent to the challenge (303) with the return path; the decision is recorded', async () => {
    const r = await get('/secure/doc?x=1&y=%2F', PAGE);
    expect(r.status).toBe(303);
    expect(r.headers['cache-control']).toBe('no-store');
    const to = new URL(String(r.headers.location), 'https://x');
    expect(to.pathname).toBe('/.nevertrust/mfa/challenge');
    expect(to.searchParams.get('rd')).toBe('/secure/doc?x=1&y=%2F');
    expect(to.searchParams.has('again')).toBe(false);
    expect(decisions.at(-1)).toMatchObject({ outcome: 'step_up', enforcer: 'access-proxy' });
    expect(forwarded).toEqual([]);
  });

  it('the challenge is told which methods satisfy the rule', async () => {
    const r = await get('/keys', PAGE);
    expect(new URL(String(r.headers.location), 'https://x').searchParams.get('m')).toBe('hwk,swk');
  });

  it('a form post is not replayed: back to the page it came from (same origin only), asked to send again', async () => {
    const origin = `https://${HOST}:${proxy.port}`;
    const post = await get('/secure/form', { ...PAGE, referer: `${origin}/secure/edit?id=7` }, { method: 'POST' });
    expect(post.status).toBe(303);
    const to = new URL(String(post.headers.location), 'https://x');
    expect(to.searchParams.get('rd')).toBe('/secure/edit?id=7');
    expect(to.searchParams.get('again')).toBe('1');
    const foreign = await get('/secure/form', { ...PAGE, referer: 'https://evil.example/x' }, { method: 'POST' });
    expect(new URL(String(foreign.headers.location), 'https://x').searchParams.get('rd')).toBe('/');
    const none = await get('/secure/form', PAGE, { method: 'DELETE' });
    expect(new URL(String(none.headers.location), 'https://x').searchParams.get('rd')).toBe('/');
    expect(forwarded).toEqual([]);
  });

  it('API clients and bearer callers get 401 insufficient_user_authentication (RFC 9470)', async () => {
    const api = await get('/fresh/data', { ...SESSION, accept: 'application/json' });
    expect(api.status).toBe(401);
    expect(JSON.parse(api.body)).toMatchObject({ error: 'mfa_required' });
    expect(api.headers['www-authenticate']).toBe(
      `Bearer realm="${HOST}", error="insufficient_user_authentication", error_description="${decisions.at(-1)?.reason.replace(/"/g, ' ')}", ` +
        'acr_values="http://schemas.openid.net/pape/policies/2007/06/multi-factor", max_age=60',
    );
    const bearer = await get('/secure/doc', { authorization: 'Bearer alice-token', accept: 'text/html' });
    expect(bearer.status).toBe(401);
    expect(bearer.headers['www-authenticate']).toMatch(/error="insufficient_user_authentication"/);
    expect(bearer.headers['www-authenticate']).not.toMatch(/max_age/);
    // The route's own acr_values.
    const prov = await get('/secure/doc', { ...SESSION, accept: 'application/json' }, { host: PROV });
    expect(prov.headers['www-authenticate']).toMatch(/acr_values="urn:example:mfa urn:example:hwk"/);
    expect(forwarded).toEqual([]);
  });

  it('step_up via provider: a new login with acr_values, max_age and prompt=login, back to the page', async () => {
    const r = await get('/fresh/page', PAGE, { host: PROV });
    expect(r.status).toBe(302);
    expect(String(r.headers.location).startsWith(LOGIN_URL)).toBe(true);
    expect(auth.logins.at(-1)).toMatchObject({
      returnTo: '/fresh/page',
      opts: { acrValues: ['urn:example:mfa', 'urn:example:hwk'], maxAge: 60, prompt: 'login' },
    });
    expect(decisions.at(-1)).toMatchObject({ outcome: 'step_up' });
  });

  it('without local MFA a browser gets the 403 page; the MFA endpoints do not exist there', async () => {
    const r = await get('/secure/doc', PAGE, { host: BARE, port: bare.port });
    expect(r.status).toBe(403);
    expect(r.body).toContain('MFA required');
    const m = await get('/.nevertrust/mfa', PAGE, { host: BARE, port: bare.port });
    expect(m.status).toBe(404);
    expect(bareAuth.handled).toEqual([]);
  });
});

describe('the mfa section and step_up in the proxy config', () => {
  const base = {
    listen: '127.0.0.1:0',
    svid: { workload_api: 'unused' },
    policies: 'p',
    routes: [{ name: 'wiki', from: { host: 'wiki.example.com' }, to: 'http://127.0.0.1:1' }],
  };
  it('defaults, and the problems named by field', () => {
    const c = parseAccessProxyConfig({ ...base, mfa: {} });
    expect(c.mfa).toEqual({ first_login_enrollment: false, webauthn: { rp_name: 'nevertrust' } });
    expect(parseAccessProxyConfig(base).mfa).toBeUndefined();
    const routed = parseAccessProxyConfig({
      ...base,
      routes: [{ ...base.routes[0], step_up: { via: 'provider' } }],
    }).routes[0];
    expect(routed?.step_up).toEqual({ via: 'provider', acr_values: [] });
    const bad: [unknown, RegExp][] = [
      [
        { ...base, mfa: { webauthn: { rp_id: 'other.example' } } },
        /routes\.0\.from\.host: not under mfa\.webauthn\.rp_id/,
      ],
      [{ ...base, mfa: { webauthn: { rp_id: 'https://example.com' } } }, /mfa\.webauthn\.rp_id/],
      [{ ...base, mfa: { attempts: { user: { max: 0 } } } }, /mfa\.attempts\.user\.max/],
      [{ ...base, mfa: { extra: true } }, /mfa/],
      [{ ...base, routes: [{ ...base.routes[0], step_up: { via: 'sms' } }] }, /routes\.0\.step_up\.via/],
      [
        { ...base, routes: [{ ...base.routes[0], step_up: { acr_values: ['a b'] } }] },
        /routes\.0\.step_up\.acr_values\.0/,
      ],
    ];
    for (const [doc, msg] of bad) expect(() => parseAccessProxyConfig(doc, 'proxy.yaml')).toThrow(msg);
    // rp_id as a parent domain of every route host is fine.
    expect(parseAccessProxyConfig({ ...base, mfa: { webauthn: { rp_id: 'example.com' } } }).mfa?.webauthn.rp_id).toBe(
      'example.com',
    );
  });
});

describe('the WebAuthn relying party', () => {
  const ctx = { host: 'wiki.example.com', origin: 'https://wiki.example.com:8443', ip: '10.0.0.1' };
  it("is the request's host by default; with rp_id, the origins of every route host under it", () => {
    expect(relyingPartyFor({ rpName: 'n', hosts: ['wiki.example.com'] }, 8443, ctx)).toEqual({
      id: 'wiki.example.com',
      origins: ['https://wiki.example.com:8443'],
      name: 'n',
    });
    const hosts = ['wiki.example.com', 'example.com', 'wiki.example.com', 'notexample.com', 'other.test'];
    expect(relyingPartyFor({ rpId: 'example.com', rpName: 'n', hosts }, 443, ctx).origins).toEqual([
      'https://wiki.example.com',
      'https://example.com',
    ]);
    expect(relyingPartyFor({ rpId: 'example.com', rpName: 'n', hosts }, 8443, ctx).origins).toEqual([
      'https://wiki.example.com:8443',
      'https://example.com:8443',
    ]);
  });
});
