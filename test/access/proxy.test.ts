/**
 * The access proxy end to end with real parts: HTTPS with a certificate from a real CA (the server's,
 * which also holds the assertion key registry and JWKS), real upstream apps, real policy files, a
 * real (fixed-token) authenticator.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAccessProxyConfig, type RunningAccessProxy, startAccessProxy } from '../../src/access/proxy/index.js';
import { certificatesToPem } from '../../src/ca/index.js';
import type { AccessDecisionEvent } from '../../src/pep/decision.js';
import {
  assertionKeySet,
  PERSON_ASSERTION_TYP,
  verifyIdentityAssertion,
  verifyPersonAssertion,
} from '../../src/pep/assertion.js';
import { MemorySvidSource } from '../../src/pep/mtls/index.js';
import { type RunningSidecar, SidecarConfigSchema, startSidecar } from '../../src/pep/sidecar/index.js';
import type { RunningServer } from '../../src/server/index.js';
import type { caPlugin } from '../../src/server/plugins/ca.js';
import { startAssertionServer } from '../pep/assertion-server.js';
import { tempDir } from '../support/tmp.js';
import { FixedAuthenticator, ISSUER, LOGIN_URL, person } from './fixed-authenticator.js';

const TD = 'example.org';
const PROXY_ID = `spiffe://${TD}/ns/edge/sa/access-proxy`;
const SIDECAR_ID = `spiffe://${TD}/ns/docs/sa/handbook`;

interface Seen {
  app: string;
  url: string;
  headers: IncomingHttpHeaders;
}

let server: RunningServer;
let ca: ReturnType<typeof caPlugin>;
let proxy: RunningAccessProxy;
let auth: FixedAuthenticator;
let wiki: Server;
let admin: Server;
let slow: Server;
let sidecar: RunningSidecar;
let proxySource: MemorySvidSource;
let policiesDir: string;
let mintProxySvid: () => { spiffeId: string; certChainPem: string; privateKeyPem: string };
let caPem: string;
const seen: Seen[] = [];
const events: AccessDecisionEvent[] = [];
const logs: { msg: string; fields?: Record<string, unknown> }[] = [];

function app(name: string): Server {
  const s = createServer((req, res) => {
    seen.push({ app: name, url: req.url ?? '', headers: req.headers });
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    req.on('end', () => {
      // An app trying to plant the proxy's session cookie (and one of its own, which is fine).
      if (req.url === '/plant-cookie')
        res.setHeader('set-cookie', ['__Host-test=planted; Path=/; Secure', 'theme=light; Path=/']);
      res.writeHead(200, { 'content-type': 'text/plain', 'x-app': name, connection: 'x-hop', 'x-hop': 'secret' });
      res.end(bytes > 0 ? `${name}:${req.url}:${bytes}` : `${name}:${req.url}`);
    });
  });
  s.on('upgrade', (req, socket) => {
    seen.push({ app: name, url: req.url ?? '', headers: req.headers });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
  });
  return s;
}

const listen = (s: Server) =>
  new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request to the proxy as a client at `host` would send it (the raw path is sent as is). */
function call(
  host: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
  sni = host,
  body?: Buffer,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const r = httpsRequest(
      {
        host: '127.0.0.1',
        port: proxy.port,
        servername: sni,
        ca: caPem,
        method,
        path,
        agent: false,
        headers: { host: `${host}:${proxy.port}`, ...headers },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    r.on('error', reject);
    r.end(body);
  });
}

const ALICE = { authorization: 'Bearer alice-token' };
const BOB = { authorization: 'Bearer bob-token' };

