/**
 * `nevertrust/middleware`: establishes who is calling, decides the request locally against the
 * policy snapshot in force, attaches the verified identity, records the decision, and refuses with
 * 401 (no identity) or 403 (denied) carrying a short reason code and the decision id — never
 * internals. One core ({@link createEnforcer}) with adapters for node:http, Express and Fastify.
 *
 * Identity, first that applies: the TLS peer's X.509-SVID; XFCC from a configured trusted proxy
 * (anyone else's is ignored and recorded); a JWT-SVID bearer token; a user's JWT from an OIDC
 * issuer (jose remote JWKS, issuer, audience and algorithm allow-list). A credential that is
 * present but invalid is refused; it never falls back to a weaker one.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';
import type { AccessRequest } from '../../policy/request.js';
import type { PolicySnapshot } from '../../policy/snapshot.js';
import { type BundleSource, JwtSvidError, validateJwtSvid } from '../../spiffe/index.js';
import { type DecisionRecorder, type EnforcedDecision, enforce, refuse, type SnapshotProvider } from '../decision.js';
import { plainAddress, targetOf } from '../http.js';
import { identityFromProxyHeaders, type TrustedProxy, TrustedProxies } from '../identity.js';
import { PeerAuthorizationError, authorizeAny, peerIdentity, verifyPeer } from '../mtls/index.js';

export type { DecisionRecorder, EnforcedDecision } from '../decision.js';
export { createSvidShipper, type SvidShipperOptions } from '../audit-shipping.js';

/** The verified caller attached to the request (`req.nevertrust`). */
export interface CallerIdentity {
  kind: 'x509' | 'xfcc' | 'jwt-svid' | 'user-jwt' | 'anonymous';
  spiffeId?: string;
  user?: string;
  claims?: JWTPayload;
}

/** Options of {@link createEnforcer}. */
export interface EnforcerOptions {
  /** This service: a SPIFFE ID or a service name (the policy target). */
  target: string;
  /** The policy snapshot in force; swap it atomically with {@link SnapshotHolder}. */
  snapshot: SnapshotProvider;
  /** Trust bundles for TLS peers (when not accepted by `createMtlsServer`), XFCC certificates and JWT-SVIDs. */
  bundles?: BundleSource;
  /**
   * Proxies whose XFCC / X-Client-Cert is believed, in the forms each is listed with (an address
   * alone: certificates only; `{address, identity: ['xfcc-uri']}` also a bare XFCC URI). Default: none.
   */
  trustedProxies?: readonly TrustedProxy[];
  /** Accept JWT-SVID bearer tokens for this audience. */
  jwtSvidAudience?: string;
  /** Accept users' JWTs from an OIDC issuer. */
  oidc?: { issuer: string; audience: string; jwksUri: string; algorithms: string[]; cooldownMs?: number };
  recorder?: DecisionRecorder;
  /** The enforcement point named in every decision record (default `middleware`; the sidecar says `sidecar`). */
  pep?: string;
}

/**
 * What the enforcer reads of a request: node:http's `IncomingMessage` and HTTP/2's compatibility
 * request both fit (on HTTP/2 `socket` is a proxy of the TLS socket, which is enough).
 */
export interface EnforceableRequest {
  method?: string;
  url?: string;
  headers: IncomingHttpHeaders;
  socket: Socket;
}

/** The outcome for one request. */
export type EnforcementResult =
  | { ok: true; identity: CallerIdentity; decision: EnforcedDecision }
  | { ok: false; status: 401 | 403; code: string; decision: EnforcedDecision };

/**
 * Holds the snapshot in force; `set` swaps it atomically (a decision sees the old or the new one,
 * never a mix), so snapshots can come from a `PolicyWatcher` or be streamed from the server.
 *
 * @example
 * ```ts
 * const holder = new SnapshotHolder(loadPolicies('policies/'));
 * watcher.on('reload', (s) => holder.set(s));
 * createEnforcer({ target, snapshot: holder.get });
 * ```
 */
export class SnapshotHolder {
  #snap: PolicySnapshot | undefined;
  constructor(initial?: PolicySnapshot) {
    this.#snap = initial;
  }
  set(s: PolicySnapshot | undefined): void {
    this.#snap = s;
  }
  readonly get = (): PolicySnapshot | undefined => this.#snap;
}

