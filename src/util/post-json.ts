/**
 * One JSON POST for every webhook-like sender (audit sinks, the ingestion shipper, checkpoint and
 * anomaly webhooks): the same headers, timeouts on both the head and the body, the response always
 * read (so the connection goes back to the pool), and a non-2xx answer as an error that names the URL
 * and status — senders that fire and forget used to drop those silently.
 */
import { type Dispatcher, request } from 'undici';
import { NevertrustError } from '../errors.js';

export interface PostJsonOptions {
  /** Extra headers, e.g. an API key; `content-type: application/json` is always set. */
  headers?: Record<string, string>;
  /** Milliseconds for the response head and, separately, for its body. Default 5,000. */
  timeoutMs?: number;
  /** An undici dispatcher (mTLS agent, pool) instead of the global one. */
  dispatcher?: Dispatcher;
}

export interface PostJsonResponse {
  status: number;
  /** The response body as text (UTF-8). */
  text: string;
}

/** A webhook that answered outside 2xx; `text` is the start of its body, for the log. */
export class PostJsonStatusError extends NevertrustError<'ERR_WEBHOOK_STATUS'> {
  override readonly name = 'PostJsonStatusError';
  readonly code = 'ERR_WEBHOOK_STATUS';
  constructor(
    readonly url: string,
    /** The status the webhook answered (not ours: ours is 502, an upstream failure). */
    readonly answered: number,
    readonly text: string,
  ) {
    super(`${url} answered ${answered}${text ? `: ${text.slice(0, 300)}` : ''}`, { status: 502 });
  }
}

/**
 * POSTs `body` as JSON and returns the status and body text, whatever the status.
 *
 * @example
 * ```ts
 * const { status, text } = await postJsonRaw('http://127.0.0.1:8181/v1/audit/events', { events }, { headers: { authorization: `Bearer ${t}` } });
 * ```
 */
export async function postJsonRaw(url: string, body: unknown, opts: PostJsonOptions = {}): Promise<PostJsonResponse> {
  const timeout = opts.timeoutMs ?? 5000;
  const res = await request(url, {
    method: 'POST',
    headers: { ...opts.headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    headersTimeout: timeout,
    bodyTimeout: timeout,
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
  });
  return { status: res.statusCode, text: await res.body.text() };
}

/**
 * POSTs `body` as JSON; resolves with the response text on 2xx, rejects with
 * {@link PostJsonStatusError} otherwise.
 *
 * @example
 * ```ts
 * postJson(webhookUrl, { signal }).catch((err) => log.warn({ err }, 'anomaly webhook failed'));
 * ```
 */
export async function postJson(url: string, body: unknown, opts: PostJsonOptions = {}): Promise<string> {
  const r = await postJsonRaw(url, body, opts);
  if (r.status < 200 || r.status >= 300) throw new PostJsonStatusError(url, r.status, r.text);
  return r.text;
}
