import { connect as h2connect } from 'node:http2';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CallContext,
  decodeGrpcMessage,
  encodeGrpcMessage,
  GrpcError,
  GrpcServer,
  type MethodDefinition,
  parseGrpcTimeout,
  parseListenAddress,
  Status,
} from '../../src/agent/grpc/index.js';
import { workloadProtoPath } from '../../src/workload/paths.js';
import { sharedTempDir } from './peer.js';
import { type RawWorkloadClient, rawClient } from './raw-client.js';

const root = new protobuf.Root().loadSync(workloadProtoPath(), { keepCase: true });
function def<Req, Res>(method: string, req: string, res: string): MethodDefinition<Req, Res> {
  const rq = root.lookupType(req);
  const rs = root.lookupType(res);
  return {
    path: `/SpiffeWorkloadAPI/${method}`,
    decode: (b) => rq.toObject(rq.decode(b), { defaults: true }) as Req,
    encode: (m) => rs.encode(rs.fromObject(m as Record<string, unknown>)).finish(),
  };
}

interface JwtReq {
  audience: string[];
  spiffe_id: string;
}
interface JwtRes {
  svids: { spiffe_id: string; svid: string; hint?: string }[];
}

const dir = sharedTempDir();
const sock = join(dir, 'grpc.sock');
const server = new GrpcServer({ maxReceiveMessageBytes: 1024 });
let lastCtx: CallContext | undefined;
let aborted: Promise<unknown> = Promise.resolve();
let streamGate: (() => void) | undefined;

server.addUnary<JwtReq, JwtRes>(def('FetchJWTSVID', 'JWTSVIDRequest', 'JWTSVIDResponse'), async (req, ctx) => {
  lastCtx = ctx;
  const aud = req.audience[0] ?? '';
  if (aud === 'deny') throw new GrpcError(Status.PERMISSION_DENIED, 'nö: 100% denied\n');
  if (aud === 'boom') throw new Error('secret internals');
  if (aud === 'slow') {
    aborted = new Promise((r) => ctx.signal.addEventListener('abort', () => r(ctx.signal.reason)));
    await aborted;
  }
  return {
    svids: [{ spiffe_id: `pid:${ctx.peer?.pid}`, svid: `${req.audience.join(',')}|${ctx.metadata['x-test'] ?? ''}` }],
  };
});
server.addServerStream<Record<string, never>, { svids: { spiffe_id: string }[] }>(
  def('FetchX509SVID', 'X509SVIDRequest', 'X509SVIDResponse'),
  async (_req, call) => {
    lastCtx = call;
    for (let i = 0; i < 3; i++) await call.send({ svids: [{ spiffe_id: `n${i}` }] });
    aborted = new Promise((r) => call.signal.addEventListener('abort', () => r(call.signal.reason)));
    await new Promise<void>((r) => {
      streamGate = r;
      call.signal.addEventListener('abort', () => r());
    });
  },
);

let client: RawWorkloadClient;

beforeAll(async () => {
  await server.listen(`unix://${sock}`);
  client = rawClient(`unix://${sock}`);
});
afterAll(async () => {
  client.close();
  await server.close();
});

function unary(req: JwtReq, md = new grpc.Metadata(), opts: grpc.CallOptions = {}): Promise<JwtRes> {
  return new Promise((resolve, reject) =>
    client.FetchJWTSVID(req, md, opts, (err, res) => (err ? reject(err) : resolve(res as JwtRes))),
  );
}

