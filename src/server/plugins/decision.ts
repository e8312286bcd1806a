/**
 * Decision APIs for enforcement points that are not ours: native `POST /v1/decide`, OPA's Data API
 * (`POST /v1/data/<path>`), nginx `auth_request` (`GET /v1/authz/nginx`), Envoy ext_authz over HTTP
 * (`/v1/authz/envoy/<original path>`) and over gRPC (own port). All of them fail closed, bound the
 * time a body may take, answer with a decision id, and record every decision on `ctx.events`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type EnforcedDecision, enforce, refuse } from '../../pep/decision.js';
import { type EnvoyAuthzServer, startEnvoyAuthzServer } from '../../pep/envoy.js';
import { BodyError, plainAddress, readJsonBody, targetOf } from '../../pep/http.js';
import { identityFromProxyHeaders, type ProxyTrust, type TrustedProxy, TrustedProxies } from '../../pep/identity.js';
import { type AccessRequest, parseAccessRequest } from '../../policy/request.js';
import type { PolicySnapshot } from '../../policy/snapshot.js';
import type { BundleSource } from '../../spiffe/index.js';
import { authorizeMemberOf, authorizeOneOf } from '../../pep/mtls/index.js';
import { type Handler, type Route, sendJson } from '../router.js';
import { type ServerSvid, serverSvidSource } from '../server-svid.js';
import type { ServerContext, ServerPlugin } from '../server.js';
import type { CaHandle } from './ca.js';
import type { PolicyHandle } from './policy.js';

/**
 * What the decision APIs need of their host: the server, or a node agent serving decisions locally
 * (src/agent/decision-endpoint.ts).
 */
export type DecisionContext = Pick<ServerContext, 'router' | 'events' | 'logger' | 'announce'> & {
  config: Pick<ServerContext['config'], 'trust_domain'>;
};

/** Options of {@link decisionPlugin}. */
export interface DecisionPluginOptions {
  policy: PolicyHandle;
  /** Trust bundles that forwarded certificates (XFCC `Cert=`, nginx `X-Client-Cert`) are verified against. */
  bundles?: BundleSource | (() => BundleSource | undefined);
  /**
   * Proxies whose identity headers are believed, each in the forms it is listed with (an address
   * alone: certificates only; `{address, identity: ['xfcc-uri']}` also a bare XFCC URI). Default:
   * loopback, certificates only.
   */
  trustedProxies?: readonly TrustedProxy[];
  /** Target used by nginx/Envoy checks that name none (`x-nevertrust-target` or `?target=`). */
  defaultTarget?: string;
  /**
   * Envoy ext_authz gRPC listener; omitted: not started. Port 0 picks a free port. With `mtls`, the
   * port presents the server's SVID and only `clients` (SPIFFE IDs; default: any workload of the
   * trust domain) may ask.
   */
  grpc?: { host?: string; port: number; mtls?: { ca: CaHandle; clients?: readonly string[] } };
  /**
   * Why a caller identified by a certificate (forwarded or peer) is refused whatever the policy says
   * (e.g. a revoked SVID, issue #23), or undefined. Checked before the policy; a refusal is recorded.
   */
  callerRevoked?: (caller: CallerCertificate) => string | undefined;
  /** Longest wait for a request body (default 2000 ms). */
  bodyTimeoutMs?: number;
  /** Largest request body (default 64 KiB). */
  maxBodyBytes?: number;
}

/** A caller as its verified certificate names it. */
export interface CallerCertificate {
  spiffeId: string;
  /** Hex serial and notBefore (ms) of the leaf; absent when only a URI was forwarded. */
  serial?: string;
  notBeforeMs?: number;
}

const FLAT_KEYS = ['source_service', 'target_service', 'method', 'path'] as const;
const FULL_KEYS = ['source', 'target', 'request'];

/**
 * OPA clients send whatever input their Rego expected; the flat shape's four fields are read and
 * anything else is ignored (and noted), as OPA itself would. Full-shape input is validated strictly.
 */
