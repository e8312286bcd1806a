/**
 * A deliberately small HTTP router over node:http: exact routes in a Map (one lookup on the hot path)
 * and prefix routes for path-parameter APIs such as the OPA Data API. Fastify would add a few µs per
 * request that the decision API cannot afford.
 */
import { readBody as readBodyBytes } from '../util/http-body.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isNevertrustError, NevertrustError } from '../errors.js';

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

/** What is recorded about a refusal beyond the request and the error (see {@link refusal}). */
export interface RefusalNote {
  /** Who was refused, when known (a SPIFFE ID); else the caller's address stands for it. */
  by?: string;
  /** Put before the error's message in the recorded reason, e.g. `audit ingestion refused`. */
  context?: string;
  /** Extra answer headers, e.g. `retry-after`. */
  headers?: Record<string, string>;
  /** Logged as a warning with the first refusal of a run (not once per request). */
  log?: string;
}

/** Called by {@link dispatch} for each refusal before it is answered (the server records it). */
export type RefusalHook = (req: IncomingMessage, url: URL, err: NevertrustError, note: RefusalNote) => void;

const refusalNotes = new WeakMap<NevertrustError, RefusalNote>();

/**
 * Marks `err` (a caller's fault, status < 500) as a refusal the server records: a handler throws it,
 * {@link dispatch} passes it to the router's refusal hooks and answers it like any other error, so
 * answering and recording are written once.
 *
 * @example
 * throw refusal(new HttpError(429, 'rate_limited', 'over 50 events/s'), { by: spiffeId, headers: { 'retry-after': '1' } });
 */
export function refusal<E extends NevertrustError>(err: E, note: RefusalNote = {}): E {
  refusalNotes.set(err, note);
  return err;
}

/** One route of a plugin's `routes` table: `prefix` routes match every path under `path`. */
export interface Route {
  readonly method: string;
  readonly path: string;
  readonly prefix?: boolean;
  readonly handler: Handler;
}

export class Router {
  private readonly exact = new Map<string, Handler>();
  private readonly prefixes: { method: string; prefix: string; handler: Handler }[] = [];
  private readonly knownPaths = new Set<string>();
  private readonly refusalHooks: RefusalHook[] = [];

  /** Adds a hook run for every refusal (an error marked with {@link refusal}) this router answers. */
  onRefusal(hook: RefusalHook): this {
    this.refusalHooks.push(hook);
    return this;
  }

  /** Runs the refusal hooks; a hook that throws is reported to `logError` and the refusal still answered. */
  refused(
    req: IncomingMessage,
    url: URL,
    err: NevertrustError,
    note: RefusalNote,
    logError: (e: unknown) => void,
  ): void {
    for (const hook of this.refusalHooks) {
      try {
        hook(req, url, err, note);
      } catch (e) {
        logError(e);
      }
    }
  }

  on(method: string, path: string, handler: Handler): this {
    this.exact.set(`${method} ${path}`, handler);
    this.knownPaths.add(path);
    return this;
  }

  onPrefix(method: string, prefix: string, handler: Handler): this {
    this.prefixes.push({ method, prefix, handler });
    return this;
  }

  /** Adds a plugin's routes table. */
  add(routes: readonly Route[]): this {
    for (const r of routes) {
      if (r.prefix) this.onPrefix(r.method, r.path, r.handler);
      else this.on(r.method, r.path, r.handler);
    }
    return this;
  }

  /** Every route, exact and prefix (for listings and tests that must cover each one). */
  routes(): { method: string; path: string; prefix: boolean }[] {
    const exact = [...this.exact.keys()].map((k) => {
      const at = k.indexOf(' ');
      return { method: k.slice(0, at), path: k.slice(at + 1), prefix: false };
    });
    return [...exact, ...this.prefixes.map((p) => ({ method: p.method, path: p.prefix, prefix: true }))];
  }

