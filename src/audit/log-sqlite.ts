/**
 * The log's writer for SQLite: a whole batch in one synchronous better-sqlite3 transaction
 * (BEGIN IMMEDIATE) with statements prepared once, while holding kysely's only connection so nothing
 * interleaves. Same rows, bytes and hashes as the kysely writer (`log-kysely.ts`); also the
 * planner statistics SQLite is seeded with.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import {
  type BlockColumnRow,
  type BlockRow,
  blockStart,
  type EventTerms,
  resumeBuilder,
  upsertBlockColumns,
  upsertBlocks,
} from '../store/audit-blocks.js';
import type { Database } from '../store/index.js';
import { type AuditEvent, canonicalEvent, sourceKey, targetKey } from './event.js';
import {
  type BatchContext,
  type BatchOutcome,
  COLUMNS,
  dueCheckpoint,
  isDuplicateId,
  storedNodes,
} from './log-batch.js';
import { loadFrontierSync } from './log-tree.js';
import type { Checkpoint } from './signer.js';
import { prepareTermStatements, type SqliteTermStatements } from './terms.js';

/** The prepared statements of the SQLite append path, made once per log and reused by every batch. */
interface SqliteStatements {
  lockHead: BetterSqlite3.Statement<[], number>;
  latestCheckpoint: BetterSqlite3.Statement<[], number>;
  existing: BetterSqlite3.Statement<[string], string>;
  insertEvent: BetterSqlite3.Statement<unknown[]>;
  insertNode: BetterSqlite3.Statement<[number, number, string]>;
  updateHead: BetterSqlite3.Statement<[number, string, number]>;
  insertCheckpoint: BetterSqlite3.Statement<[number, string, number, string, string]>;
  node: BetterSqlite3.Statement<[number, number], string>;
  leaves: BetterSqlite3.Statement<[number, number], Buffer>;
  blockEvents: BetterSqlite3.Statement<[number, number], EventTerms & { seq: number }>;
  upsertBlock: BetterSqlite3.Statement<[number, number, number, number, Buffer]>;
  upsertBlockColumn: BetterSqlite3.Statement<[number, string, Buffer]>;
  terms: SqliteTermStatements;
}

function prepareSqlite(db: BetterSqlite3.Database, kdb: Kysely<Database>): SqliteStatements {
  // The statements the PostgreSQL path builds, compiled once for SQLite; parameters in the order
  // of these sample rows' keys.
  const block: BlockRow = { block: 0, size: 0, min_time: 0, max_time: 0, present: Buffer.alloc(0) };
  const column: BlockColumnRow = { block: 0, field: 'kind', ids: Buffer.alloc(0) };
  return {
    lockHead: db
      .prepare<[], number>('update audit_head set tree_size = tree_size where id = 1 returning tree_size')
      .pluck(),
    latestCheckpoint: db
      .prepare<[], number>('select tree_size from audit_checkpoint order by tree_size desc limit 1')
      .pluck(),
    existing: db
      .prepare<[string], string>('select id from audit_event where id in (select value from json_each(?))')
      .pluck(),
    insertEvent: db.prepare(`insert into audit_event (${COLUMNS}) values (?,?,?,?,?,?,?,?,?,?)`),
    insertNode: db.prepare('insert into audit_node (level, idx, hash) values (?, ?, ?)'),
    updateHead: db.prepare('update audit_head set tree_size = ?, root_hash = ?, updated_at = ? where id = 1'),
    insertCheckpoint: db.prepare(
      'insert into audit_checkpoint (tree_size, root_hash, time, key_id, signature) values (?, ?, ?, ?, ?)',
    ),
    node: db.prepare<[number, number], string>('select hash from audit_node where level = ? and idx = ?').pluck(),
    leaves: db
      .prepare<[number, number], Buffer>('select leaf_hash from audit_event where seq >= ? and seq < ? order by seq')
      .pluck(),
    blockEvents: db.prepare<[number, number], EventTerms & { seq: number }>(
      'select seq, kind_term, outcome_term, source_term, target_term, time from audit_event where seq >= ? and seq < ? order by seq',
    ),
    upsertBlock: db.prepare(upsertBlocks(kdb, [block]).compile().sql),
    upsertBlockColumn: db.prepare(upsertBlockColumns(kdb, [column]).compile().sql),
    terms: prepareTermStatements(db),
  };
}

/**
 * SQLite plans without statistics assume every index is equally selective, so "decision id = X
 * and time ≥ T" may walk the time range instead of one decision. A full ANALYZE of a large log
 * takes many seconds and a sampled one misleads, so unless real statistics exist we seed the
 * documented sqlite_stat1 table with the shape of an audit log: ids and decision ids unique, times
 * nearly so. (Kind, outcome, source and target have no B-tree index since 0005: see audit-blocks.ts.)
 */