function opaInput(input: unknown): { request: AccessRequest; ignored?: string[] } {
  if (input === undefined || input === null) return { request: {} };
  if (typeof input !== 'object' || Array.isArray(input))
    throw new Error('invalid access request: input must be an object');
  const obj = input as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.some((k) => FULL_KEYS.includes(k))) return { request: parseAccessRequest(obj) };
  const flat: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const k of keys) {
    if ((FLAT_KEYS as readonly string[]).includes(k)) flat[k] = obj[k];
    else ignored.push(k);
  }
  return { request: parseAccessRequest(flat), ignored: ignored.length ? ignored : undefined };
}

function decisionBody(d: EnforcedDecision) {
  return {
    decision: d.decision,
    allow: d.allow,
    policy: d.policy,
    rule: d.rule,
    reason: d.reason,
    decision_id: d.decision_id,
    version: d.version,
  };
}

/** The first value of a header. */
function h(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** What the decision routes use. */
interface DecisionDeps {
  snapshot(): PolicySnapshot | undefined;
  events: DecisionContext['events'];
  proxies: TrustedProxies;
  trust(): ProxyTrust;
  bodyOpts: { limit: number; timeoutMs: number };
  defaultTarget: string | undefined;
  callerRevoked?: (caller: CallerCertificate) => string | undefined;
}

/** The JSON body, or BODY_FAILED once a refusal (with its decision record) has been answered. */
async function readDecisionBody(
  deps: DecisionDeps,
  req: IncomingMessage,
  res: ServerResponse,
  pep: string,
): Promise<unknown> {
  try {
    return await readJsonBody(req, deps.bodyOpts);
  } catch (e) {
    if (!(e instanceof BodyError)) throw e;
    const d = refuse(`${e.reason}: ${e.message}`, {}, deps.events, {
      pep,
      ip: plainAddress(req.socket.remoteAddress),
    });
    sendJson(res, e.status, { error: e.reason, message: e.message, decision_id: d.decision_id });
    return BODY_FAILED;
  }
}

/** `POST /v1/decide`: the native decision API. */
function decide(deps: DecisionDeps): Handler {
  return async (req, res) => {
    const body = await readDecisionBody(deps, req, res, 'decide-api');
    if (body === BODY_FAILED) return;
    const ip = plainAddress(req.socket.remoteAddress);
    let request: AccessRequest;
    try {
      request = parseAccessRequest(body ?? {});
    } catch (e) {
      const d = refuse((e as Error).message, {}, deps.events, { pep: 'decide-api', ip });
      return sendJson(res, 400, {
        error: 'invalid_request',
        message: (e as Error).message,
        decision_id: d.decision_id,
      });
    }
    sendJson(res, 200, decisionBody(enforce(deps.snapshot, request, deps.events, { pep: 'decide-api', ip })));
  };
}

/** `POST /v1/data/<path>`: OPA's Data API; a path ending in `/allow` answers a boolean. */
function opaData(deps: DecisionDeps): Handler {
  return async (req, res, url) => {
    const body = await readDecisionBody(deps, req, res, 'opa');
    if (body === BODY_FAILED) return;
    const ip = plainAddress(req.socket.remoteAddress);
    if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) {
      return sendJson(res, 400, { code: 'invalid_parameter', message: 'body must be {"input": …}' });
    }
    let parsed: { request: AccessRequest; ignored?: string[] };
    try {
      parsed = opaInput((body as { input?: unknown } | undefined)?.input);
    } catch (e) {
      const d = refuse((e as Error).message, {}, deps.events, { pep: 'opa', ip });
      return sendJson(res, 400, {
        code: 'invalid_parameter',
        message: (e as Error).message,
        decision_id: d.decision_id,
      });
    }
    const pkg = url.pathname.slice('/v1/data'.length);
    const d = enforce(deps.snapshot, parsed.request, deps.events, {
      pep: 'opa',
      ip,
      details: { package: pkg, ...(parsed.ignored ? { ignored_input: parsed.ignored } : {}) },
    });
    // OPA answers `decision_id` beside `result` when decision logging is on; clients ignore it otherwise.
    const result = pkg.endsWith('/allow') ? d.allow : decisionBody(d);
    sendJson(res, 200, { result, decision_id: d.decision_id });
  };
}

