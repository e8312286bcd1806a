/**
 * A request the inbound leg received over HTTP/2 (or through node:http) and allowed, passed to an
 * HTTP/1.1 app over the shared keep-alive pool (./app-pool.ts): the request body streams up with
 * backpressure, chunked when the client gave no length; the response streams back into the
 * client's response. A failure before the app's head is a 502 (504 when the app is too slow); after
 * it, the client's response is cut off, never completed. A client that goes away takes the app's
 * request with it.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { type AppConnection, type AppExchange, type AppPool, LAST_CHUNK, writeChunk } from './app-pool.js';
import { forwardHeaders, JSON_TYPE, requestHead } from './headers.js';
import { headersFromRaw } from './llhttp.js';

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

export interface ForwardOptions {
  pool: AppPool;
  /** The app's address, for a `host` header when the client named none. */
  app: { host: string; port: number };
  /** Time for the whole exchange with the app, refreshed by traffic either way. */
  timeoutMs: number;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Whether a request carries a body to pass on (HTTP/2 says so on its HEADERS frame). */
function hasBody(req: AnyRequest): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  if (req.headers['transfer-encoding'] !== undefined) return true;
  return 'stream' in req && !req.stream.endAfterHeaders;
}

/**
 * Passes an allowed request to the app; `headers` are what the app may see (identity stripped and
 * added by the caller).
 *
 * @example
 * ```ts
 * forwardToApp(req, res, forwardHeaders(req.headers, { stripIdentity: true }), { pool, app, timeoutMs, log });
 * ```
 */
export function forwardToApp(
  req: AnyRequest,
  res: AnyResponse,
  headers: OutgoingHttpHeaders,
  opts: ForwardOptions,
): void {
  new Forward(req, res as ServerResponse, opts).start(headers);
}

class Forward implements AppExchange {
  #up: AppConnection | undefined;
  /** The whole request body went to the app. */
  #sent = false;
  #done = false;
  #appCloses = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly req: AnyRequest,
    readonly res: ServerResponse,
    readonly opts: ForwardOptions,
  ) {}

  start(headers: OutgoingHttpHeaders): void {
    const { req, res } = this;
    const body = hasBody(req);
    const declared = headers['content-length'];
    if (declared !== undefined && !/^\d{1,15}$/.test(String(declared))) {
      this.#done = true;
      req.resume();
      res.writeHead(400, JSON_TYPE).end('{"error":"bad_request"}');
      return;
    }
    // With a declared length the app frames the body by it: exactly that many bytes may go up, or
    // the rest would be read by the app as a next request (an HTTP/2-to-HTTP/1.1 desync).
    let remaining = declared === undefined ? -1 : Number(declared);
    const chunked = body && declared === undefined;
    if (chunked) headers['transfer-encoding'] = 'chunked';
    if (headers.host === undefined) headers.host = `${this.opts.app.host}:${this.opts.app.port}`;
    let head: string;
    try {
      head = requestHead(req.method ?? 'GET', req.url ?? '/', headers);
    } catch (e) {
      this.opts.log('request refused: a header for the app cannot be written', { error: (e as Error).message });
      this.#done = true;
      req.resume();
      res.writeHead(400, JSON_TYPE).end('{"error":"unrepresentable_header"}');
      return;
    }
    const up = this.opts.pool.acquire(this);
    this.#up = up;
    this.#timer = setTimeout(() => this.#timedOut(), this.opts.timeoutMs);
    // A client that goes away mid-exchange takes the app's request with it.
    res.once('close', () => {
      if (this.#done) return;
      this.#finish();
      up.destroy();
    });
    up.socket.write(head, 'latin1');
    if (!body) {
      req.resume();
      this.#sent = true;
      return;
    }
    req.on('data', (b: Buffer) => {
      if (this.#done) return;
      if (remaining >= 0) {
        remaining -= b.length;
        if (remaining < 0) return this.#badBody(up, 'more request body than its content-length');
      }
      this.#timer?.refresh();
      const ok = chunked ? writeChunk(up.socket, b) : up.socket.write(b);
      if (!ok) {
        req.pause();
        up.socket.once('drain', () => req.resume());
      }
    });
    req.once('end', () => {
      if (this.#done) return;
      if (remaining > 0) return this.#badBody(up, 'less request body than its content-length');
      if (chunked) up.socket.write(LAST_CHUNK);
      this.#sent = true;
    });
  }

  onResponseHead(up: AppConnection, raw: string[], status: number, _message: string, appKeepAlive: boolean): number {
    if (up !== this.#up || this.#done) return 1;
    if (status < 200) return 0; // informational: not passed on
    this.#timer?.refresh();
    this.#appCloses = !appKeepAlive;
    try {
      this.res.writeHead(status, forwardHeaders(headersFromRaw(raw), { stripIdentity: false }));
    } catch (e) {
      // A head HTTP/2 cannot carry (node:http2 refuses it): a 502, never a throw inside the parser.
      this.#finish();
      up.destroy();
      this.opts.log('upstream (app) response refused', { error: (e as Error).message });
      this.#refuse(502, 'bad_gateway');
      return 1;
    }
    return this.req.method === 'HEAD' ? 1 : 0;
  }

  onResponseBody(up: AppConnection, b: Buffer): void {
    if (up !== this.#up || this.#done) return;
    this.#timer?.refresh();
    if (!this.res.write(b)) {
      // Backpressure: the app waits while the client's stream is full.
      up.socket.pause();
      this.res.once('drain', () => up.socket.resume());
    }
  }

  onResponseEnd(up: AppConnection): void {
    if (up !== this.#up || this.#done || !this.res.headersSent) return;
    this.#finish();
    this.res.end();
    // Back to the pool when the request went up whole and the app keeps the connection.
    if (this.#sent && !this.#appCloses) this.opts.pool.release(up);
    else up.destroy();
  }

  onUpstreamFailed(up: AppConnection, e: Error): void {
    if (up !== this.#up || this.#done) return;
    this.#finish();
    this.opts.log('upstream (app) request failed', { error: e.message });
    this.#refuse(502, 'bad_gateway');
  }

  onTunnelBytes(): void {
    // No upgrades on this path: WebSocket handshakes come over HTTP/1.1 (./http1.ts).
  }

  /** The client's body does not match its declared length: the app's connection cannot be used again. */
  #badBody(up: AppConnection, why: string): void {
    this.#finish();
    up.destroy();
    this.opts.log('request refused', { error: why });
    this.#refuse(400, 'bad_request');
  }

  #timedOut(): void {
    if (this.#done) return;
    const up = this.#up;
    this.#finish();
    up?.destroy();
    this.opts.log('upstream (app) request timed out', { timeout_ms: this.opts.timeoutMs });
    this.#refuse(504, 'gateway_timeout');
  }

  /** An error of the sidecar's own before the app's head; after it, the response is cut off. */
  #refuse(status: number, code: string): void {
    this.req.resume();
    const res = this.res;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A writeHead that threw may have left the app's headers (its content-length, say) behind.
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.writeHead(status, JSON_TYPE).end(`{"error":"${code}"}`);
  }

  #finish(): void {
    this.#done = true;
    this.#up = undefined;
    clearTimeout(this.#timer);
  }
}
