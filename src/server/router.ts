/**
 * A deliberately small HTTP router over node:http: exact routes in a Map (one lookup on the hot path)
 * and prefix routes for path-parameter APIs such as the OPA Data API. Fastify would add a few µs per
 * request that the decision API cannot afford.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export class Router {
  private readonly exact = new Map<string, Handler>();
  private readonly prefixes: { method: string; prefix: string; handler: Handler }[] = [];
  private readonly knownPaths = new Set<string>();

  on(method: string, path: string, handler: Handler): this {
    this.exact.set(`${method} ${path}`, handler);
    this.knownPaths.add(path);
    return this;
  }

  onPrefix(method: string, prefix: string, handler: Handler): this {
    this.prefixes.push({ method, prefix, handler });
    return this;
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

export class BodyTooLargeError extends Error {
  readonly code = 'ERR_BODY_TOO_LARGE';
}

/** An error that is the caller's fault: answered with `status` and a JSON body `{error, message, …details}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Reads and parses a JSON body; malformed JSON is a 400 that says where it broke. */
export async function readJson(req: IncomingMessage, limit = 1 << 20): Promise<unknown> {
  const body = await readBody(req, limit);
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new HttpError(400, 'malformed_json', `request body is not valid JSON: ${(e as Error).message}`);
  }
}

/** Reads a request body up to `limit` bytes; larger bodies are refused, never buffered whole. */
export function readBody(req: IncomingMessage, limit = 1 << 20): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new BodyTooLargeError(`request body over ${limit} bytes`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new BodyTooLargeError(`request body over ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolvePromise(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