export async function seedSqlitePlannerStats(db: Kysely<Database>): Promise<void> {
  await sql`analyze audit_head`.execute(db); // creates sqlite_stat1 when missing
  const have = await sql<{ n: number }>`select count(*) as n from sqlite_stat1 where tbl = 'audit_event'`.execute(db);
  if (Number(have.rows[0]?.n ?? 0) > 0) return;
  const n = 10_000_000;
  const stats: [string, string][] = [
    ['audit_event_id', `${n} 1`],
    ['audit_event_decision', `${n} 1`],
    ['audit_event_time', `${n} 2`],
  ];
  for (const [idx, stat] of stats) {
    await sql`insert into sqlite_stat1 (tbl, idx, stat) values ('audit_event', ${idx}, ${stat})`.execute(db);
  }
  await sql`analyze sqlite_schema`.execute(db); // reloads the statistics
}

/**
 * Appends batches to SQLite through its native handle.
 *
 * Ids are not looked up before inserting: the unique index on `id` checks every row as it is
 * inserted anyway, so a batch is first tried as if it had no stored ids, and only when that
 * transaction fails on the index (a re-sent batch) is it rolled back and redone with the lookup.
 */
export class SqliteWriter {
  private statements: SqliteStatements | undefined;

  constructor(
    private readonly native: BetterSqlite3.Database,
    private readonly db: Kysely<Database>,
    private readonly ctx: BatchContext,
  ) {}

  /** Stores a batch (its ids unique within it); the head row update still comes first. */
  append(input: AuditEvent[]): Promise<BatchOutcome> {
    return this.db.connection().execute(async () => {
      if (!this.statements) this.statements = prepareSqlite(this.native, this.db);
      const st = this.statements;
      try {
        return this.transaction(st, input, false);
      } catch (e) {
        if (!isDuplicateId(e)) throw e;
        return this.transaction(st, input, true);
      }
    });
  }

  /** One attempt at a batch; on failure the log's memory is as before it. */
  private transaction(st: SqliteStatements, input: AuditEvent[], lookUpIds: boolean): BatchOutcome {
    const tree = this.ctx.tree;
    return tree.attempt(() => {
      let events = input;
      let firstSeq = 0;
      let checkpoint: Checkpoint | undefined;
      this.native
        .transaction(() => {
          const size = Number(st.lockHead.get() ?? 0);
          if (size !== tree.frontier.size) {
            tree.frontier = loadFrontierSync(st, size);
            tree.lastCheckpointSize = Number(st.latestCheckpoint.get() ?? 0);
          }
          if (size !== tree.blocks.next) tree.blocks = resumeBuilder(size, st.blockEvents.all(blockStart(size), size));
          if (lookUpIds && events.length > 0) {
            const existing = st.existing.all(JSON.stringify(events.map((e) => e.id)));
            if (existing.length > 0) {
              const have = new Set(existing);
              events = events.filter((e) => !have.has(e.id));
            }
          }
          firstSeq = size;
          const n = events.length;
          if (n === 0) return;
          const { nodes, onComplete } = storedNodes();
          const terms = tree.terms;
          const ts = st.terms;
          const blocks = tree.blocks;
          const bodies: string[] = new Array(n);
          for (let i = 0; i < n; i++) bodies[i] = canonicalEvent(events[i] as AuditEvent, size + i);
          // All leaf and node hashes of the batch at once (one native call when the addon is built).
          const leaves = tree.frontier.appendLeaves(bodies, onComplete);
          for (let i = 0; i < n; i++) {
            const e = events[i] as AuditEvent;
            const seq = size + i;
            const body = bodies[i] as string;
            const leaf = leaves[i] as Buffer;
            // One prepared single-row INSERT per event: cheaper in better-sqlite3 than multi-row
            // statements (measured); the term values are eventTerms()'s.
            const kind = terms.resolveSync(ts, 'kind', e.kind);
            const outcome = terms.resolveSync(ts, 'outcome', e.outcome ?? '');
            const source = terms.resolveSync(ts, 'source', sourceKey(e));
            const target = terms.resolveSync(ts, 'target', targetKey(e));
            st.insertEvent.run(seq, e.id, e.time, kind, outcome, source, target, e.decision_id ?? null, body, leaf);
            blocks.add(kind, outcome, source, target, e.time);
          }
          for (const { block: b, columns } of blocks.take()) {
            st.upsertBlock.run(b.block, b.size, b.min_time, b.max_time, b.present);
            for (const c of columns) st.upsertBlockColumn.run(c.block, c.field, c.ids);
          }
          for (const node of nodes) st.insertNode.run(node.level, node.idx, node.hash);
          const root = tree.frontier.root().toString('hex');
          st.updateHead.run(tree.frontier.size, root, Date.now());
          checkpoint = dueCheckpoint(this.ctx, root);
          if (checkpoint) {
            st.insertCheckpoint.run(
              checkpoint.tree_size,
              checkpoint.root_hash,
              checkpoint.time,
              checkpoint.key_id,
              checkpoint.signature,
            );
          }
        })
        .immediate();
      return { events, firstSeq, checkpoint };
    });
  }
}
