/**
 * The log's writer through kysely: PostgreSQL (all rows of a batch in one statement of array
 * parameters), and SQLite when no native handle is at hand (multi-row INSERTs). The head row is
 * locked first, so appends from several servers on one database serialize.
 */
import { CompiledQuery, type Kysely, sql } from 'kysely';
import { loadBlockBuilder, writeBlocks } from '../store/audit-blocks.js';
import type { Database } from '../store/index.js';
import type { AuditEventTable } from '../store/schema.js';
import { type AuditEvent, canonicalEvent } from './event.js';
import {
  type BatchContext,
  type BatchOutcome,
  COLUMNS,
  dueCheckpoint,
  isDuplicateId,
  storedNodes,
} from './log-batch.js';
import { type Db, loadFrontier } from './log-tree.js';
import type { Checkpoint } from './signer.js';
import { eventTerms, type TermField } from './terms.js';

const SQLITE_ROWS_PER_INSERT = 500;

/** One stored event row: the table's own type, so the two cannot drift. */
type Row = AuditEventTable;

/** Appends batches through kysely. */
export class KyselyWriter {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly pg: boolean,
    private readonly ctx: BatchContext,
  ) {}

  /** Stores a batch (its ids unique within it). */
  async append(events: AuditEvent[]): Promise<BatchOutcome> {
    // As on SQLite: first as if no id were stored yet (the unique index checks every row anyway),
    // again with the lookup when a re-sent event hits the index.
    try {
      return await this.transaction(events, false);
    } catch (e) {
      if (!isDuplicateId(e)) throw e;
      return await this.transaction(events, true);
    }
  }

  /** One attempt at a batch; on failure the log's memory is as before it. */
  private transaction(input: AuditEvent[], lookUpIds: boolean): Promise<BatchOutcome> {
    const tree = this.ctx.tree;
    return tree.attemptAsync(async () => {
      let events = input;
      let checkpoint: Checkpoint | undefined;
      let firstSeq = 0;
      await this.db.transaction().execute(async (trx) => {
        // Locks the head row first: appends from several servers on one database serialize here.
        const locked = await sql<{ tree_size: number | string }>`update audit_head set tree_size = tree_size
          where id = 1 returning tree_size`.execute(trx);
        const size = Number(locked.rows[0]?.tree_size ?? 0);
        if (size !== tree.frontier.size) {
          tree.frontier = await loadFrontier(trx, size);
          const cp = await trx
            .selectFrom('audit_checkpoint')
            .select('tree_size')
            .orderBy('tree_size', 'desc')
            .limit(1)
            .executeTakeFirst();
          tree.lastCheckpointSize = cp ? Number(cp.tree_size) : 0;
        }
        if (size !== tree.blocks.next) tree.blocks = await loadBlockBuilder(trx, size);
        if (lookUpIds) {
          const existing = await existingIds(trx, events);
          if (existing.size > 0) events = events.filter((e) => !existing.has(e.id));
        }
        firstSeq = size;
        await tree.terms.resolveAll(trx, events);
        const rows: Row[] = new Array(events.length);
        const { nodes, onComplete } = storedNodes();
        const bodies = events.map((e, i) => canonicalEvent(e, size + i));
        const leaves = tree.frontier.appendLeaves(bodies, onComplete);
        for (let i = 0; i < events.length; i++) {
          const e = events[i] as AuditEvent;
          const body = bodies[i] as string;
          const leaf = leaves[i] as Buffer;
          const [kind, outcome, source, target] = eventTerms(e);
          const row: Row = {
            seq: size + i,
            id: e.id,
            time: e.time,
            kind_term: this.termId('kind', kind),
            outcome_term: this.termId('outcome', outcome),
            source_term: this.termId('source', source),
            target_term: this.termId('target', target),
            decision_id: e.decision_id ?? null,
            body,
            leaf_hash: leaf,
          };
          rows[i] = row;
          tree.blocks.add(row.kind_term, row.outcome_term, row.source_term, row.target_term, row.time);
        }
        if (rows.length > 0) {
          if (this.pg) await insertPg(trx, rows);
          else await insertSqlite(trx, rows);
          await writeBlocks(trx, tree.blocks.take());
          if (nodes.length > 0) await trx.insertInto('audit_node').values(nodes).execute();
          const root = tree.frontier.root().toString('hex');
          await trx
            .updateTable('audit_head')
            .set({ tree_size: tree.frontier.size, root_hash: root, updated_at: Date.now() })
            .where('id', '=', 1)
            .execute();
          checkpoint = dueCheckpoint(this.ctx, root);
          if (checkpoint) await trx.insertInto('audit_checkpoint').values(checkpoint).execute();
        }
      });
      return { events, firstSeq, checkpoint };
    });
  }

  private termId(field: TermField, value: string): number {
    const id = this.ctx.tree.terms.get(field, value);
    if (id === undefined) throw new Error(`audit term ${field}=${value} was not resolved`);
    return id;
  }
}

async function existingIds(trx: Db, events: readonly AuditEvent[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (let i = 0; i < events.length; i += SQLITE_ROWS_PER_INSERT) {
    const ids = events.slice(i, i + SQLITE_ROWS_PER_INSERT).map((e) => e.id);
    const rows = await trx.selectFrom('audit_event').select('id').where('id', 'in', ids).execute();
    for (const r of rows) found.add(r.id);
  }
  return found;
}

async function insertSqlite(trx: Db, rows: readonly Row[]): Promise<void> {
  for (let i = 0; i < rows.length; i += SQLITE_ROWS_PER_INSERT) {
    const chunk = rows.slice(i, i + SQLITE_ROWS_PER_INSERT);
    const params: unknown[] = new Array(chunk.length * 10);
    let p = 0;
    for (const r of chunk) {
      params[p++] = r.seq;
      params[p++] = r.id;
      params[p++] = r.time;
      params[p++] = r.kind_term;
      params[p++] = r.outcome_term;
      params[p++] = r.source_term;
      params[p++] = r.target_term;
      params[p++] = r.decision_id;
      params[p++] = r.body;
      params[p++] = r.leaf_hash;
    }
    const text = `insert into audit_event (${COLUMNS}) values ${new Array(chunk.length).fill('(?,?,?,?,?,?,?,?,?,?)').join(',')}`;
    await trx.executeQuery(CompiledQuery.raw(text, params));
  }
}

async function insertPg(trx: Db, rows: readonly Row[]): Promise<void> {
  // One statement with ten array parameters, whatever the batch size.
  const cols: unknown[][] = Array.from({ length: 10 }, () => new Array(rows.length));
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i] as Row;
    (cols[0] as unknown[])[i] = r.seq;
    (cols[1] as unknown[])[i] = r.id;
    (cols[2] as unknown[])[i] = r.time;
    (cols[3] as unknown[])[i] = r.kind_term;
    (cols[4] as unknown[])[i] = r.outcome_term;
    (cols[5] as unknown[])[i] = r.source_term;
    (cols[6] as unknown[])[i] = r.target_term;
    (cols[7] as unknown[])[i] = r.decision_id;
    (cols[8] as unknown[])[i] = r.body;
    (cols[9] as unknown[])[i] = r.leaf_hash;
  }
  const text = `insert into audit_event (${COLUMNS}) select * from unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::int[], $6::int[], $7::int[], $8::text[], $9::text[], $10::bytea[])`;
  await trx.executeQuery(CompiledQuery.raw(text, cols));
}
