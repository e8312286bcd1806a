/**
 * The inbound leg's HTTP/1.1 connections, served directly on the TLS socket with Node's own
 * llhttp parser instead of node:http's server and a client pool. Each client connection gets one
 * upstream connection to the app of its own, used for one exchange at a time (pipelined requests
 * wait their turn), so a request costs two socket reads and two writes and no stream objects,
 * requests or responses per exchange: at 1,000 requests/s the sidecar's added latency was twice
 * nginx's with node:http (see docs/benchmarks.md), most of it in that machinery.
 *
 * What node:http's server did and this keeps: the strict parser (no lenient flags: conflicting
 * Content-Length and Transfer-Encoding, bad chunk framing, CR/LF in names or values are refused
 * with 400), a 16 KiB head limit (431), a Host header on HTTP/1.1, headers and idle timeouts,
 * `100-continue` (answered by the sidecar — but only once the request is allowed), HTTP/1.0
 * clients (no chunked framing, closed after the response). Hop-by-hop headers stay on their hop
 * both ways; the app's response head is rebuilt, its body bytes are passed on as they come
 * (re-chunked when the app's framing is chunked or ends at close). WebSocket handshakes are
 * decided like any request and become a byte tunnel once the app answers 101.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AppConnection, AppExchange, AppPool } from './app-pool.js';
import { LAST_CHUNK, writeChunk } from './app-pool.js';
import { forwardHeaders, JSON_TYPE, rawResponse, requestHead, responseHead } from './headers.js';
import { createParser, headersFromRaw, type NativeParser, type ParsedHead } from './llhttp.js';
import { splice } from './tunnel.js';

/** Bodies up to this size (with a Content-Length) are gathered and leave with the head in one write. */
const SMALL_BODY = 64 * 1024;
/** Request bytes held for a request that is not forwarded yet before the client is paused. */
const MAX_BUFFERED = 1024 * 1024;
const HEADERS_TIMEOUT_MS = 10_000;
/** Requests parsed ahead of the one being answered (pipelining) before the client is paused. */
const MAX_PIPELINED = 32;
const KEEP_ALIVE_MS = 60_000;
/**
 * Told to clients on every kept connection (as node:http does): clients such as undici otherwise
 * close idle connections after a few seconds and pay a new mTLS handshake for the next request.
 */
const KEEP_ALIVE_HINT = `timeout=${KEEP_ALIVE_MS / 1000}`;

/** What {@link serveHttp1} asks of the decision for each request. */
export type Http1Verdict =
  | { ok: true; headers: OutgoingHttpHeaders }
  | { ok: false; status: number; headers: Record<string, string | number>; body: string };

/** The request as the enforcer reads it (node:http's IncomingMessage has the same fields). */
export interface Http1Request {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  socket: TLSSocket;
}

export interface Http1Options {
  app: { host: string; port: number };
  /** Time for a whole exchange with the app (and for the client's request body), refreshed by traffic. */
  timeoutMs: number;
  /**
   * Decides a request: the headers to pass to the app (identity stripped, the sidecar's added) or
   * the response to refuse it with. A rejection refuses with 403.
   */
  decide(req: Http1Request): Promise<Http1Verdict>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** One request and its response on a connection. */
interface Exchange {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  http10: boolean;
  keepAlive: boolean;
  upgrade: boolean;
  /** Request body framing as received. */
  contentLength: number; // -1: none given
  chunked: boolean;
  /** Request body bytes received but not yet passed on. */
  pending: Buffer[];
  pendingBytes: number;
  /** The whole request has been received. */
  received: boolean;
  state: 'deciding' | 'refused' | 'gathering' | 'forwarding' | 'tunnel' | 'done';
  /** The response head has gone to the client (after that a failure can only cut the client off). */
  responded: boolean;
  /** The response is complete. */
  answered: boolean;
  /** How the response body is framed toward the client. */
  out: 'raw' | 'chunked' | 'close';
  /** The headers passed to the app (once allowed). */
  forward?: OutgoingHttpHeaders;
  /** The app closes its connection after this response. */
  appCloses?: boolean;
}

/** The connections of one listener: timeouts are checked by one sweep a second, not a timer per request. */
export class Http1Connections {
  readonly #live = new Set<Http1Connection>();
  readonly #sweep: NodeJS.Timeout;

