/**
 * The inbound leg: terminates mTLS (HTTP/2 or HTTP/1.1, chosen by ALPN), decides every request —
 * WebSocket handshakes included — against the local policy snapshot, strips identity headers a
 * client may have forged, and passes allowed requests to the app on its local port with the
 * verified caller in `x-nevertrust-*` headers. Bodies are streamed (pipe: backpressure both ways).
 * The one exception to the stripping: a listed access proxy's person assertion (`access_proxies`).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import {
  type ClientHttp2Session,
  connect as http2Connect,
  createSecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ASSERTION_HEADER } from '../assertion.js';
import type { DecisionRecorder, SnapshotProvider } from '../decision.js';
import { type CallerIdentity, createEnforcer, type EnforcementResult, refusalOf } from '../middleware/index.js';
import { attachMtls, authorizeAny, tlsOptionsFrom, type X509SvidSource } from '../mtls/index.js';
import { type InboundConfig, splitHostPort } from './config.js';
import { forwardHeaders, JSON_TYPE, personAssertionPass, requestHead } from './headers.js';
import { AppPool } from './app-pool.js';
import { forwardToApp } from './h2-forward.js';
import { Http1Connections, type Http1Request, type Http1Verdict } from './http1.js';
import type { ConnectionGuard } from './revocation.js';
import { splice, writeRawResponse } from './tunnel.js';
import { listen } from '../../util/listen.js';

/** What the inbound leg needs besides its config. */
export interface InboundDeps {
  source: X509SvidSource;
  snapshot: SnapshotProvider;
  recorder?: DecisionRecorder;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** The signed identity assertion for a caller (`x-nevertrust-assertion`); a failure refuses the request. */
  assert?: (identity: CallerIdentity) => Promise<string>;
  /** Revocation signals: refuses revoked peers after the handshake and cuts live ones (./revocation.ts). */
  guard?: ConnectionGuard;
}

export interface RunningLeg {
  port: number;
  close(): Promise<void>;
}

type Allowed = Extract<EnforcementResult, { ok: true }>;
type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

const BAD_GATEWAY = '{"error":"bad_gateway"}';

/**
 * Starts the inbound listener.
 *
 * @example
 * ```ts
 * const leg = await startInbound(config.inbound, { source, snapshot: () => watcher.current, log });
 * ```
 */
