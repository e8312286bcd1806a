/**
 * The sidecar's leg to an HTTP/1.1 app under the conditions a proxy meets: a large response
 * through a slow reader (backpressure, byte-exact), repeated and hop-by-hop response headers, an
 * app that is down (502), an app that dies mid-response (the client sees a cut-off response, never
 * a complete one), and a client that goes away while the app is still working (the app's request
 * is aborted too); request bodies of every size class arrive byte for byte, and a small body the
 * client never finishes reaches the app not at all.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningSidecar, SidecarConfigSchema, startSidecar } from '../../src/pep/sidecar/index.js';
import { freePort } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { ingressPolicyDir, makePki, type Pki, type Svid } from './pki.js';

const dir = tempDir();
const BIG = randomBytes(8 * 1024 * 1024);
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');
let pki: Pki;
let app: Server;
let gateway: Svid;
const sidecars: RunningSidecar[] = [];
let port: number; // sidecar in front of the app
let downPort: number; // sidecar in front of a port nobody listens on
let slowClosed: Promise<void>;
let sawSlowClose: () => void = () => {};
let partialSeen = 0;

beforeAll(async () => {
  pki = await makePki(dir);
  gateway = pki.mint('api-gateway');
  const policies = ingressPolicyDir(dir, 'payment-service', [
    { name: 'gateway-reads', from: ['api-gateway'], methods: ['GET'], paths: ['/big', '/headers', '/dies', '/slow'] },
    { name: 'gateway-writes', from: ['api-gateway'], methods: ['POST'], paths: ['/echo', '/partial'] },
  ]);
  slowClosed = new Promise<void>((r) => (sawSlowClose = r));
  app = createServer((req, res) => {
    if (req.url === '/echo' || req.url === '/partial') {
      if (req.url === '/partial') partialSeen++;
      // What arrived: length, SHA-256 and how it was framed.
      const h = createHash('sha256');
      let length = 0;
      req.on('data', (d: Buffer) => {
        h.update(d);
        length += d.length;
      });
      req.on('end', () =>
        res.end(
          JSON.stringify({
            length,
            sha: h.digest('hex'),
            cl: req.headers['content-length'] ?? null,
            te: req.headers['transfer-encoding'] ?? null,
          }),
        ),
      );
      return;
    }
    req.resume();
    if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG.length });
      let off = 0;
      const more = () => {
        while (off < BIG.length) {
          const chunk = BIG.subarray(off, off + 65536);
          off += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    } else if (req.url === '/headers') {
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
      res.setHeader('connection', 'x-hop-secret');
      res.setHeader('x-hop-secret', 'must not cross');
      res.setHeader('keep-alive', 'timeout=5');
      res.setHeader('x-app', 'yes');
      res.end('ok');
    } else if (req.url === '/dies') {
      res.writeHead(200, { 'content-length': 1000 });
      res.write('partial');
      setTimeout(() => req.socket.destroy(), 50);
    } else if (req.url === '/slow') {
      // never answers; tells the test when the sidecar gave up on the request
      res.on('close', () => sawSlowClose());
    }
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as AddressInfo).port;
  const start = (appAddr: string) =>
    startSidecar(
      SidecarConfigSchema.parse({
        svid: { workload_api: 'unused' },
        policies,
        inbound: { listen: '127.0.0.1:0', app: appAddr },
      }),
      { source: pki.source('payment-service') },
    );
  const a = await start(`127.0.0.1:${appPort}`);
  const b = await start(`127.0.0.1:${await freePort()}`);
  sidecars.push(a, b);
  port = a.inboundPort as number;
  downPort = b.inboundPort as number;
}, 60_000);

afterAll(async () => {
  for (const s of sidecars) await s.close();
  app?.close();
});

/** A request to a sidecar with the gateway's SVID as client certificate. */
function mtlsRequest(
  p: number,
  path: string,
  opts: { method?: string; headers?: Record<string, string | number> } = {},
) {
  return httpsRequest({
    host: '127.0.0.1',
    port: p,
    path,
    servername: 'localhost',
    cert: gateway.certChainPem,
    key: gateway.privateKeyPem,
    ca: pki.bundle().toPem(),
    agent: false,
    ...opts,
  });
}

const get = (p: number, path: string) => mtlsRequest(p, path);