  /** `pool`: the listener's connections to the app (closed by whoever made it). */
  constructor(
    readonly opts: Http1Options,
    readonly pool: AppPool,
  ) {
    this.#sweep = setInterval(() => {
      const now = Date.now();
      for (const c of this.#live) if (c.deadline !== 0 && now > c.deadline) c.timedOut();
    }, 1000);
    this.#sweep.unref();
  }

  /**
   * Serves HTTP/1.1 on an authenticated TLS socket until it closes.
   *
   * @example
   * ```ts
   * tlsServer.on('secureConnection', (s) => connections.serve(s));
   * ```
   */
  serve(socket: TLSSocket): void {
    const c = new Http1Connection(socket, this.opts, this.pool);
    this.#live.add(c);
    socket.once('close', () => {
      this.#live.delete(c);
      c.closed();
    });
  }

  close(): void {
    clearInterval(this.#sweep);
  }
}

class Http1Connection implements AppExchange {
  /** When the current phase times out (ms since the epoch; 0: never). */
  deadline: number;
  #phase: 'idle' | 'head' | 'exchange' = 'idle';
  readonly #parser: NativeParser;
  readonly #queue: Exchange[] = [];
  #buffered = 0;
  #up: AppConnection | undefined;
  /** The response being parsed: status, head, whether its body is skipped. */
  #resStatus = 0;
  /** Closed or closing: nothing more is parsed, decided or forwarded. */
  #gone = false;

  constructor(
    readonly client: TLSSocket,
    readonly opts: Http1Options,
    readonly pool: AppPool,
  ) {
    client.setNoDelay(true);
    this.deadline = Date.now() + KEEP_ALIVE_MS;
    this.#parser = createParser('request', {
      onBegin: () => {
        if (this.#queue.length > 0) return; // pipelined: the exchange in progress keeps its deadline
        this.#phase = 'head';
        this.deadline = Date.now() + Math.min(HEADERS_TIMEOUT_MS, opts.timeoutMs);
      },
      onHead: (head) => this.#onRequestHead(head),
      onBody: (b) => this.#onRequestBody(b),
      onEnd: () => this.#onRequestEnd(),
    });
    client.on('data', (d: Buffer) => this.#onClientData(d));
    client.on('error', () => client.destroy());
    // A client's FIN ends the connection (the server does not allow half-open sockets): as with
    // node:http and nginx, a client that closes has gone away, and its request to the app is
    // aborted when the socket closes.
  }

  // ── client side ───────────────────────────────────────────────────────────────────────────

  #onClientData(d: Buffer): void {
    if (this.#gone) return;
    const r = this.#parser.execute(d);
    if (r instanceof Error) {
      this.#badRequest(r as Error & { code?: string });
      return;
    }
    if (r < d.length) {
      // An upgrade request: the parser stops at its head; what follows belongs to the tunnel.
      const ex = this.#queue.at(-1);
      if (ex?.upgrade) {
        ex.pending.push(d.subarray(r));
        this.client.pause();
      }
    }
  }

