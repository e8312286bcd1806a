/**
 * People as admins, on a real server with every plugin `nevertrust server` runs: an access proxy's
 * key registered over mTLS with its SVID (the registry's own flow), person assertions signed with
 * it, and the attacks: no credential, a key the proxy never registered, a proxy not trusted for the
 * console, wrong audience, expired, `alg: none`, a workload assertion, a person outside the admin
 * group on every admin route, stale MFA on a destructive call, cross-site calls. The admin token
 * keeps working.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificatesToPem } from '../../src/ca/index.js';
import { serverPlugins } from '../../src/cli/server-plugins.js';
import { configSchema } from '../../src/config/index.js';
import { ASSERTION_KEYS_PATH, ASSERTION_TYP, PERSON_ASSERTION_TYP } from '../../src/pep/assertion/wire.js';
import { authorizeId, createMtlsFetch, MemorySvidSource, type MtlsFetch } from '../../src/pep/mtls/index.js';
import { ADMIN_TOKEN_FILE } from '../../src/server/admin-auth.js';
import { type RunningServer, type ServerEvent, type ServerPlugin, startServer } from '../../src/server/index.js';
import type { agentEndpointPlugin } from '../../src/server/plugins/agent-endpoint.js';
import { SERVER_SVID_PATH } from '../../src/server/plugins/agent-endpoint.js';
import type { caPlugin } from '../../src/server/plugins/ca.js';
import type { Router } from '../../src/server/router.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const TD = 'example.org';
const PROXY = `spiffe://${TD}/ns/edge/sa/access-proxy`;
const OTHER_PROXY = `spiffe://${TD}/ns/edge/sa/other-proxy`;
const AUD = 'https://console.localhost';
const ORIGIN = 'https://console.localhost:8443';

let server: RunningServer;
let router: Router;
let adminToken: string;
const events: ServerEvent[] = [];
const clients: MtlsFetch[] = [];
/** The proxy's registered signing key, and another workload's. */
let proxyKey: { key: KeyObject; kid: string };
let otherKey: { key: KeyObject; kid: string };

/** Registers a fresh P-256 key for `spiffeId` the way a signer does: over mTLS with its SVID. */
async function registerKey(
  ca: ReturnType<typeof caPlugin>,
  agentUrl: string,
  spiffeId: string,
): Promise<{ key: KeyObject; kid: string }> {
  const m = ca.handle.current().mintX509Svid({ spiffeId, ttlSeconds: 3600 });
  const source = new MemorySvidSource(
    {
      spiffeId,
      certChainPem: certificatesToPem(m.chain),
      privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    },
    [ca.handle.current().bundle()],
  );
  const f = createMtlsFetch(source, { authorize: authorizeId(`spiffe://${TD}${SERVER_SVID_PATH}`) });
  clients.push(f);
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' }) as Record<string, string>;
  const jwk = { kty, crv, x, y };
  const res = await f(`${agentUrl}${ASSERTION_KEYS_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jwk, expires_at: new Date(Date.now() + 3_600_000).toISOString() }),
  });
  expect(res.status).toBe(201);
  return {
    key: privateKey,
    kid: await calculateJwkThumbprint(jwk as { kty: 'EC'; crv: string; x: string; y: string }),
  };
}

interface SignOptions {
  key?: { key: KeyObject; kid: string };
  iss?: string;
  aud?: string;
  typ?: string;
  /** Seconds from now. */
  exp?: number;
  claims?: JWTPayload;
}

const now = () => Math.floor(Date.now() / 1000);

/** A person assertion as the access proxy makes it (docs/people.md). */
function assertion(
  user: string,
  groups: string[],
  mfaAgoS: number | undefined,
  opts: SignOptions = {},
): Promise<string> {
  const k = opts.key ?? proxyKey;
  return new SignJWT({
    sub: `sub-${user}`,
    user,
    groups,
    amr: mfaAgoS === undefined ? ['pwd'] : ['pwd', 'otp'],
    ...(mfaAgoS === undefined ? {} : { mfa_at: now() - mfaAgoS }),
    sid: `sid-${user}`,
    idp: 'https://idp.example.test',
    decision_id: `dec-${user}`,
    ...opts.claims,
  })
    .setProtectedHeader({ alg: 'ES256', typ: opts.typ ?? PERSON_ASSERTION_TYP, kid: k.kid })
    .setIssuer(opts.iss ?? PROXY)
    .setAudience(opts.aud ?? AUD)
    .setIssuedAt(now() - 10)
    .setExpirationTime(now() + (opts.exp ?? 60))
    .sign(k.key);
}

const ALICE = () => assertion('alice', ['staff', 'admins'], 10);
const ALICE_STALE = () => assertion('alice', ['staff', 'admins'], 3600);
const ALICE_NO_MFA = () => assertion('alice', ['staff', 'admins'], undefined);
const EVE = () => assertion('eve', ['staff'], 10);

async function call(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<{ status: number; headers: Headers; json: Record<string, unknown>; text: string }> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    redirect: 'manual',
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // HTML, or a redirect's text
  }
  return { status: res.status, headers: res.headers, json, text };
}

const as = (token: string, extra: Record<string, string> = {}) => ({ 'x-nevertrust-jwt-assertion': token, ...extra });
/** What the console's own fetch sends for a non-GET call. */
const json = (token: string, extra: Record<string, string> = {}) =>
  as(token, { 'content-type': 'application/json', origin: ORIGIN, 'sec-fetch-site': 'same-origin', ...extra });

beforeAll(async () => {
  const dataDir = tempDir();
  const config = configSchema.parse({
    data_dir: dataDir,
    trust_domain: TD,
    server: { port: 0, agent_port: 0 },
    console: { proxies: [PROXY], audience: AUD },
  });
  const plugins = serverPlugins(config);
  const spy: ServerPlugin = {
    name: 'router-spy',
    register(ctx) {
      router = ctx.router;
    },
  };
  server = await startServer({ config, logger: createLogger('silent'), plugins: [...plugins, spy] });
  server.events.on('event', (e: ServerEvent) => events.push(e));
  adminToken = readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim();
  const ca = plugins.find((p) => p.name === 'ca') as ReturnType<typeof caPlugin>;
  const agent = plugins.find((p) => p.name === 'agent-endpoint') as ReturnType<typeof agentEndpointPlugin>;
  const agentUrl = `https://127.0.0.1:${agent.address()?.port}`;
  proxyKey = await registerKey(ca, agentUrl, PROXY);
  otherKey = await registerKey(ca, agentUrl, OTHER_PROXY);
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  await server?.close();
});

