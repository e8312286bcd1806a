/**
 * The tamper-evident audit log over the store. Appends are batched: one transaction per batch
 * stores the events (canonical bytes + leaf hash), the interior nodes it completed, the new head and,
 * when due, a signed checkpoint. The tree's right edge (frontier) stays in memory, so an append costs
 * O(log n) hashing; at start it is rebuilt from the stored subtree roots in O(log n) reads.
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, type Kysely, sql, type Transaction } from 'kysely';
import { request } from 'undici';
import {
  BlockBuilder,
  type BlockColumnRow,
  type BlockRow,
  blockStart,
  type EventTerms,
  loadBlockBuilder,
  resumeBuilder,
  upsertBlockColumns,
  upsertBlocks,
  writeBlocks,
} from '../store/audit-blocks.js';
import type { Database, Store } from '../store/index.js';
import type { AuditEventTable } from '../store/schema.js';
import { AuditEventError, AuditProofError } from './errors.js';
import {
  type AuditEvent,
  canonicalEvent,
  type NormalizeOptions,
  normalizeEvent,
  type StoredAuditEvent,
  sourceKey,
  targetKey,
} from './event.js';
import {
  consistencyProof,
  EMPTY_ROOT,
  edgeSizes,
  type FrontierEntry,
  inclusionProof,
  MerkleFrontier,
  merkleRoot,
  nodeHash,
  type SubtreeSource,
  splitPoint,
} from './merkle.js';
import { type AuditSigner, AuditSigner as Signer, type Checkpoint } from './signer.js';
import type { ExportSink } from './sinks.js';
import {
  eventTerms,
  prepareTermStatements,
  type SqliteTermStatements,
  TermDictionary,
  type TermField,
} from './terms.js';

/** Interior nodes at this level and above are stored (subtrees of 256 leaves or more). */
export const NODE_MIN_LEVEL = 8;
const NODE_MIN_SIZE = 2 ** NODE_MIN_LEVEL;

type Db = Kysely<Database> | Transaction<Database>;

/** The subset of a pino logger the log uses. */
export interface AuditLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const silent: AuditLogger = { info() {}, warn() {}, error() {} };

export interface AuditLogOptions {
  /** Where the signing key file lives when no KEK is given. */
  dataDir: string;
  /** 32-byte key-encryption key: seals the signing key into the store. */
  kek?: Buffer;
  /** Sign a checkpoint once this many events were appended since the last one (default 10,000). */
  checkpointEvery?: number;
  /** …or this often when anything was appended (ms, default 10,000; 0 turns the timer off). */
  checkpointIntervalMs?: number;
  /** Also append every checkpoint as a JSON line to this file (outside the database). */
  checkpointFile?: string;
  /** Also POST every checkpoint to this URL. */
  checkpointWebhook?: string;
  /** Copies of stored events (stdout, file, webhook). */
  sinks?: ExportSink[];
  logger?: AuditLogger;
  /** Limit on one event's canonical size (default 16 KiB). */
  maxEventBytes?: number;
}

export interface AppendResult {
  /** Events stored by this call (duplicates of already stored ids are skipped). */
  stored: number;
  duplicates: number;
  /** Seq of the first stored event (when stored > 0). */
  firstSeq: number;
  treeSize: number;
  /** The checkpoint this append signed, if one was due. */
  checkpoint?: Checkpoint;
}

/** A checkpoint line in an external checkpoint file: the checkpoint plus the public key that signed it. */
export interface ExternalCheckpoint extends Checkpoint {
  public_key: string;
}

export interface InclusionProofResult {
  seq: number;
  tree_size: number;
  leaf_hash: string;
  /** Sibling hashes (hex), leaf upwards, RFC 6962 §2.1.1. */
  proof: string[];
  checkpoint: Checkpoint;
}

export interface ConsistencyProofResult {
  from: Checkpoint;
  to: Checkpoint;
  proof: string[];
}

const COLUMNS = 'seq, id, time, kind_term, outcome_term, source_term, target_term, decision_id, body, leaf_hash';
const SQLITE_ROWS_PER_INSERT = 500;

