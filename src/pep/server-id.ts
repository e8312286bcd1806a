/**
 * Whom an enforcement point expects on the server's agent port: the server's own SVID ID.
 */
import { parseSpiffeId, serverSpiffeId } from '../spiffe/index.js';

/**
 * `explicit`, else `spiffe://<the trust domain of ownId>/nevertrust/server`, parsed and normalized.
 *
 * @throws {SpiffeIdError} when either ID is not a SPIFFE ID
 * @example
 * serverIdFor('spiffe://example.org/ns/payments/sa/api') // 'spiffe://example.org/nevertrust/server'
 */
export function serverIdFor(ownId: string, explicit?: string): string {
  const self = parseSpiffeId(ownId);
  return parseSpiffeId(explicit ?? serverSpiffeId(self.trustDomain)).toString();
}