export async function startInbound(ib: InboundConfig, deps: InboundDeps): Promise<RunningLeg> {
  const { source, log } = deps;
  const app = splitHostPort(ib.app);
  const target = ib.target ?? source.svid.spiffeId.toString();
  const enforcer = createEnforcer({
    target,
    snapshot: deps.snapshot,
    bundles: source,
    trustedProxies: ib.trusted_proxies,
    recorder: deps.recorder,
    pep: 'sidecar',
  });
  const h2c = ib.app_protocol === 'h2c';
  // The person assertion crosses only from a listed access proxy, named by its verified certificate
  // (kind x509): never by a forwarded or bearer identity.
  const passOf = personAssertionPass(ib.access_proxies);
  const pass = (r: Allowed) => (r.identity.kind === 'x509' ? passOf(r.identity.spiffeId) : undefined);
  // Keep-alive connections to an HTTP/1.1 app, shared by HTTP/1.1 and HTTP/2 clients.
  const pool = h2c ? undefined : new AppPool(app);
  const upstream: Upstream = pool
    ? {
        forward: (req, res, headers) => forwardToApp(req, res, headers, { pool, app, timeoutMs: ib.timeout_ms, log }),
        close: () => pool.close(),
      }
    : h2cUpstream(ib, log);

  /**
   * The headers that tell the app who called: the verified peer, the decision, and (when
   * configured) the signed assertion. Calls `go` with them, or `refuse` when the assertion cannot
   * be made — the app must never get a request it cannot verify.
   */
  const withIdentity = (r: Allowed, headers: OutgoingHttpHeaders, go: () => void, refuse: () => void) => {
    if (r.identity.spiffeId) headers['x-nevertrust-peer-id'] = r.identity.spiffeId;
    else if (r.identity.user) headers['x-nevertrust-user'] = r.identity.user;
    headers['x-nevertrust-decision-id'] = r.decision.decision_id;
    if (!deps.assert) return go();
    deps.assert(r.identity).then(
      (token) => {
        headers[ASSERTION_HEADER] = token;
        go();
      },
      (e: Error) => {
        log('identity assertion unavailable; request refused', { error: e.message });
        refuse();
      },
    );
  };
  const UNAVAILABLE = '{"error":"assertion_unavailable"}';

  const server = createSecureServer(
    {
      ...tlsOptionsFrom(source),
      requestCert: true,
      rejectUnauthorized: true,
      allowHTTP1: true,
      minVersion: 'TLSv1.2',
    },
    (req, res) => {
      enforcer.check(req).then(
        (r) => {
          if (!r.ok) {
            req.resume();
            if (isGrpc(req)) return refuseGrpc(res, r);
            const f = refusalOf(r);
            res.writeHead(f.status, f.headers);
            res.end(f.body);
            return;
          }
          const headers = forwardHeaders(req.headers, {
            stripIdentity: true,
            passIdentity: pass(r),
            keepTeTrailers: h2c,
          });
          withIdentity(
            r,
            headers,
            () => upstream.forward(req, res, headers),
            () => {
              req.resume();
              if (!res.headersSent) res.writeHead(503, JSON_TYPE).end(UNAVAILABLE);
            },
          );
        },
        () => {
          // check() turns its own failures into refusals; anything else still fails closed, without detail.
          if (!res.headersSent) res.writeHead(403, JSON_TYPE).end('{"error":"forbidden"}');
        },
      );
    },
  );
  // HTTP/1.1 connections to an HTTP/1.1 app are served by the leaner path of ./http1.ts; HTTP/2
  // (and everything for an h2c app) stays with node:http2. The server's own connection listener is
  // the only one so far: it is kept for those and wrapped, so the mTLS check below still runs
  // after it, synchronously, before any byte is read.
  let h1: Http1Connections | undefined;
  const viaNode = server.listeners('secureConnection') as ((s: TLSSocket) => void)[];
  if (pool && viaNode.length === 1) {
    const node = viaNode[0] as (s: TLSSocket) => void;
    const decide = async (req: Http1Request): Promise<Http1Verdict> => {
      const r = await enforcer.check(req);
      if (!r.ok) return { ok: false, ...refusalOf(r) };
      const headers = forwardHeaders(req.headers, { stripIdentity: true, passIdentity: pass(r) });
      return new Promise((resolve) =>
        withIdentity(
          r,
          headers,
          () => resolve({ ok: true, headers }),
          () => resolve({ ok: false, status: 503, headers: JSON_TYPE, body: UNAVAILABLE }),
        ),
      );
    };
    const conns = new Http1Connections({ app, timeoutMs: ib.timeout_ms, decide, log }, pool);
    h1 = conns;
    server.removeListener('secureConnection', node);
    server.on('secureConnection', (s: TLSSocket) => (s.alpnProtocol === 'h2' ? node.call(server, s) : conns.serve(s)));
  }
  attachMtls(server, source, { authorize: authorizeAny() });
  const guard = deps.guard;
  if (guard) {
    // After the SPIFFE checks, still in the same tick as the handshake: nothing has been read yet.
    server.on('session', (s: Http2Session) => guard.session(s));
    server.on('secureConnection', (s: TLSSocket) => void guard.admit(s));
  }

  // WebSocket: the handshake is an HTTP/1.1 request like any other — decided, stripped, asserted —
  // and once the app answers, the sidecar only copies bytes. Other upgrades (h2c) are refused.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      writeRawResponse(socket, 400, JSON_TYPE, '{"error":"unsupported_upgrade"}');
      return;
    }
    enforcer.check(req).then(
      (r) => {
        if (!r.ok) {
          const f = refusalOf(r);
          writeRawResponse(socket, f.status, f.headers, f.body);
          return;
        }
        const headers = forwardHeaders(req.headers, { stripIdentity: true, passIdentity: pass(r), keepUpgrade: true });
        const connect = () => {
          let handshake: string;
          try {
            handshake = requestHead(req.method ?? 'GET', req.url ?? '/', headers);
          } catch (e) {
            log('WebSocket refused: a header for the app cannot be written', { error: (e as Error).message });
            writeRawResponse(socket, 400, JSON_TYPE, '{"error":"unrepresentable_header"}');
            return;
          }
          const up = netConnect(app.port, app.host);
          up.setNoDelay(true);
          const timer = setTimeout(() => up.destroy(new Error('connect timeout')), ib.timeout_ms);
          let connected = false;
          up.once('connect', () => {
            connected = true;
            clearTimeout(timer);
            up.write(handshake, 'latin1');
            if (head.length > 0) up.write(head);
            splice(socket, up);
          });
          up.once('error', (e) => {
            clearTimeout(timer);
            if (connected) return;
            log('upstream (app) WebSocket connection failed', { error: e.message });
            writeRawResponse(socket, 502, JSON_TYPE, BAD_GATEWAY);
          });
        };
        withIdentity(r, headers, connect, () => writeRawResponse(socket, 503, JSON_TYPE, UNAVAILABLE));
      },
      () => writeRawResponse(socket, 403, JSON_TYPE, '{"error":"forbidden"}'),
    );
  });

  // HTTP/1.1 connection limits (the HTTP/2 server hands HTTP/1.1 connections to node:http).
  Object.assign(server, { keepAliveTimeout: 60_000, headersTimeout: 10_000, requestTimeout: ib.timeout_ms });
  server.setTimeout(120_000); // idle connections and HTTP/2 sessions
  const sockets = new Set<TLSSocket>();
  const sessions = new Set<Http2Session>();
  // Small responses go out at once: without this, Nagle's algorithm and delayed ACKs add tens of ms.
  server.on('connection', (s: Socket) => s.setNoDelay(true));
  server.on('secureConnection', (s: TLSSocket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('session', (s: Http2Session) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });

  const port = await listen(server, splitHostPort(ib.listen));
  log('sidecar inbound (mTLS, HTTP/2 and HTTP/1.1) listening', {
    port,
    app: ib.app,
    target,
    app_protocol: ib.app_protocol,
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        h1?.close();
        // Graceful: HTTP/2 sessions get GOAWAY and finish their streams; HTTP/1.1 connections get
        // a moment to finish, then go.
        for (const s of sessions) s.close();
        setTimeout(() => {
          for (const s of sockets) s.destroy();
          upstream.close();
        }, 1000).unref();
      }),
  };
}