beforeAll(async () => {
  let agentUrl: string;
  ({ server, ca, agentUrl } = await startAssertionServer(TD));
  wiki = app('wiki');
  admin = app('admin');
  slow = createServer(() => {
    // Never answers.
  });
  const [wikiPort, adminPort, slowPort] = await Promise.all([listen(wiki), listen(admin), listen(slow)]);
  const dir = tempDir();
  const policies = join(dir, 'policies');
  policiesDir = policies;
  mkdirSync(policies);
  writeFileSync(
    join(policies, 'wiki.yaml'),
    `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: wiki-staff }
spec:
  action: ALLOW
  target: { services: [wiki, wiki-ws, nows, down, slow] }
  rules:
    - name: staff
      to: [{ methods: [GET, HEAD, POST], paths: ["/*"] }]
      when:
        - key: request.auth.claims[groups]
          values: [staff]
`,
  );
  writeFileSync(
    join(policies, 'wiki-admin.yaml'),
    `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: wiki-admins }
spec:
  action: ALLOW
  target: { services: [wiki-admin] }
  rules:
    - name: admins
      from: [{ requestPrincipals: ["${ISSUER}/bob"] }]
`,
  );
  writeFileSync(
    join(policies, 'step-up.yaml'),
    `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: wiki-secure-mfa }
spec:
  action: STEP_UP
  target: { services: [wiki] }
  rules:
    - to: [{ paths: ["/secure*"] }]
      when: [{ key: auth.mfa, equals: false }]
`,
  );
  const bundle = ca.handle.current().bundle();
  caPem = bundle.toPem();
  const svid = (spiffeId: string, dnsNames: string[]) => {
    const m = ca.handle.current().mintX509Svid({ spiffeId, dnsNames, ttlSeconds: 3600 });
    return {
      spiffeId,
      certChainPem: certificatesToPem(m.chain),
      privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    };
  };
  mintProxySvid = () =>
    svid(PROXY_ID, [
      'wiki.example.test',
      'ws.example.test',
      'nows.example.test',
      'down.example.test',
      'slow.example.test',
      'mesh.example.test',
      'mesh-wrong.example.test',
    ]);
  const source = new MemorySvidSource(mintProxySvid(), [bundle]);
  proxySource = source;
  // A real sidecar in front of the `admin` app, admitting only the proxy's SPIFFE ID.
  const sidecarPolicies = join(dir, 'sidecar-policies');
  mkdirSync(sidecarPolicies);
  writeFileSync(
    join(sidecarPolicies, 'handbook.yaml'),
    `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: handbook-from-proxy }
spec:
  action: ALLOW
  target: { spiffeIds: ["${SIDECAR_ID}"] }
  rules:
    - from: [{ principals: ["${PROXY_ID}"] }]
`,
  );
  sidecar = await startSidecar(
    SidecarConfigSchema.parse({
      svid: { workload_api: 'unused' },
      policies: sidecarPolicies,
      inbound: { listen: '127.0.0.1:0', app: `127.0.0.1:${adminPort}` },
    }),
    { source: new MemorySvidSource(svid(SIDECAR_ID, []), [bundle]) },
  );
  auth = new FixedAuthenticator({
    'alice-token': person('alice', ['staff']),
    'bob-token': person('bob', ['staff', 'admins'], ['pwd', 'otp']),
    'eve-token': person('eve', []),
  });
  const config = parseAccessProxyConfig({
    listen: '127.0.0.1:0',
    public_port: 8443,
    svid: { workload_api: 'unused' },
    policies,
    assertion: { server: agentUrl, ttl_seconds: 30 },
    limits: { max_header_bytes: 16 * 1024 },
    routes: [
      {
        name: 'wiki',
        from: { host: 'Wiki.Example.Test' },
        to: `http://127.0.0.1:${wikiPort}`,
        headers: { remove: ['x-remove-me'], set: { 'x-route': 'wiki' } },
      },
      {
        name: 'wiki-admin',
        from: { host: 'wiki.example.test', path_prefix: '/admin/' },
        to: `http://127.0.0.1:${adminPort}`,
      },
      {
        name: 'wiki-ws',
        from: { host: 'ws.example.test' },
        to: `http://127.0.0.1:${wikiPort}`,
        websockets: true,
        preserve_host: true,
      },
      { name: 'nows', from: { host: 'nows.example.test' }, to: `http://127.0.0.1:${wikiPort}` },
      { name: 'down', from: { host: 'down.example.test' }, to: 'http://127.0.0.1:1' },
      {
        name: 'mesh',
        from: { host: 'mesh.example.test' },
        to: `https://127.0.0.1:${sidecar.inboundPort}`,
        to_spiffe_id: SIDECAR_ID,
        target: { service: 'wiki' },
      },
      {
        name: 'mesh-wrong',
        from: { host: 'mesh-wrong.example.test' },
        to: `https://127.0.0.1:${sidecar.inboundPort}`,
        to_spiffe_id: `spiffe://${TD}/ns/docs/sa/impostor`,
        target: { service: 'wiki' },
      },
      { name: 'slow', from: { host: 'slow.example.test' }, to: `http://127.0.0.1:${slowPort}`, timeout_ms: 300 },
    ],
  });
  proxy = await startAccessProxy(config, {
    authenticator: auth,
    source,
    recorder: { record: (e) => events.push(e) },
    log: (msg, fields) => logs.push({ msg, fields }),
  });
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await sidecar?.close();
  for (const s of [wiki, admin, slow]) {
    s?.closeAllConnections();
    s?.close();
  }
  await server?.close();
});

