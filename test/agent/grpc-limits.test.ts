/**
 * Per-peer limits of the gRPC server under the Workload API: connections and calls in flight per
 * uid (read with SO_PEERCRED), and the deadline for a connection's first request. Real Unix
 * sockets, real HTTP/2 clients, a real process of another uid.
 */
import { spawn } from 'node:child_process';
import { type ClientHttp2Session, connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { frameMessage, GrpcServer, type MethodDefinition } from '../../src/agent/grpc/index.js';
import { sharedTempDir } from './peer.js';

const raw = (path: string): MethodDefinition<Buffer, Buffer> => ({
  path,
  decode: (b) => Buffer.from(b),
  encode: (m) => m,
});

const servers: GrpcServer[] = [];
const sessions: ClientHttp2Session[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close(100)));
});

/** A server with an echo call and a call that holds until the client goes away. */
async function serve(opts: ConstructorParameters<typeof GrpcServer>[0]) {
  const limits: string[] = [];
  const server = new GrpcServer({ ...opts, onLimit: (r) => limits.push(r) });
  server.addUnary(raw('/t/Echo'), (req) => req);
  server.addServerStream(raw('/t/Hold'), async (_req, call) => {
    await call.send(Buffer.from('held'));
    await new Promise<void>((r) => call.signal.addEventListener('abort', () => r()));
  });
  const path = join(sharedTempDir(), 'limits.sock');
  await server.listen(`unix://${path}`);
  servers.push(server);
  return { path, limits };
}

function session(path: string): ClientHttp2Session {
  const s = h2connect('http://localhost', { createConnection: () => netConnect(path) });
  s.on('error', () => {});
  sessions.push(s);
  return s;
}

/** One call; resolves with its grpc-status (or `closed` when the connection is refused). */
function call(s: ClientHttp2Session, method = '/t/Echo'): Promise<{ status: string; stream?: () => void }> {
  return new Promise((resolve) => {
    let req: ReturnType<ClientHttp2Session['request']>;
    try {
      req = s.request({ ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers' });
    } catch {
      resolve({ status: 'closed' });
      return;
    }
    let status: string | undefined;
    req.on('response', (h) => {
      if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
    });
    req.on('data', () => {
      // A held stream answers with one message and stays open.
      if (method === '/t/Hold' && status === undefined) resolve({ status: 'open', stream: () => req.close() });
    });
    req.on('trailers', (t) => {
      status = String(t['grpc-status']);
    });
    req.on('error', () => {});
    req.on('close', () => resolve({ status: status ?? 'closed' }));
    req.end(frameMessage(Buffer.from('hi')));
  });
}

const waitClose = (s: ClientHttp2Session) =>
  new Promise<void>((r) => (s.closed || s.destroyed ? r() : s.once('close', () => r())));

describe('Workload API server limits per peer', () => {
  it('a uid over its connection cap is refused; its other connections and other uids still work', async () => {
    const { path, limits } = await serve({ maxConnectionsPerPeer: 3 });
    const held = [session(path), session(path), session(path)];
    for (const s of held) expect((await call(s)).status).toBe('0');
    const extra = session(path);
    const goaway = new Promise<number>((r) => extra.once('goaway', (code) => r(code)));
    expect((await call(extra)).status).toBe('closed');
    expect(await goaway).toBe(11); // ENHANCE_YOUR_CALM
    await waitClose(extra);
    expect(limits.some((l) => /^uid 0: more than 3 open connections; refused$/.test(l))).toBe(true);
    // The connections within the cap are untouched.
    for (const s of held) expect((await call(s)).status).toBe('0');
    // Another uid has a cap of its own.
    const other = await new Promise<string>((resolve) => {
      const script = `const h2=require('http2'),net=require('net');
const s=h2.connect('http://localhost',{createConnection:()=>net.connect(${JSON.stringify(path)})});
const r=s.request({':method':'POST',':path':'/t/Echo','content-type':'application/grpc',te:'trailers'});
let st='closed';r.on('response',h=>{if(h['grpc-status']!==undefined)st=String(h['grpc-status'])});
r.on('trailers',t=>{st=String(t['grpc-status'])});r.on('error',()=>{});r.resume();
r.on('close',()=>{console.log(st);s.close()});r.end(Buffer.from([0,0,0,0,0]));`;
      const child = spawn(process.execPath, ['-e', script], {
        uid: 65534,
        gid: 65534,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('close', () => resolve(out.trim()));
    });
    expect(other).toBe('0');
    // A slot freed is a slot usable again.
    held[0]?.close();
    await waitClose(held[0] as ClientHttp2Session);
    await new Promise((r) => setTimeout(r, 50));
    expect((await call(session(path))).status).toBe('0');
  });

  it('calls in flight over the cap of a uid end with RESOURCE_EXHAUSTED, across its connections', async () => {
    const { path } = await serve({ maxCallsPerPeer: 2 });
    const a = await call(session(path), '/t/Hold');
    const b = await call(session(path), '/t/Hold');
    expect([a.status, b.status]).toEqual(['open', 'open']);
    expect((await call(session(path))).status).toBe('8'); // RESOURCE_EXHAUSTED
    a.stream?.();
    await new Promise((r) => setTimeout(r, 100));
    expect((await call(session(path))).status).toBe('0');
    b.stream?.();
  });

  it('a socket that never sends the HTTP/2 preface, or never a request, is closed after the handshake timeout', async () => {
    const { path, limits } = await serve({ handshakeTimeoutMs: 300 });
    const t0 = Date.now();
    const silent = netConnect(path);
    silent.on('error', () => {});
    silent.resume(); // reads (the server's settings), so that it sees the server close it
    const silentClosed = new Promise<number>((r) => silent.once('close', () => r(Date.now() - t0)));
    // HTTP/2 preface and settings, but no request.
    const idle = session(path);
    const idleClosed = new Promise<number>((r) => idle.once('close', () => r(Date.now() - t0)));
    // A connection whose first request came in time stays open past the timeout.
    const busy = session(path);
    expect((await call(busy)).status).toBe('0');
    const within = (p: Promise<number>) =>
      Promise.race([p, new Promise<number>((r) => setTimeout(() => r(Number.POSITIVE_INFINITY), 3000))]);
    const [silentMs, idleMs] = await Promise.all([within(silentClosed), within(idleClosed)]);
    expect(silentMs).toBeGreaterThanOrEqual(250);
    expect(silentMs).toBeLessThan(3000);
    expect(idleMs).toBeLessThan(3000);
    expect(busy.closed || busy.destroyed).toBe(false);
    expect((await call(busy)).status).toBe('0');
    expect(limits.filter((l) => /no request within 300 ms of connecting; closed/.test(l)).length).toBe(2);
    silent.destroy();
  });

  it('refuses limits that are not positive integers', () => {
    expect(() => new GrpcServer({ maxConnectionsPerPeer: 0 })).toThrow(
      /maxConnectionsPerPeer must be a positive integer/,
    );
    expect(() => new GrpcServer({ handshakeTimeoutMs: Number.NaN })).toThrow(/handshakeTimeoutMs/);
  });
});
