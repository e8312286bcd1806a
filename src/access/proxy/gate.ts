/**
 * The decision path of every request and WebSocket handshake: route by host, normalize the path and
 * route by prefix, own endpoints, identify the person, decide, sign the assertion. Fails closed: an
 * unknown host, a refused path, no or a bad credential, a deny, a step-up or any error answers here,
 * with a reason, and nothing is forwarded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { DeviceRecord } from '../../api/devices.js';
import type { AuditEventInput } from '../../audit/event.js';
import type { BundleSource } from '../../spiffe/index.js';
import { type DecisionRecorder, enforce, refuse, type SnapshotProvider } from '../../pep/decision.js';
import { plainAddress } from '../../pep/http.js';
import type { AssertionSigner } from '../../pep/assertion/signer.js';
import { stepUpRequirement } from '../../policy/step-up.js';
import { isPath, normalizePathText, type PathOptions } from '../../policy/path.js';
import type { AccessRequest } from '../../policy/request.js';
import { type Authenticator, type Identification, OWN_PATH_PREFIX, type RequestContext } from '../identity.js';
import { personRequest, routeTarget, sourceUser } from './access-request.js';
import { type DeviceLookup, deviceSource, peerDevice, type RequestDevice, requestDevice } from './device.js';
import type { RouteConfig } from './config.js';
import { type Answer, isBrowserNavigation, isBrowserPage, refusalAnswer } from './pages.js';
import { signPersonAssertion } from './person-assertion.js';
import { hostOf, type RouteTable } from './routes.js';
import { challengeLocation, insufficientAuthentication, MFA_PATH, returnPath } from './step-up.js';
import type { ForwardTarget } from './forward.js';
import type { Upstream } from './upstream.js';
import { type ProxySignals, riskScore, signalRefusal } from './signals.js';

/** The enforcement point's name in decisions and audit records. */
export const PEP_NAME = 'access-proxy';

