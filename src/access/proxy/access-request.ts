/**
 * The policy engine's view of a person's request (design.md's access request): who (user, claims,
 * MFA, IP), what (the route's target and host) and how (method, normalized path).
 */
import type { PersonIdentity } from '../identity.js';
import type { AccessRequest } from '../../policy/request.js';
import type { RouteConfig } from './config.js';

/** The route as a policy target: its `target`, else `{ service: <name> }`; plus the host. */
export function routeTarget(route: RouteConfig, host: string): NonNullable<AccessRequest['target']> {
  return { ...(route.target ?? { service: route.name }), host };
}

type PersonSource = Pick<
  NonNullable<AccessRequest['source']>,
  'user' | 'claims' | 'mfa' | 'auth_time' | 'mfa_time' | 'amr'
>;

/**
 * What policy sees of a person, worked out once per verified identity (a cached session hands the
 * proxy the same object on every request), not per request: the claims copy. MFA is what the
 * authenticator worked out (`mfaAt`: the provider's factors by its mapping, or a step-up here).
 */
const sources = new WeakMap<PersonIdentity, PersonSource>();

/** Who the person is for policy (`source.user`): the authenticator's user, else email, else `sub`. */
export const sourceUser = (person: PersonIdentity): string => person.user ?? person.email ?? person.sub;

function personSource(person: PersonIdentity): PersonSource {
  let src = sources.get(person);
  if (!src) {
    src = {
      user: sourceUser(person),
      // `iss`/`sub` from the verified identity, not from whatever else the claims say: they make
      // the request principal (`<iss>/<sub>`) that Istio-style rules match. `groups` is the person's
      // groups as mapped from the provider's groups claim (e.g. `roles`), so one policy
      // (`request.auth.claims[groups]`) serves every provider.
      claims: { ...person.claims, groups: person.groups, iss: person.issuer, sub: person.sub },
      mfa: person.mfa === true || person.mfaAt !== undefined,
      ...(person.mfaAt !== undefined ? { mfa_time: person.mfaAt } : {}),
      // Within the request schema's bounds: a provider's odd `amr` must not make every request invalid.
      amr: person.amr.filter((m) => m.length <= 64).slice(0, 32),
      ...(person.authTime !== undefined ? { auth_time: person.authTime } : {}),
    };
    sources.set(person, src);
  }
  return src;
}

/**
 * The access request for a person's call through a route; `device` is what policy sees of the
 * device (`source.device`, see device.ts `deviceSource`).
 *
 * @example
 * ```ts
 * enforce(snapshot, personRequest(person, route, host, ip, 'GET', '/wiki/page'), recorder, site);
 * ```
 */
export function personRequest(
  person: PersonIdentity,
  route: RouteConfig,
  host: string,
  ip: string | undefined,
  method: string,
  path: string,
  device?: NonNullable<AccessRequest['source']>['device'],
): AccessRequest {
  const src = personSource(person);
  return {
    source: { ...src, ...(ip ? { ip } : {}), ...(device ? { device } : {}) },
    target: routeTarget(route, host),
    request: { method, path },
  };
}
