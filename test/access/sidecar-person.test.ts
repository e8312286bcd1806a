/**
 * End to end: a person → the access proxy → a nevertrust sidecar (mTLS with the proxy's SVID) →
 * the example back-office app (examples/backoffice/app.mjs, a real process), which verifies the
 * person assertion against the server's JWKS. With the proxy in `inbound.access_proxies` the app
 * learns who the person is; without it the sidecar strips the assertion and the app refuses.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAccessProxyConfig, type RunningAccessProxy, startAccessProxy } from '../../src/access/proxy/index.js';
import { certificatesToPem } from '../../src/ca/index.js';
import { MemorySvidSource } from '../../src/pep/mtls/index.js';
import { type RunningSidecar, SidecarConfigSchema, startSidecar } from '../../src/pep/sidecar/index.js';
import type { RunningServer } from '../../src/server/index.js';
import type { caPlugin } from '../../src/server/plugins/ca.js';
import { startAssertionServer } from '../pep/assertion-server.js';
import { tempDir } from '../support/tmp.js';
import { FixedAuthenticator, person } from './fixed-authenticator.js';

const TD = 'example.org';
const PROXY_ID = `spiffe://${TD}/ns/edge/sa/access-proxy`;
const APP_ID = `spiffe://${TD}/ns/office/sa/backoffice`;
const HOST = 'backoffice.example.test';
const PLAIN_HOST = 'plain.example.test';
const APP = fileURLToPath(new URL('../../examples/backoffice/app.mjs', import.meta.url));

let server: RunningServer;
let ca: ReturnType<typeof caPlugin>;
let app: ChildProcess;
let listed: RunningSidecar;
let unlisted: RunningSidecar;
let proxy: RunningAccessProxy;
let caPem: string;

function svid(spiffeId: string, dnsNames: string[]) {
  const m = ca.handle.current().mintX509Svid({ spiffeId, dnsNames, ttlSeconds: 3600 });
  return {
    spiffeId,
    certChainPem: certificatesToPem(m.chain),
    privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

function call(host: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = httpsRequest(
      {
        host: '127.0.0.1',
        port: proxy.port,
        servername: host,
        ca: caPem,
        path,
        agent: false,
        headers: { host: `${host}:${proxy.port}`, ...headers },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    r.on('error', reject);
    r.end();
  });
}

beforeAll(async () => {
  let agentUrl: string;
  ({ server, ca, agentUrl } = await startAssertionServer(TD));
  const bundle = ca.handle.current().bundle();
  caPem = bundle.toPem();

  app = fork(APP, [], {
    env: {
      ...process.env,
      NT_PORT: '0',
      NT_JWKS_URL: `${server.url}/v1/assertion-keys/jwks.json?issuer=${encodeURIComponent(PROXY_ID)}`,
      NT_ASSERTION_ISSUER: PROXY_ID,
      NT_AUDIENCE: `https://${HOST}`,
    },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const appPort = await new Promise<number>((resolve, reject) => {
    app.once('message', (m) => resolve((m as { port: number }).port));
    app.once('exit', (code) => reject(new Error(`backoffice exited with ${code}`)));
  });

  const dir = tempDir();
  const sidecarPolicies = join(dir, 'sidecar-policies');
  mkdirSync(sidecarPolicies);
  writeFileSync(
    join(sidecarPolicies, 'backoffice.yaml'),
    `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: backoffice-from-proxy }
spec:
  action: ALLOW
  target: { spiffeIds: ["${APP_ID}"] }
  rules:
    - from: [{ principals: ["${PROXY_ID}"] }]
`,
  );
  const sidecar = (extra: Record<string, unknown>) =>
    startSidecar(
      SidecarConfigSchema.parse({
        svid: { workload_api: 'unused' },
        policies: sidecarPolicies,
        inbound: { listen: '127.0.0.1:0', app: `127.0.0.1:${appPort}`, ...extra },
      }),
      { source: new MemorySvidSource(svid(APP_ID, []), [bundle]) },
    );
  listed = await sidecar({ access_proxies: [PROXY_ID] });
  unlisted = await sidecar({});

  const policies = join(dir, 'policies');
  mkdirSync(policies);
  writeFileSync(
    join(policies, 'backoffice.yaml'),
    `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: backoffice-staff }
spec:
  action: ALLOW
  target: { services: [backoffice] }
  rules:
    - when:
        - key: request.auth.claims[groups]
          values: [staff]
`,
  );
  const config = parseAccessProxyConfig({
    listen: '127.0.0.1:0',
    svid: { workload_api: 'unused' },
    policies,
    assertion: { server: agentUrl, ttl_seconds: 30 },
    routes: [
      {
        name: 'backoffice',
        from: { host: HOST },
        to: `https://127.0.0.1:${listed.inboundPort}`,
        to_spiffe_id: APP_ID,
      },
      {
        name: 'plain',
        from: { host: PLAIN_HOST },
        to: `https://127.0.0.1:${unlisted.inboundPort}`,
        to_spiffe_id: APP_ID,
        target: { service: 'backoffice' },
      },
    ],
  });
  proxy = await startAccessProxy(config, {
    authenticator: new FixedAuthenticator({
      'alice-token': person('alice', ['staff']),
      'eve-token': person('eve', []),
    }),
    source: new MemorySvidSource(svid(PROXY_ID, [HOST, PLAIN_HOST]), [bundle]),
  });
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await listed?.close();
  await unlisted?.close();
  app?.kill();
  await server?.close();
});

describe('access proxy → sidecar → app', () => {
  it('with the proxy in access_proxies, the app verifies the person assertion and knows the person', async () => {
    const r = await call(HOST, '/reports', { authorization: 'Bearer alice-token' });
    expect(r.status, r.body).toBe(200);
    expect(r.body).toContain('<b id="email">alice@example.test</b>');
    expect(r.body).toContain('<span id="groups">staff</span>');
    expect(r.body).toContain('id="reports"');
  });

  it('a person the proxy denies never reaches the sidecar or the app', async () => {
    const r = await call(HOST, '/reports', { authorization: 'Bearer eve-token', accept: 'application/json' });
    expect(r.status).toBe(403);
    expect(r.body).not.toContain('back-office');
  });

  it('a sidecar without access_proxies strips the assertion: the app refuses the request', async () => {
    const r = await call(PLAIN_HOST, '/reports', { authorization: 'Bearer alice-token' });
    expect(r.status).toBe(401);
    expect(r.body).toContain('no assertion');
  });
});