  #onRequestHead(head: ParsedHead): number {
    if (this.#gone) return 1;
    const { raw, upgrade, keepAlive } = head;
    const h = headersFromRaw(raw);
    const http10 = head.httpMajor === 1 && head.httpMinor === 0;
    const te = h['transfer-encoding'];
    const cl = h['content-length'];
    const ex: Exchange = {
      method: head.method,
      url: head.url,
      headers: h,
      http10,
      keepAlive,
      upgrade,
      contentLength: cl === undefined ? -1 : Number(cl),
      chunked: te !== undefined && /(?:^|,)\s*chunked\s*$/i.test(te),
      pending: [],
      pendingBytes: 0,
      // An upgrade request has no body: what follows its head is the tunnel's.
      received: upgrade,
      state: 'deciding',
      responded: false,
      answered: false,
      out: 'raw',
    };
    if ((!http10 && h.host === undefined) || hasRepeat(raw, 'host')) {
      // RFC 9112 §3.2: an HTTP/1.1 request names exactly one host.
      this.#fail(400, 'bad_request');
      return 1;
    }
    this.#queue.push(ex);
    if (this.#queue.length === 1) {
      this.#phase = 'exchange';
      this.deadline = Date.now() + this.opts.timeoutMs;
      this.#start(ex);
    } else if (this.#queue.length > MAX_PIPELINED) this.client.pause();
    return 0;
  }

  #onRequestBody(b: Buffer): void {
    const ex = this.#queue.at(-1);
    if (this.#gone || !ex || ex.state === 'refused' || ex.state === 'done') return; // refused: the body is dropped
    // (The deadline is not moved by the client's bytes: the whole request is due within the timeout.)
    if (ex.state === 'forwarding' && ex === this.#queue[0]) {
      this.#sendBody(ex, b);
      return;
    }
    ex.pending.push(b);
    ex.pendingBytes += b.length;
    this.#buffered += b.length;
    if (this.#buffered > MAX_BUFFERED) this.client.pause();
  }

  #onRequestEnd(): void {
    const ex = this.#queue.at(-1);
    if (this.#gone || !ex || ex.upgrade) return;
    ex.received = true;
    if (ex !== this.#queue[0]) return;
    if (ex.state === 'gathering') this.#sendHead(ex);
    else if (ex.state === 'forwarding' && ex.chunked) this.#up?.socket.write(LAST_CHUNK);
    if (ex.answered) this.#next();
  }

  #badRequest(e: Error & { code?: string }): void {
    const status = e.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const current = this.#queue[0];
    if (current?.responded && !current.answered) {
      this.client.destroy();
      return;
    }
    this.#fail(status, status === 431 ? 'headers_too_large' : 'bad_request');
  }

  /** Answers with an error of the sidecar's own and closes the connection. */
  #fail(status: number, code: string): void {
    this.#gone = true;
    this.#queue.length = 0;
    this.#dropUpstream();
    if (this.client.writable) this.#writeResponse(status, JSON_TYPE, `{"error":"${code}"}`, false);
    this.client.destroySoon();
  }

  #writeResponse(status: number, headers: Record<string, string | number>, body: string, keepAlive: boolean): void {
    const connection = keepAlive
      ? { connection: 'keep-alive', 'keep-alive': KEEP_ALIVE_HINT }
      : { connection: 'close' };
    this.client.write(rawResponse(status, { ...headers, ...connection }, body), 'latin1');
  }

  // ── one exchange ──────────────────────────────────────────────────────────────────────────