describe('sidecar → HTTP/1.1 app', () => {
  it('passes an 8 MiB response byte for byte to a client that reads slowly', async () => {
    const r = await new Promise<{ status: number; sha: string; length: number }>((resolve, reject) => {
      const req = get(port, '/big');
      req.on('response', (res) => {
        const h = createHash('sha256');
        let length = 0;
        res.on('data', (d: Buffer) => {
          h.update(d);
          length += d.length;
          // a slow reader: the sidecar must hold back (not buffer 8 MiB or drop bytes)
          res.pause();
          setTimeout(() => res.resume(), 1);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, sha: h.digest('hex'), length }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    expect(r).toEqual({ status: 200, sha: BIG_SHA, length: BIG.length });
  });

  it('passes the same 8 MiB byte for byte to a slow HTTP/2 client', async () => {
    const session = http2Connect(`https://localhost:${port}`, {
      cert: gateway.certChainPem,
      key: gateway.privateKeyPem,
      ca: pki.bundle().toPem(),
    });
    try {
      const r = await new Promise<{ status: number; sha: string; length: number }>((resolve, reject) => {
        session.on('error', reject);
        const req = session.request({ ':method': 'GET', ':path': '/big' });
        let status = 0;
        const h = createHash('sha256');
        let length = 0;
        req.on('response', (headers) => (status = Number(headers[':status'])));
        req.on('data', (d: Buffer) => {
          h.update(d);
          length += d.length;
          req.pause();
          setTimeout(() => req.resume(), 1);
        });
        req.on('end', () => resolve({ status, sha: h.digest('hex'), length }));
        req.on('error', reject);
        req.end();
      });
      expect(r).toEqual({ status: 200, sha: BIG_SHA, length: BIG.length });
    } finally {
      session.close();
    }
  });

  it('keeps repeated headers, drops hop-by-hop ones and those named in Connection', async () => {
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = get(port, '/headers');
      req.on('response', resolve);
      req.on('error', reject);
      req.end();
    });
    res.resume();
    expect(res.statusCode).toBe(200);
    expect(res.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
    expect(res.headers['x-app']).toBe('yes');
    expect(res.headers['x-hop-secret']).toBeUndefined();
    expect(res.headers['keep-alive']).not.toBe('timeout=5');
  });

  it('answers 502 when the app is down', async () => {
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = get(downPort, '/big');
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body)).toEqual({ error: 'bad_gateway' });
  });

  it('cuts the client off when the app dies mid-response, never completing it', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = get(port, '/dies');
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(`complete:${body}`));
        res.on('aborted', () => resolve(`aborted:${body}`));
        res.on('error', () => resolve(`aborted:${body}`));
      });
      req.on('error', () => resolve('error'));
      req.end();
    });
    expect(outcome === 'aborted:partial' || outcome === 'error').toBe(true);
  });

  it("aborts the app's request when the client goes away", async () => {
    const req = get(port, '/slow');
    req.on('error', () => {});
    req.end();
    await new Promise((r) => setTimeout(r, 300));
    req.destroy();
    await expect(
      Promise.race([slowClosed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 5000))]),
    ).resolves.toBe('closed');
  });

  /** POSTs `body` in two writes 30 ms apart, with a content-length or chunked. */
  function post(path: string, body: Buffer, chunked: boolean) {
    return new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
      const req = mtlsRequest(port, path, {
        method: 'POST',
        headers: chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': body.length },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
      });
      req.on('error', reject);
      const half = Math.floor(body.length / 2);
      req.write(body.subarray(0, half));
      setTimeout(() => req.end(body.subarray(half)), 30);
    });
  }

  it('passes request bodies byte for byte: empty, small (gathered), just past the small limit and large (streamed), chunked', async () => {
    for (const size of [0, 1, 1000, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024]) {
      const body = randomBytes(size);
      const r = await post('/echo', body, false);
      expect(r.status).toBe(200);
      expect(r.json).toEqual({
        length: size,
        sha: createHash('sha256').update(body).digest('hex'),
        cl: String(size),
        te: null,
      });
    }
    const body = randomBytes(100_000);
    const r = await post('/echo', body, true);
    expect(r.json).toMatchObject({ length: body.length, sha: createHash('sha256').update(body).digest('hex') });
  });

  it('never passes on a small body the client did not finish', async () => {
    const req = mtlsRequest(port, '/partial', { method: 'POST', headers: { 'content-length': 1000 } });
    req.on('error', () => {});
    req.write(Buffer.alloc(400, 1));
    await new Promise((r) => setTimeout(r, 200));
    req.destroy();
    await new Promise((r) => setTimeout(r, 300));
    expect(partialSeen).toBe(0);
    // …while a finished one does get through.
    const ok = await post('/partial', Buffer.alloc(1000, 2), false);
    expect(ok.json).toMatchObject({ length: 1000 });
    expect(partialSeen).toBe(1);
  });
});