/** What one committed batch transaction stored. */
interface BatchOutcome {
  events: AuditEvent[];
  firstSeq: number;
  checkpoint: Checkpoint | undefined;
}

/** Whether an append failed on the unique index of event ids (a re-sent event). */
function isDuplicateId(e: unknown): boolean {
  const err = e as { code?: unknown; constraint?: unknown; message?: unknown };
  if (err.code === '23505') return err.constraint === 'audit_event_id'; // PostgreSQL unique_violation
  return err.code === 'SQLITE_CONSTRAINT_UNIQUE' && String(err.message).includes('audit_event.id');
}

/** One stored event row: the table's own type, so the two cannot drift. */
type Row = AuditEventTable;

function toCheckpoint(r: {
  tree_size: number | string;
  root_hash: string;
  time: number | string;
  key_id: string;
  signature: string;
}): Checkpoint {
  return {
    tree_size: Number(r.tree_size),
    root_hash: r.root_hash,
    time: Number(r.time),
    key_id: r.key_id,
    signature: r.signature,
  };
}

/** Subtree hashes from the database: stored nodes for aligned ranges of ≥256, leaf hashes below. */
export function dbSubtreeSource(db: Db): SubtreeSource {
  const subtree = async (start: number, end: number): Promise<Buffer> => {
    const n = end - start;
    if (n <= 0) return EMPTY_ROOT;
    if (n >= NODE_MIN_SIZE && (n & (n - 1)) === 0 && start % n === 0) {
      const level = Math.log2(n);
      const row = await db
        .selectFrom('audit_node')
        .select('hash')
        .where('level', '=', level)
        .where('idx', '=', start / n)
        .executeTakeFirst();
      if (row) return Buffer.from(row.hash, 'hex');
    }
    if (n <= NODE_MIN_SIZE) {
      const rows = await db
        .selectFrom('audit_event')
        .select(['seq', 'leaf_hash'])
        .where('seq', '>=', start)
        .where('seq', '<', end)
        .orderBy('seq')
        .execute();
      if (rows.length !== n) {
        throw new AuditProofError(`leaves ${start}..${end - 1} are not all in the database (sealed or removed)`);
      }
      return merkleRoot(rows.map((r) => r.leaf_hash));
    }
    const k = splitPoint(n);
    return nodeHash(await subtree(start, start + k), await subtree(start + k, end));
  };
  return { subtree };
}

/** Rebuilds the frontier of a tree of `size` leaves from the database. */
export async function loadFrontier(db: Db, size: number): Promise<MerkleFrontier> {
  const src = dbSubtreeSource(db);
  const entries: FrontierEntry[] = [];
  let start = 0;
  for (const bit of edgeSizes(size)) {
    entries.push({ hash: await src.subtree(start, start + bit), size: bit });
    start += bit;
  }
  return new MerkleFrontier(entries);
}

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

/** {@link loadFrontier} for the synchronous SQLite path (same reads, same errors). */
function loadFrontierSync(st: SqliteStatements, size: number): MerkleFrontier {
  const subtree = (start: number, end: number): Buffer => {
    const n = end - start;
    if (n <= 0) return EMPTY_ROOT;
    if (n >= NODE_MIN_SIZE && (n & (n - 1)) === 0 && start % n === 0) {
      const hash = st.node.get(Math.log2(n), start / n);
      if (hash !== undefined) return Buffer.from(hash, 'hex');
    }
    if (n <= NODE_MIN_SIZE) {
      const rows = st.leaves.all(start, end);
      if (rows.length !== n) {
        throw new AuditProofError(`leaves ${start}..${end - 1} are not all in the database (sealed or removed)`);
      }
      return merkleRoot(rows);
    }
    const k = splitPoint(n);
    return nodeHash(subtree(start, start + k), subtree(start + k, end));
  };
  const entries: FrontierEntry[] = [];
  let start = 0;
  for (const bit of edgeSizes(size)) {
    entries.push({ hash: subtree(start, start + bit), size: bit });
    start += bit;
  }
  return new MerkleFrontier(entries);
}

