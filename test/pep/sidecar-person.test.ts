/**
 * A sidecar behind the access proxy: `inbound.access_proxies` lets the proxy's person assertion
 * (`x-nevertrust-jwt-assertion`) reach the app unchanged — from the listed proxy's verified SVID
 * only, on every path the sidecar has (HTTP/1.1 and HTTP/2 clients, HTTP/1.1 and h2c apps,
 * WebSocket handshakes). Every other `x-nevertrust-*` header is still stripped, from anyone.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import { connect as http2Connect, createServer as createH2cServer, type Http2Server } from 'node:http2';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  loadSidecarConfig,
  type RunningSidecar,
  SidecarConfigError,
  SidecarConfigSchema,
  startSidecar,
} from '../../src/pep/sidecar/index.js';
import { tempDir } from '../support/tmp.js';
import { id, ingressPolicyDir, makePki, type Pki, type Svid } from './pki.js';

const dir = tempDir();
const HEADER = 'x-nevertrust-jwt-assertion';
// Shaped like a JWT, with every character class a compact JWS holds: it must arrive byte for byte.
const ASSERTION =
  'eyJhbGciOiJFUzI1NiIsInR5cCI6Im5ldmVydHJ1c3QtcGVyc29uK2p3dCIsImtpZCI6ImsxIn0.' +
  'eyJpc3MiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9ucy9wYXltZW50cy9zYS9hY2Nlc3MtcHJveHkiLCJzdWIiOiJhbGljZSJ9.' +
  'MEUCIQD-_x9Zz0AaBbCc-_1234567890abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN_-';
const FORGED = {
  [HEADER]: ASSERTION,
  'x-nevertrust-user': 'root',
  'x-nevertrust-peer-id': id('admin'),
  'x-nevertrust-assertion': 'forged.sidecar.assertion',
  'x-forwarded-client-cert': `URI=${id('admin')}`,
};

let pki: Pki;
let app: Server;
let h2App: Http2Server;
const sidecars: RunningSidecar[] = [];
let h1Port: number; // HTTP/1.1 app
let h2cPort: number; // h2c app
let h2cWsPort: number; // app_protocol h2c, whose WebSocket handshakes node:http's upgrade path carries
let plainPort: number; // HTTP/1.1 app, no access_proxies
let proxy: Svid;
let gateway: Svid;

/** What the app saw of identity: every `x-nevertrust-*` header and XFCC, as received. */
function identityOf(h: IncomingHttpHeaders): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(h))
    if (k.startsWith('x-nevertrust-') || k === 'x-forwarded-client-cert') out[k] = v;
  return out;
}

