/**
 * RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification. Pure: the tree's data
 * comes from a {@link SubtreeSource}, so the same code serves the database-backed log, sealed
 * segments and tests.
 */
import * as nodeCrypto from 'node:crypto';
import { createHash } from 'node:crypto';
import { AuditProofError } from './errors.js';
import { nativeMerkleAppend } from './merkle-native.js';

const LEAF_PREFIX = Buffer.from([0]);
const NODE_PREFIX = Buffer.from([1]);

/**
 * `SHA-256(0x00 ‖ data)`.
 *
 * @example
 * leafHash('{"kind":"access.decision"}').toString('hex')
 */
export function leafHash(data: string | Uint8Array): Buffer {
  // One-shot crypto.hash (Node ≥ 20.12) is cheaper than a Hash object; U+0000 encodes as the byte 0x00.
  if (oneShot && typeof data === 'string') return oneShot('sha256', `\u0000${data}`, 'buffer') as Buffer;
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest();
}

const oneShot = (nodeCrypto as { hash?: (alg: string, data: string | Uint8Array, enc: 'buffer') => Buffer }).hash;

/** `SHA-256(0x01 ‖ left ‖ right)`. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (oneShot && left.length === 32 && right.length === 32) {
    const buf = Buffer.allocUnsafe(65);
    buf[0] = 1;
    buf.set(left, 1);
    buf.set(right, 33);
    return oneShot('sha256', buf, 'buffer');
  }
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

/** The hash of an empty tree: `SHA-256()`. */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

/** The largest power of two strictly below `n` (n ≥ 2): the size of the left subtree. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

/**
 * MTH(D[n]) over leaf hashes (not raw leaves), RFC 6962 §2.1.
 *
 * @example
 * merkleRoot([leafHash('a'), leafHash('b'), leafHash('c')])
 */
export function merkleRoot(leaves: readonly Uint8Array[]): Buffer {
  if (leaves.length === 0) return EMPTY_ROOT;
  const f = new MerkleFrontier();
  for (const l of leaves) f.push(l);
  return f.root();
}

/**
 * The sizes of the perfect subtrees on the right edge of a tree of `size` leaves, largest first:
 * one per set bit of `size`.
 *
 * @example
 * edgeSizes(13) // [8, 4, 1]
 */
export function edgeSizes(size: number): number[] {
  const sizes: number[] = [];
  for (let bit = 2 ** Math.floor(Math.log2(Math.max(size, 1))); bit >= 1; bit /= 2) {
    if (Math.floor(size / bit) % 2 === 1) sizes.push(bit);
  }
  return sizes;
}

/** A perfect subtree on the tree's right edge. */
export interface FrontierEntry {
  hash: Buffer;
  size: number;
}

/**
 * The right edge of the tree (roots of its perfect subtrees, largest first): O(log n) append and
 * root without keeping the leaves.
 *
 * @example
 * const f = new MerkleFrontier();
 * f.push(leafHash('a')); f.push(leafHash('b'));
 * f.root(); // MTH of the two leaves
 */
export class MerkleFrontier {
  private readonly entries: FrontierEntry[];
  private count: number;

  constructor(entries: readonly FrontierEntry[] = []) {
    this.entries = entries.map((e) => ({ hash: Buffer.from(e.hash), size: e.size }));
    this.count = this.entries.reduce((s, e) => s + e.size, 0);
    for (let i = 1; i < this.entries.length; i++) {
      if ((this.entries[i] as FrontierEntry).size >= (this.entries[i - 1] as FrontierEntry).size) {
        throw new AuditProofError('frontier sizes must be strictly decreasing powers of two');
      }
    }
  }

  get size(): number {
    return this.count;
  }

  /**
   * Appends a leaf hash. `onComplete(level, index, hash)` is told of every perfect subtree this
   * append completed (level ≥ 1), so callers can keep interior nodes for proofs.
   */
  push(leaf: Uint8Array, onComplete?: (level: number, index: number, hash: Buffer) => void): void {
    let hash: Buffer = Buffer.isBuffer(leaf) ? leaf : Buffer.from(leaf);
    let size = 1;
    let level = 0;
    for (;;) {
      const top = this.entries[this.entries.length - 1];
      if (top === undefined || top.size !== size) break;
      this.entries.pop();
      hash = nodeHash(top.hash, hash);
      size *= 2;
      level++;
      onComplete?.(level, (this.count + 1 - size) / size, hash);
    }
    this.entries.push({ hash, size });
    this.count++;
  }

  /**
   * Appends raw leaves (e.g. canonical event bytes): each is hashed with {@link leafHash} and
   * pushed; returns the leaf hashes in order. With the native addon the whole batch is one call;
   * the hashes, the nodes and the `onComplete` calls are the same as pushing the leaves one by one.
   */
  appendLeaves(leaves: readonly string[], onComplete?: (level: number, index: number, hash: Buffer) => void): Buffer[] {
    const n = leaves.length;
    let chars = 0;
    for (let i = 0; i < n; i++) chars += (leaves[i] as string).length;
    const native = nativeMerkleAppend();
    // Offsets are 32-bit in the addon: a batch beyond that (never in practice) takes the JS path.
    if (!native || n === 0 || chars * 3 > 0x7fffffff) {
      const hashes: Buffer[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const h = leafHash(leaves[i] as string);
        this.push(h, onComplete);
        hashes[i] = h;
      }
      return hashes;
    }
    // UTF-8 takes at most three bytes per UTF-16 unit, so the buffer always has room.
    const data = Buffer.allocUnsafe(chars * 3);
    const ends = new Uint32Array(n);
    let off = 0;
    for (let i = 0; i < n; i++) {
      off += data.write(leaves[i] as string, off);
      ends[i] = off;
    }
    const edge = Buffer.concat(this.entries.map((e) => e.hash));
    const out = native(data.subarray(0, off), ends, edge, this.count);
    const hashes: Buffer[] = new Array(n);
    for (let i = 0; i < n; i++) hashes[i] = out.subarray(i * 32, i * 32 + 32);
    // Completed nodes, in the addon's order: leaf index i completes one node per trailing one-bit.
    let p = n * 32;
    for (let i = 0; i < n; i++) {
      const index = this.count + i;
      let size = 1;
      for (let v = index; v % 2 === 1; v = (v - 1) / 2) {
        size *= 2;
        onComplete?.(Math.log2(size), (index + 1 - size) / size, out.subarray(p, p + 32));
        p += 32;
      }
    }
    const total = this.count + n;
    this.entries.length = 0;
    for (const size of edgeSizes(total)) {
      this.entries.push({ hash: out.subarray(p, p + 32), size });
      p += 32;
    }
    this.count = total;
    return hashes;
  }

