import { type ChildProcess, execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificatesToPem } from '../../src/ca/index.js';
import { freePort } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { type SidecarProcess, spawnSidecar } from './sidecar-process.js';
import { id, makePki, type Pki } from './pki.js';

const run = promisify(execFile);
const POLICIES = fileURLToPath(new URL('./fixtures/policies', import.meta.url));
const dir = tempDir();
let pki: Pki;
const children: ChildProcess[] = [];
let inPort: number;
let outPort: number;
let sidecarA: SidecarProcess;
let app: ReturnType<typeof createServer>;

beforeAll(async () => {
  pki = await makePki(dir);
  app = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          method: req.method,
          url: req.url,
          peer: req.headers['x-nevertrust-peer-id'] ?? null,
          forged: req.headers['x-forwarded-client-cert'] ?? null,
          body,
        }),
      );
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as { port: number }).port;
  const bundle = pki.bundleFile(dir);
  const ps = pki.ca.mintX509Svid({ spiffeId: id('payment-service'), dnsNames: ['localhost'] });
  const psFiles = pki.files(dir, 'ps', {
    spiffeId: id('payment-service'),
    certChainPem: certificatesToPem(ps.chain),
    privateKeyPem: ps.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  });
  const gwFiles = pki.files(dir, 'gw-sidecar', pki.mint('api-gateway'));
  inPort = await freePort();
  outPort = await freePort();
  writeFileSync(
    join(dir, 'a.yaml'),
    `svid: { cert: ${psFiles.cert}, key: ${psFiles.key}, bundle: ${bundle} }
policies: ${POLICIES}
inbound:
  listen: 127.0.0.1:${inPort}
  app: 127.0.0.1:${appPort}
`,
  );
  writeFileSync(
    join(dir, 'b.yaml'),
    `svid: { cert: ${gwFiles.cert}, key: ${gwFiles.key}, bundle: ${bundle} }
policies: ${POLICIES}
outbound:
  listen: 127.0.0.1:${outPort}
  services:
    payment-service: { address: 127.0.0.1:${inPort}, spiffe_id: ${id('payment-service')} }
    wrong-id: { address: 127.0.0.1:${inPort}, spiffe_id: ${id('audit-service')} }
`,
  );
  sidecarA = spawnSidecar(join(dir, 'a.yaml'));
  const sidecarB = spawnSidecar(join(dir, 'b.yaml'));
  children.push(sidecarA.child, sidecarB.child);
  await sidecarA.ready;
  await sidecarB.ready;
}, 60_000);

afterAll(() => {
  for (const c of children) c.kill('SIGTERM');
  app?.close();
});

async function curl(method: string, path: string, name?: string, opts: { other?: boolean; expired?: boolean } = {}) {
  const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '-X', method, '--path-as-is'];
  args.push('--resolve', `localhost:${inPort}:127.0.0.1`, '--cacert', pki.bundleFile(dir));
  args.push(
    '-H',
    `x-forwarded-client-cert: URI=${id('api-gateway')}`,
    '-H',
    `x-nevertrust-peer-id: ${id('api-gateway')}`,
  );
  if (name) {
    const svid = pki.mint(name, {
      other: opts.other,
      ...(opts.expired ? { ttlSeconds: 60, now: new Date(Date.now() - 3_600_000) } : {}),
    });
    const f = pki.files(dir, `c-${name}-${opts.other ? 'o' : ''}${opts.expired ? 'e' : ''}`, svid);
    args.push('--cert', f.cert, '--key', f.key);
  }
  if (method === 'POST') args.push('-d', '{"amount":42}');
  try {
    const { stdout } = await run('curl', [...args, `https://localhost:${inPort}${path}`]);
    const i = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
  } catch (e) {
    return { status: 0, body: String((e as { code?: number }).code) };
  }
}

describe('nevertrust sidecar (real processes, curl with client certificates)', () => {
  it('inbound: decides each request, strips client identity headers, forwards the verified peer', async () => {
    const ok = await curl('POST', '/v1/charges', 'api-gateway');
    expect(ok.status).toBe(200);
    const seen = JSON.parse(ok.body);
    expect(seen).toMatchObject({
      method: 'POST',
      url: '/v1/charges',
      peer: id('api-gateway'),
      forged: null,
      body: '{"amount":42}',
    });
    expect((await curl('POST', '/v1/refunds', 'api-gateway')).status).toBe(200);
    for (const [m, p, who] of [
      ['GET', '/v1/charges', 'api-gateway'],
      ['POST', '/v1/charges/../admin', 'api-gateway'],
      ['POST', '/v1/charges/%2e%2e/admin', 'api-gateway'],
      ['POST', '/v1/charges', 'audit-service'],
    ] as const) {
      const r = await curl(m, p, who);
      expect(r.status, `${m} ${p} as ${who}`).toBe(403);
      expect(JSON.parse(r.body)).toEqual({ error: 'forbidden', decision_id: expect.stringMatching(/-/) });
    }
    // Refused in the handshake: no certificate, another trust domain, expired.
    expect((await curl('POST', '/v1/charges')).status).toBe(0);
    expect((await curl('POST', '/v1/charges', 'api-gateway', { other: true })).status).toBe(0);
    expect((await curl('POST', '/v1/charges', 'api-gateway', { expired: true })).status).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(sidecarA.text()).toMatch(/"kind":"access.decision","outcome":"deny"/);
    expect(sidecarA.text()).toMatch(/"kind":"access.decision","outcome":"allow"/);
  });

  // Two real sidecar processes on a loaded machine: one retry, so a scheduling stall is not read as a defect
  // (a real defect fails every attempt). The sidecars log why a request got a 502.
  it('outbound: plain HTTP to the egress port becomes mTLS with the workload SVID; the target ID is checked', {
    retry: 1,
  }, async () => {
    const call = (host: string, method: string, path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const r = request({ host: '127.0.0.1', port: outPort, method, path, headers: { host } }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        r.on('error', reject);
        r.end(method === 'POST' ? '{}' : undefined);
      });
    const ok = await call('payment-service', 'POST', '/v1/charges');
    expect(ok.status, ok.body).toBe(200);
    expect(JSON.parse(ok.body).peer).toBe(id('api-gateway'));
    expect((await call('payment-service', 'GET', '/v1/charges')).status).toBe(403);
    expect((await call('wrong-id', 'POST', '/v1/charges')).status).toBe(502);
    expect((await call('nobody', 'POST', '/v1/charges')).status).toBe(502);
  });
});
