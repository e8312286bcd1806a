/**
 * The optional native P-256 check (`native/p256`, built at install): ECDSA-with-SHA-256 on a raw
 * public point with the curve group built once per thread, about 2.4× Node's key import plus
 * verify, because Node validates each imported key with roughly a scalar multiplication. When the
 * addon is missing (not built) or `NEVERTRUST_NATIVE_P256=0`, CSRs are checked with node:crypto,
 * which gives the same answers (tested both ways).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from '../workload/paths.js';

/** `verify(point, message, signature)`: throws on a point that is not on P-256. */
export type P256Verify = (point: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;

let loaded: P256Verify | null | undefined;

/** The native check, or undefined when it is not available here. */
export function nativeP256Verify(): P256Verify | undefined {
  if (process.env.NEVERTRUST_NATIVE_P256 === '0') return undefined;
  if (loaded !== undefined) return loaded ?? undefined;
  loaded = null;
  const file = join(packageRoot(), 'native', 'p256', 'build', 'Release', 'p256.node');
  if (!existsSync(file)) return undefined;
  try {
    const addon = createRequire(import.meta.url)(file) as { verify?: unknown };
    if (typeof addon.verify === 'function') loaded = addon.verify as P256Verify;
  } catch {
    // A build for another Node ABI: fall back to node:crypto.
  }
  return loaded ?? undefined;
}
