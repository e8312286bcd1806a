/**
 * The sidecar beyond plain HTTP/1.1: HTTP/2 from clients (Node's client and curl), gRPC to an
 * HTTP/2 (h2c) app with trailers and gRPC-shaped refusals, and WebSocket handshakes decided like
 * any request, inbound and outbound, with the tunnel carrying frames both ways.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, request as httpRequest, type Server } from 'node:http';
import { connect as http2Connect, createServer as createH2cServer, type Http2Server } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { Agent, WebSocket } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemorySvidSource } from '../../src/pep/mtls/index.js';
import {
  type RunningSidecar,
  type SidecarConfig,
  SidecarConfigSchema,
  startSidecar,
} from '../../src/pep/sidecar/index.js';
import { tempDir } from '../support/tmp.js';
import { id, makePki, type Pki, type Svid, ingressPolicyDir } from './pki.js';

const run = promisify(execFile);
const dir = tempDir();
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
let pki: Pki;
let app: Server;
let grpcApp: grpc.Server;
let h2App: Http2Server;
const sidecars: RunningSidecar[] = [];
let inPort: number; // payment-service: HTTP/1.1 app (and WebSocket)
let grpcPort: number; // payment-service: gRPC app over h2c
let trailerPort: number; // payment-service: plain h2c app sending trailers
let outPort: number; // api-gateway's egress
let upgrades = 0;
let sawFirst: () => void = () => {};
let firstSeen = new Promise<void>((r) => (sawFirst = r));
const decisions: { decision: string; path?: string }[] = [];

// Minimal WebSocket framing (RFC 6455) for the test app and raw clients: text frames under 126 bytes.
function frame(text: string, mask: boolean): Buffer {
  const payload = Buffer.from(text);
  const head = Buffer.from([0x81, (mask ? 0x80 : 0) | payload.length]);
  if (!mask) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  return Buffer.concat([head, key, payload.map((b, i) => b ^ (key[i % 4] as number))]);
}
function unframe(buf: Buffer): string {
  const masked = ((buf[1] as number) & 0x80) !== 0;
  const len = (buf[1] as number) & 0x7f;
  if (!masked) return buf.subarray(2, 2 + len).toString();
  const key = buf.subarray(2, 6);
  return Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ (key[i % 4] as number))).toString();
}

const source = (s: Svid) =>
  new MemorySvidSource({ spiffeId: s.spiffeId, certChainPem: s.certChainPem, privateKeyPem: s.privateKeyPem }, [
    pki.bundle(),
  ]);
const config = (doc: unknown): SidecarConfig => SidecarConfigSchema.parse(doc);

// Unary methods on raw bytes: the sidecar only sees HTTP/2 frames, so no schema is needed.
const unary = (path: string) => ({
  path,
  requestStream: false,
  responseStream: false,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
});
const charges = {
  charge: unary('/payments.Charges/Charge'),
  refund: unary('/payments.Charges/Refund'),
} satisfies grpc.ServiceDefinition;

beforeAll(async () => {
  pki = await makePki(dir);
  const policies = ingressPolicyDir(dir, 'payment-service', [
    {
      name: 'gateway-charges',
      from: ['api-gateway'],
      methods: ['POST'],
      paths: ['/v1/charges', '/v1/charges/stream', '/payments.Charges/Charge', '/trailers'],
    },
    { name: 'gateway-live-updates', from: ['api-gateway'], methods: ['GET'], paths: ['/ws/charges'] },
  ]);

  app = createServer((req, res) => {
    if (req.url === '/v1/charges/stream') {
      // Streams: the second chunk is written only once the client has received the first.
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first;');
      firstSeen.then(() => res.end('second'));
      return;
    }
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () =>
      res.end(
        JSON.stringify({
          method: req.method,
          url: req.url,
          version: req.httpVersion,
          peer: req.headers['x-nevertrust-peer-id'] ?? null,
          forged: req.headers['x-forwarded-client-cert'] ?? null,
          body,
        }),
      ),
    );
  });
  app.on('upgrade', (req: IncomingMessage, sock: Socket) => {
    upgrades++;
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}${GUID}`).digest('base64');
    sock.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    sock.write(
      frame(
        JSON.stringify({
          peer: req.headers['x-nevertrust-peer-id'] ?? null,
          forged: req.headers['x-forwarded-client-cert'] ?? null,
        }),
        false,
      ),
    );
    sock.on('data', (d: Buffer) => {
      if (((d[0] as number) & 0x0f) === 0x8) return void sock.end(); // close frame
      sock.write(frame(`echo:${unframe(d)}`, false));
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as { port: number }).port;

  grpcApp = new grpc.Server();
  grpcApp.addService(charges, {
    charge: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb(
        null,
        Buffer.from(
          JSON.stringify({ got: call.request.toString(), peer: call.metadata.get('x-nevertrust-peer-id')[0] ?? null }),
        ),
      ),
    refund: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb(null, Buffer.from('refunded')),
  });
  const grpcAppPort = await new Promise<number>((resolve, reject) =>
    grpcApp.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );

  h2App = createH2cServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`h2c ${req.httpVersion} ${req.headers['x-nevertrust-peer-id']}`);
    });
  });
  await new Promise<void>((r) => h2App.listen(0, '127.0.0.1', () => r()));
  const h2AppPort = (h2App.address() as { port: number }).port;

  const ps = pki.ca.mintX509Svid({ spiffeId: id('payment-service'), dnsNames: ['localhost'] });
  const psSvid: Svid = {
    spiffeId: id('payment-service'),
    certChainPem: (await import('../../src/ca/index.js')).certificatesToPem(ps.chain),
    privateKeyPem: ps.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
  const recorder = {
    record: (e: { outcome?: string; target?: { path?: string } }) =>
      decisions.push({ decision: String(e.outcome), path: e.target?.path }),
  };
  const inbound = (appAddr: string, extra: Record<string, unknown> = {}) =>
    startSidecar(
      config({
        svid: { workload_api: 'unused' },
        policies,
        inbound: { listen: '127.0.0.1:0', app: appAddr, ...extra },
      }),
      { source: source(psSvid), recorder: recorder as never },
    );
  const a = await inbound(`127.0.0.1:${appPort}`);
  const b = await inbound(`127.0.0.1:${grpcAppPort}`, { app_protocol: 'h2c' });
  const c = await inbound(`127.0.0.1:${h2AppPort}`, { app_protocol: 'h2c' });
  sidecars.push(a, b, c);
  inPort = a.inboundPort as number;
  grpcPort = b.inboundPort as number;
  trailerPort = c.inboundPort as number;
  const out = await startSidecar(
    config({
      svid: { workload_api: 'unused' },
      policies,
      outbound: {
        listen: '127.0.0.1:0',
        services: {
          'payment-service': { address: `127.0.0.1:${inPort}`, spiffe_id: id('payment-service') },
          impostor: { address: `127.0.0.1:${inPort}`, spiffe_id: id('audit-service') },
        },
      },
    }),
    { source: source(pki.mint('api-gateway')) },
  );
  sidecars.push(out);
  outPort = out.outboundPort as number;
}, 60_000);

afterAll(async () => {
  for (const s of sidecars) await s.close();
  app?.close();
  h2App?.close();
  grpcApp?.forceShutdown();
});

const tlsOf = (s: Svid) => ({ cert: s.certChainPem, key: s.privateKeyPem, ca: pki.bundle().toPem() });

async function h2(
  port: number,
  path: string,
  opts: { method?: string; svid?: Svid; headers?: Record<string, string> } = {},
) {
  const s = http2Connect(`https://localhost:${port}`, {
    ...(opts.svid ? tlsOf(opts.svid) : { ca: pki.bundle().toPem() }),
  });
  try {
    return await new Promise<{
      status: number;
      headers: Record<string, unknown>;
      body: string;
      trailers: Record<string, unknown>;
    }>((resolve, reject) => {
      s.on('error', reject);
      const req = s.request({ ':method': opts.method ?? 'POST', ':path': path, ...opts.headers });
      let headers: Record<string, unknown> = {};
      let trailers: Record<string, unknown> = {};
      let body = '';
      req.on('response', (h) => (headers = h));
      req.on('trailers', (t) => (trailers = t));
      req.on('data', (d) => (body += d));
      req.on('end', () => resolve({ status: Number(headers[':status']), headers, body, trailers }));
      req.on('error', reject);
      req.end(opts.method === 'GET' ? undefined : '{"amount":7}');
    });
  } finally {
    s.close();
  }
}

describe('sidecar: HTTP/2, gRPC and WebSocket', () => {
  it('HTTP/2 clients are decided and forwarded to an HTTP/1.1 app, forged identity stripped', async () => {
    const gw = pki.mint('api-gateway');
    const ok = await h2(inPort, '/v1/charges', {
      svid: gw,
      headers: { 'x-forwarded-client-cert': `URI=${id('admin')}` },
    });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({
      method: 'POST',
      url: '/v1/charges',
      version: '1.1',
      peer: id('api-gateway'),
      forged: null,
      body: '{"amount":7}',
    });

    const denied = await h2(inPort, '/v1/charges', { svid: gw, method: 'GET' });
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ error: 'forbidden' });
    expect(denied.headers['x-nevertrust-decision-id']).toMatch(/.+/);

    const traversal = await h2(inPort, '/v1/charges/../admin', { svid: gw });
    expect(traversal.status).toBe(403);
    const wrongCaller = await h2(inPort, '/v1/charges', { svid: pki.mint('audit-service') });
    expect(wrongCaller.status).toBe(403);
    // No client certificate, or one from another trust domain: the connection ends before any response
    // (with TLS 1.3 the client learns it after its own handshake, as a reset or an empty close).
    const refused = (p: ReturnType<typeof h2>) =>
      p.then(
        (r) => (Number.isNaN(r.status) ? 'refused' : r.status),
        () => 'refused',
      );
    expect(await refused(h2(inPort, '/v1/charges'))).toBe('refused');
    expect(await refused(h2(inPort, '/v1/charges', { svid: pki.mint('api-gateway', { other: true }) }))).toBe(
      'refused',
    );
  });

  it('streamed responses flow chunk by chunk (HTTP/1.1 and HTTP/2 clients)', async () => {
    const gw = pki.mint('api-gateway');
    for (const proto of ['http1', 'h2'] as const) {
      firstSeen = new Promise<void>((r) => (sawFirst = r));
      const chunks: string[] = [];
      if (proto === 'http1') {
        const pool = new Agent({ connect: { ...tlsOf(gw), servername: 'localhost' } });
        const { request } = await import('undici');
        const r = await request(`https://localhost:${inPort}/v1/charges/stream`, {
          method: 'POST',
          body: '{}',
          dispatcher: pool,
        });
        for await (const c of r.body) {
          chunks.push(String(c));
          if (chunks.join('') === 'first;') sawFirst();
        }
        await pool.close();
      } else {
        const s = http2Connect(`https://localhost:${inPort}`, tlsOf(gw));
        const req = s.request({ ':method': 'POST', ':path': '/v1/charges/stream' });
        req.end('{}');
        await new Promise<void>((resolve, reject) => {
          req.on('data', (c) => {
            chunks.push(String(c));
            if (chunks.join('') === 'first;') sawFirst();
          });
          req.on('end', () => resolve());
          req.on('error', reject);
        });
        s.close();
      }
      expect(chunks.join('')).toBe('first;second');
    }
  });

  it('curl negotiates HTTP/2 with its client certificate', async () => {
    const f = pki.files(dir, 'curl-gw', pki.mint('api-gateway'));
    const { stdout } = await run('curl', [
      '-s',
      '--http2',
      '-o',
      '-',
      '-w',
      '\n%{http_version} %{http_code}',
      '-X',
      'POST',
      '-d',
      '{}',
      '--resolve',
      `localhost:${inPort}:127.0.0.1`,
      '--cacert',
      pki.bundleFile(dir),
      '--cert',
      f.cert,
      '--key',
      f.key,
      `https://localhost:${inPort}/v1/charges`,
    ]);
    const [body, status] = [stdout.slice(0, stdout.lastIndexOf('\n')), stdout.slice(stdout.lastIndexOf('\n') + 1)];
    expect(status).toBe('2 200');
    expect(JSON.parse(body).peer).toBe(id('api-gateway'));
  });

  it('gRPC through the sidecar to an h2c app: allowed call answers, a denied method is PERMISSION_DENIED', async () => {
    const gw = pki.mint('api-gateway');
    const Client = grpc.makeGenericClientConstructor(charges, 'Charges');
    const client = new Client(
      `localhost:${grpcPort}`,
      grpc.credentials.createSsl(
        Buffer.from(pki.bundle().toPem()),
        Buffer.from(gw.privateKeyPem),
        Buffer.from(gw.certChainPem),
      ),
    ) as unknown as Record<
      'charge' | 'refund',
      (b: Buffer, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => void
    > &
      grpc.Client;
    const call = (m: 'charge' | 'refund') =>
      new Promise<{ err: grpc.ServiceError | null; res?: Buffer }>((r) =>
        client[m](Buffer.from('seven'), (err, res) => r({ err, res })),
      );
    try {
      const ok = await call('charge');
      expect(ok.err).toBeNull();
      expect(JSON.parse(String(ok.res))).toEqual({ got: 'seven', peer: id('api-gateway') });
      const no = await call('refund');
      expect(no.err?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(no.err?.details).toBe('forbidden');
    } finally {
      client.close();
    }
  });

  it('h2c app: response trailers reach the HTTP/2 client', async () => {
    const r = await h2(trailerPort, '/trailers', { svid: pki.mint('api-gateway') });
    expect(r.status).toBe(200);
    expect(r.body).toBe(`h2c 2.0 ${id('api-gateway')}`);
    expect(r.trailers['x-checksum']).toBe('abc123');
  });

  it('WebSocket: an allowed handshake is tunnelled (undici client), a denied one never reaches the app', async () => {
    const gw = pki.mint('api-gateway');
    const dispatcher = new Agent({ connect: { ...tlsOf(gw), servername: 'localhost' } });
    const ws = new WebSocket(`wss://localhost:${inPort}/ws/charges`, { dispatcher });
    const messages: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('error', () => reject(new Error('websocket failed')));
      ws.addEventListener('message', (m) => {
        messages.push(String(m.data));
        if (messages.length === 1) ws.send('hello');
        else resolve();
      });
    });
    ws.close();
    expect(JSON.parse(messages[0] as string)).toEqual({ peer: id('api-gateway'), forged: null });
    expect(messages[1]).toBe('echo:hello');

    const before = upgrades;
    const refused = await new Promise<{ status?: number; body: string }>((resolve) => {
      const req = httpsRequest({
        host: '127.0.0.1',
        port: inPort,
        path: '/ws/admin',
        servername: 'localhost',
        ...tlsOf(gw),
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-key': randomBytes(16).toString('base64'),
          'sec-websocket-version': '13',
        },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      });
      req.on('upgrade', () => resolve({ status: 101, body: '' }));
      req.on('error', () => resolve({ body: 'error' }));
      req.end();
    });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'forbidden', decision_id: expect.any(String) });
    expect(upgrades).toBe(before);
    expect(decisions.some((d) => d.decision === 'deny' && d.path === '/ws/admin')).toBe(true);
  });

  it('outbound WebSocket: plain from the app, mTLS to the verified target, frames both ways', async () => {
    const open = (service: string) =>
      new Promise<{ status: number; socket?: Socket; first?: Buffer; body?: string }>((resolve) => {
        const req = httpRequest({
          host: '127.0.0.1',
          port: outPort,
          path: '/ws/charges',
          headers: {
            host: service,
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-key': randomBytes(16).toString('base64'),
            'sec-websocket-version': '13',
            'x-nevertrust-peer-id': id('admin'), // forged by the app: must not pass
          },
        });
        req.on('upgrade', (res, socket, head) => {
          const got = (first: Buffer) => resolve({ status: res.statusCode ?? 0, socket, first });
          if (head.length > 0) got(head);
          else socket.once('data', got);
        });
        req.on('response', (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.end();
      });
    const ok = await open('payment-service');
    expect(ok.status).toBe(101);
    expect(JSON.parse(unframe(ok.first as Buffer))).toEqual({ peer: id('api-gateway'), forged: null });
    const echo = new Promise<string>((r) => ok.socket?.once('data', (d: Buffer) => r(unframe(d))));
    ok.socket?.write(frame('ping', true));
    expect(await echo).toBe('echo:ping');
    ok.socket?.destroy();

    const impostor = await open('impostor'); // the server is payment-service, not the audit-service we expect
    expect(impostor.status).toBe(502);
    expect(JSON.parse(impostor.body as string)).toEqual({ error: 'peer_rejected' });
    const unknown = await open('nowhere');
    expect(unknown.status).toBe(502);
  });
});
