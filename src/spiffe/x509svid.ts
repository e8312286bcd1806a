/**
 * X.509-SVID validation (spiffe/spiffe `standards/X509-SVID.md` §5): RFC 5280 path
 * validation against the bundle of the leaf's own trust domain, then the SPIFFE leaf
 * and signing-certificate rules. No TLS handshake is needed, so certificates that a
 * proxy forwarded (XFCC) are checked the same way as a live peer's.
 */
import { X509Certificate } from 'node:crypto';
import { NevertrustError } from '../errors.js';
import type { BundleSource } from './bundle.js';
import { type ParsedCert, KU, OID, parseCert, splitDerChain } from './cert.js';
import { children, DerError, readOne, TAG } from './der.js';
import { parseSpiffeId, type SpiffeId, SpiffeIdError } from './id.js';
import { certificatesFromPem } from './pem.js';

export type X509SvidErrorCode =
  | 'ERR_X509SVID_EMPTY_CHAIN'
  | 'ERR_X509SVID_MALFORMED'
  | 'ERR_X509SVID_NO_URI_SAN'
  | 'ERR_X509SVID_MULTIPLE_URI_SANS'
  | 'ERR_X509SVID_INVALID_SPIFFE_ID'
  | 'ERR_X509SVID_LEAF_ID_WITHOUT_PATH'
  | 'ERR_X509SVID_LEAF_IS_CA'
  | 'ERR_X509SVID_LEAF_KEY_USAGE_MISSING'
  | 'ERR_X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL'
  | 'ERR_X509SVID_LEAF_NO_DIGITAL_SIGNATURE'
  | 'ERR_X509SVID_LEAF_KEY_CERT_SIGN'
  | 'ERR_X509SVID_LEAF_CRL_SIGN'
  | 'ERR_X509SVID_LEAF_EXT_KEY_USAGE'
  | 'ERR_X509SVID_SELF_SIGNED_LEAF'
  | 'ERR_X509SVID_NO_BUNDLE'
  | 'ERR_X509SVID_UNKNOWN_AUTHORITY'
  | 'ERR_X509SVID_BAD_SIGNATURE'
  | 'ERR_X509SVID_EXPIRED'
  | 'ERR_X509SVID_NOT_YET_VALID'
  | 'ERR_X509SVID_SIGNER_NOT_CA'
  | 'ERR_X509SVID_SIGNER_NO_KEY_CERT_SIGN'
  | 'ERR_X509SVID_PATH_LEN_EXCEEDED'
  | 'ERR_X509SVID_SIGNER_ID_HAS_PATH'
  | 'ERR_X509SVID_UNHANDLED_CRITICAL_EXTENSION'
  | 'ERR_X509SVID_NAME_CONSTRAINT_VIOLATION'
  | 'ERR_X509SVID_NAME_CONSTRAINTS_UNSUPPORTED';

/** Thrown when an X.509-SVID chain fails validation; `code` names the failed rule. */
export class X509SvidError extends NevertrustError<X509SvidErrorCode> {
  override readonly name = 'X509SvidError';
  constructor(
    readonly code: X509SvidErrorCode,
    message: string,
  ) {
    // The presented credential is refused: an authentication failure, the presenter's fault.
    super(message, { status: 401 });
  }
}

/** A chain as DER buffers (leaf first), Node certificates, concatenated DER, or PEM text. */
export type CertificateChainInput = ReadonlyArray<Buffer | Uint8Array | X509Certificate> | Buffer | string;

export interface X509SvidValidationOptions {
  /** Validation time; defaults to the current time. */
  now?: Date;
}

export interface VerifiedX509Svid {
  spiffeId: SpiffeId;
  /** The verified path, leaf first, ending with the bundle authority (DER). */
  verifiedChain: Buffer[];
  /** Earliest notAfter on the path: when this result stops being true. */
  expiresAt: Date;
}

const MAX_PATH_DEPTH = 8;
/** Longest chain accepted as input; SVID chains are a handful of certificates. */
export const MAX_CHAIN_CERTIFICATES = 16;
// Bounds the path search: hostile chains of same-name, same-key certificates must not
// turn path building into a combinatorial number of signature checks.
const MAX_SIGNATURE_CHECKS = 64;
// Extensions this validator evaluates; any other critical extension fails closed (RFC 5280 §4.2).
const HANDLED_EXTENSIONS = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.nameConstraints,
]);

