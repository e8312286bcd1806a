/**
 * Reading a request body, bounded in size (and optionally in time), for every server in the product:
 * the admin API, the decision API, the access proxy's own forms and the built-in provider's login.
 * A body over the limit is refused as soon as it is known to be (the declared length, or the bytes
 * seen so far) and the rest is discarded, never buffered; the socket is left open so that the 413
 * reaches the caller (answer it with `connection: close`).
 */
import type { IncomingMessage } from 'node:http';
import { NevertrustError } from '../errors.js';

type BodyWire = 'bad_json' | 'bad_form' | 'body_timeout' | 'body_too_large' | 'body_aborted';
type BodyCode =
  | 'ERR_BODY_BAD_JSON'
  | 'ERR_BODY_BAD_FORM'
  | 'ERR_BODY_TIMEOUT'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_BODY_ABORTED';

/** A request body that cannot be used; `status` is what to answer (400, 408, 413, 415). */
export class BodyError extends NevertrustError<BodyCode> {
  override readonly name = 'BodyError';
  readonly code: BodyCode;
  constructor(
    status: 400 | 408 | 413 | 415,
    /** The wire reason (`error` of a JSON answer) clients switch on. */
    readonly wire: BodyWire,
    message: string,
  ) {
    super(message, { status });
    this.code = `ERR_${wire.startsWith('body_') ? wire.toUpperCase() : `BODY_${wire.toUpperCase()}`}` as BodyCode;
  }

  override get reason(): string {
    return this.wire;
  }
}

export interface BodyLimits {
  /** Bytes; a longer body is a 413. */
  limit: number;
  /** A body not complete within this many milliseconds is a 408 (a slow client must not hold a handler). */
  timeoutMs?: number;
}

/**
 * The body's bytes.
 *
 * @example
 * const bytes = await readBody(req, { limit: 64 * 1024, timeoutMs: 2000 });
 * @throws {BodyError} 413 over the limit, 408 too slow, 400 aborted
 */
export function readBody(req: IncomingMessage, opts: BodyLimits): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: BodyError | undefined) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      if (err) {
        // Discard what is left so the answer can be written; the caller closes the connection.
        req.resume();
        reject(err);
      } else resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    };
    const tooLarge = () => new BodyError(413, 'body_too_large', `request body over ${opts.limit} bytes`);
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > opts.limit) finish(tooLarge());
      else chunks.push(c);
    };
    const onEnd = () => finish(undefined);
    const onError = () => finish(new BodyError(400, 'body_aborted', 'request body aborted'));
    if (Number(req.headers['content-length'] ?? 0) > opts.limit) {
      finish(tooLarge());
      return;
    }
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(
        () => finish(new BodyError(408, 'body_timeout', `request body not received within ${opts.timeoutMs} ms`)),
        opts.timeoutMs,
      );
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * A JSON body; `undefined` when empty.
 *
 * @example
 * const body = await readJsonBody(req, { limit: 64 * 1024, timeoutMs: 2000 });
 * @throws {BodyError} also 400 `bad_json` for malformed JSON (the message says where it broke)
 */
export async function readJsonBody(req: IncomingMessage, opts: BodyLimits): Promise<unknown> {
  const bytes = await readBody(req, opts);
  if (bytes.length === 0) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new BodyError(400, 'bad_json', `malformed JSON: ${(e as Error).message}`);
  }
}

/**
 * An HTML form body (`application/x-www-form-urlencoded`).
 *
 * @example
 * const form = await readFormBody(req, { limit: 16 * 1024 });
 * form.get('csrf');
 * @throws {BodyError} also 415 `bad_form` for another content type
 */
export async function readFormBody(req: IncomingMessage, opts: BodyLimits): Promise<URLSearchParams> {
  if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
    req.resume();
    throw new BodyError(415, 'bad_form', 'send an application/x-www-form-urlencoded form');
  }
  return new URLSearchParams((await readBody(req, opts)).toString('utf8'));
}
