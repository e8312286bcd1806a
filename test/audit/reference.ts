/**
 * An independent RFC 6962 reference for the tests: recursive MTH, and proof checks that follow the
 * recursive definitions of PATH and SUBPROOF (src/audit uses the iterative RFC 9162 algorithms).
 */
import { createHash } from 'node:crypto';

export const H = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
export const LEAF = (d: Buffer) => H(Buffer.from([0]), d);
export const NODE = (l: Buffer, r: Buffer) => H(Buffer.from([1]), l, r);
const k = (n: number) => 2 ** Math.ceil(Math.log2(n) - 1);
export function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return H();
  if (leaves.length === 1) return leaves[0] as Buffer;
  const s = k(leaves.length);
  return NODE(mth(leaves.slice(0, s)), mth(leaves.slice(s)));
}
/** Root implied by an inclusion proof, by the recursive structure of PATH. */
export function rootFromPath(m: number, n: number, leaf: Buffer, proof: Buffer[]): Buffer | undefined {
  if (n === 1) return proof.length === 0 ? leaf : undefined;
  if (proof.length === 0) return undefined;
  const s = k(n);
  const last = proof[proof.length - 1] as Buffer;
  const rest = proof.slice(0, -1);
  if (m < s) {
    const l = rootFromPath(m, s, leaf, rest);
    return l && NODE(l, last);
  }
  const r = rootFromPath(m - s, n - s, leaf, rest);
  return r && NODE(last, r);
}
/** [old root, new root] implied by SUBPROOF(m, D[n], b). */
export function subproofRoots(
  m: number,
  n: number,
  b: boolean,
  proof: Buffer[],
  oldRoot: Buffer,
): [Buffer, Buffer] | undefined {
  if (m === n) {
    if (b) return proof.length === 0 ? [oldRoot, oldRoot] : undefined;
    return proof.length === 1 ? [proof[0] as Buffer, proof[0] as Buffer] : undefined;
  }
  if (proof.length === 0) return undefined;
  const s = k(n);
  const last = proof[proof.length - 1] as Buffer;
  const rest = proof.slice(0, -1);
  if (m <= s) {
    const r = subproofRoots(m, s, b, rest, oldRoot);
    return r && [r[0], NODE(r[1], last)];
  }
  const r = subproofRoots(m - s, n - s, false, rest, oldRoot);
  return r && [NODE(last, r[0]), NODE(last, r[1])];
}
// ---- end of reference ----