beforeAll(async () => {
  pki = await makePki(dir);
  proxy = pki.mint('access-proxy');
  gateway = pki.mint('api-gateway');
  const policies = ingressPolicyDir(dir, 'payment-service', [
    { name: 'people', from: ['access-proxy', 'api-gateway'], methods: ['GET', 'POST'], paths: ['/v1/charges', '/ws'] },
  ]);

  app = createServer((req, res) => {
    req.resume();
    res.end(JSON.stringify(identityOf(req.headers)));
  });
  app.on('upgrade', (req: IncomingMessage, sock: Socket) => {
    sock.on('error', () => {});
    // A 101 whose last header carries what the app saw; the test reads the head only.
    sock.end(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-seen: ${Buffer.from(JSON.stringify(identityOf(req.headers))).toString('base64')}\r\n\r\n`,
    );
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  h2App = createH2cServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(JSON.stringify(identityOf(req.headers))));
  });
  await new Promise<void>((r) => h2App.listen(0, '127.0.0.1', () => r()));
  const appAddr = `127.0.0.1:${(app.address() as { port: number }).port}`;
  const h2AppAddr = `127.0.0.1:${(h2App.address() as { port: number }).port}`;

  const start = async (appAt: string, extra: Record<string, unknown>) => {
    const s = await startSidecar(
      SidecarConfigSchema.parse({
        svid: { workload_api: 'unused' },
        policies,
        inbound: { listen: '127.0.0.1:0', app: appAt, ...extra },
      }),
      { source: pki.source('payment-service') },
    );
    sidecars.push(s);
    return s.inboundPort as number;
  };
  const listed = { access_proxies: [id('access-proxy')] };
  h1Port = await start(appAddr, listed);
  h2cPort = await start(h2AppAddr, { ...listed, app_protocol: 'h2c' });
  h2cWsPort = await start(appAddr, { ...listed, app_protocol: 'h2c' });
  plainPort = await start(appAddr, {});
}, 60_000);

afterAll(async () => {
  for (const s of sidecars) await s.close();
  app?.close();
  h2App?.close();
});

const tlsOf = (s: Svid) => ({ cert: s.certChainPem, key: s.privateKeyPem, ca: pki.bundle().toPem() });

async function viaHttp1(port: number, caller: Svid): Promise<Record<string, unknown>> {
  const agent = new Agent({ connect: { ...tlsOf(caller), servername: 'localhost' } });
  try {
    const r = await request(`https://localhost:${port}/v1/charges`, { headers: FORGED, dispatcher: agent });
    const body = await r.body.text();
    expect(r.statusCode, body).toBe(200);
    return JSON.parse(body) as Record<string, unknown>;
  } finally {
    await agent.close();
  }
}

async function viaHttp2(port: number, caller: Svid): Promise<Record<string, unknown>> {
  const s = http2Connect(`https://localhost:${port}`, tlsOf(caller));
  try {
    return await new Promise((resolve, reject) => {
      s.on('error', reject);
      const req = s.request({ ':method': 'GET', ':path': '/v1/charges', ...FORGED });
      let status = 0;
      let body = '';
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (d) => (body += d));
      req.on('end', () => (status === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${status} ${body}`))));
      req.on('error', reject);
      req.end();
    });
  } finally {
    s.close();
  }
}

/** A WebSocket handshake over HTTP/1.1 and mTLS; returns what the app saw (from its 101). */
function viaWebSocket(port: number, caller: Svid): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ALPNProtocols: ['http/1.1'],
      ...tlsOf(caller),
    });
    let got = '';
    sock.on('error', reject);
    sock.on('secureConnect', () => {
      const forged = Object.entries(FORGED)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      sock.write(
        `GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${forged}\r\n`,
      );
    });
    sock.on('data', (d) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end === -1) return;
      sock.destroy();
      const m = /^x-seen: (.+)$/im.exec(got.slice(0, end));
      if (!got.startsWith('HTTP/1.1 101') || !m) return reject(new Error(got.slice(0, end)));
      resolve(JSON.parse(Buffer.from(m[1] as string, 'base64').toString()));
    });
  });
}

const PATHS = [
  ['HTTP/1.1 client, HTTP/1.1 app', () => h1Port, viaHttp1],
  ['HTTP/2 client, HTTP/1.1 app', () => h1Port, viaHttp2],
  ['HTTP/1.1 client, h2c app', () => h2cPort, viaHttp1],
  ['HTTP/2 client, h2c app', () => h2cPort, viaHttp2],
  ['WebSocket handshake, HTTP/1.1 app', () => h1Port, viaWebSocket],
  ['WebSocket handshake, h2c sidecar', () => h2cWsPort, viaWebSocket],
] as const;

describe('sidecar inbound.access_proxies', () => {
  it.each(PATHS)(
    '%s: the listed proxy passes its person assertion byte for byte, nothing else',
    async (_p, port, via) => {
      const seen = await via(port(), proxy);
      // Decided and vouched for on the proxy's own identity, as before; forged sidecar headers replaced.
      expect(seen).toEqual({
        [HEADER]: ASSERTION,
        'x-nevertrust-peer-id': id('access-proxy'),
        'x-nevertrust-decision-id': expect.any(String),
      });
    },
  );

  it.each(PATHS)('%s: another caller’s person assertion is stripped', async (_p, port, via) => {
    const seen = await via(port(), gateway);
    expect(seen).toEqual({ 'x-nevertrust-peer-id': id('api-gateway'), 'x-nevertrust-decision-id': expect.any(String) });
  });

  it('without access_proxies (the default) the proxy’s person assertion is stripped too', async () => {
    for (const via of [viaHttp1, viaHttp2, viaWebSocket]) {
      const seen = await via(plainPort, proxy);
      expect(seen).toEqual({
        'x-nevertrust-peer-id': id('access-proxy'),
        'x-nevertrust-decision-id': expect.any(String),
      });
    }
  });

  it('a request the policy denies reaches the app with nothing, even from the listed proxy', async () => {
    const agent = new Agent({ connect: { ...tlsOf(proxy), servername: 'localhost' } });
    const r = await request(`https://localhost:${h1Port}/v1/refunds`, { headers: FORGED, dispatcher: agent });
    expect(r.statusCode).toBe(403);
    await r.body.text();
    await agent.close();
  });
});

describe('sidecar config: inbound.access_proxies', () => {
  const base = { svid: { workload_api: 'x' }, policies: 'p', inbound: { listen: '127.0.0.1:1', app: '127.0.0.1:2' } };

  it('defaults to none and keeps SPIFFE IDs', () => {
    expect(SidecarConfigSchema.parse(base).inbound?.access_proxies).toEqual([]);
    const ids = [id('access-proxy'), 'spiffe://example.org/nevertrust/access-proxy'];
    expect(
      SidecarConfigSchema.parse({ ...base, inbound: { ...base.inbound, access_proxies: ids } }).inbound?.access_proxies,
    ).toEqual(ids);
  });

  it.each([
    ['not a SPIFFE ID', 'access-proxy'],
    ['a wildcard', 'spiffe://example.org/*'],
    ['a trailing slash', 'spiffe://example.org/ns/a/'],
    ['an upper-case trust domain', 'spiffe://Example.org/ns/a'],
    ['a query', 'spiffe://example.org/a?b'],
  ])('refuses %s, naming the file and field', (_what, bad) => {
    const f = join(dir, `bad-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(
      f,
      `svid: { workload_api: x }\npolicies: p\ninbound:\n  listen: 127.0.0.1:1\n  app: 127.0.0.1:2\n  access_proxies: [${JSON.stringify(bad)}]\n`,
    );
    expect(() => loadSidecarConfig(f)).toThrow(SidecarConfigError);
    expect(() => loadSidecarConfig(f)).toThrow(
      new RegExp(`${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:6:20: inbound\\.access_proxies\\.0: `),
    );
  });
});