interface NameConstraints {
  permittedUri: string[];
  excludedUri: string[];
  permittedDns: string[];
  excludedDns: string[];
}

/** RFC 5280 §4.2.1.10, URI and DNS forms only; any other form fails closed. */
function parseNameConstraints(value: Buffer, who: string): NameConstraints {
  const nc: NameConstraints = { permittedUri: [], excludedUri: [], permittedDns: [], excludedDns: [] };
  for (const subtrees of children(readOne(value, TAG.SEQUENCE).value)) {
    const permitted = subtrees.tag === 0xa0;
    if (!permitted && subtrees.tag !== 0xa1) throw new DerError('bad NameConstraints');
    for (const st of children(subtrees.value)) {
      const [base, ...rest] = children(readOne(st.raw, TAG.SEQUENCE).value);
      if (!base || rest.length > 0) {
        // minimum/maximum are not used by this profile (RFC 5280: MUST be absent)
        throw new X509SvidError(
          'ERR_X509SVID_NAME_CONSTRAINTS_UNSUPPORTED',
          `RFC 5280 §4.2.1.10: ${who} uses minimum/maximum`,
        );
      }
      const name = base.value.toString('latin1').toLowerCase();
      if (base.tag === 0x86) (permitted ? nc.permittedUri : nc.excludedUri).push(name);
      else if (base.tag === 0x82) (permitted ? nc.permittedDns : nc.excludedDns).push(name);
      else {
        throw new X509SvidError(
          'ERR_X509SVID_NAME_CONSTRAINTS_UNSUPPORTED',
          `RFC 5280 §4.2.1.10: ${who} has a name constraint form (tag 0x${base.tag.toString(16)}) this validator does not process`,
        );
      }
    }
  }
  return nc;
}

/** URI constraint: "host" matches exactly; ".domain" matches any host below it. */
function uriHostMatches(host: string, c: string): boolean {
  return c.startsWith('.') ? host.endsWith(c) : host === c;
}

/** DNS constraint: the name itself or any name with labels added on the left. */
function dnsMatches(name: string, c: string): boolean {
  if (c === '') return true;
  if (c.startsWith('.')) return name.endsWith(c);
  return name === c || name.endsWith(`.${c}`);
}

function uriHost(uri: string): string {
  const rest = uri.slice(uri.indexOf('://') + 3);
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  return authority
    .slice(authority.lastIndexOf('@') + 1)
    .replace(/:\d*$/, '')
    .toLowerCase();
}

function checkNameConstraints(nc: NameConstraints, c: ParsedCert, who: string, subject: string): void {
  const violation = (name: string) =>
    new X509SvidError(
      'ERR_X509SVID_NAME_CONSTRAINT_VIOLATION',
      `RFC 5280 §4.2.1.10: ${subject} name ${name} is outside the name constraints of ${who}`,
    );
  for (const uri of c.uris) {
    const host = uriHost(uri);
    if (nc.permittedUri.length > 0 && !nc.permittedUri.some((p) => uriHostMatches(host, p))) throw violation(uri);
    if (nc.excludedUri.some((x) => uriHostMatches(host, x))) throw violation(uri);
  }
  for (const dns of c.dnsNames) {
    const d = dns.toLowerCase();
    if (nc.permittedDns.length > 0 && !nc.permittedDns.some((p) => dnsMatches(d, p))) throw violation(dns);
    if (nc.excludedDns.some((x) => dnsMatches(d, x))) throw violation(dns);
  }
}

function toDerList(chain: CertificateChainInput): Buffer[] {
  if (typeof chain === 'string') return certificatesFromPem(chain);
  if (Buffer.isBuffer(chain)) return splitDerChain(chain);
  return chain.map((c) =>
    c instanceof X509Certificate ? c.raw : Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength),
  );
}

function parseAll(ders: Buffer[], what: string): ParsedCert[] {
  return ders.map((d, i) => {
    try {
      return parseCert(d);
    } catch (e) {
      throw new X509SvidError(
        'ERR_X509SVID_MALFORMED',
        `${what} certificate ${i} is malformed: ${(e as Error).message}`,
      );
    }
  });
}

