/**
 * The storage format of the service graph's per-block edge summary (`audit_block_edges`, migration
 * 0011): for a full block of the audit query index (src/store/audit-blocks.ts), its decision events
 * counted per (source term, target term) and outcome class, with the first and last event time of
 * each edge. A full block never changes, so neither does its summary: a graph over a window reads
 * one small row per block inside it instead of 4,096 event rows.
 *
 * Layout of `data` (n edges, sorted by source then target): n × 2 float64 (first, last time, epoch
 * ms), then n × 5 int32 (source, target, allowed, denied, other), little-endian like the block
 * columns. Sorted, so two summaries of the same events are the same bytes (`verify` compares them).
 *
 * Derived data like the block index: `verify` recomputes every stored summary from the rows, and
 * `audit reindex` drops them (they are rebuilt on first use).
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.js';

type Db = Kysely<Database> | Transaction<Database>;

/** What an outcome counts as on an edge. */
export const OUTCOME_CLASS = { allow: 0, deny: 1, other: 2 } as const;
export type OutcomeClass = (typeof OUTCOME_CLASS)[keyof typeof OUTCOME_CLASS];

/** What an event's outcome (as stored: `''` or null for none) counts as. */
export function outcomeClassOf(outcome: string | null): OutcomeClass {
  return outcome === 'allow' ? OUTCOME_CLASS.allow : outcome === 'deny' ? OUTCOME_CLASS.deny : OUTCOME_CLASS.other;
}

/** One edge's tally. `block`: the newest block it was seen in (to find one of its rows). */
export interface EdgeCounts {
  allow: number;
  deny: number;
  other: number;
  first: number;
  last: number;
  block: number;
}

/** Edges counted per source term, then target term. */
export class EdgeTally {
  readonly bySource = new Map<number, Map<number, EdgeCounts>>();

  private slot(source: number, target: number, block: number): EdgeCounts {
    let m = this.bySource.get(source);
    if (!m) {
      m = new Map();
      this.bySource.set(source, m);
    }
    let c = m.get(target);
    if (!c) {
      c = { allow: 0, deny: 0, other: 0, first: Number.POSITIVE_INFINITY, last: Number.NEGATIVE_INFINITY, block };
      m.set(target, c);
    }
    if (block > c.block) c.block = block;
    return c;
  }

  /** Counts one decision. */
  add(source: number, target: number, cls: OutcomeClass, time: number, block: number): void {
    const c = this.slot(source, target, block);
    if (cls === 0) c.allow++;
    else if (cls === 1) c.deny++;
    else c.other++;
    if (time < c.first) c.first = time;
    if (time > c.last) c.last = time;
  }

  /** Adds a stored summary's counts (see {@link decodeBlockEdges}). */
  merge(summary: Buffer | Uint8Array, block: number): void {
    const { n, times, ints } = decodeBlockEdges(summary);
    for (let i = 0; i < n; i++) {
      const o = i * 5;
      const c = this.slot(ints[o] as number, ints[o + 1] as number, block);
      c.allow += ints[o + 2] as number;
      c.deny += ints[o + 3] as number;
      c.other += ints[o + 4] as number;
      const first = times[2 * i] as number;
      const last = times[2 * i + 1] as number;
      if (first < c.first) c.first = first;
      if (last > c.last) c.last = last;
    }
  }

  /** Adds another tally's counts. */
  mergeTally(other: EdgeTally): void {
    for (const [s, t, o] of other.edges()) {
      const c = this.slot(s, t, o.block);
      c.allow += o.allow;
      c.deny += o.deny;
      c.other += o.other;
      if (o.first < c.first) c.first = o.first;
      if (o.last > c.last) c.last = o.last;
    }
  }

  /** Every edge: [source, target, counts]. */
  *edges(): Generator<[number, number, EdgeCounts]> {
    for (const [s, m] of this.bySource) for (const [t, c] of m) yield [s, t, c];
  }
}

const EDGE_BYTES = 2 * 8 + 5 * 4;

/** A tally as a stored summary (edges sorted, so equal tallies are equal bytes). */
export function encodeBlockEdges(tally: EdgeTally): Buffer {
  const all = [...tally.edges()].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const n = all.length;
  const buf = Buffer.alloc(n * EDGE_BYTES);
  const times = new Float64Array(buf.buffer, buf.byteOffset, 2 * n);
  const ints = new Int32Array(buf.buffer, buf.byteOffset + 16 * n, 5 * n);
  all.forEach(([s, t, c], i) => {
    times[2 * i] = c.first;
    times[2 * i + 1] = c.last;
    ints.set([s, t, c.allow, c.deny, c.other], 5 * i);
  });
  return buf;
}

/** A stored summary's arrays (copied when the driver's buffer is not 8-byte aligned). */
export function decodeBlockEdges(buf: Uint8Array): { n: number; times: Float64Array; ints: Int32Array } {
  const n = Math.floor(buf.byteLength / EDGE_BYTES);
  const b = (buf.byteOffset & 7) === 0 ? buf : new Uint8Array(buf);
  return {
    n,
    times: new Float64Array(b.buffer, b.byteOffset, 2 * n),
    ints: new Int32Array(b.buffer, b.byteOffset + 16 * n, 5 * n),
  };
}

/** The stored summaries of `blocks` (those that have one). */
export async function readBlockEdges(db: Db, blocks: readonly number[]): Promise<Map<number, Buffer>> {
  const out = new Map<number, Buffer>();
  if (blocks.length === 0) return out;
  const rows = await db
    .selectFrom('audit_block_edges')
    .select(['block', 'data'])
    .where('block', 'in', blocks)
    .execute();
  for (const r of rows) out.set(Number(r.block), r.data);
  return out;
}

/** Stores summaries; one already there is kept (two servers summarizing a block write the same bytes). */
export async function writeBlockEdges(db: Db, rows: { block: number; data: Buffer }[]): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto('audit_block_edges')
    .values(rows)
    .onConflict((oc) => oc.column('block').doNothing())
    .execute();
}