  /** MTH of everything pushed so far. */
  root(): Buffer {
    const last = this.entries[this.entries.length - 1];
    if (last === undefined) return EMPTY_ROOT;
    let r = last.hash;
    for (let i = this.entries.length - 2; i >= 0; i--) r = nodeHash((this.entries[i] as FrontierEntry).hash, r);
    return r;
  }

  /** A copy of the right-edge subtrees, largest first. */
  snapshot(): FrontierEntry[] {
    return this.entries.map((e) => ({ hash: Buffer.from(e.hash), size: e.size }));
  }

  clone(): MerkleFrontier {
    return new MerkleFrontier(this.entries);
  }
}

/** Where proofs get subtree hashes: `MTH(D[start:end])`. */
export interface SubtreeSource {
  subtree(start: number, end: number): Promise<Buffer>;
}

/** A source over leaf hashes held in memory (tests, sealed segments, small logs). */
export function memorySource(
  leaves: readonly Uint8Array[],
): SubtreeSource & { subtreeSync(s: number, e: number): Buffer } {
  const subtreeSync = (start: number, end: number): Buffer => merkleRoot(leaves.slice(start, end));
  return { subtreeSync, subtree: async (s, e) => subtreeSync(s, e) };
}

/**
 * Inclusion proof for leaf `index` in the tree of `size` leaves, RFC 6962 §2.1.1 PATH(m, D[n]):
 * sibling hashes from the leaf upwards.
 *
 * @example
 * const proof = await inclusionProof(2, 5, memorySource(leaves));
 */
export async function inclusionProof(index: number, size: number, src: SubtreeSource): Promise<Buffer[]> {
  if (!(Number.isInteger(index) && Number.isInteger(size) && index >= 0 && index < size)) {
    throw new AuditProofError(`no leaf ${index} in a tree of ${size}`);
  }
  const out: Buffer[] = [];
  // Walk from the root down, collecting siblings, then reverse (PATH lists the deepest first).
  let start = 0;
  let end = size;
  let m = index;
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (m < k) {
      out.push(await src.subtree(start + k, end));
      end = start + k;
    } else {
      out.push(await src.subtree(start, start + k));
      start += k;
      m -= k;
    }
  }
  return out.reverse();
}

/**
 * Consistency proof between the trees of `oldSize` and `newSize` leaves, RFC 6962 §2.1.2
 * PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
 *
 * @example
 * const proof = await consistencyProof(3, 7, memorySource(leaves));
 */
export async function consistencyProof(oldSize: number, newSize: number, src: SubtreeSource): Promise<Buffer[]> {
  if (!(Number.isInteger(oldSize) && Number.isInteger(newSize) && oldSize >= 0 && oldSize <= newSize)) {
    throw new AuditProofError(`no consistency proof from size ${oldSize} to ${newSize}`);
  }
  if (oldSize === 0 || oldSize === newSize) return [];
  const out: Buffer[] = [];
  let start = 0;
  let end = newSize;
  let m = oldSize;
  let complete = true;
  // Iterative SUBPROOF: collect right-hand parts top-down, then reverse.
  for (;;) {
    const n = end - start;
    if (m === n) {
      if (!complete) out.push(await src.subtree(start, end));
      break;
    }
    const k = splitPoint(n);
    if (m <= k) {
      out.push(await src.subtree(start + k, end));
      end = start + k;
    } else {
      out.push(await src.subtree(start, start + k));
      start += k;
      m -= k;
      complete = false;
    }
  }
  return out.reverse();
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/**
 * The root implied by an inclusion proof (RFC 9162 §2.1.3.2), or undefined when the proof has the
 * wrong length for `index` and `size`.
 */
export function rootFromInclusionProof(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Buffer | undefined {
  if (index < 0 || index >= size) return undefined;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

/**
 * Checks that `leaf` (a leaf hash) is at `index` in the tree of `size` with root `root`.
 *
 * @example
 * verifyInclusion(2, 5, leafHash(bytes), proof, root) // true
 */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const r = rootFromInclusionProof(index, size, leaf, proof);
  return r !== undefined && eq(r, root);
}

/**
 * Checks a consistency proof between two roots (RFC 9162 §2.1.4.2).
 *
 * @example
 * verifyConsistency(3, 7, oldRoot, newRoot, proof) // true
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (oldSize < 0 || oldSize > newSize) return false;
  if (oldSize === newSize) return proof.length === 0 && eq(oldRoot, newRoot);
  if (oldSize === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  let path = proof.slice();
  if (isPowerOfTwo(oldSize)) path = [oldRoot, ...path];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  const first = path[0];
  if (first === undefined) return false;
  let fr: Buffer = Buffer.from(first);
  let sr: Buffer = Buffer.from(first);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && eq(fr, oldRoot) && eq(sr, newRoot);
}