const lastEvent = () => events[events.length - 1] as AccessDecisionEvent;

describe('access proxy: routing', () => {
  it('routes by host (any case, port stripped) and by the longest path prefix', async () => {
    const r = await call('WIKI.example.test', '/page?q=1', ALICE);
    expect(r.status).toBe(200);
    expect(r.body).toBe('wiki:/page?q=1');
    const b = await call('wiki.example.test', '/admin/users', BOB);
    expect(b.body).toBe('admin:/admin/users');
    // `/administrator` is not under the `/admin` prefix.
    const c = await call('wiki.example.test', '/administrator', ALICE);
    expect(c.body).toBe('wiki:/administrator');
  });

  it('an unknown host gets 404 and nothing is forwarded; the refusal is recorded', async () => {
    const before = seen.length;
    // A valid TLS name, another Host: the Host decides, and no route serves it.
    const r = await call(
      'evil.example.test',
      '/page',
      { ...ALICE, accept: 'application/json' },
      'GET',
      'wiki.example.test',
    );
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'unknown_host' });
    expect(seen.length).toBe(before);
    expect(lastEvent()).toMatchObject({ outcome: 'deny', enforcer: 'access-proxy' });
  });

  it('a refused request is recorded without its query (a query may carry a token)', async () => {
    const secret = 'tok-7f3a9c1e5b';
    for (const [host, path] of [
      ['wiki.example.test', `/admin/../page?access_token=${secret}`],
      ['evil.example.test', `/page?access_token=${secret}`],
    ] as const) {
      const r = await call(host, path, { ...ALICE, accept: 'application/json' }, 'GET', 'wiki.example.test');
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(JSON.stringify(lastEvent())).not.toContain(secret);
      expect(lastEvent().target.path).toBe(path.slice(0, path.indexOf('?')));
    }
  });

  it.each([
    ['/admin/../page', 400],
    ['/x/%2e%2e/admin/users', 400],
    ['/x/%2E%2E/admin/users', 400],
    ['/admin%2Fusers', 400],
    ['/admin/..;/page', 400],
  ])('path trick %s is refused and never forwarded', async (path, status) => {
    const before = seen.length;
    const r = await call('wiki.example.test', path, { ...ALICE, accept: 'application/json' });
    expect(r.status).toBe(status);
    expect(JSON.parse(r.body).error).toBe('bad_path');
    expect(seen.length).toBe(before);
    expect(lastEvent().outcome).toBe('deny');
  });

  it('`//admin` is the /admin route (merged), decided there: alice is denied, the admin app never sees it', async () => {
    const before = seen.length;
    const r = await call('wiki.example.test', '//admin/users', { ...ALICE, accept: 'application/json' });
    expect(r.status).toBe(403);
    expect(seen.length).toBe(before);
    // The normalized path is what is decided and what the app gets.
    const b = await call('wiki.example.test', '//admin//users', BOB);
    expect(b.body).toBe('admin:/admin/users');
  });

  it('an absolute-form request target is refused, not proxied to the host it names', async () => {
    const before = seen.length;
    const r = await call('wiki.example.test', 'http://127.0.0.1:1/page', { ...ALICE, accept: 'application/json' });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error).toBe('bad_path');
    expect(seen.length).toBe(before);
  });

  it('own endpoints go to the authenticator, never to an app', async () => {
    const before = seen.length;
    const r = await call('wiki.example.test', '/.nevertrust/ping');
    expect(r.body).toBe('own endpoint');
    const n = await call('wiki.example.test', '/.nevertrust/nothing');
    expect(n.status).toBe(404);
    expect(seen.length).toBe(before);
  });
});