/**
 * The enforcement core: `check(req)` establishes the caller and decides.
 *
 * @example
 * ```ts
 * const enforcer = createEnforcer({ target: 'spiffe://example.org/ns/payments/sa/payment-service', snapshot: holder.get, bundles });
 * const r = await enforcer.check(req);
 * ```
 */
export function createEnforcer(opts: EnforcerOptions) {
  const proxies = new TrustedProxies(opts.trustedProxies ?? []);
  const target = targetOf(opts.target);
  const pep = opts.pep ?? 'middleware';
  const jwks = opts.oidc
    ? createRemoteJWKSet(new URL(opts.oidc.jwksUri), { cooldownDuration: opts.oidc.cooldownMs ?? 30_000 })
    : undefined;

  async function check(req: EnforceableRequest): Promise<EnforcementResult> {
    const ip = plainAddress(req.socket.remoteAddress);
    // The raw request target: the policy engine normalizes (and refuses what it cannot).
    const request: AccessRequest = { target, request: { method: req.method, path: req.url ?? '/' } };
    const ctx = { pep, ip, details: {} as Record<string, unknown> };
    const fail = (status: 401 | 403, code: string, reason: string): EnforcementResult => ({
      ok: false,
      status,
      code,
      decision: refuse(`${code}: ${reason}`, request, opts.recorder, ctx),
    });
    let identity: CallerIdentity = { kind: 'anonymous' };
    const sock = req.socket as TLSSocket;
    const tlsPeer = sock.encrypted ? peerIdentity(sock) : undefined;
    if (tlsPeer) identity = { kind: 'x509', spiffeId: tlsPeer.spiffeId.toString() };
    else if (sock.encrypted && opts.bundles && sock.getPeerCertificate?.()?.raw) {
      try {
        identity = { kind: 'x509', spiffeId: verifyPeer(sock, opts.bundles, authorizeAny()).spiffeId.toString() };
      } catch (e) {
        return fail(401, 'invalid_client_certificate', e instanceof PeerAuthorizationError ? e.code : 'invalid');
      }
    }
    if (identity.kind === 'anonymous') {
      const who = identityFromProxyHeaders(req.headers, ip, { proxies, bundles: opts.bundles });
      if (who.kind === 'invalid') return fail(401, 'invalid_forwarded_identity', who.reason);
      if (who.kind === 'none' && who.ignored) ctx.details.ignored_identity_headers = who.ignored;
      if (who.kind === 'ok') identity = { kind: 'xfcc', spiffeId: who.spiffeId };
    }
    const auth = req.headers.authorization;
    if (identity.kind === 'anonymous' && auth?.startsWith('Bearer ')) {
      const token = auth.slice(7).trim();
      if (opts.jwtSvidAudience && opts.bundles && isSpiffeToken(token)) {
        try {
          const v = await validateJwtSvid(token, opts.bundles, opts.jwtSvidAudience);
          identity = { kind: 'jwt-svid', spiffeId: v.spiffeId.toString(), claims: v.claims };
        } catch (e) {
          return fail(401, 'invalid_token', e instanceof JwtSvidError ? e.code : 'invalid JWT-SVID');
        }
      } else if (opts.oidc && jwks) {
        try {
          const { payload } = await jwtVerify(token, jwks, {
            issuer: opts.oidc.issuer,
            audience: opts.oidc.audience,
            algorithms: opts.oidc.algorithms,
          });
          identity = {
            kind: 'user-jwt',
            user: typeof payload.sub === 'string' ? payload.sub : undefined,
            claims: payload,
          };
        } catch (e) {
          return fail(401, 'invalid_token', (e as { code?: string }).code ?? 'invalid JWT');
        }
      } else return fail(401, 'invalid_token', 'bearer tokens are not accepted here');
    }
    ctx.details.identity = identity.kind;
    if (identity.spiffeId) request.source = { spiffe_id: identity.spiffeId, ip };
    else if (identity.kind === 'user-jwt')
      request.source = { user: identity.user, claims: identity.claims as Record<string, unknown>, ip };
    else request.source = { ip };
    const d = enforce(opts.snapshot, request, opts.recorder, ctx);
    if (d.allow) return { ok: true, identity, decision: d };
    if (identity.kind === 'anonymous') return { ok: false, status: 401, code: 'unauthenticated', decision: d };
    return { ok: false, status: 403, code: d.decision === 'step_up' ? 'step_up_required' : 'forbidden', decision: d };
  }
  return { check };
}

