/**
 * PKCS#10 certificate requests: proof of possession only. Nothing else the request asks for
 * (subject, SANs, extensions) is used — identity comes from the caller's authorization.
 */
import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { bits, children, DerError, decodeOid, oid, readOne, seq, smallInt, TAG, tlv } from '../spiffe/der.js';
import { pemBlocks, toPem } from '../spiffe/pem.js';
import { spkiOf } from './certificate.js';
import { CsrError } from './errors.js';
import { signatureProfile } from './keys.js';
import { nativeP256Verify } from './p256-native.js';

const CSR_SIG_HASH: Record<string, 'sha256' | 'sha384' | 'sha512'> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

const EC_CURVES: Record<string, { crv: string; len: number }> = {
  '1.2.840.10045.3.1.7': { crv: 'P-256', len: 32 },
  '1.3.132.0.34': { crv: 'P-384', len: 48 },
};

/**
 * Public key from SPKI DER. OpenSSL 3's DER decoder costs more than the signature check itself,
 * so uncompressed EC points and RSA keys go through JWK import (about twice as fast); anything
 * else falls back to the DER path. Both validate the key (EC points must be on the curve).
 */
function importSpki(spki: Buffer): { key: KeyObject; family?: 'ec' | 'rsa' } {
  const [alg, bitsTlv] = children(readOne(spki, TAG.SEQUENCE).value);
  if (alg && bitsTlv && bitsTlv.tag === TAG.BIT_STRING && bitsTlv.value[0] === 0) {
    const [algOid, param] = children(alg.value);
    const algId = algOid ? decodeOid(algOid.value) : '';
    const key = bitsTlv.value.subarray(1);
    if (algId === '1.2.840.10045.2.1' && param?.tag === TAG.OID) {
      const curve = EC_CURVES[decodeOid(param.value)];
      if (curve && key.length === 1 + 2 * curve.len && key[0] === 0x04) {
        const x = key.subarray(1, 1 + curve.len).toString('base64url');
        const y = key.subarray(1 + curve.len).toString('base64url');
        return { key: createPublicKey({ key: { kty: 'EC', crv: curve.crv, x, y }, format: 'jwk' }), family: 'ec' };
      }
    } else if (algId === '1.2.840.113549.1.1.1') {
      const [n, e] = children(readOne(key, TAG.SEQUENCE).value);
      if (n?.tag === TAG.INTEGER && e?.tag === TAG.INTEGER) {
        const strip = (b: Buffer) => (b.length > 1 && b[0] === 0 ? b.subarray(1) : b);
        const rsa = createPublicKey({
          key: { kty: 'RSA', n: strip(n.value).toString('base64url'), e: strip(e.value).toString('base64url') },
          format: 'jwk',
        });
        // the modulus size still has to be checked
        return { key: rsa };
      }
    }
  }
  return { key: createPublicKey({ key: spki, format: 'der', type: 'spki' }) };
}

/** A request whose signature verified. */
export interface VerifiedCsr {
  /** SubjectPublicKeyInfo DER, copied into the certificate as is. */
  spki: Buffer;
  family: 'ec' | 'rsa';
}

/**
 * Decodes a PKCS#10 request (PEM or DER) and verifies its signature with the key it carries.
 * Accepts EC P-256/P-384 and RSA ≥ 2048 keys, ECDSA or RSA PKCS#1 v1.5 signatures with SHA-2.
 *
 * @example
 * ```ts
 * const { spki } = verifyCsr(csrPem);
 * ```
 * @throws {CsrError} ERR_CSR_MALFORMED, ERR_CSR_UNSUPPORTED_ALGORITHM, ERR_CSR_UNSUPPORTED_KEY, ERR_CSR_BAD_SIGNATURE
 */