export interface GateDeps {
  routes: RouteTable;
  upstreams: ReadonlyMap<RouteConfig, Upstream>;
  authenticator: Authenticator;
  snapshot: SnapshotProvider;
  recorder: DecisionRecorder | undefined;
  path: PathOptions | undefined;
  /** The port browsers use; 443 leaves it out of origins. */
  publicPort: number;
  signer?: AssertionSigner;
  assertionTtl?: number;
  /** The proxy's MFA endpoints (`/.nevertrust/mfa…`); absent: no local step-up. */
  mfa?: { handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<boolean> };
  /**
   * Device certificates: verified against the trust domain's bundle, looked up, refused when
   * invalid, unknown or revoked; absent: the proxy does not ask for them.
   */
  devices?: {
    bundles: BundleSource;
    trustDomain: string;
    lookup: DeviceLookup;
    /** The routes' default `max_posture_age`, seconds. */
    maxPostureAge: number;
    /** Where `device.refused` events go. */
    record?: (e: AuditEventInput) => void;
  };
  /** The signals followed from the server (revocations, risk); absent: none. */
  signals?: ProxySignals;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** What to do with a request: answer it here, it was answered (own endpoint, login), or forward it. */
export type GateResult =
  | { kind: 'answer'; answer: Answer }
  | { kind: 'handled' }
  | { kind: 'forward'; target: ForwardTarget };

/** The target without its query: a query may carry a token (`?access_token=`), which no record may hold. */
const withoutQuery = (url: string): string => {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
};

/** A clipped copy of a client-chosen string for the audit record (never used to decide). */
const clip = (s: string | undefined, n = 512) => (s === undefined ? undefined : s.length > n ? s.slice(0, n) : s);

/**
 * Decides one request. `upgrade` handshakes get no login redirect and no own endpoints (they are
 * answered on a raw socket).
 */
export async function gate(deps: GateDeps, req: IncomingMessage, res: ServerResponse | undefined): Promise<GateResult> {
  const ip = plainAddress(req.socket.remoteAddress) ?? '';
  const method = req.method ?? 'GET';
  const url = req.url ?? '';
  const refused = (
    status: number,
    error: string,
    reason: string,
    request: AccessRequest,
    details: Record<string, unknown>,
  ): GateResult => {
    const d = refuse(reason, request, deps.recorder, { pep: PEP_NAME, ip, details: { ...details, refused: error } });
    return { kind: 'answer', answer: refusalAnswer(req, status, { error, reason, decision_id: d.decision_id }) };
  };

  const host = hostOf(req.headers.host);
  if (!host || !deps.routes.hasHost(host)) {
    return refused(
      404,
      'unknown_host',
      'no application is served at this host',
      { target: { host: clip(req.headers.host) }, request: { method, path: clip(withoutQuery(url)) } },
      { host: clip(req.headers.host) ?? '' },
    );
  }
  // Origin-form only (`/path?query`): an absolute-form or `*` target is not a browser's request.
  const q = url.indexOf('?');
  const normalized = url.charCodeAt(0) === 0x2f ? normalizePathText(url, deps.path) : 'request target must be a path';
  if (!isPath(normalized)) {
    return refused(
      400,
      'bad_path',
      `path refused: ${normalized}`,
      { target: { host }, request: { method, path: clip(withoutQuery(url)) } },
      { host },
    );
  }
  const pathAndQuery = q < 0 ? normalized : normalized + url.slice(q);
  const origin = deps.publicPort === 443 ? `https://${host}` : `https://${host}:${deps.publicPort}`;
  // The device comes before everything else, own endpoints included: the login binds the session to it.
  let device: DeviceRecord | undefined;
  if (deps.devices) {
    const dev = deps.devices;
    const at = { target: { host }, request: { method, path: normalized } };
    let found: RequestDevice;
    try {
      found = await requestDevice(peerDevice(req.socket as TLSSocket, dev.bundles, dev.trustDomain), dev.lookup);
    } catch (e) {
      deps.log('device lookup failed', { error: (e as Error).message });
      return refused(503, 'device_lookup_unavailable', 'the device registry could not be read; try again', at, {
        host,
      });
    }
    if (found.kind === 'refused') {
      try {
        dev.record?.({
          kind: 'device.refused',
          enforcer: PEP_NAME,
          outcome: 'deny',
          reason: `${found.error}: ${found.reason}`,
          source: { ip, ...(found.deviceId ? { device_id: found.deviceId } : {}) },
          target: { host, method, path: clip(normalized) },
        });
      } catch (e) {
        deps.log('device audit record failed', { error: (e as Error).message });
      }
      return refused(found.status, found.error, found.reason, at, {
        host,
        ...(found.deviceId ? { device: found.deviceId } : {}),
      });
    }
    if (found.kind === 'device') device = found.record;
  }
  const ctx: RequestContext = { host, origin, ip, ...(device ? { deviceId: device.id } : {}) };

  if (normalized === OWN_PATH_PREFIX.slice(0, -1) || normalized.startsWith(OWN_PATH_PREFIX)) {
    if (!res)
      return refused(
        404,
        'not_found',
        'no such endpoint',
        { target: { host }, request: { method, path: normalized } },
        { host },
      );
    // The authenticator parses what was decided here, not the raw target.
    req.url = pathAndQuery;
    const mfaPath = normalized === MFA_PATH || normalized.startsWith(`${MFA_PATH}/`);
    if (mfaPath && deps.mfa && (await deps.mfa.handle(req, res, ctx))) return { kind: 'handled' };
    if (!mfaPath && (await deps.authenticator.handle(req, res, ctx))) return { kind: 'handled' };
    return { kind: 'answer', answer: refusalAnswer(req, 404, { error: 'not_found', reason: 'no such endpoint' }) };
  }

  const route = deps.routes.match(host, normalized);
  if (!route) {
    return refused(
      404,
      'no_route',
      'no application is served at this path',
      { target: { host }, request: { method, path: normalized } },
      { host },
    );
  }
  const bare: AccessRequest = {
    source: { ip },
    target: routeTarget(route, host),
    request: { method, path: normalized },
  };
  const details = { route: route.name, host };
  if (!res && !route.websockets) {
    return refused(403, 'websockets_disabled', 'WebSockets are not enabled for this application', bare, details);
  }
  // Only WebSocket is tunnelled: an `h2c` or other upgrade would hand the app a protocol nobody decided on.
  if (!res && String(req.headers.upgrade).toLowerCase() !== 'websocket') {
    return refused(400, 'bad_upgrade', 'only WebSocket upgrades are supported', bare, details);
  }

  let who: Identification;
  try {
    who = await deps.authenticator.identify(req, ctx);
  } catch (e) {
    deps.log('authenticator failed', { route: route.name, error: (e as Error).message });
    return refused(503, 'authentication_unavailable', 'the sign-in service failed; try again', bare, {
      ...details,
      identity: 'error',
    });
  }
  if (who.kind === 'none' || who.kind === 'invalid') {
    const reason = who.kind === 'none' ? 'not signed in' : `invalid credential: ${who.reason}`;
    const d = refuse(reason, bare, deps.recorder, { pep: PEP_NAME, ip, details: { ...details, identity: who.kind } });
    if (res && isBrowserNavigation(req)) {
      await deps.authenticator.startLogin(req, res, ctx, pathAndQuery);
      return { kind: 'handled' };
    }
    const challenge =
      who.kind === 'none'
        ? `Bearer realm="${host}"`
        : `Bearer realm="${host}", error="invalid_token", error_description="${who.reason.replace(/[^\x20-\x7e]|["\\]/g, ' ')}"`;
    const a = refusalAnswer(
      req,
      401,
      { error: who.kind === 'none' ? 'unauthenticated' : who.code, reason, decision_id: d.decision_id },
      true,
    );
    a.headers['www-authenticate'] = challenge;
    return { kind: 'answer', answer: a };
  }

  if (deps.signals) {
    const sig = deps.signals;
    if (route.on_signals_lost === 'deny' && sig.lost()) {
      return refused(
        503,
        'signals_unavailable',
        'the proxy has lost contact with the revocation signals; try again shortly',
        bare,
        { ...details, signals_unavailable: true },
      );
    }
    const session =
      who.kind === 'session'
        ? { id: who.sessionId, ...(who.startedAt !== undefined ? { startedAt: who.startedAt } : {}) }
        : undefined;
    const no = signalRefusal(
      sig.state,
      {
        person: who.person,
        ...(session ? { session } : {}),
        ...(device ? { device } : {}),
      },
      sig.deviceNonCompliant,
    );
    if (no) {
      if (session && no.error !== 'device_non_compliant' && no.error !== 'device_revoked')
        deps.authenticator.evict?.(session.id);
      return refused(no.error.startsWith('device') ? 403 : 401, no.error, no.reason, bare, {
        ...details,
        ...(session ? { session: session.id } : {}),
        signal: no.signal,
      });
    }
  }
  const request = personRequest(
    who.person,
    route,
    host,
    ip,
    method,
    normalized,
    deps.devices
      ? deviceSource(device, sourceUser(who.person), route.max_posture_age ?? deps.devices.maxPostureAge)
      : undefined,
  );
  const risk = deps.signals ? riskScore(deps.signals.state, who.person, device?.id) : undefined;
  if (risk !== undefined && request.source) request.source.risk_score = risk;
  const d = enforce(deps.snapshot, request, deps.recorder, {
    pep: PEP_NAME,
    ip,
    details: {
      ...details,
      identity: who.kind,
      ...(who.kind === 'session' ? { session: who.sessionId } : {}),
      ...(device ? { device: device.id } : {}),
    },
  });
  if (d.decision === 'step_up') {
    // The decision is recorded (enforce did); what remains is where the person goes to meet it.
    const snap = deps.snapshot();
    const need = snap ? stepUpRequirement(snap, d, request) : {};
    const reason = `MFA required: ${d.reason}`;
    if (res && who.kind === 'session' && isBrowserPage(req)) {
      const back = returnPath(req, origin, pathAndQuery);
      if (route.step_up?.via === 'provider') {
        // A new login at the provider; its callback creates a new session and returns to `rd`.
        await deps.authenticator.startLogin(req, res, ctx, back.rd, {
          ...(route.step_up.acr_values.length ? { acrValues: route.step_up.acr_values } : {}),
          ...(need.maxAge !== undefined ? { maxAge: need.maxAge } : {}),
          prompt: 'login',
        });
        return { kind: 'handled' };
      }
      if (deps.mfa) {
        const location = challengeLocation(back.rd, need, back.again);
        return {
          kind: 'answer',
          answer: {
            status: 303,
            headers: { location, 'cache-control': 'no-store', 'content-type': 'text/plain; charset=utf-8' },
            body: `MFA required: see ${location}\n`,
          },
        };
      }
    }
    if (who.kind === 'bearer' || !isBrowserPage(req)) {
      const a = refusalAnswer(req, 401, { error: 'mfa_required', reason, decision_id: d.decision_id }, true);
      a.headers['www-authenticate'] = insufficientAuthentication(host, d.reason, route, need);
      return { kind: 'answer', answer: a };
    }
    // A browser where no step-up is possible here (no local MFA, or a WebSocket handshake).
    return {
      kind: 'answer',
      answer: refusalAnswer(req, 403, { error: 'mfa_required', reason, decision_id: d.decision_id }),
    };
  }
  if (!d.allow) {
    return {
      kind: 'answer',
      answer: refusalAnswer(req, 403, { error: 'forbidden', reason: d.reason, decision_id: d.decision_id }),
    };
  }
  let assertion: string | undefined;
  if (deps.signer) {
    try {
      assertion = await signPersonAssertion(deps.signer, who, route, d.decision_id, deps.assertionTtl, device?.id);
    } catch (e) {
      // The app must never get a request we cannot vouch for.
      deps.log('person assertion failed', { route: route.name, error: (e as Error).message });
      return refused(503, 'assertion_unavailable', 'the proxy cannot sign for this request now', request, details);
    }
  }
  const upstream = deps.upstreams.get(route) as Upstream;
  // The proxy consumed the credential: a session's cookie, a bearer caller's Authorization.
  const credential = {
    cookies: deps.authenticator.credentialCookies ?? [],
    authorization: who.kind === 'bearer',
  };
  return {
    kind: 'forward',
    target: {
      route,
      upstream,
      pathAndQuery,
      ip,
      credential,
      ...(assertion ? { assertion } : {}),
      live: {
        route,
        host,
        method,
        path: normalized,
        ip,
        request,
        person: who.person,
        ...(who.kind === 'session'
          ? { session: { id: who.sessionId, ...(who.startedAt !== undefined ? { startedAt: who.startedAt } : {}) } }
          : {}),
        ...(device ? { deviceId: device.id } : {}),
      },
    },
  };
}

/**
 * A request Node could not parse (answered before any handler runs: headers over the limit, a
 * malformed request): the refusal, recorded like every other. Undefined for what is no request at
 * all (a reset, a timeout), which gets Node's usual treatment.
 */
export function unparsedRequestRefusal(
  deps: Pick<GateDeps, 'recorder'>,
  code: string | undefined,
  remoteAddress: string | undefined,
): Answer | undefined {
  if (!code?.startsWith('HPE_')) return undefined;
  const tooLarge = code === 'HPE_HEADER_OVERFLOW';
  const error = tooLarge ? 'headers_too_large' : 'bad_request';
  const reason = tooLarge ? 'request headers too large' : `malformed HTTP request (${code})`;
  const ip = plainAddress(remoteAddress) ?? '';
  const d = refuse(reason, {}, deps.recorder, { pep: PEP_NAME, ip, details: { refused: error } });
  return {
    status: tooLarge ? 431 : 400,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
    body: JSON.stringify({ error, reason, decision_id: d.decision_id }),
  };
}
