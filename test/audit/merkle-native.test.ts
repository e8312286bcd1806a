/**
 * The native batch hasher (native/merkle) against the independent RFC 6962 reference: leaf
 * hashes, completed nodes, roots and the right edge must be exactly what pushing leaf by leaf
 * gives, from any starting size; bad arguments are refused, never hashed.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeMerkleAppend } from '../../src/audit/merkle-native.js';
import { edgeSizes, leafHash, MerkleFrontier } from '../../src/audit/merkle.js';
import { LEAF, mth } from './reference.js';

afterEach(() => {
  delete process.env.NEVERTRUST_NATIVE_MERKLE;
});

/** A frontier holding `n` leaves made by `leaf(i)`, pushed one by one. */
function grown(n: number, leaf: (i: number) => string): MerkleFrontier {
  const f = new MerkleFrontier();
  for (let i = 0; i < n; i++) f.push(leafHash(leaf(i)));
  return f;
}

describe('native Merkle batch append', () => {
  it('is built here (install script), and is off with NEVERTRUST_NATIVE_MERKLE=0', () => {
    expect(nativeMerkleAppend()).toBeTypeOf('function');
    process.env.NEVERTRUST_NATIVE_MERKLE = '0';
    expect(nativeMerkleAppend()).toBeUndefined();
  });

  it('gives the reference hashes, nodes and roots, from any start and for any batch (native and JS)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 600 }),
        fc.array(fc.string({ unit: 'grapheme', maxLength: 40 }), { maxLength: 300 }),
        fc.boolean(),
        (start, batch, native) => {
          if (!native) process.env.NEVERTRUST_NATIVE_MERKLE = '0';
          const old = (i: number) => `old-${i}`;
          const f = grown(start, old);
          const nodes: string[] = [];
          const hashes = f.appendLeaves(batch, (level, idx, hash) =>
            nodes.push(`${level}:${idx}:${hash.toString('hex')}`),
          );
          delete process.env.NEVERTRUST_NATIVE_MERKLE;
          const all = [
            ...Array.from({ length: start }, (_, i) => LEAF(Buffer.from(old(i)))),
            ...batch.map((b) => LEAF(Buffer.from(b, 'utf8'))),
          ];
          expect(hashes.map((h) => h.toString('hex'))).toEqual(all.slice(start).map((h) => h.toString('hex')));
          expect(f.size).toBe(start + batch.length);
          expect(f.root()).toEqual(mth(all));
          // Every completed node is the MTH of its range, reported in push order.
          const expected: string[] = [];
          for (let i = start; i < all.length; i++) {
            for (let size = 2; (i + 1) % size === 0; size *= 2) {
              const idx = (i + 1) / size - 1;
              expected.push(
                `${Math.log2(size)}:${idx}:${mth(all.slice(idx * size, (idx + 1) * size)).toString('hex')}`,
              );
            }
          }
          expect(nodes).toEqual(expected);
          // The edge left behind keeps appending correctly.
          f.push(LEAF(Buffer.from('next')));
          expect(f.root()).toEqual(mth([...all, LEAF(Buffer.from('next'))]));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('knows the right edge of any size: one perfect subtree per set bit, largest first', () => {
    expect(edgeSizes(0)).toEqual([]);
    expect(edgeSizes(1)).toEqual([1]);
    expect(edgeSizes(13)).toEqual([8, 4, 1]);
    expect(edgeSizes(2 ** 40 + 6)).toEqual([2 ** 40, 4, 2]);
    expect(edgeSizes(2 ** 53 - 1)).toHaveLength(53);
  });

  it('hashes multi-byte UTF-8 exactly as node:crypto does', () => {
    const batch = ['é', '日本語', '😀 emoji', '\u0000nul', 'a'.repeat(20_000)];
    const hashes = new MerkleFrontier().appendLeaves(batch);
    expect(hashes).toEqual(batch.map((b) => leafHash(b)));
  });

  it('refuses malformed arguments instead of hashing them', () => {
    const append = nativeMerkleAppend();
    if (!append) throw new Error('native/merkle is not built');
    const data = Buffer.from('abcdef');
    const one = leafHash('x');
    expect(() => append(data, new Uint32Array([3, 6]), Buffer.alloc(0), 0)).not.toThrow();
    // ends out of order or past the data
    expect(() => append(data, new Uint32Array([4, 2]), Buffer.alloc(0), 0)).toThrow(/ascend/);
    expect(() => append(data, new Uint32Array([7]), Buffer.alloc(0), 0)).toThrow(/ascend/);
    // an edge that does not match the size (size 3 has two subtrees)
    expect(() => append(data, new Uint32Array([6]), one, 3)).toThrow(/one 32-byte hash per set bit/);
    expect(() => append(data, new Uint32Array([6]), Buffer.concat([one, one]), 3)).not.toThrow();
    // sizes that are not safe non-negative integers
    for (const size of [-1, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => append(data, new Uint32Array([6]), Buffer.alloc(0), size)).toThrow(RangeError);
    }
    // wrong types
    expect(() => append('abc' as unknown as Uint8Array, new Uint32Array([3]), Buffer.alloc(0), 0)).toThrow(TypeError);
    expect(() => append(data, [6] as unknown as Uint32Array, Buffer.alloc(0), 0)).toThrow(TypeError);
    expect(() => append(data, new Uint16Array([6]) as unknown as Uint32Array, Buffer.alloc(0), 0)).toThrow(TypeError);
  });
});
