/**
 * Authorizers: which verified SPIFFE IDs may talk to us (one ID, one of several, a trust domain, any),
 * each carrying a description of what it expects for error messages.
 */
import { parseSpiffeId, parseTrustDomain, type SpiffeId, type TrustDomain } from '../../spiffe/index.js';

/** Decides whether a verified peer ID may talk to us. */
export interface Authorizer {
  (id: SpiffeId): boolean;
  /** For error messages: what was expected. */
  readonly expected: string;
}

function authorizer(expected: string, fn: (id: SpiffeId) => boolean): Authorizer {
  return Object.assign(fn, { expected });
}

/**
 * Exactly this SPIFFE ID.
 *
 * @example
 * ```ts
 * authorizeId('spiffe://example.org/ns/payments/sa/payment-service')
 * ```
 */
export function authorizeId(id: string | SpiffeId): Authorizer {
  const want = typeof id === 'string' ? parseSpiffeId(id) : id;
  return authorizer(want.toString(), (got) => got.equals(want));
}

/** One of these SPIFFE IDs. @example authorizeOneOf([gateway, auditor]) */
export function authorizeOneOf(ids: readonly (string | SpiffeId)[]): Authorizer {
  const set = new Set(ids.map((i) => (typeof i === 'string' ? parseSpiffeId(i) : i).toString()));
  return authorizer(`one of ${[...set].join(', ')}`, (got) => set.has(got.toString()));
}

/** Any workload of this trust domain. @example authorizeMemberOf('example.org') */
export function authorizeMemberOf(trustDomain: string | TrustDomain): Authorizer {
  const td = typeof trustDomain === 'string' ? parseTrustDomain(trustDomain) : trustDomain;
  return authorizer(`a member of ${td.name}`, (got) => got.memberOf(td));
}

/** Any peer with a valid SVID from a trusted bundle (authorization happens elsewhere, e.g. policy). */
export function authorizeAny(): Authorizer {
  return authorizer('any SPIFFE ID', () => true);
}