describe('GrpcServer over node:http2 (client: @grpc/grpc-js)', () => {
  it('serves a unary call with metadata and the caller pid from SO_PEERCRED', async () => {
    const md = new grpc.Metadata();
    md.set('x-test', 'hello');
    const res = await unary({ audience: ['a', 'b'], spiffe_id: '' }, md);
    expect(res.svids[0]).toMatchObject({ spiffe_id: `pid:${process.pid}`, svid: 'a,b|hello' });
    expect(lastCtx?.peer).toEqual({ pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  });

  it('returns handler status codes with percent-encoded messages; other errors become INTERNAL', async () => {
    await expect(unary({ audience: ['deny'], spiffe_id: '' })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: 'nö: 100% denied\n',
    });
    const err = await unary({ audience: ['boom'], spiffe_id: '' }).catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: Status.INTERNAL, details: 'internal error' });
  });

  it('streams messages and cancels the handler when the client cancels', async () => {
    const call = client.FetchX509SVID({});
    const got: string[] = [];
    const three = new Promise<void>((r) =>
      call.on('data', (d) => {
        const m = d as { svids: { spiffe_id: string }[] };
        got.push(m.svids[0]?.spiffe_id ?? '');
        if (got.length === 3) r();
      }),
    );
    call.on('error', () => {});
    await three;
    expect(got).toEqual(['n0', 'n1', 'n2']);
    call.cancel();
    expect(await aborted).toMatchObject({ grpcStatus: Status.CANCELLED, code: 'ERR_GRPC_CANCELLED' });
  });

  it('ends a stream with OK when the handler returns', async () => {
    const call = client.FetchX509SVID({});
    const status = new Promise<grpc.StatusObject>((r) => call.on('status', r));
    call.on('data', () => {
      streamGate?.();
    });
    expect((await status).code).toBe(Status.OK);
  });

  it('enforces grpc-timeout deadlines and aborts the handler', async () => {
    const err = await unary({ audience: ['slow'], spiffe_id: '' }, new grpc.Metadata(), {
      deadline: Date.now() + 200,
    }).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).toBe(Status.DEADLINE_EXCEEDED);
    expect(await aborted).toBeInstanceOf(GrpcError);
  });

  it('answers UNIMPLEMENTED for an unknown method', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.makeUnaryRequest(
        '/SpiffeWorkloadAPI/FetchWITSVID',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        (e) => resolve(e as grpc.ServiceError),
      ),
    );
    expect(err.code).toBe(Status.UNIMPLEMENTED);
  });

  it('rejects an oversized message (grpc-js client)', async () => {
    const err = await unary({ audience: ['x'.repeat(5000)], spiffe_id: '' }).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).toBe(Status.RESOURCE_EXHAUSTED);
  });
});

/** One raw HTTP/2 gRPC exchange, to send what grpc-js never would. */
async function raw(path: string, body: Buffer, headers: Record<string, string> = {}) {
  const session = h2connect('http://localhost', { createConnection: () => require('node:net').connect(sock) });
  try {
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    let status: string | undefined;
    let message: string | undefined;
    let httpStatus: number | undefined;
    req.on('response', (h) => {
      httpStatus = Number(h[':status']);
      status ??= h['grpc-status'] as string | undefined;
      message ??= h['grpc-message'] as string | undefined;
    });
    req.on('trailers', (h) => {
      status = h['grpc-status'] as string;
      message = h['grpc-message'] as string | undefined;
    });
    req.on('data', () => {});
    req.end(body);
    await new Promise((r) => req.on('close', r));
    return { httpStatus, status: status === undefined ? undefined : Number(status), message };
  } finally {
    session.close();
  }
}
const require = (await import('node:module')).createRequire(import.meta.url);

