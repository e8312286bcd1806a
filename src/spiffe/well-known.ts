/**
 * The product's well-known SPIFFE IDs, in one place: the control plane's own identity, the
 * agents' identities and the device namespace. Only the server issues these, for itself and for
 * the agents it attested; registration entries and admin minting must never hand them to a
 * workload (SPIRE likewise reserves its `/spire/` paths).
 */
import { type SpiffeId, parseTrustDomain, type TrustDomain } from './id.js';

/** Path of the server's own SVID (agent port, ext_authz listener). */
export const SERVER_ID_PATH = '/nevertrust/server';
/** Agents are `spiffe://<td>/spire/agent/<attestor>/<value>` (SPIRE's convention). */
export const AGENT_ID_PREFIX = '/spire/agent/';
/** Reserved for device identities (issued by the server once device attestation exists). */
export const DEVICE_ID_PREFIX = '/device/';

/**
 * Path namespaces only the server issues in: the whole `/nevertrust/` (the control plane),
 * `/spire/` (agents, as in SPIRE) and `/device/`. Reserving whole namespaces, not single IDs,
 * keeps a future control-plane identity from being pre-registered by a workload.
 */
const RESERVED_NAMESPACES = ['nevertrust', 'spire', 'device'] as const;

function tdName(td: TrustDomain | string): string {
  return typeof td === 'string' ? parseTrustDomain(td).name : td.name;
}

/**
 * The server's SPIFFE ID in a trust domain.
 *
 * @example
 * serverSpiffeId('example.org') // 'spiffe://example.org/nevertrust/server'
 */
export function serverSpiffeId(td: TrustDomain | string): string {
  return `spiffe://${tdName(td)}${SERVER_ID_PATH}`;
}

/**
 * An agent's SPIFFE ID for an attestation method and its value.
 *
 * @example
 * agentSpiffeId('example.org', 'join_token', '3f2a…') // 'spiffe://example.org/spire/agent/join_token/3f2a…'
 */
export function agentSpiffeId(td: TrustDomain | string, attestor: string, value: string): string {
  return `spiffe://${tdName(td)}${AGENT_ID_PREFIX}${attestor}/${value}`;
}

/**
 * Why `id` is reserved for identities only the server issues, or `undefined` when a workload may
 * have it. Reserved: every path under `/nevertrust/`, `/spire/` and `/device/`.
 *
 * @example
 * reservedIdReason(parseSpiffeId('spiffe://example.org/nevertrust/server'))
 * // 'spiffe://example.org/nevertrust/server is reserved: /nevertrust/ identities are issued only by the server'
 * reservedIdReason(parseSpiffeId('spiffe://example.org/ns/prod/sa/api')) // undefined
 */
export function reservedIdReason(id: SpiffeId): string | undefined {
  const first = id.segments[0];
  if (first === undefined) return undefined;
  const ns = RESERVED_NAMESPACES.find((r) => r === first);
  if (ns === undefined) return undefined;
  const what = ns === 'nevertrust' ? 'the control plane' : ns === 'spire' ? 'attested agents' : 'attested devices';
  return `${id.toString()} is reserved: /${ns}/ identities are issued only by the server, for ${what}`;
}
