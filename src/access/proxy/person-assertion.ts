/**
 * The signed assertion the app behind the proxy gets about the person (`X-Nevertrust-Jwt-Assertion`,
 * as Google IAP's `x-goog-iap-jwt-assertion`): ES256, short-lived, `iss` the proxy's SPIFFE ID, `aud`
 * the route's audience, signed with the key the proxy registered with the server (verifiable with
 * the server's JWKS). Signed per request: it carries the decision id.
 */
import type { JWTPayload } from 'jose';
import type { AssertionSigner } from '../../pep/assertion/signer.js';
import { PERSON_ASSERTION_TYP } from '../../pep/assertion/wire.js';
import type { Identification } from '../identity.js';
import { sourceUser } from './access-request.js';
import type { RouteConfig } from './config.js';

/**
 * A route's `aud`: `https://<host><path_prefix>` (no port, no trailing slash), so an app behind
 * two routes, or a token replayed to another route, can be told apart.
 *
 * @example
 * ```ts
 * routeAudience(route) // 'https://wiki.example.test/docs'
 * ```
 */
export function routeAudience(route: RouteConfig): string {
  const p = route.from.path_prefix === '/' ? '' : route.from.path_prefix;
  return `https://${route.from.host}${p}`;
}

/**
 * The claims vouched for (no tokens, no secrets). `user` is the person's name at this proxy (what
 * policy and audit call them), `mfa_at` the time of their last second factor when known (an app such
 * as the console demands a fresh one for destructive calls), `device` the device the request came
 * with, when one was verified.
 */
export function personClaims(
  who: Extract<Identification, { kind: 'session' | 'bearer' }>,
  decisionId: string,
  deviceId?: string,
): JWTPayload {
  const p = who.person;
  return {
    sub: p.sub,
    user: sourceUser(p),
    ...(p.email ? { email: p.email } : {}),
    groups: p.groups,
    amr: p.amr,
    ...(p.authTime !== undefined ? { auth_time: p.authTime } : {}),
    ...(p.mfaAt !== undefined ? { mfa_at: p.mfaAt } : {}),
    ...(who.kind === 'session' ? { sid: who.sessionId } : {}),
    ...(deviceId !== undefined ? { device: deviceId } : {}),
    idp: p.issuer,
    decision_id: decisionId,
  };
}

/**
 * Signs the assertion for one allowed request.
 *
 * @throws {IdentityAssertionError} when no registered key can sign (the caller denies)
 */
export function signPersonAssertion(
  signer: AssertionSigner,
  who: Extract<Identification, { kind: 'session' | 'bearer' }>,
  route: RouteConfig,
  decisionId: string,
  ttlSeconds?: number,
  deviceId?: string,
): Promise<string> {
  return signer.signClaims(personClaims(who, decisionId, deviceId), {
    typ: PERSON_ASSERTION_TYP,
    audience: routeAudience(route),
    ttlSeconds,
  });
}