describe('access proxy: identity and decisions', () => {
  it('no credential: a browser goes to login with the path and query; an API client gets 401', async () => {
    const r = await call('wiki.example.test', '/page?x=1&y=2', { accept: 'text/html,application/xhtml+xml' });
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe(
      `${LOGIN_URL}?return_to=${encodeURIComponent('https://wiki.example.test:8443/page?x=1&y=2')}`,
    );
    expect(auth.logins.at(-1)).toEqual({ returnTo: '/page?x=1&y=2', origin: 'https://wiki.example.test:8443' });
    const a = await call('wiki.example.test', '/page');
    expect(a.status).toBe(401);
    expect(a.headers['www-authenticate']).toBe('Bearer realm="wiki.example.test"');
    expect(JSON.parse(a.body).error).toBe('unauthenticated');
    // A POST from a browser is not redirected (it would lose its body).
    const p = await call('wiki.example.test', '/page', { accept: 'text/html' }, 'POST');
    expect(p.status).toBe(401);
  });

  it('an invalid credential gets 401 with error="invalid_token"', async () => {
    const r = await call('wiki.example.test', '/page', { authorization: 'Bearer nope' });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe(
      'Bearer realm="wiki.example.test", error="invalid_token", error_description="token not recognized"',
    );
  });

  it('a refusal reason hostile to a header line is made safe in WWW-Authenticate', async () => {
    const r = await call('wiki.example.test', '/page', { authorization: 'Bearer weird-token' });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe(
      'Bearer realm="wiki.example.test", error="invalid_token", error_description="bad  token   x-evil:   "',
    );
    expect(r.headers['x-evil']).toBeUndefined();
  });

  it('deny: an HTML page with reason and decision id, or JSON when asked', async () => {
    const h = await call('wiki.example.test', '/admin/x', { ...ALICE, accept: 'text/html' });
    expect(h.status).toBe(403);
    expect(h.headers['content-type']).toMatch(/^text\/html/);
    const j = await call('wiki.example.test', '/admin/x', { ...ALICE, accept: 'application/json' });
    expect(j.status).toBe(403);
    const body = JSON.parse(j.body) as { error: string; reason: string; decision_id: string };
    expect(body.error).toBe('forbidden');
    expect(body.reason.length).toBeGreaterThan(0);
    expect(h.body).toContain('Decision id');
    const e = events.find((x) => x.decision_id === body.decision_id);
    expect(e).toMatchObject({ outcome: 'deny', enforcer: 'access-proxy', source: { user: 'alice@example.test' } });
    expect(e?.details).toMatchObject({ route: 'wiki-admin', host: 'wiki.example.test', identity: 'bearer' });
  });

  it('step_up: a bearer caller without MFA gets 401 insufficient_user_authentication; with MFA it passes', async () => {
    const a = await call('wiki.example.test', '/secure/doc', { ...ALICE, accept: 'application/json' });
    expect(a.status).toBe(401);
    expect(JSON.parse(a.body).error).toBe('mfa_required');
    expect(a.headers['www-authenticate']).toMatch(/error="insufficient_user_authentication"/);
    const b = await call('wiki.example.test', '/secure/doc', BOB);
    expect(b.status).toBe(200);
  });

  it('a failing authenticator denies (fail closed)', async () => {
    auth.explode = true;
    try {
      const before = seen.length;
      const r = await call('wiki.example.test', '/page', { ...ALICE, accept: 'application/json' });
      expect(r.status).toBe(503);
      expect(seen.length).toBe(before);
    } finally {
      auth.explode = false;
    }
  });

  it('no cookie or Authorization value in any decision record or log line', async () => {
    await call('wiki.example.test', '/page', { cookie: '__Host-test=alice-token' });
    const all = JSON.stringify(events) + JSON.stringify(logs);
    expect(all).not.toContain('alice-token');
    expect(all).not.toContain('bob-token');
    // A session is recorded by its public handle.
    expect(lastEvent().details).toMatchObject({ session: 'sid-alice', identity: 'session' });
  });
});

