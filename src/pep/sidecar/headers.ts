/**
 * Which headers cross the sidecar. Hop-by-hop headers (RFC 9110 §7.6.1) and everything named in
 * `Connection` stay on their hop; HTTP/2 pseudo-headers are turned back into HTTP/1.1 terms; and
 * identity headers a client could forge never reach the app — the sidecar adds its own.
 */
import { type IncomingHttpHeaders, type OutgoingHttpHeaders, STATUS_CODES } from 'node:http';
import { NevertrustError } from '../../errors.js';
import { PERSON_ASSERTION_HEADER } from '../assertion/wire.js';

/** The content type of every body the sidecar writes itself (errors and refusals). */
export const JSON_TYPE = { 'content-type': 'application/json' } as const;

// `expect` too: the sidecar answers `100-continue` itself (node:http does), so it ends here.
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);
const IDENTITY = /^(x-nevertrust-|x-forwarded-client-cert$|x-client-cert$|x-spiffe-)/;

/** Whether a header carries identity that only the sidecar may assert to the app. */
export function isIdentityHeader(name: string): boolean {
  return IDENTITY.test(name);
}

/**
 * Which identity header a verified mTLS caller may pass to the app: the access proxy's person
 * assertion (`x-nevertrust-jwt-assertion`) from a SPIFFE ID in `accessProxies`, nothing from anyone
 * else. One Set lookup per request; with no access proxies configured, a constant `undefined`.
 *
 * @example
 * ```ts
 * const pass = personAssertionPass(['spiffe://example.org/ns/access/sa/access-proxy']);
 * forwardHeaders(req.headers, { stripIdentity: true, passIdentity: pass(peerSpiffeId) });
 * ```
 */
export function personAssertionPass(
  accessProxies: readonly string[],
): (peer: string | undefined) => string | undefined {
  if (accessProxies.length === 0) return () => undefined;
  const listed = new Set(accessProxies);
  return (peer) => (peer !== undefined && listed.has(peer) ? PERSON_ASSERTION_HEADER : undefined);
}

export interface ForwardOptions {
  /** Drop identity headers (requests from clients). */
  stripIdentity: boolean;
  /**
   * The one identity header kept despite `stripIdentity`: the person assertion, when the caller is
   * a listed access proxy (see {@link personAssertionPass}). Unset for everyone else.
   */
  passIdentity?: string;
  /** Keep `te: trailers` (HTTP/2 to the app, which gRPC needs). */
  keepTeTrailers?: boolean;
  /** Keep `connection: upgrade` and `upgrade` (a WebSocket handshake being passed on). */
  keepUpgrade?: boolean;
}

/**
 * The headers to pass on, from either HTTP/1.1 or HTTP/2 (`:authority` becomes `host`).
 *
 * @example
 * ```ts
 * const headers = forwardHeaders(req.headers, { stripIdentity: true });
 * ```
 */
export function forwardHeaders(h: IncomingHttpHeaders, opts: ForwardOptions): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const conn = typeof h.connection === 'string' ? h.connection.toLowerCase().split(/\s*,\s*/) : [];
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (k.charCodeAt(0) === 58 /* ':' */) {
      if (k === ':authority' && h.host === undefined) out.host = String(v);
      continue;
    }
    if (HOP.has(k) || conn.includes(k)) {
      if (opts.keepTeTrailers && k === 'te' && v === 'trailers') out.te = v;
      if (opts.keepUpgrade && k === 'upgrade') out.upgrade = String(v);
      continue;
    }
    if (opts.stripIdentity && IDENTITY.test(k) && k !== opts.passIdentity) continue;
    out[k] = v;
  }
  if (opts.keepUpgrade && out.upgrade !== undefined) out.connection = 'Upgrade';
  return out;
}

/** Characters a header value may hold on the wire (RFC 9110 field-value: no CR, LF or NUL). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Header names and methods: RFC 9110 tokens. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A request target: visible characters only (a space or a control character would end the request line). */
const TARGET = /^[\x21-\x7e\x80-\xff]+$/;

/** A header the sidecar was asked to send cannot be written (its name or value has a forbidden character). */
export class HeaderValueError extends NevertrustError<'ERR_SIDECAR_HEADER_VALUE'> {
  override readonly name = 'HeaderValueError';
  readonly code = 'ERR_SIDECAR_HEADER_VALUE';
  constructor(message: string) {
    super(message, { status: 400 });
  }
}

/**
 * Serializes a request head: request line, headers, blank line, to be written as latin1 (each
 * character one byte, as node:http does). What came from Node's parser cannot hold CR or LF; what
 * the sidecar adds (a user name from a JWT claim, say) is checked here, so nothing can be smuggled.
 *
 * @throws {HeaderValueError} for a method or name that is not a token, a target with a space or a
 *   control character, or a value with CR, LF, NUL or a character beyond latin1
 */
export function requestHead(method: string, path: string, headers: OutgoingHttpHeaders): string {
  if (!TOKEN.test(method)) throw new HeaderValueError(`method not allowed: ${JSON.stringify(method)}`);
  if (!TARGET.test(path)) throw new HeaderValueError('request target has a character HTTP/1.1 cannot carry');
  let s = `${method} ${path} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    if (!TOKEN.test(k)) throw new HeaderValueError(`header name not allowed: ${JSON.stringify(k)}`);
    for (const one of Array.isArray(v) ? v : [v]) {
      const value = String(one);
      if (!FIELD_VALUE.test(value))
        throw new HeaderValueError(`header ${k}: value has a character HTTP/1.1 cannot carry`);
      s += `${k}: ${value}\r\n`;
    }
  }
  return `${s}\r\n`;
}

/**
 * Serializes a response head: status line, headers, blank line; written as latin1 like
 * {@link requestHead}. Names and values are the app's as llhttp parsed them (no CR or LF) or the
 * sidecar's own.
 */
export function responseHead(status: number, message: string, headers: OutgoingHttpHeaders): string {
  let s = `HTTP/1.1 ${status} ${message || STATUS_CODES[status] || ''}\r\n`;
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const one of v) s += `${k}: ${one}\r\n`;
    else s += `${k}: ${v}\r\n`;
  }
  return `${s}\r\n`;
}

/** A whole response of the sidecar's own (an error or a refusal): head with the body's length, then the body. */
export function rawResponse(status: number, headers: OutgoingHttpHeaders, body: string): string {
  return responseHead(status, '', { ...headers, 'content-length': Buffer.byteLength(body) }) + body;
}
