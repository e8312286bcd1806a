/**
 * The storage format of the audit log's query index (migration 0005): events in fixed blocks of
 * {@link BLOCK_EVENTS} consecutive leaf indexes. Per block, one `audit_block` row (the block's size,
 * time range and a presence bitmap per field: small, so pruning reads little) and one
 * `audit_block_column` row per field with the events' term ids (kind, outcome, source, target — one
 * int32 per event, in log order), so a query reads only the columns it filters on.
 *
 * Why not four B-tree indexes: an index on a field with thousands of values takes each new event
 * into a different leaf page, so every batch dirties (and writes to the WAL) thousands of pages, and
 * more as the log grows; the append rate into a log of 500,000 events fell to 0.57–0.79× of an
 * empty log's (with the block index: 0.84–1.02×). A block's rows are rewritten once per batch
 * whatever the values. A query prunes blocks by their bitmaps and time range, scans the columns of
 * the rest (a few µs per block) and reads only the matching rows by seq, newest first.
 *
 * The index is derived data: rows stay the truth (their term columns are checked against the hashed
 * bytes by `verify`, which also checks every block against the rows, so an edited block that would
 * hide events from queries is found).
 */
import { endianness } from 'node:os';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.js';

type Db = Kysely<Database> | Transaction<Database>;

/** The four filterable fields of an audit event, stored as dictionary term ids (migration 0004). */
export type TermField = 'kind' | 'outcome' | 'source' | 'target';

/** Events per block: block = floor(seq / BLOCK_EVENTS). */
export const BLOCK_EVENTS = 4096;

/** The first leaf index of the block that holds `seq` (arithmetic, not bitwise: seq may pass 2³¹). */
export function blockStart(seq: number): number {
  return seq - (seq % BLOCK_EVENTS);
}

/** Bits per field in a block's presence bitmap (a term id sets bit `id & (PRESENCE_BITS - 1)`). */
export const PRESENCE_BITS = 8192;
const PRESENCE_BYTES = PRESENCE_BITS / 8;

/** The fields in the order of a block's columns (and of eventTerms()). */
export const TERM_FIELDS: readonly TermField[] = ['kind', 'outcome', 'source', 'target'];
/** A field's position in {@link TERM_FIELDS} (and its bitmap's place in `present`). */
export const FIELD_INDEX: Readonly<Record<TermField, number>> = { kind: 0, outcome: 1, source: 2, target: 3 };

// Columns are stored as the platform's int32 bytes; every platform Node supports for this is
// little-endian, and a big-endian one would misread the index, so it refuses to load instead.
if (endianness() !== 'LE') throw new Error('the audit query index needs a little-endian platform');

/** One `audit_block` row as written. */
export interface BlockRow {
  block: number;
  size: number;
  min_time: number;
  max_time: number;
  present: Buffer;
}

/** One `audit_block_column` row as written: a field's term ids, int32 little-endian, one per position. */
export interface BlockColumnRow {
  block: number;
  field: TermField;
  ids: Buffer;
}

/** What one block writes: its row and its four columns. */
export interface BlockWrite {
  block: BlockRow;
  columns: BlockColumnRow[];
}

/** The terms and time of one event, as its row stores them. */
export interface EventTerms {
  kind_term: number;
  outcome_term: number;
  source_term: number;
  target_term: number;
  time: number;
}

/**
 * The block being filled: events are added in log order; {@link take} returns the rows to write
 * (blocks completed since the last call, then the partial one).
 */
export class BlockBuilder {
  private block: number;
  private size: number;
  private minTime = Number.POSITIVE_INFINITY;
  private maxTime = Number.NEGATIVE_INFINITY;
  private readonly cols: Int32Array[];
  private readonly present: Uint8Array;
  private done: BlockWrite[] = [];
  private changed = false;

  /** An empty builder whose next event has leaf index `next`. */
  constructor(next = 0) {
    this.block = Math.floor(next / BLOCK_EVENTS);
    this.size = next % BLOCK_EVENTS;
    this.cols = [0, 1, 2, 3].map(() => new Int32Array(BLOCK_EVENTS));
    this.present = new Uint8Array(PRESENCE_BYTES * 4);
  }

  /** The leaf index the next added event gets. */
  get next(): number {
    return this.block * BLOCK_EVENTS + this.size;
  }

  /** Adds the next event. Term ids are ≥ 1; 0 marks a position with no event (sealed or absent). */
  add(kind: number, outcome: number, source: number, target: number, time: number): void {
    const i = this.size;
    const c = this.cols;
    (c[0] as Int32Array)[i] = kind;
    (c[1] as Int32Array)[i] = outcome;
    (c[2] as Int32Array)[i] = source;
    (c[3] as Int32Array)[i] = target;
    mark(this.present, 0, kind);
    mark(this.present, PRESENCE_BYTES, outcome);
    mark(this.present, 2 * PRESENCE_BYTES, source);
    mark(this.present, 3 * PRESENCE_BYTES, target);
    if (time < this.minTime) this.minTime = time;
    if (time > this.maxTime) this.maxTime = time;
    this.changed = true;
    if (++this.size === BLOCK_EVENTS) {
      this.done.push(this.row());
      this.block++;
      this.size = 0;
      this.minTime = Number.POSITIVE_INFINITY;
      this.maxTime = Number.NEGATIVE_INFINITY;
      this.present.fill(0);
      this.changed = false;
    }
  }

