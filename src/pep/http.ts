/**
 * Small HTTP helpers for the decision path: a JSON body reader that is bounded in size and time
 * (a slow client must not hold a decision open), and target parsing.
 */
import type { IncomingMessage } from 'node:http';
import { NevertrustError } from '../errors.js';
import type { AccessRequest } from '../policy/request.js';

/** A request body that cannot be used; `status` is what to answer (400, 408, 413). */
export class BodyError extends NevertrustError<'ERR_BODY_BAD_JSON' | 'ERR_BODY_TIMEOUT' | 'ERR_BODY_TOO_LARGE'> {
  override readonly name = 'BodyError';
  readonly code: 'ERR_BODY_BAD_JSON' | 'ERR_BODY_TIMEOUT' | 'ERR_BODY_TOO_LARGE';
  constructor(
    status: 400 | 408 | 413,
    /** The wire reason (`error` of the JSON answer) decision clients already switch on. */
    readonly wire: 'bad_json' | 'body_timeout' | 'body_too_large',
    message: string,
  ) {
    super(message, { status });
    this.code =
      wire === 'bad_json' ? 'ERR_BODY_BAD_JSON' : wire === 'body_timeout' ? 'ERR_BODY_TIMEOUT' : 'ERR_BODY_TOO_LARGE';
  }

  override get reason(): string {
    return this.wire;
  }
}

/**
 * Reads and parses a JSON body within `limit` bytes and `timeoutMs`.
 *
 * @example
 * ```ts
 * const body = await readJsonBody(req, { limit: 64 * 1024, timeoutMs: 2000 });
 * ```
 * @throws {BodyError} for malformed JSON (400), a slow body (408) or a large one (413)
 */
export function readJsonBody(req: IncomingMessage, opts: { limit: number; timeoutMs: number }): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: BodyError | undefined, value?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      if (err) {
        req.resume();
        reject(err);
      } else resolve(value);
    };
    const timer = setTimeout(
      () => finish(new BodyError(408, 'body_timeout', `request body not received within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > opts.limit) finish(new BodyError(413, 'body_too_large', `request body over ${opts.limit} bytes`));
      else chunks.push(c);
    };
    const onEnd = () => {
      const text =
        chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8');
      if (text.length === 0) return finish(undefined, undefined);
      try {
        finish(undefined, JSON.parse(text));
      } catch (e) {
        finish(new BodyError(400, 'bad_json', `malformed JSON: ${(e as Error).message}`));
      }
    };
    const onError = () => finish(new BodyError(400, 'bad_json', 'request body aborted'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * Turns a target as configured or sent by a proxy (a SPIFFE ID or a service name) into the
 * access request's `target`.
 *
 * @example
 * ```ts
 * targetOf('spiffe://example.org/ns/payments/sa/payment-service'); // { spiffe_id: '…' }
 * targetOf('payment-service');                                     // { service: 'payment-service' }
 * ```
 */
export function targetOf(t: string | undefined): AccessRequest['target'] {
  if (t === undefined || t === '') return undefined;
  return t.startsWith('spiffe://') ? { spiffe_id: t } : { service: t };
}

/** The remote address without an IPv4-mapped IPv6 prefix. */
export function plainAddress(a: string | undefined): string | undefined {
  return a?.startsWith('::ffff:') ? a.slice(7) : a;
}