describe('access proxy: forwarding', () => {
  it('strips client identity headers (any case) and sets forwarding headers, Host and route headers', async () => {
    const forged = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.';
    const r = await call('wiki.example.test', '/h', {
      ...ALICE,
      'X-NeverTrust-JWT-Assertion': forged,
      'x-nevertrust-user': 'bob',
      'x-forwarded-for': '6.6.6.6',
      'x-remove-me': '1',
      'x-route': 'client',
    });
    expect(r.status).toBe(200);
    expect(r.headers['x-app']).toBe('wiki');
    expect(r.headers['x-hop']).toBeUndefined();
    const h = (seen.at(-1) as Seen).headers;
    expect(h['x-nevertrust-jwt-assertion']).not.toBe(forged);
    expect(h['x-nevertrust-user']).toBeUndefined();
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h['x-forwarded-host']).toBe(`wiki.example.test:${proxy.port}`);
    expect(h.host).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(h['x-remove-me']).toBeUndefined();
    expect(h['x-route']).toBe('wiki');
  });

  it('the app gets a person assertion that verifies against the server JWKS, per request', async () => {
    await call('wiki.example.test', '/one', BOB);
    const t1 = (seen.at(-1) as Seen).headers['x-nevertrust-jwt-assertion'] as string;
    await call('wiki.example.test', '/two', BOB);
    const t2 = (seen.at(-1) as Seen).headers['x-nevertrust-jwt-assertion'] as string;
    expect(t1).not.toBe(t2);
    const keys = assertionKeySet(server.url, PROXY_ID);
    const { payload, protectedHeader } = await jwtVerify(t1, keys, {
      issuer: PROXY_ID,
      audience: 'https://wiki.example.test',
      typ: PERSON_ASSERTION_TYP,
      algorithms: ['ES256'],
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({
      sub: 'bob',
      user: 'bob@example.test',
      email: 'bob@example.test',
      groups: ['staff', 'admins'],
      amr: ['pwd', 'otp'],
      auth_time: 1_780_000_000,
      mfa_at: 1_780_000_000,
      idp: ISSUER,
    });
    // No verified device came with the request: no device claim (never a guess).
    expect(payload.device).toBeUndefined();
    // A person without a second factor carries no mfa_at: the console then refuses destructive calls.
    await call('wiki.example.test', '/three', ALICE);
    const t3 = (seen.at(-1) as Seen).headers['x-nevertrust-jwt-assertion'] as string;
    const alice = await verifyPersonAssertion(t3, keys, { issuer: PROXY_ID, audience: 'https://wiki.example.test' });
    expect(alice).toMatchObject({ subject: 'alice', user: 'alice@example.test' });
    expect(alice.mfaAt).toBeUndefined();
    expect((payload.exp as number) - (payload.iat as number)).toBe(30);
    expect(events.some((e) => e.decision_id === payload.decision_id && e.outcome === 'allow')).toBe(true);
    // A person assertion is no workload assertion: the workload verifier refuses it by typ.
    expect(decodeProtectedHeader(t1).typ).toBe(PERSON_ASSERTION_TYP);
    await expect(verifyIdentityAssertion(t1, keys, { issuer: PROXY_ID })).rejects.toMatchObject({
      code: 'ERR_ASSERTION_BAD_TYP',
    });
  });

  it('to a sidecar over mTLS with the proxy SVID; a sidecar with another SPIFFE ID gets nothing (502)', async () => {
    const r = await call('mesh.example.test', '/handbook', ALICE);
    expect(r.status).toBe(200);
    expect(r.body).toBe('admin:/handbook');
    // The sidecar verified the proxy's SVID and tells its app who called.
    expect((seen.at(-1) as Seen).headers['x-nevertrust-peer-id']).toBe(PROXY_ID);
    const before = seen.length;
    const w = await call('mesh-wrong.example.test', '/handbook', { ...ALICE, accept: 'application/json' });
    expect(w.status).toBe(502);
    expect(seen.length).toBe(before);
  });

  it('verifyPersonAssertion: accepts the route audience; refuses another route, a tampered or unsigned token', async () => {
    await call('wiki.example.test', '/admin/panel', { cookie: '__Host-test=bob-token' });
    const token = (seen.at(-1) as Seen).headers['x-nevertrust-jwt-assertion'] as string;
    const keys = assertionKeySet(server.url, PROXY_ID);
    const who = await verifyPersonAssertion(token, keys, {
      issuer: PROXY_ID,
      audience: 'https://wiki.example.test/admin',
    });
    expect(who).toMatchObject({
      subject: 'bob',
      user: 'bob@example.test',
      email: 'bob@example.test',
      sessionId: 'sid-bob',
      idp: ISSUER,
      mfaAt: 1_780_000_000,
    });
    expect(events.some((e) => e.decision_id === who.decisionId)).toBe(true);
    // A token for /admin replayed to the app of the / route.
    await expect(
      verifyPersonAssertion(token, keys, { issuer: PROXY_ID, audience: 'https://wiki.example.test' }),
    ).rejects.toMatchObject({ code: 'ERR_ASSERTION_AUD_MISMATCH' });
    const [h, p, sig] = token.split('.') as [string, string, string];
    const evil = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), groups: ['root'] }),
    ).toString('base64url');
    await expect(
      verifyPersonAssertion(`${h}.${evil}.${sig}`, keys, {
        issuer: PROXY_ID,
        audience: 'https://wiki.example.test/admin',
      }),
    ).rejects.toMatchObject({ code: 'ERR_ASSERTION_BAD_SIGNATURE' });
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: PERSON_ASSERTION_TYP })).toString('base64url');
    await expect(
      verifyPersonAssertion(`${none}.${p}.`, keys, { issuer: PROXY_ID, audience: 'https://wiki.example.test/admin' }),
    ).rejects.toMatchObject({ code: 'ERR_ASSERTION_ALG_NOT_ALLOWED' });
  });

  it("the person's credential is consumed: no session cookie or bearer Authorization reaches the app", async () => {
    await call('wiki.example.test', '/c', { cookie: 'theme=dark; __Host-test=alice-token; lang=en' });
    const h1 = (seen.at(-1) as Seen).headers;
    expect(h1.cookie).toBe('theme=dark; lang=en');
    await call('wiki.example.test', '/c', { cookie: '__Host-test=alice-token' });
    expect((seen.at(-1) as Seen).headers.cookie).toBeUndefined();
    await call('wiki.example.test', '/c', ALICE);
    expect((seen.at(-1) as Seen).headers.authorization).toBeUndefined();
    // A session caller's own Authorization (for the app, e.g. Basic) is the app's business.
    await call('wiki.example.test', '/c', { cookie: '__Host-test=alice-token', authorization: 'Basic YTpi' });
    expect((seen.at(-1) as Seen).headers.authorization).toBe('Basic YTpi');
    expect(JSON.stringify(seen.slice(-4).map((x) => x.headers))).not.toContain('alice-token');
  });

  it("an app cannot set the proxy's credential cookies in the browser; its own cookies pass", async () => {
    const r = await call('wiki.example.test', '/plant-cookie', ALICE);
    expect(r.status).toBe(200);
    const set = ([] as string[]).concat(r.headers['set-cookie'] ?? []);
    expect(set).toEqual(['theme=light; Path=/']);
  });

  it('a request body streams through to the app', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    const r = await call('wiki.example.test', '/upload', ALICE, 'POST', 'wiki.example.test', body);
    expect(r.status).toBe(200);
    expect(r.body).toBe(`wiki:/upload:${body.length}`);
  });

  it('a request header over the limit gets 431', async () => {
    const r = await call('wiki.example.test', '/page', { ...ALICE, 'x-big': 'a'.repeat(20_000) });
    expect(r.status).toBe(431);
  });

  it('upstream down: 502 page; upstream too slow: 504', async () => {
    const d = await call('down.example.test', '/', { ...ALICE, accept: 'application/json' });
    expect(d.status).toBe(502);
    expect(JSON.parse(d.body).error).toBe('bad_gateway');
    const s = await call('slow.example.test', '/', ALICE);
    expect(s.status).toBe(504);
  });
});