describe('GrpcServer wire checks (raw HTTP/2)', () => {
  const jwt = root.lookupType('JWTSVIDRequest');
  const msg = Buffer.from(jwt.encode(jwt.fromObject({ audience: ['a'] })).finish());

  it('accepts a well-formed frame', async () => {
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]);
    expect(await raw('/SpiffeWorkloadAPI/FetchJWTSVID', frame)).toMatchObject({ httpStatus: 200, status: 0 });
  });

  it('rejects a compressed message', async () => {
    const frame = Buffer.concat([Buffer.from([1, 0, 0, 0, msg.length]), msg]);
    const r = await raw('/SpiffeWorkloadAPI/FetchJWTSVID', frame, { 'grpc-encoding': 'identity' });
    expect(r.status).toBe(Status.INTERNAL);
    expect(decodeGrpcMessage(r.message ?? '')).toMatch(/compressed/);
  });

  it('rejects a grpc-encoding it does not support', async () => {
    const frame = Buffer.concat([Buffer.from([1, 0, 0, 0, msg.length]), msg]);
    const r = await raw('/SpiffeWorkloadAPI/FetchJWTSVID', frame, { 'grpc-encoding': 'gzip' });
    expect(r.status).toBe(Status.UNIMPLEMENTED);
  });

  it('refuses an oversized message from its header alone', async () => {
    const header = Buffer.from([0, 0, 0, 0, 0]);
    header.writeUInt32BE(10 * 1024 * 1024, 1);
    const r = await raw('/SpiffeWorkloadAPI/FetchJWTSVID', header);
    expect(r.status).toBe(Status.RESOURCE_EXHAUSTED);
  });

  it('rejects a truncated message, two messages for a unary call, and a bad grpc-timeout', async () => {
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]);
    expect((await raw('/SpiffeWorkloadAPI/FetchJWTSVID', frame.subarray(0, 7))).status).toBe(Status.INTERNAL);
    expect((await raw('/SpiffeWorkloadAPI/FetchJWTSVID', Buffer.concat([frame, frame]))).status).not.toBe(0);
    expect((await raw('/SpiffeWorkloadAPI/FetchJWTSVID', frame, { 'grpc-timeout': 'soon' })).status).toBe(
      Status.INVALID_ARGUMENT,
    );
  });

  it('answers non-gRPC requests at the HTTP level', async () => {
    expect((await raw('/SpiffeWorkloadAPI/FetchJWTSVID', msg, { 'content-type': 'application/json' })).httpStatus).toBe(
      415,
    );
  });
});

describe('GrpcServer on TCP and helpers', () => {
  it('serves on tcp://127.0.0.1 with no peer credentials', async () => {
    const s = new GrpcServer();
    let ctx: CallContext | undefined;
    s.addUnary<JwtReq, JwtRes>(def('FetchJWTSVID', 'JWTSVIDRequest', 'JWTSVIDResponse'), (_r, c) => {
      ctx = c;
      return { svids: [] };
    });
    const addr = await s.listen('tcp://127.0.0.1:0');
    if (addr.kind !== 'tcp') throw new Error('expected tcp');
    const c = rawClient(`127.0.0.1:${addr.port}`);
    await new Promise((res, rej) => c.FetchJWTSVID({ audience: ['a'] }, (e) => (e ? rej(e) : res(0))));
    expect(ctx?.peer).toBeUndefined();
    expect(ctx?.peerError).toBeInstanceOf(Error);
    c.close();
    await s.close();
  });

  it('refuses to take over a live socket and replaces a stale one', async () => {
    const other = new GrpcServer();
    await expect(other.listen(`unix://${sock}`)).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });

  it('parses addresses, timeouts and grpc-message encoding', () => {
    expect(parseListenAddress('unix:///a/b.sock')).toEqual({ kind: 'unix', path: '/a/b.sock' });
    expect(parseListenAddress('tcp://127.0.0.1:8081')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8081 });
    expect(() => parseListenAddress('tcp://localhost:1')).toThrow();
    expect(() => parseListenAddress('unix://rel.sock')).toThrow();
    expect(parseGrpcTimeout('250m')).toBe(250);
    expect(parseGrpcTimeout('2S')).toBe(2000);
    expect(() => parseGrpcTimeout('123456789S')).toThrow(GrpcError);
    expect(encodeGrpcMessage('100% ✓')).toBe('100%25 %E2%9C%93');
    expect(decodeGrpcMessage(encodeGrpcMessage('a\nb é %'))).toBe('a\nb é %');
  });
});
