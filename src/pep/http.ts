/**
 * Small HTTP helpers for the decision path: the bounded JSON body reader (size and time: a slow
 * client must not hold a decision open) and target parsing.
 */
import type { AccessRequest } from '../policy/request.js';

// One body reader for every server (src/util/http-body.ts); re-exported for the decision path's users.
export { BodyError, readJsonBody } from '../util/http-body.js';

/**
 * Turns a target as configured or sent by a proxy (a SPIFFE ID or a service name) into the
 * access request's `target`.
 *
 * @example
 * ```ts
 * targetOf('spiffe://example.org/ns/payments/sa/payment-service'); // { spiffe_id: '…' }
 * targetOf('payment-service');                                     // { service: 'payment-service' }
 * ```
 */
export function targetOf(t: string | undefined): AccessRequest['target'] {
  if (t === undefined || t === '') return undefined;
  return t.startsWith('spiffe://') ? { spiffe_id: t } : { service: t };
}

/** The remote address without an IPv4-mapped IPv6 prefix. */
export function plainAddress(a: string | undefined): string | undefined {
  return a?.startsWith('::ffff:') ? a.slice(7) : a;
}
