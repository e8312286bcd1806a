import { execFile } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { type CheckResponse, envoyAuthPackage } from '../../src/pep/envoy.js';
import { type RunningServer, type ServerEvent, startServer } from '../../src/server/index.js';
import { decisionPlugin } from '../../src/server/plugins/decision.js';
import { policyPlugin } from '../../src/server/plugins/policy.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { documentedNginxServer, hasNginx, type RunningNginx, startNginx } from './nginx.js';
import { id, makePki, type Pki } from './pki.js';

const run = promisify(execFile);
const POLICIES = fileURLToPath(new URL('./fixtures/policies', import.meta.url));
const PAYMENT = id('payment-service');

let server: RunningServer;
let plugin: ReturnType<typeof decisionPlugin>;
let pki: Pki;
const events: ServerEvent[] = [];
const dir = tempDir();

beforeAll(async () => {
  pki = await makePki(dir);
  const policy = policyPlugin();
  plugin = decisionPlugin({ policy: policy.handle, bundles: () => pki.bundle(), grpc: { port: 0 } });
  server = await startServer({
    config: configSchema.parse({ data_dir: dir, server: { port: 0 }, policies: POLICIES }),
    logger: createLogger('silent'),
    plugins: [
      policy,
      plugin,
      { name: 'capture', register: (ctx) => void ctx.events.on('event', (e) => events.push(e)) },
    ],
  });
});
afterAll(async () => {
  await server?.close();
});

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(server.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const req = (src: string, tgt: string, method: string, path: string) => ({
  source: { spiffe_id: id(src) },
  target: { spiffe_id: id(tgt) },
  request: { method, path },
});

describe('native POST /v1/decide', () => {
  it('decides the payments scenario and records every decision with its id', async () => {
    const ok = await post('/v1/decide', req('api-gateway', 'payment-service', 'POST', '/v1/charges'));
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({
      decision: 'allow',
      allow: true,
      policy: 'payment-service-ingress',
      rule: 'gateway-charges-and-refunds',
    });
    expect(ok.json.decision_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(ok.json.version).toMatch(/^sha256:/);
    const rec = events.find((e) => e.decision_id === ok.json.decision_id);
    // The record names what the answer named, in fields of their own (the audit schema's).
    expect(rec).toMatchObject({
      kind: 'access.decision',
      outcome: 'allow',
      source: { spiffe_id: id('api-gateway') },
      policy: 'payment-service-ingress',
      rule: 'gateway-charges-and-refunds',
      enforcer: 'decide-api',
      target: { path: '/v1/charges', method: 'POST' },
      details: { pep: 'decide-api', version: ok.json.version },
    });

    const cases: [string, string, string, string][] = [
      ['api-gateway', 'payment-service', 'POST', '/v1/refunds'],
      ['audit-service', 'payment-service', 'POST', '/v1/charges'],
      ['api-gateway', 'audit-service', 'POST', '/v1/events'],
      ['api-gateway', 'payment-service', 'GET', '/v1/charges'],
      ['api-gateway', 'payment-service', 'POST', '/v1/charges/../admin'],
      ['api-gateway', 'payment-service', 'POST', '/v1/charges/%2e%2e/admin'],
      ['payment-service', 'audit-service', 'POST', '/v1/events'],
    ];
    const got = [];
    for (const c of cases) {
      const r = await post('/v1/decide', req(...c));
      got.push(r.json.allow);
      const ev = events.find((e) => e.decision_id === r.json.decision_id);
      expect(ev?.outcome).toBe(r.json.allow ? 'allow' : 'deny');
    }
    expect(got).toEqual([true, false, false, false, false, false, true]);
  });

  it('refuses malformed requests with 400 and a recorded deny', async () => {
    const bad = await post('/v1/decide', '{"source": ');
    expect(bad.status).toBe(400);
    const wrong = await post('/v1/decide', { source: { spiffe_id: 7 } });
    expect(wrong.status).toBe(400);
    expect(events.some((e) => e.decision_id === wrong.json.decision_id && e.outcome === 'deny')).toBe(true);
  });
});

describe('OPA Data API', () => {
  it('answers an OPA-style client posting the flat input with {"result": true|false}', async () => {
    const input = { source_service: 'orders', target_service: 'inventory', method: 'GET', path: '/v1/items/42' };
    const yes = await post('/v1/data/service_auth/allow', { input });
    expect(yes.status).toBe(200);
    expect(yes.json.result).toBe(true);
    const no = await post('/v1/data/service_auth/allow', { input: { ...input, method: 'DELETE' } });
    expect(no.json.result).toBe(false);
    const trick = await post('/v1/data/service_auth/allow', { input: { ...input, path: '/v1/items/%2e%2e/admin' } });
    expect(trick.json.result).toBe(false);
    // Extra fields an OPA client sends are ignored, as OPA would.
    const extra = await post('/v1/data/service_auth/allow', { input: { ...input, user: 'alice' } });
    expect(extra.json.result).toBe(true);
    // Non-allow paths get the decision object.
    const obj = await post('/v1/data/service_auth', { input });
    expect(obj.json.result).toMatchObject({ decision: 'allow', policy: 'inventory-ingress', rule: 'orders-read' });
    expect((await post('/v1/data/service_auth/allow', '{nope')).status).toBe(400);
    expect((await post('/v1/data/service_auth/allow', { input: 'x' })).status).toBe(400);
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({});
  });
});

function check(port: number, attributes: unknown): Promise<CheckResponse> {
  const Authorization = envoyAuthPackage().Authorization as grpc.ServiceClientConstructor;
  const client = new Authorization(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (client as unknown as { Check: (r: unknown, cb: (e: Error | null, r: CheckResponse) => void) => void }).Check(
      { attributes },
      (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(res);
      },
    );
  });
}

describe('Envoy ext_authz', () => {
  it('gRPC Check: principal from the source peer; 0 allows, 7 denies with denied_response', async () => {
    const port = plugin.grpcPort() as number;
    const attrs = (src: string, method: string, path: string) => ({
      source: {
        principal: id(src),
        address: { socket_address: { address: '10.1.2.3', port_value: 5000 } },
      },
      destination: { principal: PAYMENT },
      request: { http: { method, path, headers: { ':authority': 'payments' } } },
    });
    const ok = await check(port, attrs('api-gateway', 'POST', '/v1/charges'));
    expect(ok.status.code).toBe(0);
    expect(ok.ok_response?.headers.map((h) => h.header.key)).toContain('x-nevertrust-peer-id');
    const no = await check(port, attrs('audit-service', 'POST', '/v1/charges'));
    expect(no.status.code).toBe(7);
    expect(no.denied_response?.status.code).toBe(403);
    expect(JSON.parse(no.denied_response?.body ?? '{}').decision_id).toMatch(/-/);
    const trick = await check(port, attrs('api-gateway', 'POST', '/v1/charges/../admin'));
    expect(trick.status.code).toBe(7);
    const anon = await check(port, {
      destination: { principal: PAYMENT },
      request: { http: { method: 'POST', path: '/v1/charges' } },
    });
    expect(anon.status.code).toBe(16);
    expect(anon.denied_response?.status.code).toBe(401);
    const bad = await check(port, { ...attrs('api-gateway', 'POST', '/v1/charges'), source: { principal: 'admin' } });
    expect(bad.status.code).toBe(16);
    // A forwarded certificate is verified, not believed.
    const other = pki.mint('api-gateway', { other: true });
    const forged = await check(port, {
      ...attrs('api-gateway', 'POST', '/v1/charges'),
      source: { principal: id('api-gateway'), certificate: encodeURIComponent(other.certChainPem) },
    });
    expect(forged.status.code).toBe(16);
  });

  it('HTTP mode: original method and raw path; XFCC only from trusted proxies', async () => {
    const call = (method: string, path: string, headers: Record<string, string>, localAddress = '127.0.0.1') =>
      new Promise<number>((resolve, reject) => {
        const r = httpRequest(
          { host: '127.0.0.1', port: server.port, method, path: `/v1/authz/envoy${path}`, headers, localAddress },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        r.on('error', reject);
        r.end();
      });
    // Loopback is trusted for certificates (the default form): Envoy forwards the client certificate.
    const xfcc = (name: string) => ({
      'x-forwarded-client-cert': `By=${PAYMENT};Hash=abc;Cert="${encodeURIComponent(pki.mint(name).certChainPem)}";URI=${id(name)}`,
      'x-nevertrust-target': PAYMENT,
    });
    expect(await call('POST', '/v1/charges', xfcc('api-gateway'))).toBe(200);
    // A bare URI is the proxy's word alone: not believed from a proxy that is not listed with xfcc-uri.
    const bare = events.length;
    const uriOnly = {
      'x-forwarded-client-cert': `By=${PAYMENT};URI=${id('api-gateway')}`,
      'x-nevertrust-target': PAYMENT,
    };
    expect(await call('POST', '/v1/charges', uriOnly)).toBe(401);
    expect(events.slice(bare).map((e) => e.reason)).toEqual([expect.stringMatching(/^xfcc_no_cert/)]);
    expect(await call('GET', '/v1/charges', xfcc('api-gateway'))).toBe(403);
    expect(await call('POST', '/v1/charges/%2e%2e/admin', xfcc('api-gateway'))).toBe(403);
    expect(await call('POST', '/v1/charges', xfcc('audit-service'))).toBe(403);
    expect(await call('POST', '/v1/charges', { 'x-nevertrust-target': PAYMENT })).toBe(401);
    // 127.0.0.2 is not a trusted proxy: its XFCC is ignored (and recorded), so there is no identity.
    const before = events.length;
    expect(await call('POST', '/v1/charges', xfcc('api-gateway'), '127.0.0.2')).toBe(401);
    expect(events.slice(before).some((e) => Array.isArray(e.details?.ignored_identity_headers))).toBe(true);
  });
});

describe.skipIf(!hasNginx() && !process.env.CI)(
  'nginx auth_request: the documented config, against Debian nginx',
  () => {
    let nginx: RunningNginx;
    let app: ReturnType<typeof createServer>;
    let port: number;
    beforeAll(async () => {
      // The app answers with what it was told: the caller nginx passed on and any identity headers it got.
      app = createServer((req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(
          `app saw ${req.method} ${req.url} as ${req.headers['x-nevertrust-peer-id'] ?? '-'}` +
            ` xfcc=${req.headers['x-forwarded-client-cert'] ?? '-'} real-ip=${req.headers['x-real-ip'] ?? '-'}`,
        );
      });
      await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
      const appPort = (app.address() as { port: number }).port;
      port = await freePort();
      const server_ = pki.ca.mintX509Svid({ spiffeId: PAYMENT, dnsNames: ['localhost'] });
      const nd = join(dir, 'nginx');
      const files = pki.files(dir, 'nginx-server', {
        spiffeId: PAYMENT,
        certChainPem: (await import('../../src/ca/index.js')).certificatesToPem(server_.chain),
        privateKeyPem: server_.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      });
      nginx = await startNginx(
        nd,
        documentedNginxServer({ port, cert: files.cert, key: files.key, decisionPort: server.port, appPort }),
        port,
      );
    });
    afterAll(async () => {
      await nginx?.stop();
      app?.close();
    });

    async function curl(
      method: string,
      path: string,
      cert?: { cert: string; key: string },
      headers: Record<string, string> = {},
    ): Promise<[number, string]> {
      const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '-X', method];
      args.push('--resolve', `localhost:${port}:127.0.0.1`, '--cacert', pki.bundleFile(dir), '--path-as-is');
      if (cert) args.push('--cert', cert.cert, '--key', cert.key);
      for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
      const { stdout } = await run('curl', [...args, `https://localhost:${port}${path}`]);
      const i = stdout.lastIndexOf('\n');
      return [Number(stdout.slice(i + 1)), stdout.slice(0, i)];
    }
    /** The decision record of the last nginx check (nginx asks once per request). */
    const lastNginxEvent = () => events.filter((e) => e.details?.pep === 'nginx').at(-1);

    it('allows and denies as the policy says; refuses missing, foreign and expired certificates', async () => {
      const gw = pki.files(dir, 'gw', pki.mint('api-gateway'));
      const audit = pki.files(dir, 'audit', pki.mint('audit-service'));
      const foreign = pki.files(dir, 'foreign', pki.mint('api-gateway', { other: true }));
      const expired = pki.files(
        dir,
        'expired',
        pki.mint('api-gateway', { ttlSeconds: 60, now: new Date(Date.now() - 3_600_000) }),
      );
      const [s1, b1] = await curl('POST', '/v1/charges', gw);
      expect(s1).toBe(200);
      expect(b1).toBe(`app saw POST /v1/charges as ${id('api-gateway')} xfcc=- real-ip=127.0.0.1`);
      expect((await curl('POST', '/v1/refunds', gw))[0]).toBe(200);
      expect((await curl('GET', '/v1/charges', gw))[0]).toBe(403);
      expect((await curl('POST', '/v1/charges/../admin', gw))[0]).toBe(403);
      expect((await curl('POST', '/v1/charges/%2e%2e/admin', gw))[0]).toBe(403);
      expect((await curl('POST', '/v1/charges', audit))[0]).toBe(403);
      expect((await curl('POST', '/v1/charges'))[0]).toBe(401);
      expect((await curl('POST', '/v1/charges', foreign))[0]).toBe(401);
      // nginx itself rejects an expired certificate even with optional_no_ca (400); either way, refused.
      expect([400, 401]).toContain((await curl('POST', '/v1/charges', expired))[0]);
      const refused = events.filter((e) => e.details?.pep === 'nginx' && /x509svid_invalid/.test(e.reason));
      expect(refused.map((e) => e.reason)).toEqual(expect.arrayContaining([expect.stringMatching(/NO_BUNDLE/)]));
    });

    it("a client's own XFCC never becomes an identity: without a certificate denied, with one the certificate decides", async () => {
      const forged = { 'X-Forwarded-Client-Cert': `URI=${id('api-gateway')}` };
      // No client certificate, a forged XFCC naming a caller the policy allows: denied, no identity.
      const [s1, b1] = await curl('POST', '/v1/charges', undefined, forged);
      expect(s1).toBe(401);
      expect(b1).not.toContain('app saw');
      const e1 = lastNginxEvent();
      expect(e1).toMatchObject({ outcome: 'deny', source: { ip: '127.0.0.1' } });
      expect(e1?.source?.spiffe_id).toBeUndefined();
      expect(e1?.details?.identity).toBeUndefined();
      // The subrequest did not carry it at all (nginx set the header empty), so nothing was refused for it.
      expect(e1?.reason).not.toMatch(/xfcc/);
      expect(e1?.details?.ignored_identity_headers).toBeUndefined();

      // With a certificate: its identity, never the forged one, and the app never sees the forged header.
      const gw = pki.files(dir, 'gw2', pki.mint('api-gateway'));
      const [s2, b2] = await curl('POST', '/v1/charges', gw, { 'X-Forwarded-Client-Cert': `URI=${id('admin')}` });
      expect(s2).toBe(200);
      expect(b2).toBe(`app saw POST /v1/charges as ${id('api-gateway')} xfcc=- real-ip=127.0.0.1`);
      expect(lastNginxEvent()).toMatchObject({
        outcome: 'allow',
        source: { spiffe_id: id('api-gateway') },
        details: { identity: 'x-client-cert' },
      });
      // A caller the policy refuses cannot borrow an allowed identity through XFCC.
      const audit = pki.files(dir, 'audit2', pki.mint('audit-service'));
      const [s3] = await curl('POST', '/v1/charges', audit, forged);
      expect(s3).toBe(403);
      expect(lastNginxEvent()).toMatchObject({ outcome: 'deny', source: { spiffe_id: id('audit-service') } });
      // Nor through a forged X-Client-Cert: nginx replaces it with the connection's certificate.
      const gwPem = encodeURIComponent(pki.mint('api-gateway').certChainPem);
      const [s4] = await curl('POST', '/v1/charges', audit, { 'X-Client-Cert': gwPem });
      expect(s4).toBe(403);
      expect(lastNginxEvent()?.source?.spiffe_id).toBe(id('audit-service'));
      const [s5] = await curl('POST', '/v1/charges', undefined, { 'X-Client-Cert': gwPem });
      expect(s5).toBe(401);
      expect(lastNginxEvent()?.source?.spiffe_id).toBeUndefined();
    });

    it('a forged X-Real-IP does not become source.ip', async () => {
      const gw = pki.files(dir, 'gw3', pki.mint('api-gateway'));
      const [s, body] = await curl('POST', '/v1/charges', gw, { 'X-Real-IP': '203.0.113.9' });
      expect(s).toBe(200);
      expect(body).toContain('real-ip=127.0.0.1');
      expect(lastNginxEvent()).toMatchObject({ outcome: 'allow', source: { ip: '127.0.0.1' } });
      const [s2] = await curl('POST', '/v1/charges', undefined, { 'X-Real-IP': '203.0.113.9' });
      expect(s2).toBe(401);
      expect(lastNginxEvent()?.source?.ip).toBe('127.0.0.1');
    });
  },
);
