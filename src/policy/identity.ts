/**
 * What the policy engine derives from a SPIFFE ID: its Istio principal and the `/ns/<ns>/sa/<sa>`
 * path convention. Parsing is the one SPIFFE-ID parser's (src/spiffe/id.ts, its cached
 * non-throwing form), so the engine accepts exactly the IDs the rest of the product accepts.
 */
import { SpiffeIdError, tryParseSpiffeId } from '../spiffe/id.js';

const SCHEME = 'spiffe://';

/** Parts of a SPIFFE ID that the policy engine derives request attributes from. */
export interface SpiffeParts {
  trustDomain: string;
  /** Path with leading `/`, e.g. `/ns/payments/sa/api-gateway`. */
  path: string;
  namespace?: string;
  /** `<sa>` for `/ns/<ns>/sa/<sa>`, else the last path segment. */
  service?: string;
}

/**
 * Splits a SPIFFE ID, or returns the {@link SpiffeIdError} naming the rule it breaks.
 *
 * @example
 * spiffePartsOrError('SPIFFE://example.org/x') // SpiffeIdError { code: 'ERR_SPIFFEID_WRONG_SCHEME' }
 */
export function spiffePartsOrError(id: string): SpiffeParts | SpiffeIdError {
  const p = tryParseSpiffeId(id);
  if (p instanceof SpiffeIdError) return p;
  const path = p.path;
  const out: SpiffeParts = { trustDomain: p.trustDomain.name, path, namespace: undefined, service: undefined };
  // Exactly `/ns/<ns>/sa/<sa>` (the parser already refused empty segments).
  if (path.startsWith('/ns/')) {
    const sa = path.indexOf('/sa/', 4);
    if (sa > 4 && path.indexOf('/', 4) === sa && path.indexOf('/', sa + 4) < 0 && sa + 4 < path.length) {
      out.namespace = path.slice(4, sa);
      out.service = path.slice(sa + 4);
      return out;
    }
  }
  const last = path.slice(path.lastIndexOf('/') + 1);
  if (last !== '') out.service = last;
  return out;
}

/**
 * Splits a SPIFFE ID; returns `undefined` when it is not one.
 *
 * @example
 * spiffeParts('spiffe://example.org/ns/payments/sa/api-gateway')
 * // { trustDomain: 'example.org', path: '/ns/payments/sa/api-gateway', namespace: 'payments', service: 'api-gateway' }
 */
export function spiffeParts(id: string): SpiffeParts | undefined {
  const p = spiffePartsOrError(id);
  return p instanceof SpiffeIdError ? undefined : p;
}

/**
 * The Istio principal form of a SPIFFE ID: the ID without `spiffe://`.
 *
 * @example
 * istioPrincipal('spiffe://cluster.local/ns/x/sa/y') // 'cluster.local/ns/x/sa/y'
 */
export function istioPrincipal(id: string): string {
  return id.startsWith(SCHEME) ? id.slice(SCHEME.length) : id;
}

/** `spiffe://` + principal: the inverse of {@link istioPrincipal}. */
export function spiffeIdFromPrincipal(principal: string): string {
  return SCHEME + principal;
}