  /** Returns the handler, `405` when the path exists for another method, or undefined (404). */
  match(method: string, pathname: string): Handler | 405 | undefined {
    const h = this.exact.get(`${method} ${pathname}`);
    if (h) return h;
    for (const p of this.prefixes) if (p.method === method && pathname.startsWith(p.prefix)) return p.handler;
    if (this.knownPaths.has(pathname)) return 405;
    return undefined;
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * An error that is the caller's fault: answered with `status` and a JSON body `{error, message, …details}`.
 * `error` is the lowercase wire reason (the contract clients switch on); `code` is `ERR_HTTP_<REASON>`.
 */
export class HttpError extends NevertrustError {
  override readonly name = 'HttpError';
  readonly code: `ERR_HTTP_${string}`;
  private readonly extra: Record<string, unknown>;
  constructor(
    status: number,
    readonly error: string,
    message: string,
    details: Record<string, unknown> = {},
  ) {
    super(message, { status });
    this.code = `ERR_HTTP_${error.toUpperCase()}`;
    this.extra = details;
  }

  override get reason(): string {
    return this.error;
  }

  override get details(): Record<string, unknown> {
    return this.extra;
  }
}

/** Reads and parses a JSON body; malformed JSON is a 400 that says where it broke. */
export async function readJson(req: IncomingMessage, limit = 1 << 20): Promise<unknown> {
  const body = await readBody(req, limit);
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    // V8 quotes up to ~20 characters of the body around an unexpected token: never echo them (into
    // the answer or the audit log), a body can carry a secret (an enrollment token, a password).
    const why = (e as Error).message;
    throw new HttpError(
      400,
      'malformed_json',
      `request body is not valid JSON: ${/["']/.test(why) ? 'unexpected token' : why}`,
    );
  }
}

/** Reads a request body up to `limit` bytes; larger bodies are refused (413), never buffered whole. */
export function readBody(req: IncomingMessage, limit = 1 << 20): Promise<Buffer> {
  return readBodyBytes(req, { limit });
}

/**
 * The one mapping from an error to an HTTP answer. A {@link NevertrustError} below 500 is the
 * caller's fault: its status, reason and message. A broken percent-encoding is a 400. Anything else
 * (a status of 500 or more, a plain Error) is ours: 500 with a fixed message, `log` true.
 */
export function errorAnswer(e: unknown): { status: number; body: Record<string, unknown>; log: boolean } {
  if (isNevertrustError(e) && e.expose)
    return { status: e.status, body: { error: e.reason, message: e.message, ...e.details }, log: false };
  // A path or query with broken percent-encoding is the caller's mistake, never a 500.
  if (e instanceof URIError)
    return {
      status: 400,
      body: { error: 'bad_request', message: 'malformed percent-encoding in the request' },
      log: false,
    };
  return { status: 500, body: { error: 'internal', message: 'internal error' }, log: true };
}

/**
 * Answers one request through `router`: 404/405 for unknown routes, and every error through
 * {@link errorAnswer} (internals only in the log); a {@link refusal} goes to the router's refusal
 * hooks first. Returns a low-cardinality route label for metrics.
 *
 * @example
 * ```ts
 * http.createServer((req, res) => void dispatch(router, req, res, (err, path) => log.error({ err, path })));
 * ```
 */
export async function dispatch(
  router: Router,
  req: IncomingMessage,
  res: ServerResponse,
  logError: (err: unknown, path: string) => void,
): Promise<string> {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://local');
  } catch {
    sendJson(res, 400, { error: 'bad_request', message: 'malformed request target' });
    return 'unmatched';
  }
  const route = router.match(req.method ?? 'GET', url.pathname);
  try {
    if (route === undefined) sendJson(res, 404, { error: 'not_found', message: `no route for ${url.pathname}` });
    else if (route === 405)
      sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method} not allowed on ${url.pathname}` });
    else await route(req, res, url);
  } catch (e) {
    const answer = errorAnswer(e);
    const note = isNevertrustError(e) && !answer.log ? refusalNotes.get(e) : undefined;
    if (note && isNevertrustError(e)) router.refused(req, url, e, note, (err) => logError(err, url.pathname));
    if (answer.log) logError(e, url.pathname);
    if (!res.headersSent) {
      // A body left unread (e.g. over the limit) is not drained forever: answer, then close.
      sendJson(res, answer.status, answer.body, { ...note?.headers, ...(req.complete ? {} : { connection: 'close' }) });
    } else if (answer.log) res.destroy();
  }
  return typeof route === 'function' ? url.pathname.split('/').slice(0, 3).join('/') : 'unmatched';
}
