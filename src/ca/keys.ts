/**
 * Key types the CA uses, and the signature algorithm that goes with each.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { JwtSvidAlgorithm } from '../spiffe/index.js';
import { DER_NULL, oid, seq } from '../spiffe/der.js';

/** CA / SVID key types: EC P-256 (default, as SPIRE), EC P-384, RSA-2048. */
export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048';

export const DEFAULT_KEY_TYPE: KeyType = 'ec-p256';

/**
 * Generates a private key of the given type.
 *
 * @example
 * ```ts
 * const key = generatePrivateKey('ec-p256');
 * key.export({ format: 'der', type: 'pkcs8' }); // PKCS#8 DER
 * ```
 */
export function generatePrivateKey(type: KeyType = DEFAULT_KEY_TYPE): KeyObject {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'ec-p384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  }
}

/** How a key signs certificates and JWTs. */
export interface SignatureProfile {
  /** AlgorithmIdentifier DER for X.509 `signature` / `signatureAlgorithm`. */
  algorithmIdentifier: Buffer;
  /** Hash name for `crypto.sign`. */
  hash: 'sha256' | 'sha384' | 'sha512';
  /** JWS algorithm for JWT-SVIDs. */
  jwsAlg: JwtSvidAlgorithm;
  /** Leaf key-usage family of this key. */
  family: 'ec' | 'rsa';
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));
const ECDSA_SHA384 = seq(oid('1.2.840.10045.4.3.3'));
const ECDSA_SHA512 = seq(oid('1.2.840.10045.4.3.4'));
const RSA_SHA256 = seq(oid('1.2.840.113549.1.1.11'), DER_NULL);

/** The signature profile for a (public or private) key; throws for unsupported key types. */
export function signatureProfile(key: KeyObject): SignatureProfile {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1')
      return { algorithmIdentifier: ECDSA_SHA256, hash: 'sha256', jwsAlg: 'ES256', family: 'ec' };
    if (curve === 'secp384r1')
      return { algorithmIdentifier: ECDSA_SHA384, hash: 'sha384', jwsAlg: 'ES384', family: 'ec' };
    if (curve === 'secp521r1')
      return { algorithmIdentifier: ECDSA_SHA512, hash: 'sha512', jwsAlg: 'ES512', family: 'ec' };
  }
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) {
    return { algorithmIdentifier: RSA_SHA256, hash: 'sha256', jwsAlg: 'RS256', family: 'rsa' };
  }
  throw new TypeError(
    `unsupported key: ${key.asymmetricKeyType ?? 'unknown'} (use EC P-256/P-384/P-521 or RSA of at least 2048 bits)`,
  );
}

/** PKCS#8 DER of a private key (for sealing or for the Workload API `x509_svid_key`). */
export function exportPkcs8(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'pkcs8' });
}
