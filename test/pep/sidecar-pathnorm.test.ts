/**
 * The sidecar's `path_normalization` (strict by default), over real mTLS with raw request bytes:
 * paths that backends resolve differently from the policy engine (`/v1/charges/..;/admin` is
 * `/v1/admin` to Tomcat and Spring) are refused and never reach the app; `lenient` keeps the
 * behaviour of earlier versions, which matched them against `/v1/charges/*` and forwarded them raw.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  loadSidecarConfig,
  type RunningSidecar,
  SidecarConfigError,
  SidecarConfigSchema,
  startSidecar,
} from '../../src/pep/sidecar/index.js';
import { tempDir } from '../support/tmp.js';
import { ingressPolicyDir, makePki, type Pki, type Svid } from './pki.js';

const dir = tempDir();
let pki: Pki;
let app: Server;
let gateway: Svid;
let strict: RunningSidecar;
let lenient: RunningSidecar;
/** The request targets that reached the app. */
const seen: string[] = [];

beforeAll(async () => {
  pki = await makePki(dir);
  gateway = pki.mint('api-gateway');
  const policies = ingressPolicyDir(dir, 'payment-service', [
    { name: 'gateway-charges', from: ['api-gateway'], methods: ['GET'], paths: ['/v1/charges', '/v1/charges/*'] },
  ]);
  app = createServer((req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end('ok');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const start = (mode?: string) =>
    startSidecar(
      SidecarConfigSchema.parse({
        svid: { workload_api: 'unused' },
        policies,
        ...(mode ? { path_normalization: mode } : {}),
        inbound: { listen: '127.0.0.1:0', app: `127.0.0.1:${(app.address() as AddressInfo).port}` },
      }),
      { source: pki.source('payment-service') },
    );
  strict = await start();
  lenient = await start('lenient');
}, 60_000);

afterAll(async () => {
  await strict?.close();
  await lenient?.close();
  app?.close();
});

/** One HTTP/1.1 request with `target` as raw bytes on the request line; the response's status. */
async function statusOf(sc: RunningSidecar, target: string): Promise<number> {
  const s = tlsConnect({
    host: '127.0.0.1',
    port: sc.inboundPort as number,
    servername: 'localhost',
    cert: gateway.certChainPem,
    key: gateway.privateKeyPem,
    ca: pki.bundle().toPem(),
    ALPNProtocols: ['http/1.1'],
  });
  let text = '';
  await new Promise<void>((resolve, reject) => {
    s.once('secureConnect', () => s.write(`GET ${target} HTTP/1.1\r\nHost: ps\r\nConnection: close\r\n\r\n`));
    s.on('data', (d) => (text += d));
    s.on('close', () => resolve());
    s.on('error', reject);
  });
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
}

async function h2StatusOf(sc: RunningSidecar, path: string): Promise<number> {
  const session = http2Connect(`https://127.0.0.1:${sc.inboundPort}`, {
    servername: 'localhost',
    cert: gateway.certChainPem,
    key: gateway.privateKeyPem,
    ca: pki.bundle().toPem(),
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      const r = session.request({ ':method': 'GET', ':path': path });
      r.on('response', (h) => resolve(Number(h[':status'])));
      r.on('error', reject);
      r.resume();
      r.end();
    });
  } finally {
    session.close();
  }
}

const HOSTILE = [
  '/v1/charges/..;/admin',
  '/v1/charges/%2f..%2fadmin',
  '/v1/charges/%5c..%5cadmin',
  '/v1/charges/..%3b/admin',
  '/v1/charges/%2e%2e%2fadmin',
  '/v1/charges/%252e%252e/admin',
  '/v1/charges/%c0%ae%c0%ae/admin',
];

describe('sidecar path_normalization', () => {
  it('strict (the default): paths backends decode differently are refused and never forwarded', async () => {
    seen.length = 0;
    for (const p of HOSTILE) expect(await statusOf(strict, p), p).toBe(403);
    expect(await h2StatusOf(strict, '/v1/charges/..;/admin')).toBe(403);
    expect(await h2StatusOf(strict, '/v1/charges/%252e%252e/admin')).toBe(403);
    expect(seen).toEqual([]);
    expect(await statusOf(strict, '/v1/charges/42?x=1')).toBe(200);
    expect(await h2StatusOf(strict, '/v1/charges/42')).toBe(200);
    expect(seen).toEqual(['/v1/charges/42?x=1', '/v1/charges/42']);
  });

  it('lenient: as before, they match /v1/charges/* and reach the app as sent', async () => {
    seen.length = 0;
    for (const p of HOSTILE) expect(await statusOf(lenient, p), p).toBe(200);
    expect(seen).toEqual(HOSTILE);
  });

  it('an unknown value is refused, naming the field', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      'svid: { workload_api: unix:///x }\npolicies: p\npath_normalization: loose\ninbound: { listen: "127.0.0.1:1", app: "127.0.0.1:2" }\n',
    );
    expect(() => loadSidecarConfig(file)).toThrow(SidecarConfigError);
    expect(() => loadSidecarConfig(file)).toThrow(/bad\.yaml:\d+:\d+: path_normalization: /);
  });
});
