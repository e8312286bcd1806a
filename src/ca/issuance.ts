/**
 * What goes into an SVID, decided by the CA and never by the requester: the identity (a workload of
 * this trust domain), the DNS names, and the validity (backdated against clock skew, capped so it
 * never outlives the active generation), recorded on the generation before anything is signed; then
 * the issued chain. Signing itself is the generation's issuer's (or the signing pool's) job.
 */
import { parseSpiffeId, type SpiffeId, type TrustDomain } from '../spiffe/index.js';
import type { LeafParams } from './certificate.js';
import { CaError } from './errors.js';
import { floorSec, type Generation, NOT_BEFORE_CUSHION_SECONDS } from './generation.js';

/** What a caller asks of an X.509-SVID besides its key. */
export interface LeafRequest {
  spiffeId: SpiffeId | string;
  dnsNames?: readonly string[];
  ttlSeconds?: number;
}

/** An issued X.509-SVID. */
export interface IssuedX509Svid {
  spiffeId: SpiffeId;
  /** DER certificates, leaf first, then intermediates up to (not including) the bundle root. */
  chain: Buffer[];
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}

/** A leaf ready to sign with `g`: everything but its key, and the result it will make. */
export interface PreparedLeaf {
  g: Generation;
  leaf: Omit<LeafParams, 'spki' | 'family'>;
  result: Omit<IssuedX509Svid, 'chain' | 'serialHex'>;
  /** Whether `g`'s last X.509 expiry moved (the CA state must be saved). */
  extended: boolean;
}

const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** The CSR of a request (`csr`, `csrPem` or `csrDer`). @throws {CaError} when there is none */
export function csrOf(req: { csr?: string | Buffer; csrPem?: string; csrDer?: Buffer }): string | Buffer {
  const input = req.csr ?? req.csrPem ?? req.csrDer;
  if (input === undefined) throw new CaError('ERR_CA_INVALID_REQUEST', 'a CSR (csr, csrPem or csrDer) is required');
  return input;
}

/** A workload SPIFFE ID of `trustDomain`. @throws {CaError} for another domain or the trust domain's own ID */
export function memberId(trustDomain: TrustDomain, input: SpiffeId | string): SpiffeId {
  const id = typeof input === 'string' ? parseSpiffeId(input) : input;
  if (!id.memberOf(trustDomain)) {
    throw new CaError(
      'ERR_CA_TRUST_DOMAIN_MISMATCH',
      `${id.toString()} is not in trust domain ${trustDomain.name}: this CA signs only its own domain`,
    );
  }
  if (id.isTrustDomainId) {
    throw new CaError('ERR_CA_INVALID_REQUEST', 'an SVID needs a workload SPIFFE ID (with a path)');
  }
  return id;
}

/** The active generation, unexpired at `t`. @throws {CaError} when there is none */
export function activeAt(gens: readonly Generation[], t: number): Generation {
  const g = gens.find((x) => x.status === 'active');
  if (!g) throw new CaError('ERR_CA_NO_ACTIVE_AUTHORITY', 'the CA has no active authority (call open/tick)');
  if (t >= g.notAfter) {
    throw new CaError('ERR_CA_AUTHORITY_EXPIRED', 'the active CA has expired: tick() was not called in time');
  }
  return g;
}

/**
 * Everything about the leaf except its key: identity, DNS names and validity, from the caller and the CA.
 * `defaultTtlS` applies when the request names no TTL.
 */
export function prepareLeaf(
  trustDomain: TrustDomain,
  gens: readonly Generation[],
  req: LeafRequest,
  t: number,
  defaultTtlS: number,
): PreparedLeaf {
  const id = memberId(trustDomain, req.spiffeId);
  const dnsNames = req.dnsNames ?? [];
  for (const d of dnsNames) {
    if (typeof d !== 'string' || d.length > 253 || !DNS_NAME.test(d)) {
      throw new CaError('ERR_CA_INVALID_DNS_NAME', `${JSON.stringify(d)} is not a valid DNS name`);
    }
  }
  const ttl = req.ttlSeconds ?? defaultTtlS;
  if (!(ttl > 0)) throw new CaError('ERR_CA_INVALID_TTL', 'the X.509-SVID TTL must be positive');
  const g = activeAt(gens, t);
  const notBefore = Math.max(floorSec(t - NOT_BEFORE_CUSHION_SECONDS * 1000), g.notBefore);
  // Capped: an SVID never outlives the CA that signs it.
  const notAfter = Math.min(floorSec(t + ttl * 1000), g.notAfter);
  if (notAfter <= t) throw new CaError('ERR_CA_AUTHORITY_EXPIRED', 'the active CA expires before the SVID could start');
  // Recorded before signing, so retention covers the SVID even if the process stops right after.
  let extended = false;
  if (notAfter > g.x509LastExpiry) {
    g.x509LastExpiry = notAfter;
    extended = true;
  }
  const nb = new Date(notBefore);
  const na = new Date(notAfter);
  return {
    g,
    leaf: { spiffeId: id.toString(), dnsNames, notBefore: nb, notAfter: na },
    result: { spiffeId: id, notBefore: nb, notAfter: na },
    extended,
  };
}

/** The issued SVID: the signed leaf, then the generation's chain tail. */
export function finishLeaf(p: PreparedLeaf, der: Buffer, serialHex: string): IssuedX509Svid {
  const tail = p.g.chainTail;
  return { ...p.result, chain: tail.length === 0 ? [der] : [der, ...tail], serialHex };
}
