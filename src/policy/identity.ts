/**
 * The minimum of SPIFFE-ID handling the policy engine needs: scheme stripping and the
 * `/ns/<ns>/sa/<sa>` path convention. Kept in this one file so that the integrator can point
 * it at the shared SPIFFE parser (src/policy imports nothing of ours from outside).
 */

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
 * Splits a SPIFFE ID; returns `undefined` when it is not one.
 *
 * @example
 * spiffeParts('spiffe://example.org/ns/payments/sa/api-gateway')
 * // { trustDomain: 'example.org', path: '/ns/payments/sa/api-gateway', namespace: 'payments', service: 'api-gateway' }
 */
export function spiffeParts(id: string): SpiffeParts | undefined {
  if (id.length > 2048 || id.slice(0, SCHEME.length).toLowerCase() !== SCHEME) return undefined;
  const rest = id.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const trustDomain = (slash < 0 ? rest : rest.slice(0, slash)).toLowerCase();
  if (trustDomain === '' || !/^[a-z0-9._-]+$/.test(trustDomain)) return undefined;
  const path = slash < 0 ? '' : rest.slice(slash);
  const segs = path.split('/').slice(1);
  const out: SpiffeParts = { trustDomain, path };
  if (segs.length === 4 && segs[0] === 'ns' && segs[2] === 'sa') {
    out.namespace = segs[1];
    out.service = segs[3];
  } else if (segs.length > 0 && segs[segs.length - 1] !== '') {
    out.service = segs[segs.length - 1];
  }
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