/** A WebSocket handshake over TLS; resolves with the response head and a way to talk. */
function wsHandshake(
  host: string,
  headers: Record<string, string>,
  protocol = 'websocket',
): Promise<{ head: string; echo(m: string): Promise<string> }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: proxy.port, servername: host, ca: caPem }, () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      s.write(
        `GET /socket HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`,
      );
    });
    let buf = '';
    const onHead = (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onHead);
      resolve({
        head: buf.slice(0, end),
        echo: (m) =>
          new Promise((r) => {
            s.once('data', (x: Buffer) => {
              r(x.toString());
              s.destroy();
            });
            s.write(m);
          }),
      });
    };
    s.on('data', onHead);
    s.on('error', reject);
  });
}

describe('access proxy: WebSockets', () => {
  it('an allowed upgrade is tunnelled; client identity headers are stripped', async () => {
    const ws = await wsHandshake('ws.example.test', { ...ALICE, 'X-Nevertrust-Jwt-Assertion': 'forged' });
    expect(ws.head).toMatch(/^HTTP\/1\.1 101/);
    const h = (seen.at(-1) as Seen).headers;
    expect(h['x-nevertrust-jwt-assertion']).not.toBe('forged');
    expect(h.host).toBe('ws.example.test'); // preserve_host
    expect(await ws.echo('hi')).toBe('echo:hi');
  });

  it('an upgrade without credential, denied, or on a route without websockets is refused, never forwarded', async () => {
    const before = seen.length;
    expect((await wsHandshake('ws.example.test', {})).head).toMatch(/^HTTP\/1\.1 401/);
    expect((await wsHandshake('nows.example.test', ALICE)).head).toMatch(/^HTTP\/1\.1 403/);
    // Only WebSocket is tunnelled.
    expect((await wsHandshake('ws.example.test', ALICE, 'h2c')).head).toMatch(/^HTTP\/1\.1 400/);
    // Denied by policy (eve is not staff).
    expect((await wsHandshake('ws.example.test', { authorization: 'Bearer eve-token' })).head).toMatch(
      /^HTTP\/1\.1 403/,
    );
    expect((await wsHandshake('ws.example.test', { authorization: 'Bearer nope' })).head).toMatch(/^HTTP\/1\.1 401/);
    expect(seen.length).toBe(before);
  });
});