  #start(ex: Exchange): void {
    if (ex.upgrade && String(ex.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      this.#fail(400, 'unsupported_upgrade');
      return;
    }
    const req: Http1Request = { method: ex.method, url: ex.url, headers: ex.headers, socket: this.client };
    this.opts.decide(req).then(
      (v) => this.#decided(ex, v),
      () =>
        this.#decided(ex, {
          ok: false,
          status: 403,
          headers: JSON_TYPE,
          body: '{"error":"forbidden"}',
        }),
    );
  }

  #decided(ex: Exchange, v: Http1Verdict): void {
    if (this.#gone || ex !== this.#queue[0]) return;
    if (!v.ok) {
      ex.state = 'refused';
      this.#buffered -= ex.pendingBytes;
      ex.pending = [];
      ex.pendingBytes = 0;
      // A refused request whose body is still coming (or an upgrade) ends the connection: the
      // client may or may not send that body, and nothing of it may be taken for a next request.
      const keep = ex.keepAlive && ex.received && !ex.upgrade && !ex.http10;
      this.#writeResponse(v.status, v.headers, v.body, keep);
      ex.answered = true;
      this.#next(keep);
      return;
    }
    const headers = v.headers;
    // An HTTP/1.0 client may name no host; the app gets HTTP/1.1, which must.
    if (headers.host === undefined) headers.host = `${this.opts.app.host}:${this.opts.app.port}`;
    if (ex.upgrade) {
      headers.connection = 'Upgrade';
      headers.upgrade = String(ex.headers.upgrade);
    }
    // The body is passed on re-chunked, under the codings the client named ("gzip, chunked" stays so).
    if (ex.chunked) headers['transfer-encoding'] = String(ex.headers['transfer-encoding']);
    ex.state = 'forwarding';
    ex.forward = headers;
    if (!ex.received && !ex.upgrade && String(ex.headers.expect ?? '').toLowerCase() === '100-continue') {
      this.client.write('HTTP/1.1 100 Continue\r\n\r\n');
    }
    if (!ex.received && !ex.chunked && ex.contentLength > 0 && ex.contentLength <= SMALL_BODY) {
      // Gathered: the app never sees a small body the client did not finish.
      ex.state = 'gathering';
      return;
    }
    this.#sendHead(ex);
  }

  /** Writes the request head and every body byte held so far to the app. */
  #sendHead(ex: Exchange): void {
    let head: string;
    try {
      head = requestHead(ex.method, ex.url, ex.forward ?? {});
    } catch (e) {
      // An identity the sidecar would assert (a user claim, say) that HTTP/1.1 cannot carry.
      this.opts.log('request refused: a header for the app cannot be written', { error: (e as Error).message });
      this.#fail(400, 'unrepresentable_header');
      return;
    }
    ex.state = 'forwarding';
    const up = this.#upstream().socket;
    if (ex.upgrade) {
      up.write(head, 'latin1'); // the bytes after the handshake follow once the app has answered 101
      return;
    }
    this.#buffered -= ex.pendingBytes;
    if (ex.chunked) {
      up.cork();
      up.write(head, 'latin1');
      for (const b of ex.pending) this.#sendBody(ex, b);
      if (ex.received) up.write(LAST_CHUNK);
      up.uncork();
    } else if (ex.pending.length === 0) up.write(head, 'latin1');
    else {
      // Head and body in one write: one packet to the app for a small request.
      up.write(Buffer.concat([Buffer.from(head, 'latin1'), ...ex.pending]));
    }
    ex.pending = [];
    ex.pendingBytes = 0;
    this.#resumeClient();
  }

  #sendBody(ex: Exchange, b: Buffer): void {
    const up = this.#up?.socket;
    if (!up) return;
    const ok = ex.chunked ? writeChunk(up, b) : up.write(b);
    if (!ok) {
      // Backpressure: the client waits while the app's socket is full.
      this.client.pause();
      up.once('drain', () => this.client.resume());
    }
  }

  /** The exchange at the head of the queue is complete both ways: on to the next, or close. */
  #next(keep = true): void {
    const ex = this.#queue.shift();
    if (ex) ex.state = 'done';
    if (!keep || !ex?.keepAlive || ex.http10 || ex.out === 'close') {
      this.#gone = true;
      this.#queue.length = 0;
      this.client.end();
      return;
    }
    const following = this.#queue[0];
    if (following) {
      this.#phase = 'exchange';
      this.deadline = Date.now() + this.opts.timeoutMs;
      this.#start(following);
    } else {
      this.#phase = 'idle';
      this.deadline = Date.now() + KEEP_ALIVE_MS;
    }
    this.#resumeClient();
  }

  /** Reads from the client again once what is held for it is under the limits. */
  #resumeClient(): void {
    if (this.client.isPaused() && this.#buffered <= MAX_BUFFERED && this.#queue.length <= MAX_PIPELINED) {
      this.client.resume();
    }
  }

  // ── the app side ──────────────────────────────────────────────────────────────────────────

  /** A connection to the app for the current exchange: an idle one from the pool, else a new one. */
  #upstream(): AppConnection {
    this.#up ??= this.pool.acquire(this);
    return this.#up;
  }

  /** Called by the app connection: a response head (returns llhttp's 0 body, 1 no body, 2 upgrade). */
  onResponseHead(up: AppConnection, raw: string[], status: number, message: string, appKeepAlive: boolean): number {
    const ex = this.#queue[0];
    if (!ex || up !== this.#up) return 1;
    this.#resStatus = status;
    if (status >= 100 && status < 200 && status !== 101) return 0; // informational: not passed on
    const h = headersFromRaw(raw);
    if (status === 101 && ex.upgrade) {
      const out = forwardHeaders(h, { stripIdentity: false, keepUpgrade: true });
      this.client.write(responseHead(101, message, out), 'latin1');
      ex.responded = true;
      ex.state = 'tunnel';
      this.#tunnel(ex, up);
      return 2; // no body; the rest is the tunnel's
    }
    const out = forwardHeaders(h, { stripIdentity: false });
    const bodiless = ex.method === 'HEAD' || status === 204 || status === 304;
    if (!bodiless && h['content-length'] === undefined) {
      // Chunked from the app, or ended by its close: chunked to an HTTP/1.1 client; an HTTP/1.0
      // client reads until the sidecar closes.
      if (ex.http10) {
        ex.out = 'close';
        out.connection = 'close';
      } else {
        ex.out = 'chunked';
        out['transfer-encoding'] = 'chunked';
      }
    }
    if (!ex.keepAlive || ex.http10 || ex.upgrade) {
      out.connection = 'close';
      ex.keepAlive = false;
    } else out['keep-alive'] = KEEP_ALIVE_HINT;
    ex.appCloses = !appKeepAlive;
    // Head and the body bytes parsed with it leave in one TLS write; uncorked on the next tick so
    // streamed responses still flow.
    const client = this.client;
    client.cork();
    process.nextTick(() => client.uncork());
    client.write(responseHead(status, message, out), 'latin1');
    ex.responded = true;
    return bodiless ? 1 : 0;
  }

  onResponseBody(up: AppConnection, b: Buffer): void {
    const ex = this.#queue[0];
    if (!ex?.responded || ex.answered || up !== this.#up) return;
    this.deadline = Date.now() + this.opts.timeoutMs;
    const ok = ex.out === 'chunked' ? writeChunk(this.client, b) : this.client.write(b);
    if (!ok) {
      up.socket.pause();
      this.client.once('drain', () => up.socket.resume());
    }
  }

  onResponseEnd(up: AppConnection): void {
    const ex = this.#queue[0];
    if (!ex || up !== this.#up || this.#resStatus < 200 || !ex.responded) return;
    if (ex.out === 'chunked') this.client.write(LAST_CHUNK);
    ex.answered = true;
    this.#up = undefined;
    // Back to the pool once the request is wholly sent too; otherwise it is closed.
    if (!ex.appCloses && ex.received && ex.state === 'forwarding') this.pool.release(up);
    else up.destroy();
    if (ex.received) this.#next();
  }

  #tunnel(ex: Exchange, up: AppConnection): void {
    // From here on the sidecar only copies bytes: what the client sent after its head first.
    this.#up = undefined;
    const socket = up.detach();
    for (const b of ex.pending) socket.write(b);
    ex.pending = [];
    this.deadline = 0;
    this.client.removeAllListeners('data');
    splice(this.client, socket);
    this.client.resume();
  }

  /** The app's connection failed or closed: a 502 if nothing was answered yet, else the client is cut off. */
  onUpstreamFailed(up: AppConnection, e: Error): void {
    if (up !== this.#up) return;
    this.#up = undefined;
    const ex = this.#queue[0];
    if (!ex || ex.answered || (ex.state !== 'forwarding' && ex.state !== 'gathering')) return;
    this.opts.log('upstream (app) request failed', { error: e.message });
    if (ex.responded) {
      this.client.destroy();
      return;
    }
    this.#fail(502, 'bad_gateway');
  }

  /** Tunnel bytes the app sent with its 101. */
  onTunnelBytes(b: Buffer): void {
    this.client.write(b);
  }

  #dropUpstream(): void {
    const up = this.#up;
    this.#up = undefined;
    up?.destroy();
  }

  // ── timeouts and the end ──────────────────────────────────────────────────────────────────

  timedOut(): void {
    this.deadline = 0;
    const ex = this.#queue[0];
    if (!ex) {
      // A head that never completed (slowloris), or an idle keep-alive connection.
      if (this.#phase === 'head') this.#fail(408, 'request_timeout');
      else this.client.destroy();
      return;
    }
    if (ex.responded) return void this.client.destroy();
    if (!ex.received) {
      this.#fail(408, 'request_timeout');
      return;
    }
    this.opts.log('upstream (app) request timed out', { timeout_ms: this.opts.timeoutMs });
    this.#fail(504, 'gateway_timeout');
  }

  /** The client's connection closed: the app's request goes with it. */
  closed(): void {
    this.#gone = true;
    this.deadline = 0;
    this.#queue.length = 0;
    this.#dropUpstream();
    this.#parser.close();
  }
}

/** Whether a header name occurs more than once in raw header pairs. */
function hasRepeat(raw: readonly string[], name: string): boolean {
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).length !== name.length || (raw[i] as string).toLowerCase() !== name) continue;
    if (seen) return true;
    seen = true;
  }
  return false;
}
