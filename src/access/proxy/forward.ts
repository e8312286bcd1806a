/**
 * Passing an allowed request on to the app, streaming both ways: hop-by-hop and every client-sent
 * identity header (`x-nevertrust-*`, any case: node lower-cases names) dropped, `X-Forwarded-*` set
 * by us, `Host` rewritten unless `preserve_host`, the route's header edits, then our assertion.
 * WebSocket handshakes are passed on the same way and then tunnelled as raw bytes (the app's frame
 * boundaries followed, so the proxy can end the socket with its own close frame: live.ts).
 */
import {
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  request as httpRequest,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { PERSON_ASSERTION_HEADER } from '../../pep/assertion/wire.js';
import { forwardHeaders, rawResponse, responseHead } from '../../pep/sidecar/headers.js';
import type { RouteConfig } from './config.js';
import { joinWebSocket, type LiveSubject, type WebSocketJoin } from './live.js';
import { type Answer, refusalAnswer } from './pages.js';
import type { Upstream } from './upstream.js';

/** What forwarding needs besides the request. */
export interface ForwardTarget {
  route: RouteConfig;
  upstream: Upstream;
  /** The normalized path (what was decided) and the client's query, as sent on. */
  pathAndQuery: string;
  /** The client's address (X-Forwarded-For: ours replaces any the client sent). */
  ip: string;
  /** The signed person assertion, when the proxy signs them. */
  assertion?: string;
  /** The person's credential, consumed here: never passed on (the assertion says who it is). */
  credential: { cookies: readonly string[]; authorization: boolean };
  /** What was allowed, for the live-connection registry (decided again on a policy change or signal). */
  live?: LiveSubject;
}

/** The `Cookie` header without the named cookies; undefined when none is left. */
export function withoutCookies(header: string | undefined, names: readonly string[]): string | undefined {
  if (header === undefined || names.length === 0) return header;
  const kept = header.split(/;\s*/).filter((c) => {
    const eq = c.indexOf('=');
    return c.length > 0 && !names.includes((eq < 0 ? c : c.slice(0, eq)).trim());
  });
  return kept.length > 0 ? kept.join('; ') : undefined;
}

/**
 * The app's answer headers for the browser: hop-by-hop removed, and no `Set-Cookie` for the proxy's
 * own credential cookies — an app shares the proxy's origin, and must not plant a session (its own,
 * or an attacker's) in the person's browser.
 */
export function downstreamHeaders(
  h: IncomingHttpHeaders,
  credential: ForwardTarget['credential'],
  upgrade = false,
): OutgoingHttpHeaders {
  const out = forwardHeaders(h, { stripIdentity: false, keepUpgrade: upgrade });
  const set = out['set-cookie'];
  if (Array.isArray(set) && credential.cookies.length > 0) {
    const kept = set.filter((c) => !credential.cookies.includes(c.slice(0, c.indexOf('=')).trim()));
    if (kept.length === 0) delete out['set-cookie'];
    else if (kept.length !== set.length) out['set-cookie'] = kept;
  }
  return out;
}

/** The headers for the app. */
export function upstreamHeaders(req: IncomingMessage, t: ForwardTarget, upgrade: boolean): OutgoingHttpHeaders {
  const h = forwardHeaders(req.headers, { stripIdentity: true, keepUpgrade: upgrade });
  const host = req.headers.host ?? t.route.from.host;
  // The client's own forwarding headers are not believed: the proxy is the edge.
  delete h.forwarded;
  delete h['x-real-ip'];
  h['x-forwarded-for'] = t.ip;
  h['x-forwarded-proto'] = 'https';
  h['x-forwarded-host'] = host;
  h.host = t.route.preserve_host ? host : t.upstream.authority;
  const cookie = withoutCookies(req.headers.cookie, t.credential.cookies);
  if (cookie === undefined) delete h.cookie;
  else h.cookie = cookie;
  if (t.credential.authorization) delete h.authorization;
  for (const name of t.route.headers.remove) delete h[name.toLowerCase()];
  for (const [name, value] of Object.entries(t.route.headers.set)) h[name.toLowerCase()] = value;
  // Last: no route setting can remove or replace the assertion, nor forge one.
  delete h[PERSON_ASSERTION_HEADER];
  if (t.assertion) h[PERSON_ASSERTION_HEADER] = t.assertion;
  return h;
}

/** The request to the app, on the route's agent (for a sidecar: its mTLS handshake; an upgraded socket leaves the pool). */
function upstreamRequest(req: IncomingMessage, t: ForwardTarget, upgrade: boolean): ClientRequest {
  const up = t.upstream;
  return (up.protocol === 'https:' ? httpsRequest : httpRequest)({
    host: up.hostname,
    port: up.port,
    method: req.method,
    path: t.pathAndQuery,
    headers: upstreamHeaders(req, t, upgrade),
    agent: up.agent,
    timeout: t.route.timeout_ms,
  });
}

/** What the client is told when the app cannot answer (never the address or the error behind it). */
const UPSTREAM_FAILURE = {
  502: { error: 'bad_gateway', reason: 'the application could not be reached' },
  504: { error: 'upstream_timeout', reason: 'the application did not answer in time' },
} as const;

function send(res: ServerResponse, a: Answer): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(a.status, a.headers).end(a.body);
}