/** The serial number of the certificate the proxy serves now. */
function servedSerial(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: proxy.port, servername: 'wiki.example.test', ca: caPem }, () => {
      resolve(s.getPeerX509Certificate()?.serialNumber ?? '');
      s.destroy();
    });
    s.on('error', reject);
  });
}

describe('access proxy: serving certificate', () => {
  it('is the SVID, and a rotated SVID is served to new connections without a restart', async () => {
    const before = await servedSerial();
    const next = mintProxySvid();
    proxySource.set(next);
    const after = await servedSerial();
    expect(after).not.toBe(before);
    expect(after).toBe(new X509Certificate(next.certChainPem).serialNumber);
    expect((await call('wiki.example.test', '/after-rotation', ALICE)).status).toBe(200);
  });
});

describe('access proxy: origins', () => {
  it('without public_port, origins name the port actually bound (listen port 0)', async () => {
    const a = new FixedAuthenticator({});
    const p2 = await startAccessProxy(
      parseAccessProxyConfig({
        listen: '127.0.0.1:0',
        svid: { workload_api: 'unused' },
        policies: policiesDir,
        routes: [{ name: 'wiki', from: { host: 'wiki.example.test' }, to: 'http://127.0.0.1:1' }],
      }),
      { authenticator: a, source: proxySource },
    );
    try {
      const r = await new Promise<number | undefined>((resolve, reject) => {
        httpsRequest(
          {
            host: '127.0.0.1',
            port: p2.port,
            servername: 'wiki.example.test',
            ca: caPem,
            agent: false,
            headers: { host: 'wiki.example.test', accept: 'text/html' },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode);
          },
        )
          .on('error', reject)
          .end();
      });
      expect(r).toBe(302);
      expect(a.logins[0]?.origin).toBe(`https://wiki.example.test:${p2.port}`);
    } finally {
      await p2.close();
    }
    expect(a.closed).toBe(true);
  });
});
