/**
 * The optional native P-256 addon (`native/p256`, built at install), on the OpenSSL Node links:
 * - CSR checks: ECDSA-with-SHA-256 on a raw public point with the curve group built once per
 *   thread, about 2.4× Node's key import plus verify, because Node validates each imported key
 *   with roughly a scalar multiplication;
 * - the CA's P-256 signatures: the key is decoded once per CA generation and thread, where Node's
 *   `sign()` builds a provider context on every call (~20 % of the signature).
 * When the addon is missing (not built) or `NEVERTRUST_NATIVE_P256=0`, node:crypto does the same
 * work with the same answers (tested both ways).
 */
import type { KeyObject } from 'node:crypto';
import { optionalNativeAddon } from '../util/native-addon.js';

/** `verify(point, message, signature)`: throws on a point that is not on P-256. */
export type P256Verify = (point: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;

/** Signs `message` with ECDSA P-256 / SHA-256; returns the DER ECDSA-Sig-Value. */
export type P256Sign = (message: Uint8Array) => Buffer;

interface Addon {
  verify: P256Verify;
  signer: (pkcs8: Uint8Array) => object;
  sign: (handle: object, message: Uint8Array) => Buffer;
}

function addon(): Addon | undefined {
  return optionalNativeAddon<Addon>('p256', ['verify', 'signer', 'sign']);
}

/** The native check, or undefined when it is not available here. */
export function nativeP256Verify(): P256Verify | undefined {
  return addon()?.verify;
}

/**
 * A native signer for a P-256 private key, or undefined (no addon, or another kind of key).
 * The key's PKCS#8 bytes exist only for the call and are zeroed before it returns.
 */
export function nativeP256Signer(key: KeyObject): P256Sign | undefined {
  const a = addon();
  if (!a || key.type !== 'private' || key.asymmetricKeyType !== 'ec') return undefined;
  if (key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return undefined;
  const der = key.export({ format: 'der', type: 'pkcs8' });
  let handle: object;
  try {
    handle = a.signer(der);
  } finally {
    der.fill(0);
  }
  const sign = a.sign;
  return (message) => sign(handle, message);
}