function signedBy(child: ParsedCert, issuer: ParsedCert): boolean {
  try {
    return child.node.verify(issuer.node.publicKey);
  } catch {
    return false;
  }
}

/**
 * Extracts the SPIFFE ID of a certificate's single URI SAN, without validating the chain
 * (for use after a TLS stack already verified the peer against the same bundle).
 *
 * @example
 * ```ts
 * const id = spiffeIdFromCertificate(tlsSocket.getPeerCertificate().raw);
 * ```
 * @throws {X509SvidError} ERR_X509SVID_NO_URI_SAN, ERR_X509SVID_MULTIPLE_URI_SANS, ERR_X509SVID_INVALID_SPIFFE_ID,
 *   ERR_X509SVID_LEAF_ID_WITHOUT_PATH
 */
export function spiffeIdFromCertificate(cert: Buffer | X509Certificate): SpiffeId {
  const [leaf] = parseAll([cert instanceof X509Certificate ? cert.raw : cert], 'leaf');
  return leafId(leaf as ParsedCert);
}

function leafId(leaf: ParsedCert): SpiffeId {
  if (leaf.uris.length === 0) {
    throw new X509SvidError(
      'ERR_X509SVID_NO_URI_SAN',
      'X509-SVID §2: the leaf must have exactly one URI SAN, found none',
    );
  }
  if (leaf.uris.length > 1) {
    throw new X509SvidError(
      'ERR_X509SVID_MULTIPLE_URI_SANS',
      `X509-SVID §2: the leaf must have exactly one URI SAN, found ${leaf.uris.length}`,
    );
  }
  let id: SpiffeId;
  try {
    id = parseSpiffeId(leaf.uris[0] as string);
  } catch (e) {
    const why = e instanceof SpiffeIdError ? `${e.code}: ${e.message}` : String(e);
    throw new X509SvidError('ERR_X509SVID_INVALID_SPIFFE_ID', `X509-SVID §2: the URI SAN is not a SPIFFE ID (${why})`);
  }
  // A trust-domain ID names the authority, never a workload: a leaf claiming it would impersonate the CA.
  if (id.isTrustDomainId) {
    throw new X509SvidError(
      'ERR_X509SVID_LEAF_ID_WITHOUT_PATH',
      `X509-SVID §3.1/§5.2: a leaf SVID's SPIFFE ID must have a non-root path (found ${id.toString()})`,
    );
  }
  return id;
}

function checkLeafProfile(leaf: ParsedCert): void {
  if (leaf.basicConstraints?.ca) {
    throw new X509SvidError('ERR_X509SVID_LEAF_IS_CA', 'X509-SVID §4.1: a leaf SVID must have cA=false');
  }
  const ku = leaf.extensions.get(OID.keyUsage);
  if (!ku || leaf.keyUsage === undefined) {
    throw new X509SvidError('ERR_X509SVID_LEAF_KEY_USAGE_MISSING', 'X509-SVID §4.3: a leaf SVID must have key usage');
  }
  if (!ku.critical) {
    throw new X509SvidError(
      'ERR_X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL',
      'X509-SVID §4.3: the key usage extension must be critical',
    );
  }
  if (!(leaf.keyUsage & KU.digitalSignature)) {
    throw new X509SvidError(
      'ERR_X509SVID_LEAF_NO_DIGITAL_SIGNATURE',
      'X509-SVID §4.3: a leaf SVID must have the digitalSignature key usage',
    );
  }
  if (leaf.keyUsage & KU.keyCertSign) {
    throw new X509SvidError('ERR_X509SVID_LEAF_KEY_CERT_SIGN', 'X509-SVID §4.3: a leaf SVID must not have keyCertSign');
  }
  if (leaf.keyUsage & KU.cRLSign) {
    throw new X509SvidError('ERR_X509SVID_LEAF_CRL_SIGN', 'X509-SVID §4.3: a leaf SVID must not have cRLSign');
  }
  if (leaf.extKeyUsage) {
    const eku = leaf.extKeyUsage;
    const any = eku.includes(OID.anyExtendedKeyUsage);
    if (!any && !(eku.includes(OID.serverAuth) && eku.includes(OID.clientAuth))) {
      throw new X509SvidError(
        'ERR_X509SVID_LEAF_EXT_KEY_USAGE',
        'X509-SVID §4.4: extended key usage, when present, must include serverAuth and clientAuth',
      );
    }
  }
}

