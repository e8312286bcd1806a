/**
 * The block query index format on its own: what a builder writes as events arrive (block ends,
 * partial blocks, nothing when nothing changed), clones that do not share state, resuming from
 * rows with gaps, columns read from unaligned buffers, and the presence bitmaps.
 */
import { describe, expect, it } from 'vitest';
import {
  BLOCK_EVENTS,
  BlockBuilder,
  blockStart,
  builderFrom,
  mayContain,
  PRESENCE_BITS,
  readColumn,
  resumeBuilder,
} from '../../src/store/audit-blocks.js';

const ids = (b: Buffer) => Array.from(readColumn(b));

describe('audit block format', () => {
  it('writes completed blocks and the grown partial block, then nothing until the next event', () => {
    const b = new BlockBuilder(BLOCK_EVENTS - 2);
    expect(b.next).toBe(BLOCK_EVENTS - 2);
    for (let i = 0; i < 3; i++) b.add(1, 2, 10 + i, 20 + i, 1000 - i);
    const writes = b.take();
    expect(writes.map((w) => [w.block.block, w.block.size])).toEqual([
      [0, BLOCK_EVENTS],
      [1, 1],
    ]);
    const [full, partial] = writes;
    // The full block holds the two events at its end, earlier positions empty (0).
    const sources = full?.columns.find((c) => c.field === 'source')?.ids as Buffer;
    expect(ids(sources).slice(-2)).toEqual([10, 11]);
    expect(ids(sources)[0]).toBe(0);
    expect(full?.block).toMatchObject({ min_time: 999, max_time: 1000 });
    expect(partial?.block).toMatchObject({ min_time: 998, max_time: 998 });
    expect(ids(partial?.columns.find((c) => c.field === 'target')?.ids as Buffer)).toEqual([22]);
    expect(b.take()).toEqual([]);
    expect(b.next).toBe(BLOCK_EVENTS + 1);
  });

  it('hands out copies: a written row does not change as the builder fills on', () => {
    const b = new BlockBuilder();
    b.add(1, 2, 3, 4, 5);
    const [first] = b.take();
    b.add(6, 7, 8, 9, 10);
    expect(ids(first?.columns[0]?.ids as Buffer)).toEqual([1]);
    expect(first?.block.size).toBe(1);
  });

  it('clones do not share state (a rolled-back batch restores the clone)', () => {
    const b = new BlockBuilder();
    b.add(1, 1, 1, 1, 1);
    const saved = b.clone();
    b.add(2, 2, 2, 2, 2);
    expect(saved.next).toBe(1);
    saved.add(3, 3, 3, 3, 3);
    const [row] = saved.take();
    expect(ids(row?.columns[0]?.ids as Buffer)).toEqual([1, 3]);
    expect(mayContain(row?.block.present as Buffer, 'kind', 2)).toBe(false);
  });

  it('resumes a partial block from its rows, leaving sealed positions empty', () => {
    const start = 3 * BLOCK_EVENTS;
    const row = (seq: number) => ({ seq, kind_term: 1, outcome_term: 2, source_term: seq, target_term: 4, time: seq });
    const b = resumeBuilder(start + 10, [row(start + 4), row(start + 9)]);
    expect(b.next).toBe(start + 10);
    expect(b.take()).toEqual([]); // nothing to rewrite until the next event
    b.add(1, 2, 77, 4, 5);
    const [w] = b.take();
    const src = ids(w?.columns.find((c) => c.field === 'source')?.ids as Buffer);
    expect(src).toHaveLength(11);
    expect(src[4]).toBe(start + 4);
    expect(src[9]).toBe(start + 9);
    expect(src[10]).toBe(77);
    expect(src.filter((x) => x === 0)).toHaveLength(8);
    expect(builderFrom(start, [row(start + 1)]).take()[0]?.block.size).toBe(2);
    expect(blockStart(start + 10)).toBe(start);
    // Beyond 2³¹ (bitwise arithmetic would go wrong there).
    expect(blockStart(2 ** 33 + 5)).toBe(2 ** 33);
    expect(new BlockBuilder(2 ** 33 + 5).next).toBe(2 ** 33 + 5);
  });

  it('reads a column from an unaligned buffer', () => {
    const col = Buffer.alloc(13);
    const view = col.subarray(1, 13);
    view.writeInt32LE(7, 0);
    view.writeInt32LE(-1, 4);
    view.writeInt32LE(2 ** 30, 8);
    expect(view.byteOffset % 4).not.toBe(0);
    expect(Array.from(readColumn(view))).toEqual([7, -1, 2 ** 30]);
  });

  it('presence bitmaps say "maybe" for every stored term and "no" for most others', () => {
    const b = new BlockBuilder();
    for (let i = 1; i <= 100; i++) b.add(1, 2, i * 37, 5, 0);
    const present = b.take()[0]?.block.present as Buffer;
    for (let i = 1; i <= 100; i++) expect(mayContain(present, 'source', i * 37)).toBe(true);
    expect(mayContain(present, 'source', 38)).toBe(false);
    expect(mayContain(present, 'target', 37)).toBe(false);
    // A term id past the bitmap's size shares a bit with a smaller one: a false "maybe", never a false "no".
    expect(mayContain(present, 'source', 37 + PRESENCE_BITS)).toBe(true);
    expect(mayContain(present, 'kind', 1)).toBe(true);
  });
});