export function verifyCsr(csr: string | Buffer): VerifiedCsr {
  const fast = verifyP256Native(csr);
  if (fast) return fast;
  const d = decodeCsr(csr);
  let ok = false;
  try {
    ok = verify(d.hash, d.cri, d.publicKey, d.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw badSignature();
  return { spki: d.spki, family: d.family };
}

/**
 * Like {@link verifyCsr}, but the signature check runs on libuv's thread pool, so concurrent
 * requests use every core.
 *
 * @example
 * ```ts
 * const { spki } = await verifyCsrAsync(csrDer);
 * ```
 */
export function verifyCsrAsync(csr: string | Buffer): Promise<VerifiedCsr> {
  let d: DecodedCsr;
  try {
    const fast = verifyP256Native(csr);
    if (fast) return Promise.resolve(fast);
    d = decodeCsr(csr);
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    verify(d.hash, d.cri, d.publicKey, d.signature, (err, ok) => {
      if (err || !ok) reject(badSignature());
      else resolve({ spki: d.spki, family: d.family });
    });
  });
}

function badSignature(): CsrError {
  return new CsrError('ERR_CSR_BAD_SIGNATURE', 'PKCS#10: the signature does not verify (no proof of possession)');
}

/**
 * The common case — an EC P-256 key and ecdsa-with-SHA256 — checked by the native addon when it is
 * built; undefined for anything else (or without the addon), which then takes the node:crypto path.
 */
function verifyP256Native(csr: string | Buffer): VerifiedCsr | undefined {
  const check = nativeP256Verify();
  if (!check) return undefined;
  const r = readCsr(csr);
  if (r.sigAlgOid !== '1.2.840.10045.4.3.2') return undefined;
  const point = p256Point(r.spki);
  if (!point) return undefined;
  let ok: boolean;
  try {
    ok = check(point, r.cri, r.signature);
  } catch {
    throw new CsrError('ERR_CSR_MALFORMED', 'PKCS#10: subjectPKInfo is not a valid public key');
  }
  if (!ok) throw badSignature();
  return { spki: r.spki, family: 'ec' };
}

/** The uncompressed point of a P-256 SubjectPublicKeyInfo, or undefined for any other key. */
function p256Point(spki: Buffer): Buffer | undefined {
  try {
    const [alg, bitsTlv] = children(readOne(spki, TAG.SEQUENCE).value);
    if (!alg || !bitsTlv || bitsTlv.tag !== TAG.BIT_STRING || bitsTlv.value[0] !== 0) return undefined;
    const [algOid, param] = children(alg.value);
    if (!algOid || decodeOid(algOid.value) !== '1.2.840.10045.2.1' || param?.tag !== TAG.OID) return undefined;
    if (decodeOid(param.value) !== '1.2.840.10045.3.1.7') return undefined;
    const key = bitsTlv.value.subarray(1);
    return key.length === 65 && key[0] === 0x04 ? key : undefined;
  } catch {
    return undefined;
  }
}

interface DecodedCsr extends VerifiedCsr {
  publicKey: KeyObject;
  cri: Buffer;
  hash: 'sha256' | 'sha384' | 'sha512';
  signature: Buffer;
}

/** The parts of a request, parsed but not checked. */
function readCsr(csr: string | Buffer): {
  cri: Buffer;
  spki: Buffer;
  hash: 'sha256' | 'sha384' | 'sha512';
  sigAlgOid: string;
  signature: Buffer;
} {
  let der: Buffer;
  if (typeof csr === 'string') {
    const blocks = pemBlocks(csr, 'CERTIFICATE REQUEST');
    if (blocks.length !== 1) {
      throw new CsrError('ERR_CSR_MALFORMED', 'expected exactly one PEM "CERTIFICATE REQUEST" block');
    }
    der = blocks[0] as Buffer;
  } else {
    der = csr;
  }
  let cri: Buffer;
  let spki: Buffer;
  let hash: 'sha256' | 'sha384' | 'sha512' | undefined;
  let sigAlgOid: string;
  let signature: Buffer;
  try {
    const [criTlv, algTlv, sigTlv] = children(readOne(der, TAG.SEQUENCE).value);
    if (!criTlv || !algTlv || !sigTlv || sigTlv.tag !== TAG.BIT_STRING)
      throw new DerError('not a CertificationRequest');
    const parts = children(criTlv.value);
    const spkiTlv = parts[2];
    if (!spkiTlv || spkiTlv.tag !== TAG.SEQUENCE) throw new DerError('missing subjectPKInfo');
    cri = criTlv.raw;
    spki = spkiTlv.raw;
    sigAlgOid = decodeOid((children(algTlv.value)[0] as { value: Buffer }).value);
    hash = CSR_SIG_HASH[sigAlgOid];
    if (sigTlv.value[0] !== 0) throw new DerError('signature BIT STRING has unused bits');
    signature = sigTlv.value.subarray(1);
  } catch (e) {
    throw new CsrError('ERR_CSR_MALFORMED', `PKCS#10: the request is malformed (${(e as Error).message})`);
  }
  if (!hash) {
    throw new CsrError('ERR_CSR_UNSUPPORTED_ALGORITHM', `PKCS#10: signature algorithm ${sigAlgOid} is not supported`);
  }
  return { cri, spki, hash, sigAlgOid, signature };
}

function decodeCsr(csr: string | Buffer): DecodedCsr {
  const { cri, spki, hash, sigAlgOid, signature } = readCsr(csr);
  let imported: { key: KeyObject; family?: 'ec' | 'rsa' };
  try {
    imported = importSpki(spki);
  } catch {
    throw new CsrError('ERR_CSR_MALFORMED', 'PKCS#10: subjectPKInfo is not a valid public key');
  }
  const publicKey = imported.key;
  // The fast path already knows the curve; asking OpenSSL again costs a round-trip per request.
  let family = imported.family;
  if (!family) {
    const t = publicKey.asymmetricKeyType;
    const d = publicKey.asymmetricKeyDetails;
    if (t === 'ec' && (d?.namedCurve === 'prime256v1' || d?.namedCurve === 'secp384r1')) family = 'ec';
    else if (t === 'rsa' && (d?.modulusLength ?? 0) >= 2048) family = 'rsa';
    else {
      throw new CsrError(
        'ERR_CSR_UNSUPPORTED_KEY',
        `the workload key must be EC P-256/P-384 or RSA ≥ 2048 bits (got ${t ?? 'unknown'} ${d?.namedCurve ?? d?.modulusLength ?? ''})`,
      );
    }
  }
  const sigIsEc = sigAlgOid.startsWith('1.2.840.10045.');
  if (sigIsEc !== (family === 'ec')) {
    throw new CsrError('ERR_CSR_UNSUPPORTED_ALGORITHM', 'PKCS#10: the signature algorithm does not match the key type');
  }
  return { spki, publicKey, family, cri, hash, signature };
}

/**
 * Creates a minimal PKCS#10 request (empty subject, no attributes) signed by `privateKey`:
 * what an agent sends to get an X.509-SVID for a key that never leaves it.
 *
 * @example
 * ```ts
 * const key = generatePrivateKey();
 * const csrDer = createCsr(key);
 * ```
 */
export function createCsr(privateKey: KeyObject): Buffer {
  const profile = signatureProfile(privateKey);
  const cri = requestInfo(privateKey);
  return seq(cri, profile.algorithmIdentifier, bits(sign(profile.hash, cri, privateKey)));
}

const EXTENSION_REQUEST = oid('1.2.840.113549.1.9.14');
const SUBJECT_ALT_NAME = oid('2.5.29.17');

/** The CertificationRequestInfo: version 0, empty subject, the key, and a URI SAN request when given. */
function requestInfo(key: KeyObject, uriSan?: string): Buffer {
  const attributes = uriSan
    ? tlv(
        0xa0,
        seq(
          EXTENSION_REQUEST,
          tlv(0x31, seq(seq(SUBJECT_ALT_NAME, tlv(TAG.OCTET_STRING, seq(tlv(0x86, Buffer.from(uriSan, 'utf8'))))))),
        ),
      )
    : tlv(0xa0);
  return seq(smallInt(0), seq(), spkiOf(key), attributes);
}

/**
 * Like {@link createCsr}, for a key held elsewhere (a device key file today, a TPM later): `signCri`
 * signs the request info with the key of `publicKey` (the hash of its {@link signatureProfile}, DER
 * signature), and `uriSan` asks for a URI SAN in an extensionRequest. The CA still takes identity
 * from its caller's authorization, never from the request.
 *
 * @example
 * ```ts
 * const der = await createCsrWithSigner(publicKey, (cri) => deviceKey.sign(cri), { uriSan: 'spiffe://example.org/device/d1' });
 * ```
 */
export async function createCsrWithSigner(
  publicKey: KeyObject,
  signCri: (cri: Buffer) => Promise<Buffer>,
  options: { uriSan?: string } = {},
): Promise<Buffer> {
  const profile = signatureProfile(publicKey);
  const cri = requestInfo(publicKey, options.uriSan);
  return seq(cri, profile.algorithmIdentifier, bits(await signCri(cri)));
}

/** PEM text of a DER CSR. */
export function csrToPem(der: Buffer): string {
  return toPem(der, 'CERTIFICATE REQUEST');
}

/**
 * The URI SANs a request asks for in its extensionRequest (none: `[]`). The CA never takes identity
 * from a request; this is for callers that must refuse a request naming another identity than the
 * one they will issue (device enrollment: the device key signed for exactly its own ID).
 *
 * @example
 * ```ts
 * csrRequestedUris(csrPem); // ['spiffe://example.org/device/d1']
 * ```
 * @throws {CsrError} ERR_CSR_MALFORMED
 */
export function csrRequestedUris(csr: string | Buffer): string[] {
  const { cri } = readCsr(csr);
  const uris: string[] = [];
  try {
    const attrs = children(readOne(cri, TAG.SEQUENCE).value)[3];
    if (attrs?.tag !== 0xa0) return uris;
    for (const attr of children(attrs.value)) {
      const [type, values] = children(attr.value);
      if (!type || !values || decodeOid(type.value) !== '1.2.840.113549.1.9.14') continue;
      for (const exts of children(values.value)) {
        for (const ext of children(exts.value)) {
          const parts = children(ext.value);
          const extOid = parts[0];
          const value = parts[parts.length - 1];
          if (!extOid || !value || decodeOid(extOid.value) !== '2.5.29.17' || value.tag !== TAG.OCTET_STRING) continue;
          for (const name of children(readOne(value.value, TAG.SEQUENCE).value))
            if (name.tag === 0x86) uris.push(name.value.toString('utf8'));
        }
      }
    }
  } catch (e) {
    throw new CsrError(
      'ERR_CSR_MALFORMED',
      `PKCS#10: the request's attributes are malformed (${(e as Error).message})`,
    );
  }
  return uris;
}