/**
 * Validates an X.509-SVID chain and returns the verified SPIFFE ID with the path and its expiry.
 * See {@link validateX509Svid} for the rules.
 *
 * @example
 * ```ts
 * const { spiffeId, expiresAt } = verifyX509Svid(pemChain, bundle);
 * ```
 */
export function verifyX509Svid(
  chain: CertificateChainInput,
  bundles: BundleSource,
  opts: X509SvidValidationOptions = {},
): VerifiedX509Svid {
  const now = opts.now ?? new Date();
  const ders = toDerList(chain);
  if (ders.length === 0) throw new X509SvidError('ERR_X509SVID_EMPTY_CHAIN', 'X509-SVID §5: the chain is empty');
  if (ders.length > MAX_CHAIN_CERTIFICATES) {
    throw new X509SvidError(
      'ERR_X509SVID_MALFORMED',
      `the chain has ${ders.length} certificates; at most ${MAX_CHAIN_CERTIFICATES} are accepted`,
    );
  }
  const certs = parseAll(ders, 'chain');
  const leaf = certs[0] as ParsedCert;
  const id = leafId(leaf);
  checkLeafProfile(leaf);

  if (leaf.issuer.equals(leaf.subject) && signedBy(leaf, leaf)) {
    throw new X509SvidError(
      'ERR_X509SVID_SELF_SIGNED_LEAF',
      'X509-SVID §3: a leaf SVID must be signed by a signing certificate, not by itself',
    );
  }

  const bundle = bundles.getBundleForTrustDomain(id.trustDomain);
  if (!bundle) {
    throw new X509SvidError(
      'ERR_X509SVID_NO_BUNDLE',
      `X509-SVID §5.1: no trust bundle for trust domain ${id.trustDomain.name}`,
    );
  }
  const anchors = parseAll(bundle.x509Authorities as Buffer[], 'bundle');
  const intermediates = certs.slice(1);

  // Depth-first path building: the chain may carry extra or out-of-order certificates.
  let sawBadSignature = false;
  let budget = MAX_SIGNATURE_CHECKS;
  const dead = new Set<ParsedCert>();
  const signedWithinBudget = (child: ParsedCert, issuer: ParsedCert): boolean => {
    if (--budget < 0) {
      throw new X509SvidError('ERR_X509SVID_UNKNOWN_AUTHORITY', 'RFC 5280 §6.1: path search budget exhausted');
    }
    return signedBy(child, issuer);
  };
  const build = (cert: ParsedCert, path: ParsedCert[]): ParsedCert[] | undefined => {
    if (path.length > MAX_PATH_DEPTH) return undefined;
    for (const a of anchors) {
      if (!a.subject.equals(cert.issuer)) continue;
      if (signedWithinBudget(cert, a)) return [...path, a];
      sawBadSignature = true;
    }
    for (const c of intermediates) {
      if (dead.has(c) || path.includes(c) || !c.subject.equals(cert.issuer)) continue;
      if (!signedWithinBudget(cert, c)) {
        sawBadSignature = true;
        continue;
      }
      const found = build(c, [...path, c]);
      if (found) return found;
      dead.add(c);
    }
    return undefined;
  };
  const path = build(leaf, [leaf]);
  if (!path) {
    if (sawBadSignature) {
      throw new X509SvidError(
        'ERR_X509SVID_BAD_SIGNATURE',
        'RFC 5280 §6.1.3: a certificate signature does not verify with its issuer key',
      );
    }
    throw new X509SvidError(
      'ERR_X509SVID_UNKNOWN_AUTHORITY',
      `RFC 5280 §6.1: no path from the leaf to an X.509 authority of trust domain ${id.trustDomain.name}`,
    );
  }

  let expiresAt = leaf.notAfter;
  for (const [k, c] of path.entries()) {
    const who = k === 0 ? 'the leaf' : k === path.length - 1 ? 'the bundle authority' : `intermediate ${k}`;
    if (now.getTime() < c.notBefore.getTime()) {
      throw new X509SvidError(
        'ERR_X509SVID_NOT_YET_VALID',
        `RFC 5280 §6.1.3: ${who} is not valid before ${c.notBefore.toISOString()}`,
      );
    }
    if (now.getTime() > c.notAfter.getTime()) {
      throw new X509SvidError('ERR_X509SVID_EXPIRED', `RFC 5280 §6.1.3: ${who} expired at ${c.notAfter.toISOString()}`);
    }
    if (c.notAfter < expiresAt) expiresAt = c.notAfter;
    for (const [oid, ext] of c.extensions) {
      if (ext.critical && !HANDLED_EXTENSIONS.has(oid)) {
        throw new X509SvidError(
          'ERR_X509SVID_UNHANDLED_CRITICAL_EXTENSION',
          `RFC 5280 §4.2: ${who} has a critical extension ${oid} that this validator does not process`,
        );
      }
    }
    if (k === 0) continue;
    if (!c.basicConstraints?.ca) {
      throw new X509SvidError('ERR_X509SVID_SIGNER_NOT_CA', `X509-SVID §4.1: ${who} signs but does not have cA=true`);
    }
    if (c.keyUsage === undefined || !(c.keyUsage & KU.keyCertSign)) {
      throw new X509SvidError(
        'ERR_X509SVID_SIGNER_NO_KEY_CERT_SIGN',
        `X509-SVID §4.3: ${who} signs but does not have the keyCertSign key usage`,
      );
    }
    // Intermediates strictly below this signer (the leaf is not counted).
    const below = k - 1;
    const pl = c.basicConstraints.pathLen;
    if (pl !== undefined && below > pl) {
      throw new X509SvidError(
        'ERR_X509SVID_PATH_LEN_EXCEEDED',
        `RFC 5280 §4.2.1.9: ${who} allows ${pl} intermediate(s) below it, the path has ${below}`,
      );
    }
    const ncExt = c.extensions.get(OID.nameConstraints);
    if (ncExt) {
      let nc: NameConstraints;
      try {
        nc = parseNameConstraints(ncExt.value, who);
      } catch (e) {
        if (e instanceof X509SvidError) throw e;
        throw new X509SvidError('ERR_X509SVID_MALFORMED', `${who} has malformed name constraints`);
      }
      // Applies to every certificate below this one, except self-issued intermediates (§6.1.3 (b)).
      for (let j = 0; j < k; j++) {
        const lower = path[j] as ParsedCert;
        if (j > 0 && lower.issuer.equals(lower.subject)) continue;
        checkNameConstraints(nc, lower, who, j === 0 ? 'the leaf' : `intermediate ${j}`);
      }
    }
    for (const uri of c.uris) {
      if (!uri.toLowerCase().startsWith('spiffe://')) continue;
      let signerId: SpiffeId | undefined;
      try {
        signerId = parseSpiffeId(uri);
      } catch {
        signerId = undefined;
      }
      if (!signerId?.isTrustDomainId) {
        throw new X509SvidError(
          'ERR_X509SVID_SIGNER_ID_HAS_PATH',
          `X509-SVID §3.2: the SPIFFE ID of ${who} must be a trust-domain ID without a path (found ${uri})`,
        );
      }
    }
  }
  return { spiffeId: id, verifiedChain: path.map((c) => c.der), expiresAt };
}

/**
 * Validates an X.509-SVID chain (leaf first; intermediates follow in any order) against the
 * bundle of the leaf's own trust domain and returns its SPIFFE ID.
 *
 * Checks: exactly one URI SAN holding a valid SPIFFE ID with a non-root path; leaf cA=false, key usage critical with
 * digitalSignature and without keyCertSign/cRLSign, EKU (if present) with serverAuth+clientAuth;
 * not self-signed; a signature path to a bundle authority; every certificate within its validity
 * window; every signer cA=true with keyCertSign and within its pathLen; signer SPIFFE IDs without path;
 * no unprocessed critical extension.
 *
 * @example
 * ```ts
 * const bundle = TrustBundle.fromPem('example.org', bundlePem);
 * const id = validateX509Svid(svidPem, bundle); // SpiffeId
 * id.toString(); // 'spiffe://example.org/ns/prod/sa/api'
 * ```
 * @throws {X509SvidError} with the `code` of the first failed rule
 */
export function validateX509Svid(
  chain: CertificateChainInput,
  bundles: BundleSource,
  opts: X509SvidValidationOptions = {},
): SpiffeId {
  return verifyX509Svid(chain, bundles, opts).spiffeId;
}