/** JWT-SVIDs carry a `spiffe://` subject; peek without trusting (the validator checks everything). */
function isSpiffeToken(token: string): boolean {
  const p = token.split('.')[1];
  if (!p) return false;
  try {
    const sub = (JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
    return typeof sub === 'string' && sub.startsWith('spiffe://');
  } catch {
    return false;
  }
}

/** A refusal as status, headers and body: a reason code and the decision id, nothing else. */
export function refusalOf(r: Extract<EnforcementResult, { ok: false }>): {
  status: 401 | 403;
  headers: Record<string, string | number>;
  body: string;
} {
  const body = JSON.stringify({ error: r.code, decision_id: r.decision.decision_id });
  return {
    status: r.status,
    headers: {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-nevertrust-decision-id': r.decision.decision_id,
      ...(r.status === 401 ? { 'www-authenticate': 'Bearer' } : {}),
    },
    body,
  };
}

/** Writes the refusal (see {@link refusalOf}). */
export function sendRefusal(res: ServerResponse, r: Extract<EnforcementResult, { ok: false }>): void {
  const { status, headers, body } = refusalOf(r);
  res.writeHead(status, headers);
  res.end(body);
}

/** A request that passed: `req.nevertrust` holds the verified caller and the decision. */
export type EnforcedRequest = IncomingMessage & {
  nevertrust: { identity: CallerIdentity; decision: EnforcedDecision };
};

/**
 * node:http: wraps a handler; it runs only for allowed requests.
 *
 * @example
 * ```ts
 * http.createServer(withNevertrust({ target, snapshot: holder.get, bundles }, (req, res) => {
 *   res.end(`hello ${req.nevertrust.identity.spiffeId}`);
 * }));
 * ```
 */
export function withNevertrust(
  opts: EnforcerOptions,
  handler: (req: EnforcedRequest, res: ServerResponse) => void,
): (req: IncomingMessage, res: ServerResponse) => void {
  const { check } = createEnforcer(opts);
  return (req, res) => {
    check(req).then(
      (r) => {
        if (!r.ok) return sendRefusal(res, r);
        (req as EnforcedRequest).nevertrust = { identity: r.identity, decision: r.decision };
        handler(req as EnforcedRequest, res);
      },
      () => {
        // check() handles its own failures; anything else still fails closed without detail.
        if (!res.headersSent) res.writeHead(403, { 'content-type': 'application/json' }).end('{"error":"forbidden"}');
      },
    );
  };
}

/**
 * Express: `app.use(expressMiddleware(opts))`. Structural types: no Express import needed.
 *
 * @example
 * ```ts
 * app.use(expressMiddleware({ target, snapshot: holder.get, bundles }));
 * ```
 */
export function expressMiddleware(
  opts: EnforcerOptions,
): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void {
  const { check } = createEnforcer(opts);
  return (req, res, next) => {
    check(req).then((r) => {
      if (!r.ok) return sendRefusal(res, r);
      (req as EnforcedRequest).nevertrust = { identity: r.identity, decision: r.decision };
      next();
    }, next);
  };
}

/** The parts of a Fastify request/reply the hook uses. */
export interface FastifyLikeRequest {
  raw: IncomingMessage;
}
export interface FastifyLikeReply {
  raw: ServerResponse;
  hijack(): void;
}

/**
 * Fastify: `fastify.addHook('onRequest', fastifyHook(opts))`.
 *
 * @example
 * ```ts
 * fastify.addHook('onRequest', fastifyHook({ target, snapshot: holder.get, bundles }));
 * ```
 */
export function fastifyHook(
  opts: EnforcerOptions,
): (req: FastifyLikeRequest, reply: FastifyLikeReply) => Promise<void> {
  const { check } = createEnforcer(opts);
  return async (req, reply) => {
    const r = await check(req.raw);
    if (!r.ok) {
      reply.hijack();
      sendRefusal(reply.raw, r);
      return;
    }
    (req.raw as EnforcedRequest).nevertrust = { identity: r.identity, decision: r.decision };
  };
}