  /** Skips a position that has no event row (a sealed range reloaded part-way through a block). */
  skip(): void {
    this.size++;
  }

  /** The rows to write since the last call: completed blocks, then the partial block if it changed. */
  take(): BlockWrite[] {
    const out = this.done;
    this.done = [];
    if (this.changed && this.size > 0) out.push(this.row());
    this.changed = false;
    return out;
  }

  /** An independent copy (restored when a transaction rolls back). */
  clone(): BlockBuilder {
    const b = new BlockBuilder(this.next);
    b.minTime = this.minTime;
    b.maxTime = this.maxTime;
    for (let f = 0; f < 4; f++) (b.cols[f] as Int32Array).set(this.cols[f] as Int32Array);
    b.present.set(this.present);
    b.done = [...this.done];
    b.changed = this.changed;
    return b;
  }

  // Copies: the builder keeps filling the same arrays after the row is handed to a driver.
  private row(): BlockWrite {
    const n = this.size;
    const block = this.block;
    return {
      block: { block, size: n, min_time: this.minTime, max_time: this.maxTime, present: Buffer.from(this.present) },
      columns: TERM_FIELDS.map((field, f) => ({
        block,
        field,
        ids: Buffer.from(new Uint8Array((this.cols[f] as Int32Array).buffer, 0, n * 4)),
      })),
    };
  }
}

function mark(present: Uint8Array, offset: number, id: number): void {
  const bit = id & (PRESENCE_BITS - 1);
  const o = offset + (bit >> 3);
  present[o] = (present[o] as number) | (1 << (bit & 7));
}

/**
 * A builder positioned at `size` whose partial block is rebuilt from the stored rows (`rows`: seq in
 * [blockStart(size), size), ascending; at most BLOCK_EVENTS - 1 of them). The stored block row is
 * not trusted for this, and nothing is written until the next event rewrites it.
 */
export function resumeBuilder(size: number, rows: readonly (EventTerms & { seq: number | string })[]): BlockBuilder {
  const b = builderFrom(blockStart(size), rows, size);
  b.take();
  return b;
}

/** The stored terms and times of the events with seq in [start, end), ascending. */
export function blockEvents(db: Db, start: number, end: number) {
  return db
    .selectFrom('audit_event')
    .select(['seq', 'kind_term', 'outcome_term', 'source_term', 'target_term', 'time'])
    .where('seq', '>=', start)
    .where('seq', '<', end)
    .orderBy('seq')
    .execute();
}

/** {@link resumeBuilder} reading the rows from `db`. */
export async function loadBlockBuilder(db: Db, size: number): Promise<BlockBuilder> {
  const start = blockStart(size);
  return resumeBuilder(size, size > start ? await blockEvents(db, start, size) : []);
}

/**
 * A builder holding `rows` (seq ascending, all in the block that starts at `start`), positioned
 * after them or at `size`; positions without a row stay empty. {@link BlockBuilder.take} then
 * gives the block row.
 */
export function builderFrom(
  start: number,
  rows: readonly (EventTerms & { seq: number | string })[],
  size = 0,
): BlockBuilder {
  const b = new BlockBuilder(start);
  for (const r of rows) {
    const seq = Number(r.seq);
    while (b.next < seq) b.skip();
    b.add(Number(r.kind_term), Number(r.outcome_term), Number(r.source_term), Number(r.target_term), Number(r.time));
  }
  while (b.next < size) b.skip();
  return b;
}

/** Writes query-index block rows (insert, or replace the partial block that grew). */
export function upsertBlocks(db: Db, rows: BlockRow[]) {
  return db
    .insertInto('audit_block')
    .values(rows)
    .onConflict((oc) =>
      oc.column('block').doUpdateSet((eb) => ({
        size: eb.ref('excluded.size'),
        min_time: eb.ref('excluded.min_time'),
        max_time: eb.ref('excluded.max_time'),
        present: eb.ref('excluded.present'),
      })),
    );
}

/** Writes query-index columns (likewise). */
export function upsertBlockColumns(db: Db, rows: BlockColumnRow[]) {
  return db
    .insertInto('audit_block_column')
    .values(rows)
    .onConflict((oc) => oc.columns(['block', 'field']).doUpdateSet((eb) => ({ ids: eb.ref('excluded.ids') })));
}

/** Both writes of the blocks a batch filled or grew. */
export async function writeBlocks(db: Db, writes: BlockWrite[]): Promise<void> {
  if (writes.length === 0) return;
  await upsertBlocks(
    db,
    writes.map((w) => w.block),
  ).execute();
  await upsertBlockColumns(
    db,
    writes.flatMap((w) => w.columns),
  ).execute();
}

/** The int32 column of a stored block (copied when the driver's buffer is not 4-byte aligned). */
export function readColumn(buf: Uint8Array): Int32Array {
  const n = buf.byteLength >> 2;
  if ((buf.byteOffset & 3) === 0) return new Int32Array(buf.buffer, buf.byteOffset, n);
  return new Int32Array(new Uint8Array(buf).buffer, 0, n);
}

/** Whether a block's presence bitmap allows `id` in `field` (false: the block certainly has none). */
export function mayContain(present: Uint8Array, field: TermField, id: number): boolean {
  const bit = id & (PRESENCE_BITS - 1);
  const byte = present[FIELD_INDEX[field] * PRESENCE_BYTES + (bit >> 3)];
  return byte !== undefined && (byte & (1 << (bit & 7))) !== 0;
}
