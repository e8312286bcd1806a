/**
 * The optional native Merkle addon (`native/merkle`, built at install): hashes a whole append
 * batch — leaves, completed nodes and the new right edge — in one call on the OpenSSL Node links,
 * where JavaScript pays a crypto call, a string copy and a Buffer per hash (two per event).
 * Missing (not built) or `NEVERTRUST_NATIVE_MERKLE=0`: node:crypto computes the same hashes
 * (tested both ways).
 */
import { optionalNativeAddon } from '../util/native-addon.js';

/**
 * `append(data, ends, edge, size)`: leaf hashes of the `ends`-delimited leaves in `data`, then the
 * interior nodes they complete (by leaf, level upwards), then the new right edge (largest first);
 * 32 bytes each. `edge` is the right edge before the batch, one hash per set bit of `size`.
 */
export type NativeMerkleAppend = (data: Uint8Array, ends: Uint32Array, edge: Uint8Array, size: number) => Buffer;

/** The native batch hasher, or undefined when it is not available here. */
export function nativeMerkleAppend(): NativeMerkleAppend | undefined {
  return optionalNativeAddon<{ append: NativeMerkleAppend }>('merkle', ['append'])?.append;
}
