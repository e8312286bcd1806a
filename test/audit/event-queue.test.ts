/**
 * The recorder's ring queue behaves exactly like a bounded FIFO array: random pushes and takes,
 * through growth and wrap-around, give the same events, times and sequence numbers in the same order,
 * and a full queue refuses without writing anything.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventQueue } from '../../src/audit/event-queue.js';

describe('EventQueue', () => {
  it('matches a bounded FIFO model under random pushes and takes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3000 }),
        fc.array(fc.oneof(fc.record({ push: fc.integer({ min: 1, max: 400 }) }), fc.record({ take: fc.nat(900) })), {
          maxLength: 40,
        }),
        (max, ops) => {
          const q = new EventQueue(max);
          const model: { e: unknown; t: number; s: number }[] = [];
          let seq = 0;
          for (const op of ops) {
            if ('push' in op) {
              for (let i = 0; i < op.push; i++) {
                seq++;
                const e = { n: seq };
                const ok = q.push(e, 1_700_000_000_000 + seq, seq);
                expect(ok).toBe(model.length < max);
                if (ok) model.push({ e, t: 1_700_000_000_000 + seq, s: seq });
              }
            } else {
              const got = q.take(op.take);
              const want = model.splice(0, op.take);
              expect(got.inputs).toEqual(want.map((m) => m.e));
              expect(got.times).toEqual(want.map((m) => m.t));
              expect(got.seqs).toEqual(want.map((m) => m.s));
            }
            expect(q.length).toBe(model.length);
            expect(q.firstSeq()).toBe(model[0]?.s);
          }
        },
      ),
      { numRuns: 120 },
    );
  });

  it('holds a bound that is not a power of two, and empties to undefined', () => {
    const q = new EventQueue(1500);
    for (let i = 1; i <= 1500; i++) expect(q.push(i, i, i)).toBe(true);
    expect(q.push(1501, 1501, 1501)).toBe(false);
    expect(q.take(10_000).seqs).toHaveLength(1500);
    expect(q.firstSeq()).toBeUndefined();
    expect(q.take(5).inputs).toEqual([]);
  });
});