/**
 * Forwards one request; answers 502 (app unreachable or refused the connection) or 504 (timeout)
 * itself when the app's answer has not started.
 */
export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  t: ForwardTarget,
  log: (m: string, f?: Record<string, unknown>) => void,
): void {
  const out = upstreamRequest(req, t, false);
  let failed = false;
  const fail = (status: 502 | 504, why: string) => {
    if (failed) return;
    failed = true;
    log('upstream failed', { route: t.route.name, status, error: why });
    out.destroy();
    send(res, refusalAnswer(req, status, UPSTREAM_FAILURE[status]));
  };
  out.on('timeout', () => fail(504, `no answer within ${t.route.timeout_ms} ms`));
  out.on('error', (e) => fail(502, e.message));
  out.on('response', (r) => {
    res.writeHead(
      r.statusCode ?? 502,
      r.statusMessage,
      downstreamHeaders(r.headers, t.credential) as Record<string, string | string[]>,
    );
    r.pipe(res);
    r.on('error', () => res.destroy());
  });
  // The client went away: stop the app's work too.
  res.on('close', () => {
    if (!res.writableFinished) out.destroy();
  });
  req.pipe(out);
}

/**
 * Passes an allowed WebSocket handshake on and, once the app switches protocols, joins the two
 * connections. Anything else from the app is answered on the client's socket, which is then closed.
 */
export function forwardUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  t: ForwardTarget,
  log: (m: string, f?: Record<string, unknown>) => void,
  onJoin?: (join: WebSocketJoin) => void,
): void {
  const out = upstreamRequest(req, t, true);
  const fail = (status: 502 | 504, why: string) => {
    // The detail (addresses, errno) goes to the log; the client gets the same answer as a request's.
    log('upstream upgrade failed', { route: t.route.name, status, error: why });
    out.destroy();
    if (!socket.destroyed) socket.end(raw(refusalAnswer(req, status, UPSTREAM_FAILURE[status], true)), 'latin1');
  };
  out.on('timeout', () => fail(504, `no answer within ${t.route.timeout_ms} ms`));
  out.on('error', (e) => fail(502, e.message));
  out.on('upgrade', (r, upSocket, upHead) => {
    out.setTimeout(0);
    upSocket.setTimeout(0);
    socket.write(responseHead(101, r.statusMessage ?? '', downstreamHeaders(r.headers, t.credential, true)), 'latin1');
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    onJoin?.(joinWebSocket(socket, upSocket, upHead));
  });
  out.on('response', (r) => {
    // The app declined to switch: relay its status, then close.
    r.resume();
    socket.end(rawResponse(r.statusCode ?? 502, { connection: 'close' }, ''), 'latin1');
  });
  socket.on('error', () => out.destroy());
  out.end();
}

/** An answer on a raw socket. */
export function raw(a: Answer): string {
  return rawResponse(a.status, { ...a.headers, connection: 'close' }, a.body);
}