interface Upstream {
  forward(req: AnyRequest, res: AnyResponse, headers: OutgoingHttpHeaders): void;
  close(): void;
}

function isGrpc(req: AnyRequest): boolean {
  return (req.headers['content-type'] ?? '').startsWith('application/grpc');
}

/**
 * gRPC clients read the outcome from `grpc-status`, not from the HTTP status: a refusal is a
 * trailers-only response (PERMISSION_DENIED, or UNAUTHENTICATED for a missing identity) with the
 * reason code as `grpc-message`.
 */
function refuseGrpc(res: AnyResponse, r: Extract<EnforcementResult, { ok: false }>): void {
  const headers = {
    'content-type': 'application/grpc',
    'grpc-status': r.status === 401 ? '16' : '7',
    'grpc-message': r.code,
    'x-nevertrust-decision-id': r.decision.decision_id,
  };
  if ('stream' in res) res.stream.respond({ ':status': 200, ...headers }, { endStream: true });
  else (res as ServerResponse).writeHead(200, headers).end();
}

function badGateway(res: AnyResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // A writeHead that threw may have left the app's headers behind.
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  (res as ServerResponse).writeHead(502, JSON_TYPE).end(BAD_GATEWAY);
}

/** HTTP/2 without TLS to the app (gRPC): one multiplexed session, trailers passed through. */
function h2cUpstream(ib: InboundConfig, log: InboundDeps['log']): Upstream {
  const authority = `http://${ib.app}`;
  let session: ClientHttp2Session | undefined;
  const get = (): ClientHttp2Session => {
    if (session && !session.closed && !session.destroyed) return session;
    const s = http2Connect(authority);
    s.on('error', (e) => log('upstream (app) HTTP/2 session failed', { error: e.message }));
    s.once('close', () => {
      if (session === s) session = undefined;
    });
    s.unref();
    session = s;
    return s;
  };
  return {
    forward(req, res, headers) {
      let us: ReturnType<ClientHttp2Session['request']>;
      try {
        const { host, ...rest } = headers;
        us = get().request({
          ...rest,
          ':method': req.method,
          ':path': req.url,
          ':authority': String(host ?? ib.app),
        });
      } catch (e) {
        log('upstream (app) request failed', { error: (e as Error).message });
        return badGateway(res);
      }
      us.setTimeout(ib.timeout_ms, () => us.close(0x8 /* CANCEL */));
      let responded = false;
      us.on('response', (h) => {
        responded = true;
        const status = Number(h[':status'] ?? 502);
        try {
          (res as ServerResponse).writeHead(status, forwardHeaders(h, { stripIdentity: false }));
        } catch (e) {
          // A head the client's protocol cannot carry: a 502, never an exception in this callback.
          log('upstream (app) response refused', { error: (e as Error).message });
          us.close(0x8 /* CANCEL */);
          badGateway(res);
          return;
        }
        us.pipe(res as ServerResponse);
      });
      us.on('trailers', (t) => res.addTrailers(forwardHeaders(t, { stripIdentity: false }) as Record<string, string>));
      us.on('error', (e) => {
        log('upstream (app) request failed', { error: e.message });
        badGateway(res);
      });
      us.on('close', () => {
        if (!responded) badGateway(res);
      });
      res.once('close', () => {
        if (!res.writableFinished && !us.closed) us.close(0x8);
      });
      (req as IncomingMessage).pipe(us);
    },
    close: () => session?.close(),
  };
}