/** `GET /v1/authz/nginx`: auth_request, a subrequest with the original method and URI in headers (never a body). */
function nginxAuthz(deps: DecisionDeps): Handler {
  return (req, res, url) => {
    const ip = plainAddress(req.socket.remoteAddress);
    const fromProxy = deps.proxies.has(ip);
    const target =
      (fromProxy ? h(req, 'x-nevertrust-target') : undefined) ?? url.searchParams.get('target') ?? deps.defaultTarget;
    const clientIp = fromProxy ? (h(req, 'x-real-ip') ?? ip) : ip;
    const request: AccessRequest = {
      target: targetOf(target),
      request: {
        method: fromProxy ? h(req, 'x-original-method') : undefined,
        path: fromProxy ? h(req, 'x-original-uri') : undefined,
      },
    };
    authzAnswer(deps, req, res, request, 'nginx', clientIp, ip);
  };
}

/**
 * `/v1/authz/envoy/<original path>`: Envoy ext_authz over HTTP appends the original path to the
 * configured prefix and keeps the method. The raw request target is used: a parsed URL would already
 * have resolved `..` and `%2e%2e`, hiding what the caller really asked for from the policy engine.
 */
function envoyAuthz(deps: DecisionDeps): Handler {
  return (req, res) => {
    const ip = plainAddress(req.socket.remoteAddress);
    const raw = req.url ?? '/';
    const prefix = '/v1/authz/envoy';
    const path = raw.startsWith(prefix) ? raw.slice(prefix.length) || '/' : '/';
    const fromProxy = deps.proxies.has(ip);
    const target = (fromProxy ? h(req, 'x-nevertrust-target') : undefined) ?? deps.defaultTarget;
    const request: AccessRequest = {
      target: targetOf(target),
      request: { method: req.method, path },
    };
    authzAnswer(deps, req, res, request, 'envoy-http', ip, ip);
  };
}

/** Shared by nginx and Envoy HTTP: 200 with identity headers, 401 without identity, 403 denied. */
function authzAnswer(
  deps: DecisionDeps,
  req: IncomingMessage,
  res: ServerResponse,
  request: AccessRequest,
  pep: string,
  clientIp: string | undefined,
  peerIp: string | undefined,
): void {
  const who = identityFromProxyHeaders(req.headers, peerIp, deps.trust());
  const details: Record<string, unknown> = {};
  if (who.kind !== 'invalid' && who.ignored) details.ignored_identity_headers = who.ignored;
  if (who.kind === 'invalid') {
    const d = refuse(who.reason, request, deps.events, { pep, ip: clientIp, details });
    deny(res, 401, 'unauthenticated', d);
    return;
  }
  if (who.kind === 'ok') {
    request.source = { spiffe_id: who.spiffeId, ip: clientIp };
    details.identity = who.via;
    let revoked: string | undefined;
    try {
      revoked = deps.callerRevoked?.(who);
    } catch (e) {
      revoked = `revocation check failed: ${(e as Error).message}`; // fail closed
    }
    if (revoked !== undefined) {
      deny(res, 403, 'forbidden', refuse(revoked, request, deps.events, { pep, ip: clientIp, details }));
      return;
    }
  } else if (clientIp) request.source = { ip: clientIp };
  const d = enforce(deps.snapshot, request, deps.events, { pep, ip: clientIp, details });
  if (!d.allow) {
    deny(res, who.kind === 'ok' ? 403 : 401, who.kind === 'ok' ? 'forbidden' : 'unauthenticated', d);
    return;
  }
  const headers: Record<string, string> = { 'x-nevertrust-decision-id': d.decision_id };
  if (who.kind === 'ok') headers['x-nevertrust-peer-id'] = who.spiffeId;
  if (d.policy) headers['x-nevertrust-policy'] = d.policy;
  res.writeHead(200, { ...headers, 'content-length': 0, 'cache-control': 'no-store' });
  res.end();
}

function deny(res: ServerResponse, status: 401 | 403, error: string, d: EnforcedDecision): void {
  sendJson(res, status, { error, decision_id: d.decision_id }, { 'x-nevertrust-decision-id': d.decision_id });
}

