/**
 * The server side of gRPC over HTTP/2 (grpc/grpc `doc/PROTOCOL-HTTP2.md`) on `node:http2`.
 *
 * Why not `@grpc/grpc-js`'s Server: it never exposes the connection's socket, and the Workload API
 * must read the caller's SO_PEERCRED from that socket's fd. Here each session's peer credentials
 * are read once from `session.socket` and handed to every call on it.
 *
 * Scope: unary and server-streaming methods (all the Workload API needs), identity encoding only,
 * `grpc-timeout` deadlines, cancellation when the client resets the stream or goes away,
 * message-size limits, `UNIMPLEMENTED` for unknown methods.
 */
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import {
  constants as h2,
  createServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { listen } from '../../util/listen.js';
import { type PeerCredentials, peerCredentials } from '../peercred.js';
import { DEFAULT_MAX_MESSAGE_BYTES, frameMessage, MessageReader, parseGrpcTimeout } from './framing.js';
import { encodeGrpcMessage, GrpcError, Status, type StatusCode } from './status.js';

/** How to decode requests and encode responses of one method (e.g. protobufjs types). */
export interface MethodDefinition<Req, Res> {
  /** `/<service>/<method>`, e.g. `/SpiffeWorkloadAPI/FetchX509SVID`. */
  path: string;
  decode(bytes: Uint8Array): Req;
  encode(message: Res): Uint8Array;
}

/** What a handler knows about its call. */
export interface CallContext {
  /** `/<service>/<method>`. */
  readonly method: string;
  /** Request metadata: lower-case keys, pseudo-headers and transport headers removed. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The caller's process (Unix socket); undefined on TCP or when the credentials could not be read. */
  readonly peer: PeerCredentials | undefined;
  /** Why `peer` is undefined. */
  readonly peerError: Error | undefined;
  /** Aborted when the client cancels, disconnects, the deadline passes or the server closes. */
  readonly signal: AbortSignal;
  /** Absolute deadline (ms since the epoch) from `grpc-timeout`, if any. */
  readonly deadline: number | undefined;
}

/** A server-streaming call: send messages; return (or throw) to end it. */
export interface ServerStreamCall<Res> extends CallContext {
  /** Sends one message; resolves once written (waits for HTTP/2 flow control). */
  send(message: Res): Promise<void>;
}

export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res> | Res;
export type ServerStreamHandler<Req, Res> = (request: Req, call: ServerStreamCall<Res>) => Promise<void>;

export interface GrpcServerOptions {
  /** Largest request message accepted; default 4 MiB. */
  maxReceiveMessageBytes?: number;
  /** Largest response message sent; default 4 MiB (a larger one ends the call with RESOURCE_EXHAUSTED). */
  maxSendMessageBytes?: number;
  /** Mode of a Unix socket file after listen; default 0o777 (authorization is by attestation). */
  socketMode?: number;
  /** Called with errors that handlers threw other than {@link GrpcError} (they reach the client as INTERNAL). */
  onHandlerError?: (err: unknown, method: string) => void;
  /**
   * Open connections one peer may hold (a peer is a uid on a Unix socket with peer credentials,
   * else a remote address); one more is closed at once with GOAWAY `ENHANCE_YOUR_CALM`.
   * Default {@link DEFAULT_MAX_CONNECTIONS_PER_PEER}.
   */
  maxConnectionsPerPeer?: number;
  /**
   * Calls in flight per peer, over all its connections; one more ends at once with
   * `RESOURCE_EXHAUSTED`. Default {@link DEFAULT_MAX_CALLS_PER_PEER}.
   */
  maxCallsPerPeer?: number;
  /**
   * A connection that has not sent its first request (HTTP/2 preface, settings, HEADERS) within
   * this many ms is closed. Default {@link DEFAULT_HANDSHAKE_TIMEOUT_MS}.
   */
  handshakeTimeoutMs?: number;
  /** Called when a connection or call is refused by the limits above, with the reason. */
  onLimit?: (reason: string) => void;
}

/** Enough for every process of a uid to keep a channel open; far below what exhausts the agent. */
export const DEFAULT_MAX_CONNECTIONS_PER_PEER = 64;
/** A few streams per connection on average. */
export const DEFAULT_MAX_CALLS_PER_PEER = 256;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

type Registered =
  | { kind: 'unary'; def: MethodDefinition<unknown, unknown>; handler: UnaryHandler<unknown, unknown> }
  | { kind: 'stream'; def: MethodDefinition<unknown, unknown>; handler: ServerStreamHandler<unknown, unknown> };

interface SessionPeer {
  peer: PeerCredentials | undefined;
  error: Error | undefined;
  /** What the per-peer limits count by: `uid 1000`, or the remote address without credentials. */
  key: string;
}

/** A parsed listen address. */
export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/**
 * Parses `unix:///abs/path`, `unix:/abs/path`, a bare absolute path, or `tcp://127.0.0.1:8080`.
 *
 * @example
 * ```ts
 * parseListenAddress('unix:///run/nevertrust/agent.sock'); // { kind: 'unix', path: '/run/nevertrust/agent.sock' }
 * ```
 * @throws {Error} for anything else
 */
export function parseListenAddress(address: string): ListenAddress {
  if (address.startsWith('/')) return { kind: 'unix', path: address };
  if (address.startsWith('unix://')) {
    const path = address.slice('unix://'.length);
    if (!path.startsWith('/')) throw new Error(`unix address ${JSON.stringify(address)} needs an absolute path`);
    return { kind: 'unix', path };
  }
  if (address.startsWith('unix:/')) return { kind: 'unix', path: address.slice('unix:'.length) };
  const m = /^tcp:\/\/(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(address);
  if (m) {
    const port = Number(m[2]);
    if (port > 65535) throw new Error(`port out of range in ${JSON.stringify(address)}`);
    return { kind: 'tcp', host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
  }
  throw new Error(`listen address ${JSON.stringify(address)} must be unix:///path or tcp://ip:port`);
}

// Headers the transport owns; everything else is call metadata.
const TRANSPORT_HEADERS = new Set([
  'content-type',
  'te',
  'grpc-timeout',
  'grpc-encoding',
  'grpc-accept-encoding',
  'user-agent',
]);

/**
 * A gRPC server on `node:http2`, for Unix sockets (with peer credentials) and TCP.
 *
 * @example
 * ```ts
 * const server = new GrpcServer();
 * server.addUnary(echoDef, async (req, ctx) => ({ text: `${req.text} from pid ${ctx.peer?.pid}` }));
 * await server.listen('unix:///tmp/echo.sock');
 * // …
 * await server.close();
 * ```
 */
export class GrpcServer {
  private readonly methods = new Map<string, Registered>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly peers = new WeakMap<ServerHttp2Session, SessionPeer>();
  private readonly calls = new Set<ActiveCall>();
  private readonly maxRecv: number;
  private readonly maxSend: number;
  private readonly socketMode: number;
  private readonly onHandlerError: ((err: unknown, method: string) => void) | undefined;
  private readonly maxConnsPerPeer: number;
  private readonly maxCallsPerPeer: number;
  private readonly handshakeMs: number;
  private readonly onLimit: ((reason: string) => void) | undefined;
  private readonly connsByPeer = new Map<string, number>();
  private readonly callsByPeer = new Map<string, number>();
  private http2: Http2Server | undefined;
  private listening: ListenAddress | undefined;

  constructor(opts: GrpcServerOptions = {}) {
    this.maxRecv = opts.maxReceiveMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.maxSend = opts.maxSendMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.socketMode = opts.socketMode ?? 0o777;
    this.onHandlerError = opts.onHandlerError;
    this.maxConnsPerPeer = opts.maxConnectionsPerPeer ?? DEFAULT_MAX_CONNECTIONS_PER_PEER;
    this.maxCallsPerPeer = opts.maxCallsPerPeer ?? DEFAULT_MAX_CALLS_PER_PEER;
    this.handshakeMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.onLimit = opts.onLimit;
    for (const [name, v] of [
      ['maxConnectionsPerPeer', this.maxConnsPerPeer],
      ['maxCallsPerPeer', this.maxCallsPerPeer],
      ['handshakeTimeoutMs', this.handshakeMs],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`GrpcServer: ${name} must be a positive integer, got ${v}`);
    }
  }

  /** Registers a unary method. */
  addUnary<Req, Res>(def: MethodDefinition<Req, Res>, handler: UnaryHandler<Req, Res>): this {
    this.register({ kind: 'unary', def, handler } as unknown as Registered);
    return this;
  }

  /** Registers a server-streaming method. */
  addServerStream<Req, Res>(def: MethodDefinition<Req, Res>, handler: ServerStreamHandler<Req, Res>): this {
    this.register({ kind: 'stream', def, handler } as unknown as Registered);
    return this;
  }

  private register(r: Registered): void {
    if (this.methods.has(r.def.path)) throw new Error(`method ${r.def.path} is already registered`);
    this.methods.set(r.def.path, r);
  }

  /** Where the server listens, once {@link listen} resolved. */
  get address(): ListenAddress | undefined {
    return this.listening;
  }

  /**
   * Listens on `unix:///path` (the socket file gets `socketMode`, default 0777; a stale socket file
   * left by a dead process is replaced, a live one is an error) or `tcp://ip:port` (port 0: any).
   *
   * @throws {Error} `EADDRINUSE` when another server answers on the socket path
   */
  async listen(address: string): Promise<ListenAddress> {
    if (this.http2) throw new Error('the server is already listening');
    const addr = parseListenAddress(address);
    if (addr.kind === 'unix') await removeStaleSocket(addr.path);
    const server = createServer({ maxSessionMemory: 64 });
    server.on('session', (s) => this.onSession(s));
    server.on('stream', (stream, headers) => this.onStream(stream, headers));
    const port = await listen(server, addr.kind === 'unix' ? { path: addr.path } : addr);
    this.http2 = server;
    if (addr.kind === 'unix') {
      await chmod(addr.path, this.socketMode);
      this.listening = addr;
    } else {
      this.listening = { kind: 'tcp', host: addr.host, port };
    }
    return this.listening;
  }

  /**
   * Stops accepting, ends every running call with `UNAVAILABLE` (clients reconnect), then closes
   * the connections; after `graceMs` (default 1000) the remaining ones are destroyed.
   */
  async close(graceMs = 1000): Promise<void> {
    const server = this.http2;
    if (!server) return;
    this.http2 = undefined;
    for (const c of [...this.calls]) c.finish(Status.UNAVAILABLE, 'the server is shutting down');
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of this.sessions) s.close();
    const timer = setTimeout(() => {
      for (const s of this.sessions) s.destroy();
    }, graceMs);
    await closed;
    clearTimeout(timer);
    if (this.listening?.kind === 'unix') {
      try {
        unlinkSync(this.listening.path);
      } catch {
        // Already gone: nothing to clean.
      }
    }
  }

  private onSession(session: ServerHttp2Session): void {
    this.sessions.add(session);
    session.on('error', () => {
      // A broken connection concerns only its own calls; their streams report it.
    });
    let peer: PeerCredentials | undefined;
    let error: Error | undefined;
    try {
      // `session.socket` is a proxy of the net.Socket; its `_handle.fd` is the accepted fd.
      peer = peerCredentials(session.socket as Socket);
    } catch (e) {
      error = e as Error;
    }
    const key = peer ? `uid ${peer.uid}` : `address ${session.socket.remoteAddress ?? 'unknown'}`;
    const info: SessionPeer = { peer, error, key };
    this.peers.set(session, info);
    // One local user must not exhaust the agent with idle connections: a cap per peer, and a
    // deadline for the first request so that a socket that never speaks does not hold a slot.
    const open = (this.connsByPeer.get(key) ?? 0) + 1;
    this.connsByPeer.set(key, open);
    const handshake = setTimeout(() => {
      this.onLimit?.(`${key}: no request within ${this.handshakeMs} ms of connecting; closed`);
      session.destroy();
    }, this.handshakeMs);
    handshake.unref();
    session.once('stream', () => clearTimeout(handshake));
    session.once('close', () => {
      clearTimeout(handshake);
      this.sessions.delete(session);
      const left = (this.connsByPeer.get(key) ?? 1) - 1;
      if (left > 0) this.connsByPeer.set(key, left);
      else this.connsByPeer.delete(key);
    });
    if (open > this.maxConnsPerPeer) {
      this.onLimit?.(`${key}: more than ${this.maxConnsPerPeer} open connections; refused`);
      session.goaway(h2.NGHTTP2_ENHANCE_YOUR_CALM);
      session.destroy();
    }
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {
      // Resets and write-after-close surface here; the call's close handler does the cleanup.
    });
    if (headers[':method'] !== 'POST') {
      stream.respond({ ':status': 405, allow: 'POST' }, { endStream: true });
      return;
    }
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !/^application\/grpc(?:$|[+;])/.test(contentType)) {
      stream.respond({ ':status': 415, 'content-type': 'text/plain' }, { endStream: true });
      return;
    }
    const path = String(headers[':path'] ?? '');
    const sessionPeer = this.peers.get(stream.session as ServerHttp2Session) ?? {
      peer: undefined,
      error: new Error('no session'),
      key: 'unknown',
    };
    const key = sessionPeer.key;
    const inFlight = (this.callsByPeer.get(key) ?? 0) + 1;
    this.callsByPeer.set(key, inFlight);
    const call = new ActiveCall(stream, path, headers, sessionPeer, this.maxSend, () => {
      this.calls.delete(call);
      const left = (this.callsByPeer.get(key) ?? 1) - 1;
      if (left > 0) this.callsByPeer.set(key, left);
      else this.callsByPeer.delete(key);
    });
    this.calls.add(call);
    if (inFlight > this.maxCallsPerPeer) {
      this.onLimit?.(`${key}: more than ${this.maxCallsPerPeer} calls in flight; refused`);
      call.finish(Status.RESOURCE_EXHAUSTED, `too many calls in flight from ${key} (max ${this.maxCallsPerPeer})`);
      return;
    }
    const method = this.methods.get(path);
    if (!method) {
      call.finish(Status.UNIMPLEMENTED, `unknown method ${path}`);
      return;
    }
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') {
      call.finish(Status.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported (identity only)`);
      return;
    }
    const timeout = headers['grpc-timeout'];
    if (typeof timeout === 'string') {
      try {
        call.setTimeout(parseGrpcTimeout(timeout));
      } catch (e) {
        call.fail(e);
        return;
      }
    }
    const reader = new MessageReader(this.maxRecv);
    const messages: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => {
      if (call.done) return;
      try {
        for (const m of reader.push(chunk)) messages.push(m);
        if (messages.length > 1) throw new GrpcError(Status.UNIMPLEMENTED, `${path} takes exactly one request message`);
      } catch (e) {
        call.fail(e);
      }
    });
    stream.on('end', () => {
      if (call.done) return;
      if (reader.partial || messages.length !== 1) {
        call.finish(Status.INTERNAL, `${path} expects exactly one complete request message`);
        return;
      }
      let request: unknown;
      try {
        request = method.def.decode(messages[0] as Buffer);
      } catch (e) {
        call.finish(Status.INTERNAL, `cannot decode the request: ${(e as Error).message}`);
        return;
      }
      void this.run(call, method, request);
    });
  }

  private async run(call: ActiveCall, method: Registered, request: unknown): Promise<void> {
    try {
      if (method.kind === 'unary') {
        const res = await method.handler(request, call.context);
        if (call.done) return;
        await call.send(method.def.encode(res));
      } else {
        const streamCall: ServerStreamCall<unknown> = Object.assign(Object.create(call.context) as CallContext, {
          send: (m: unknown) => call.send(method.def.encode(m)),
        });
        await method.handler(request, streamCall);
      }
      call.finish(Status.OK, '');
    } catch (e) {
      if (!(e instanceof GrpcError) && !call.done) this.onHandlerError?.(e, call.context.method);
      call.fail(e);
    }
  }
}

/** One RPC in flight: owns the response headers, the trailers and the abort signal. */
class ActiveCall {
  done = false;
  readonly context: CallContext;
  private headersSent = false;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private deadline: number | undefined;

  constructor(
    private readonly stream: ServerHttp2Stream,
    path: string,
    headers: IncomingHttpHeaders,
    peer: SessionPeer,
    private readonly maxSend: number,
    private readonly onDone: () => void,
  ) {
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) {
      if (k.startsWith(':') || TRANSPORT_HEADERS.has(k) || v === undefined) continue;
      metadata[k] = Array.isArray(v) ? v.join(', ') : String(v);
    }
    const self = this;
    this.context = {
      method: path,
      metadata,
      peer: peer.peer,
      peerError: peer.error,
      signal: this.abort.signal,
      get deadline() {
        return self.deadline;
      },
    };
    // The client reset the stream or the connection went away: cancel the handler.
    stream.once('close', () => {
      if (!this.done) this.end(Status.CANCELLED, 'the client went away');
    });
  }

  setTimeout(ms: number): void {
    this.deadline = Date.now() + ms;
    this.timer = setTimeout(() => this.finish(Status.DEADLINE_EXCEEDED, 'deadline exceeded'), Math.max(0, ms));
  }

  async send(message: Uint8Array): Promise<void> {
    if (this.done) throw new GrpcError(Status.CANCELLED, 'the call has ended');
    if (message.length > this.maxSend) {
      throw new GrpcError(
        Status.RESOURCE_EXHAUSTED,
        `response message larger than max (${message.length} vs. ${this.maxSend})`,
      );
    }
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity' },
        { waitForTrailers: true },
      );
    }
    if (!this.stream.write(frameMessage(message))) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.stream.off('drain', done);
          this.abort.signal.removeEventListener('abort', done);
          resolve();
        };
        this.stream.on('drain', done);
        this.abort.signal.addEventListener('abort', done);
      });
    }
  }

  /** Ends the call with the status of `err` (GrpcError) or INTERNAL. */
  fail(err: unknown): void {
    if (err instanceof GrpcError) this.finish(err.grpcStatus, err.message);
    else this.finish(Status.INTERNAL, 'internal error');
  }

  /** Sends the status (trailers, or a trailers-only response) and aborts the handler's signal. */
  finish(code: StatusCode, message: string): void {
    if (this.done) return;
    const stream = this.stream;
    if (!stream.destroyed && !stream.closed) {
      const trailers: Record<string, string> = { 'grpc-status': String(code) };
      if (message) trailers['grpc-message'] = encodeGrpcMessage(message);
      try {
        if (!this.headersSent) {
          this.headersSent = true;
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
        } else {
          stream.once('wantTrailers', () => stream.sendTrailers(trailers));
          stream.end();
        }
      } catch {
        stream.close(h2.NGHTTP2_INTERNAL_ERROR);
      }
    }
    this.end(code, message);
  }

  private end(code: StatusCode, message: string): void {
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.abort.signal.aborted)
      this.abort.abort(new GrpcError(code === Status.OK ? Status.CANCELLED : code, message));
    this.onDone();
  }
}

/** A socket file left by a dead server is removed; one a live server answers on is EADDRINUSE. */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) {
    throw Object.assign(new Error(`${path} exists and is not a socket`), { code: 'EEXIST' });
  }
  const live = await new Promise<boolean>((resolve) => {
    const s = netConnect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw Object.assign(new Error(`another server is listening on ${path}`), { code: 'EADDRINUSE' });
  unlinkSync(path);
}