/**
 * SQLite plans without statistics assume every index is equally selective, so "decision id = X
 * and time ≥ T" may walk the time range instead of one decision. A full ANALYZE of a large log
 * takes many seconds and a sampled one misleads, so unless real statistics exist we seed the
 * documented sqlite_stat1 table with the shape of an audit log: ids and decision ids unique, times
 * nearly so. (Kind, outcome, source and target have no B-tree index since 0005: see audit-blocks.ts.)
 */
async function seedSqlitePlannerStats(db: Kysely<Database>): Promise<void> {
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
 * The store-backed, tamper-evident audit log.
 *
 * @example
 * const log = await AuditLog.open(store, { dataDir: './.nevertrust' });
 * await log.append([normalizeEvent({ kind: 'access.decision', outcome: 'allow' })]);
 * const proof = await log.inclusionProof(0);
 */
export class AuditLog {
  private frontier = new MerkleFrontier();
  /** The query-index block being filled (its next position is the frontier's size). */
  private blocks = new BlockBuilder();
  private lastCheckpointSize = 0;
  private lastCheckpointAt = Date.now();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(events: StoredAuditEvent[]) => void>();
  private closed = false;
  private checkpointWrites: Promise<void> = Promise.resolve();
  private sqliteStatements: SqliteStatements | undefined;
  private readonly terms = new TermDictionary();
  private readonly logger: AuditLogger;
  private readonly every: number;
  /** Counters for metrics. */
  readonly counters = { stored: 0, duplicates: 0, batches: 0, checkpoints: 0, sinkErrors: 0 };

  private constructor(
    readonly store: Store,
    readonly signer: AuditSigner,
    private readonly opts: AuditLogOptions,
  ) {
    this.logger = opts.logger ?? silent;
    this.every = Math.max(1, opts.checkpointEvery ?? 10_000);
  }

  /** Opens the log: loads (or creates) the signing key and rebuilds the frontier. */
  static async open(store: Store, opts: AuditLogOptions): Promise<AuditLog> {
    // The external checkpoint file is the evidence that survives a rewritten database: make sure it
    // can be written before the first event is accepted, rather than failing quietly later.
    if (opts.checkpointFile) await mkdir(dirname(opts.checkpointFile), { recursive: true, mode: 0o700 });
    const signer = await Signer.load(store, { dataDir: opts.dataDir, kek: opts.kek });
    const log = new AuditLog(store, signer, opts);
    await log.resync(store.db);
    if (store.engine === 'sqlite') await seedSqlitePlannerStats(store.db);
    const interval = opts.checkpointIntervalMs ?? 10_000;
    if (interval > 0) {
      log.timer = setInterval(
        () => {
          if (log.frontier.size > log.lastCheckpointSize && Date.now() - log.lastCheckpointAt >= interval) {
            log.checkpoint().catch((e: unknown) => log.logger.error({ err: e }, 'audit checkpoint failed'));
          }
        },
        Math.min(interval, 1000),
      );
      log.timer.unref();
    }
    return log;
  }

  /** Leaves appended so far (as this process knows). */
  get treeSize(): number {
    return this.frontier.size;
  }

  /** The root of the current tree, hex. */
  rootHash(): string {
    return this.frontier.root().toString('hex');
  }

  private async resync(db: Db): Promise<void> {
    const head = await db.selectFrom('audit_head').selectAll().where('id', '=', 1).executeTakeFirstOrThrow();
    const size = Number(head.tree_size);
    if (size !== this.frontier.size) this.frontier = await loadFrontier(db, size);
    if (size !== this.blocks.next) this.blocks = await loadBlockBuilder(db, size);
    const cp = await db
      .selectFrom('audit_checkpoint')
      .select(['tree_size', 'time'])
      .orderBy('tree_size', 'desc')
      .limit(1)
      .executeTakeFirst();
    this.lastCheckpointSize = cp ? Number(cp.tree_size) : 0;
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }

  /**
   * Validates raw events (from an enforcement point) and appends them. Throws AuditEventError naming
   * the first bad event; nothing is stored then.
   */
  async appendInputs(inputs: readonly unknown[], opts: NormalizeOptions = {}): Promise<AppendResult> {
    const events: AuditEvent[] = [];
    for (let i = 0; i < inputs.length; i++) {
      try {
        events.push(normalizeEvent(inputs[i], { maxBytes: this.opts.maxEventBytes, ...opts }));
      } catch (e) {
        if (e instanceof Error && 'code' in e) {
          const err = new AuditEventError(`event ${i}: ${e.message}`, (e as AuditEventError).path);
          throw err;
        }
        throw e;
      }
    }
    return this.append(events);
  }

  /**
   * Appends normalized events in one transaction. Resolves once it committed: then every event is
   * durable and part of the tree. Events whose id is already stored are skipped (at-least-once shippers).
   */
  append(events: readonly AuditEvent[]): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new AuditEventError('audit log is closed'));
    return this.serialize(() => this.appendNow(events));
  }

  private async appendNow(input: readonly AuditEvent[]): Promise<AppendResult> {
    // Within a batch, the first event with an id wins.
    const seen = new Set<string>();
    const events: AuditEvent[] = [];
    for (const e of input) {
      if (seen.has(e.id)) continue;
      seen.add(e.id);
      events.push(e);
    }
    const native = this.store.engine === 'sqlite' ? this.store.sqlite : undefined;
    if (native) return this.appendSqlite(native, events, input.length);
    // As on SQLite: first as if no id were stored yet (the unique index checks every row anyway),
    // again with the lookup when a re-sent event hits the index.
    let r: BatchOutcome;
    try {
      r = await this.appendKysely(events, false);
    } catch (e) {
      if (!isDuplicateId(e)) throw e;
      r = await this.appendKysely(events, true);
    }
    return this.committed(r.events, r.firstSeq, input.length, r.checkpoint);
  }

  /** One attempt at a batch through kysely (PostgreSQL); on failure the log's memory is as before it. */
  private async appendKysely(input: AuditEvent[], lookUpIds: boolean): Promise<BatchOutcome> {
    const pg = this.store.engine === 'postgres';
    const before = this.frontier.clone();
    const beforeBlocks = this.blocks.clone();
    const beforeCheckpointSize = this.lastCheckpointSize;
    let events = input;
    let checkpoint: Checkpoint | undefined;
    let firstSeq = 0;
    this.terms.begin();
    try {
      await this.store.db.transaction().execute(async (trx) => {
        // Locks the head row first: appends from several servers on one database serialize here.
        const locked = await sql<{ tree_size: number | string }>`update audit_head set tree_size = tree_size
          where id = 1 returning tree_size`.execute(trx);
        const size = Number(locked.rows[0]?.tree_size ?? 0);
        if (size !== this.frontier.size) {
          this.frontier = await loadFrontier(trx, size);
          const cp = await trx
            .selectFrom('audit_checkpoint')
            .select('tree_size')
            .orderBy('tree_size', 'desc')
            .limit(1)
            .executeTakeFirst();
          this.lastCheckpointSize = cp ? Number(cp.tree_size) : 0;
        }
        if (size !== this.blocks.next) this.blocks = await loadBlockBuilder(trx, size);
        if (lookUpIds) {
          const existing = await this.existingIds(trx, events);
          if (existing.size > 0) events = events.filter((e) => !existing.has(e.id));
        }
        firstSeq = size;
        await this.terms.resolveAll(trx, events);
        const rows: Row[] = new Array(events.length);
        const nodes: { level: number; idx: number; hash: string }[] = [];
        const onComplete = (level: number, idx: number, hash: Buffer) => {
          if (level >= NODE_MIN_LEVEL) nodes.push({ level, idx, hash: hash.toString('hex') });
        };
        const bodies = events.map((e, i) => canonicalEvent(e, size + i));
        const leaves = this.frontier.appendLeaves(bodies, onComplete);
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
          this.blocks.add(row.kind_term, row.outcome_term, row.source_term, row.target_term, row.time);
        }
        if (rows.length > 0) {
          if (pg) await this.insertPg(trx, rows);
          else await this.insertSqlite(trx, rows);
          await writeBlocks(trx, this.blocks.take());
          if (nodes.length > 0) await trx.insertInto('audit_node').values(nodes).execute();
          const root = this.frontier.root().toString('hex');
          await trx
            .updateTable('audit_head')
            .set({ tree_size: this.frontier.size, root_hash: root, updated_at: Date.now() })
            .where('id', '=', 1)
            .execute();
          if (this.frontier.size - this.lastCheckpointSize >= this.every) {
            checkpoint = this.signer.sign(this.frontier.size, root, Date.now());
            await trx.insertInto('audit_checkpoint').values(checkpoint).execute();
          }
        }
      });
    } catch (e) {
      this.frontier = before;
      this.blocks = beforeBlocks;
      this.lastCheckpointSize = beforeCheckpointSize;
      this.terms.rollback();
      throw e;
    }
    return { events, firstSeq, checkpoint };
  }

  private termId(field: TermField, value: string): number {
    const id = this.terms.get(field, value);
    if (id === undefined) throw new Error(`audit term ${field}=${value} was not resolved`);
    return id;
  }

  /** After a commit: counters, checkpoint side effects, listeners and sinks, the result. */
  private committed(
    events: readonly AuditEvent[],
    firstSeq: number,
    received: number,
    checkpoint: Checkpoint | undefined,
  ): AppendResult {
    const n = events.length;
    if (checkpoint) this.afterCheckpoint(checkpoint);
    this.counters.stored += n;
    this.counters.duplicates += received - n;
    this.counters.batches++;
    // The stored form (event plus seq) is built only when someone receives it.
    if (n > 0 && (this.listeners.size > 0 || (this.opts.sinks?.length ?? 0) > 0)) {
      this.publish(events.map((e, i) => ({ ...e, seq: firstSeq + i })));
    }
    return { stored: n, duplicates: received - n, firstSeq, treeSize: this.frontier.size, checkpoint };
  }

  /**
   * The SQLite path: the whole batch in one synchronous better-sqlite3 transaction (BEGIN IMMEDIATE)
   * with statements prepared once, while holding kysely's only connection so nothing interleaves.
   * Same rows, bytes and hashes as the kysely path; the head row update still comes first.
   *
   * Ids are not looked up before inserting: the unique index on `id` checks every row as it is
   * inserted anyway, so a batch is first tried as if it had no stored ids, and only when that
   * transaction fails on the index (a re-sent batch) is it rolled back and redone with the lookup.
   */
  private async appendSqlite(
    native: BetterSqlite3.Database,
    input: AuditEvent[],
    received: number,
  ): Promise<AppendResult> {
    const outcome = await this.store.db.connection().execute(async () => {
      if (!this.sqliteStatements) this.sqliteStatements = prepareSqlite(native, this.store.db);
      const st = this.sqliteStatements;
      try {
        return this.appendSqliteTransaction(native, st, input, false);
      } catch (e) {
        if (!isDuplicateId(e)) throw e;
        return this.appendSqliteTransaction(native, st, input, true);
      }
    });
    return this.committed(outcome.events, outcome.firstSeq, received, outcome.checkpoint);
  }

  /** One attempt at a SQLite batch; on failure the log's memory is as before it. */
  private appendSqliteTransaction(
    native: BetterSqlite3.Database,
    st: SqliteStatements,
    input: AuditEvent[],
    lookUpIds: boolean,
  ): BatchOutcome {
    const before = this.frontier.clone();
    const beforeBlocks = this.blocks.clone();
    const beforeCheckpointSize = this.lastCheckpointSize;
    let events = input;
    let firstSeq = 0;
    let checkpoint: Checkpoint | undefined;
    this.terms.begin();
    try {
      native
        .transaction(() => {
          const size = Number(st.lockHead.get() ?? 0);
          if (size !== this.frontier.size) {
            this.frontier = loadFrontierSync(st, size);
            this.lastCheckpointSize = Number(st.latestCheckpoint.get() ?? 0);
          }
          if (size !== this.blocks.next) this.blocks = resumeBuilder(size, st.blockEvents.all(blockStart(size), size));
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
          const nodes: { level: number; idx: number; hash: string }[] = [];
          const onComplete = (level: number, idx: number, hash: Buffer) => {
            if (level >= NODE_MIN_LEVEL) nodes.push({ level, idx, hash: hash.toString('hex') });
          };
          const terms = this.terms;
          const ts = st.terms;
          const blocks = this.blocks;
          const bodies: string[] = new Array(n);
          for (let i = 0; i < n; i++) bodies[i] = canonicalEvent(events[i] as AuditEvent, size + i);
          // All leaf and node hashes of the batch at once (one native call when the addon is built).
          const leaves = this.frontier.appendLeaves(bodies, onComplete);
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
          const root = this.frontier.root().toString('hex');
          st.updateHead.run(this.frontier.size, root, Date.now());
          if (this.frontier.size - this.lastCheckpointSize >= this.every) {
            checkpoint = this.signer.sign(this.frontier.size, root, Date.now());
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
    } catch (e) {
      this.frontier = before;
      this.blocks = beforeBlocks;
      this.lastCheckpointSize = beforeCheckpointSize;
      this.terms.rollback();
      throw e;
    }
    return { events, firstSeq, checkpoint };
  }

  private async existingIds(trx: Db, events: readonly AuditEvent[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (let i = 0; i < events.length; i += SQLITE_ROWS_PER_INSERT) {
      const ids = events.slice(i, i + SQLITE_ROWS_PER_INSERT).map((e) => e.id);
      const rows = await trx.selectFrom('audit_event').select('id').where('id', 'in', ids).execute();
      for (const r of rows) found.add(r.id);
    }
    return found;
  }

  private async insertSqlite(trx: Db, rows: readonly Row[]): Promise<void> {
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

  private async insertPg(trx: Db, rows: readonly Row[]): Promise<void> {
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

  private publish(events: StoredAuditEvent[]): void {
    for (const l of this.listeners) {
      try {
        l(events);
      } catch (e) {
        this.logger.error({ err: e }, 'audit listener failed');
      }
    }
    for (const s of this.opts.sinks ?? []) {
      s.write(events).catch((e: unknown) => {
        this.counters.sinkErrors++;
        this.logger.warn({ err: e, sink: s.name }, 'audit export sink failed');
      });
    }
  }

  private afterCheckpoint(cp: Checkpoint): void {
    this.lastCheckpointSize = cp.tree_size;
    this.lastCheckpointAt = Date.now();
    this.counters.checkpoints++;
    const external: ExternalCheckpoint = { ...cp, public_key: this.signer.publicKeyPem };
    if (this.opts.checkpointFile) {
      const file = this.opts.checkpointFile;
      const line = `${JSON.stringify(external)}\n`;
      // One write at a time: concurrent appends run on the thread pool and may land out of order.
      this.checkpointWrites = this.checkpointWrites
        .then(() => appendFile(file, line, { mode: 0o600 }))
        .catch((e: unknown) => this.logger.error({ err: e, file }, 'cannot write the external checkpoint file'));
    }
    if (this.opts.checkpointWebhook) {
      const url = this.opts.checkpointWebhook;
      request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(external),
        headersTimeout: 5000,
      })
        .then((r) => r.body.dump())
        .catch((e: unknown) => this.logger.warn({ err: e, url }, 'checkpoint webhook failed'));
    }
  }

  /** Listens for committed events (in commit order); returns an unsubscribe function. */
  onAppend(listener: (events: StoredAuditEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Signs a checkpoint of the current tree now (or returns the latest one when nothing changed).
   *
   * @example
   * const cp = await log.checkpoint(); // { tree_size, root_hash, time, key_id, signature }
   */
  checkpoint(): Promise<Checkpoint> {
    return this.serialize(async () => {
      await this.resync(this.store.db);
      const latest = await this.latestCheckpoint();
      if (latest && latest.tree_size === this.frontier.size) return latest;
      const cp = this.signer.sign(this.frontier.size, this.frontier.root().toString('hex'), Date.now());
      await this.store.db
        .insertInto('audit_checkpoint')
        .values(cp)
        .onConflict((oc) => oc.column('tree_size').doNothing())
        .execute();
      this.afterCheckpoint(cp);
      return cp;
    });
  }

  /** The newest stored checkpoint. */
  async latestCheckpoint(): Promise<Checkpoint | undefined> {
    const r = await this.store.db
      .selectFrom('audit_checkpoint')
      .selectAll()
      .orderBy('tree_size', 'desc')
      .limit(1)
      .executeTakeFirst();
    return r ? toCheckpoint(r) : undefined;
  }

  /** The checkpoint at exactly `size`, if one was signed. */
  async checkpointAt(size: number): Promise<Checkpoint | undefined> {
    const r = await this.store.db
      .selectFrom('audit_checkpoint')
      .selectAll()
      .where('tree_size', '=', size)
      .executeTakeFirst();
    return r ? toCheckpoint(r) : undefined;
  }

  /** Checkpoints, oldest first. */
  async checkpoints(limit = 1000): Promise<Checkpoint[]> {
    const rows = await this.store.db
      .selectFrom('audit_checkpoint')
      .selectAll()
      .orderBy('tree_size', 'desc')
      .limit(limit)
      .execute();
    return rows.map(toCheckpoint).reverse();
  }

  /** One stored event by id or seq. */
  async get(idOrSeq: string | number): Promise<StoredAuditEvent | undefined> {
    const q = this.store.db.selectFrom('audit_event').select('body');
    const row = await (typeof idOrSeq === 'number' ? q.where('seq', '=', idOrSeq) : q.where('id', '=', idOrSeq))
      .limit(1)
      .executeTakeFirst();
    return row ? (JSON.parse(row.body) as StoredAuditEvent) : undefined;
  }

  /**
   * Inclusion proof of the event at `seq` against the latest checkpoint (signing a fresh one when
   * the event is newer than the latest).
   */
  async inclusionProof(seq: number): Promise<InclusionProofResult> {
    let cp = await this.latestCheckpoint();
    if (!cp || cp.tree_size <= seq) cp = await this.checkpoint();
    if (cp.tree_size <= seq) throw new AuditProofError(`no event ${seq} in the log`);
    const row = await this.store.db
      .selectFrom('audit_event')
      .select('leaf_hash')
      .where('seq', '=', seq)
      .executeTakeFirst();
    if (!row) throw new AuditProofError(`event ${seq} is not in the database (sealed into a segment?)`);
    const proof = await inclusionProof(seq, cp.tree_size, dbSubtreeSource(this.store.db));
    return {
      seq,
      tree_size: cp.tree_size,
      leaf_hash: row.leaf_hash.toString('hex'),
      proof: proof.map((b) => b.toString('hex')),
      checkpoint: cp,
    };
  }

  /** Consistency proof between two signed checkpoints (by tree size). */
  async consistencyProof(fromSize: number, toSize: number): Promise<ConsistencyProofResult> {
    const [from, to] = await Promise.all([this.checkpointAt(fromSize), this.checkpointAt(toSize)]);
    if (!from || !to) throw new AuditProofError(`no signed checkpoint at size ${!from ? fromSize : toSize}`);
    const proof = await consistencyProof(fromSize, toSize, dbSubtreeSource(this.store.db));
    return { from, to, proof: proof.map((b) => b.toString('hex')) };
  }

  /** Stops the checkpoint timer and waits for appends in progress. Does not close the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.chain.catch(() => {});
    await this.checkpointWrites;
    for (const s of this.opts.sinks ?? []) await s.close?.().catch(() => {});
  }
}