const ENVOY_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** The decision plugin's routes. */
function decisionRoutes(deps: DecisionDeps): Route[] {
  const opa = opaData(deps);
  const envoy = envoyAuthz(deps);
  return [
    { method: 'GET', path: '/health', handler: (_req, res) => sendJson(res, 200, {}) },
    { method: 'POST', path: '/v1/decide', handler: decide(deps) },
    { method: 'POST', path: '/v1/data', handler: opa },
    { method: 'POST', path: '/v1/data/', prefix: true, handler: opa },
    { method: 'GET', path: '/v1/authz/nginx', handler: nginxAuthz(deps) },
    ...ENVOY_METHODS.flatMap((method) => [
      { method, path: '/v1/authz/envoy', handler: envoy },
      { method, path: '/v1/authz/envoy/', prefix: true, handler: envoy },
    ]),
  ];
}

/**
 * Adds the decision APIs to the server.
 *
 * @example
 * ```ts
 * const policy = policyPlugin();
 * const ca = caPlugin();
 * await startServer({ config, logger, plugins: [ca, policy,
 *   decisionPlugin({ policy: policy.handle, bundles: () => ca.handle.current().bundle(), grpc: { port: 9191 } })] });
 * ```
 */
export function decisionPlugin(opts: DecisionPluginOptions): ServerPlugin & {
  register(ctx: DecisionContext): Promise<void>;
  grpcPort(): number | undefined;
} {
  const proxies = new TrustedProxies(opts.trustedProxies ?? ['127.0.0.1', '::1']);
  const bundles = typeof opts.bundles === 'function' ? opts.bundles : () => opts.bundles as BundleSource | undefined;
  const snapshot = () => opts.policy.current();
  const bodyOpts = { limit: opts.maxBodyBytes ?? 64 * 1024, timeoutMs: opts.bodyTimeoutMs ?? 2000 };
  let grpcServer: EnvoyAuthzServer | undefined;
  let serverSvid: ServerSvid | undefined;

  return {
    name: 'decision',
    // Its snapshots come from the policy plugin; the gRPC port's mTLS needs the CA open.
    dependsOn: opts.grpc?.mtls ? ['policy', 'ca'] : ['policy'],
    grpcPort: () => grpcServer?.port,
    async register(ctx: DecisionContext) {
      const { router, events, logger } = ctx;
      router.add(
        decisionRoutes({
          snapshot,
          events,
          proxies,
          trust: () => ({ proxies, bundles: bundles() }),
          bodyOpts,
          defaultTarget: opts.defaultTarget,
          callerRevoked: opts.callerRevoked,
        }),
      );

      ctx.announce('decision API', 'POST /v1/decide, POST /v1/data/<path>, GET /v1/authz/nginx, /v1/authz/envoy/*');
      if (opts.grpc) {
        const mtls = opts.grpc.mtls;
        serverSvid = mtls ? serverSvidSource(mtls.ca, ctx.config.trust_domain) : undefined;
        grpcServer = await startEnvoyAuthzServer({
          host: opts.grpc.host,
          port: opts.grpc.port,
          snapshot,
          recorder: events,
          bundles,
          defaultTarget: opts.defaultTarget,
          tls:
            mtls && serverSvid
              ? {
                  source: serverSvid.source,
                  authorize: mtls.clients?.length
                    ? authorizeOneOf(mtls.clients)
                    : authorizeMemberOf(ctx.config.trust_domain),
                }
              : undefined,
        });
        ctx.announce(
          'envoy ext_authz (gRPC)',
          `${opts.grpc.host ?? '127.0.0.1'}:${grpcServer.port}${mtls ? `   (mTLS, server ID ${serverSvid?.spiffeId})` : '   (plaintext)'}`,
        );
        logger.info({ port: grpcServer.port }, 'envoy ext_authz gRPC listening');
      }
    },
    async close() {
      await grpcServer?.close();
      serverSvid?.stop();
    },
  };
}

const BODY_FAILED: unique symbol = Symbol('body failed');
