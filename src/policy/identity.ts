/**
 * The minimum of SPIFFE-ID handling the policy engine needs: scheme stripping and the
 * `/ns/<ns>/sa/<sa>` path convention. Kept in this one file so that the integrator can point
 * it at the shared SPIFFE parser (src/policy imports nothing of ours from outside).
 */

const SCHEME = 'spiffe://';
const TD = /^[a-z0-9._-]+$/;

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
 * Splits a SPIFFE ID; returns `undefined` when it is not one.
 *
 * @example
 * spiffeParts('spiffe://example.org/ns/payments/sa/api-gateway')
 * // { trustDomain: 'example.org', path: '/ns/payments/sa/api-gateway', namespace: 'payments', service: 'api-gateway' }
 */
export function spiffeParts(id: string): SpiffeParts | undefined {
  if (id.length > 2048 || id.length <= SCHEME.length) return undefined;
  if (!id.startsWith(SCHEME) && id.slice(0, SCHEME.length).toLowerCase() !== SCHEME) return undefined;
  const slash = id.indexOf('/', SCHEME.length);
  const trustDomain = (slash < 0 ? id.slice(SCHEME.length) : id.slice(SCHEME.length, slash)).toLowerCase();
  if (trustDomain === '' || !TD.test(trustDomain)) return undefined;
  const path = slash < 0 ? '' : id.slice(slash);
  const out: SpiffeParts = { trustDomain, path, namespace: undefined, service: undefined };
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
 * The Istio principal form of a SPIFFE ID: the ID without `spiffe://`.
 *
 * @example
 * istioPrincipal('spiffe://cluster.local/ns/x/sa/y') // 'cluster.local/ns/x/sa/y'
 */
export function istioPrincipal(id: string): string {
  return id.slice(0, SCHEME.length).toLowerCase() === SCHEME ? id.slice(SCHEME.length) : id;
}

/** `spiffe://` + principal: the inverse of {@link istioPrincipal}. */
export function spiffeIdFromPrincipal(principal: string): string {
  return SCHEME + principal;
}