describe('person admins: the assertion', () => {
  it('an admin with a registered proxy key is an admin: whoami names the person', async () => {
    const r = await call('GET', '/v1/admin/whoami', as(await ALICE()));
    expect(r.status, r.text).toBe(200);
    expect(r.json).toMatchObject({ id: 'person:alice', kind: 'person', user: 'alice', mfa_fresh: true });
    expect(r.json.groups).toEqual(['staff', 'admins']);
    expect(Date.parse(String(r.json.mfa_at))).toBeGreaterThan(Date.now() - 60_000);
    const stale = await call('GET', '/v1/admin/whoami', as(await ALICE_STALE()));
    expect(stale.json).toMatchObject({ kind: 'person', mfa_fresh: false });
  });

  it('refuses no credential, an unregistered key, an untrusted proxy, wrong aud, expired, alg none, another typ', async () => {
    const stranger = { key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, kid: proxyKey.kid };
    const cases: [string, Record<string, string>, RegExp][] = [
      ['no credential', {}, /admin credential required/],
      ['unregistered key', as(await assertion('alice', ['admins'], 10, { key: stranger })), /signature/],
      [
        'unknown kid',
        as(await assertion('alice', ['admins'], 10, { key: { ...stranger, kid: 'nope' } })),
        /ERR_ASSERTION_UNKNOWN_KID/,
      ],
      // Registered, valid, but by a workload not listed in console.proxies.
      [
        'untrusted proxy',
        as(await assertion('alice', ['admins'], 10, { key: otherKey, iss: OTHER_PROXY })),
        /not a console proxy/,
      ],
      // A trusted issuer named with another workload's key: never verified with a key it does not own.
      ['key of another workload', as(await assertion('alice', ['admins'], 10, { key: otherKey })), /UNKNOWN_KID/],
      ['wrong aud', as(await assertion('alice', ['admins'], 10, { aud: 'https://wiki.localhost' })), /AUD_MISMATCH/],
      ['expired', as(await assertion('alice', ['admins'], 10, { exp: -60 })), /EXPIRED/],
      ['workload typ', as(await assertion('alice', ['admins'], 10, { typ: ASSERTION_TYP })), /BAD_TYP/],
      ['garbage', as('not.a.jwt'), /not a JWT|MALFORMED/],
    ];
    const [h, p] = (await ALICE()).split('.') as [string, string];
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: PERSON_ASSERTION_TYP })).toString('base64url');
    cases.push(['alg none', as(`${none}.${p}.`), /ALG_NOT_ALLOWED/]);
    const forged = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), groups: ['admins', 'x'] }),
    ).toString('base64url');
    cases.push(['tampered payload', as(`${h}.${forged}.${(await ALICE()).split('.')[2]}`), /BAD_SIGNATURE/]);
    for (const [name, headers, why] of cases) {
      for (const path of ['/v1/admin/whoami', '/v1/admin/entries', '/console/']) {
        const r = await call('GET', path, headers);
        expect(r.status, `${name} ${path}: ${r.text}`).toBe(401);
        expect(r.json.error, name).toBe('unauthenticated');
        expect(String(r.json.message), name).toMatch(why);
        expect(r.text).not.toContain('<script');
      }
    }
    // Each refusal is recorded, with why.
    await expect
      .poll(() => events.filter((e) => e.kind === 'admin.action' && /person assertion refused/.test(e.reason)).length)
      .toBeGreaterThan(5);
  });

  it('a person not in the admin group gets 403 on every admin route and every console page', async () => {
    const token = await EVE();
    const routes = router.routes().filter((r) => r.path.startsWith('/v1/admin/') || r.path.startsWith('/console'));
    // Every plugin's admin routes are there (a route added later is covered too).
    expect(routes.length).toBeGreaterThan(30);
    const refused: string[] = [];
    for (const r of routes) {
      const path = r.prefix ? `${r.path}x` : r.path;
      const res = await call(r.method, path, json(token));
      if (res.status !== 403 || res.json.error !== 'forbidden') refused.push(`${r.method} ${path}: ${res.status}`);
      else expect(String(res.json.message)).toBe('the console needs group admins');
    }
    expect(refused).toEqual([]);
    await expect.poll(() => events.some((e) => e.source.id === 'person:eve' && e.outcome === 'deny')).toBe(true);
  });

  it('a destructive call needs a fresh second factor: 401 with the RFC 9470 challenge; fresh passes', async () => {
    const body = { username: 'carol', password: 'correct horse battery', groups: ['staff'] };
    // Stale, absent, and a time in the future (not believed: a proxy clock or claim gone wrong).
    const future = await assertion('alice', ['staff', 'admins'], -3600);
    for (const token of [await ALICE_STALE(), await ALICE_NO_MFA(), future]) {
      const r = await call('POST', '/v1/admin/users', json(token), body);
      expect(r.status, r.text).toBe(401);
      expect(r.json.error).toBe('insufficient_user_authentication');
      expect(r.headers.get('www-authenticate')).toMatch(
        /^Bearer error="insufficient_user_authentication", error_description="[^"]+", max_age=300$/,
      );
    }
    // DELETE and PATCH are destructive too.
    expect((await call('DELETE', '/v1/admin/users/carol', json(await ALICE_STALE()))).status).toBe(401);
    expect((await call('PATCH', '/v1/admin/users/carol', json(await ALICE_STALE()), { groups: [] })).status).toBe(401);
    // Reads and the read-only POSTs need no fresh factor.
    expect((await call('GET', '/v1/admin/users', as(await ALICE_STALE()))).status).toBe(200);
    const verify = await call('POST', '/v1/admin/audit/verify', json(await ALICE_STALE()), {});
    expect(verify.status, verify.text).not.toBe(401);
    expect(verify.status).not.toBe(403);

    const ok = await call('POST', '/v1/admin/users', json(await ALICE()), body);
    expect(ok.status, ok.text).toBe(201);
    // The action is audited under the person's name.
    await expect
      .poll(() =>
        events.find((e) => e.kind === 'admin.action' && e.target.resource === 'user.add' && e.outcome === 'allow'),
      )
      .toMatchObject({ source: { id: 'person:alice' }, target: { id: 'carol' } });
  });

  it("a person's non-GET call must be JSON from the console's origin (CSRF)", async () => {
    const token = await ALICE();
    const cases: [string, Record<string, string>][] = [
      ['no content-type', as(token, { origin: ORIGIN })],
      ['form post', as(token, { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN })],
      ['cross-site origin', json(token, { origin: 'https://evil.example' })],
      ['http origin', json(token, { origin: 'http://console.localhost:8443' })],
      ['look-alike origin', json(token, { origin: 'https://console.localhost.evil.example' })],
      ['null origin', json(token, { origin: 'null' })],
      ['cross-site fetch', json(token, { 'sec-fetch-site': 'cross-site' })],
      ['no origin, no fetch metadata', as(token, { 'content-type': 'application/json' })],
    ];
    for (const [name, headers] of cases) {
      const r = await call('POST', '/v1/admin/users', headers, { username: 'mallory', password: 'x'.repeat(12) });
      expect(r.status, `${name}: ${r.text}`).toBe(403);
      expect(r.json.error, name).toBe('csrf');
    }
    expect((await call('GET', '/v1/admin/users/mallory', as(token))).status).toBe(404);
    // Without Origin, a same-origin Sec-Fetch-Site is enough (some browsers omit Origin).
    const meta = await call(
      'POST',
      '/v1/admin/audit/verify',
      as(token, { 'content-type': 'application/json', 'sec-fetch-site': 'same-origin' }),
      {},
    );
    expect(meta.status).not.toBe(403);
  });

  it('the admin token still works unchanged, and wins over an assertion', async () => {
    const bearer = { authorization: `Bearer ${adminToken}` };
    const who = await call('GET', '/v1/admin/whoami', bearer);
    expect(who.json).toMatchObject({
      kind: 'token',
      mfa_fresh: true,
      id: expect.stringMatching(/^token:[0-9a-f]{8}$/),
    });
    // No CSRF or MFA demands on the token (the CLI): a POST without Origin works.
    const r = await call(
      'POST',
      '/v1/admin/users',
      { ...bearer, 'content-type': 'application/json' },
      {
        username: 'dave',
        password: 'correct horse battery',
      },
    );
    expect(r.status, r.text).toBe(201);
    // A bad token is not rescued by a valid assertion beside it.
    const bad = await call('GET', '/v1/admin/whoami', {
      authorization: 'Bearer x'.padEnd(30, 'x'),
      ...as(await ALICE()),
    });
    expect(bad.status).toBe(401);
  });
});
