/**
 * The tamper-evident audit log over the store. Appends are batched: one transaction per batch
 * stores the events (canonical bytes + leaf hash), the interior nodes it completed, the new head and,
 * when due, a signed checkpoint. The tree's right edge (frontier) stays in memory, so an append costs
 * O(log n) hashing; at start it is rebuilt from the stored subtree roots in O(log n) reads.
 *
 * This file is the log itself (open, append, checkpoints, reads, proofs); the stored tree is in
 * `log-tree.ts`, a batch's writers in `log-sqlite.ts` and `log-kysely.ts` (sharing `log-batch.ts`),
 * and what goes out after a commit in `log-publish.ts`.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { InclusionProofResult } from '../api/audit.js';
import { loadBlockBuilder } from '../store/audit-blocks.js';
import type { Store } from '../store/index.js';
import { AuditEventError, AuditProofError } from './errors.js';
import { type AuditEvent, type NormalizeOptions, normalizeEvent, type StoredAuditEvent } from './event.js';
import { type BatchContext, TreeState } from './log-batch.js';
import { KyselyWriter } from './log-kysely.js';
import { type ExternalCheckpoint, LogPublisher } from './log-publish.js';
import { SqliteWriter, seedSqlitePlannerStats } from './log-sqlite.js';
import { type Db, dbSubtreeSource, loadFrontier } from './log-tree.js';
import { consistencyProof, inclusionProof } from './merkle.js';
import { type AuditSigner, AuditSigner as Signer, type Checkpoint } from './signer.js';
import type { ExportSink } from './sinks.js';

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

export type { InclusionProofResult };

export interface ConsistencyProofResult {
  from: Checkpoint;
  to: Checkpoint;
  proof: string[];
}

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

/**
 * The store-backed, tamper-evident audit log.
 *
 * @example
 * const log = await AuditLog.open(store, { dataDir: './.nevertrust' });
 * await log.append([normalizeEvent({ kind: 'access.decision', outcome: 'allow' })]);
 * const proof = await log.inclusionProof(0);
 */
export class AuditLog {
  /** The frontier, query-index block, last checkpoint size and term cache; batches advance it. */
  private readonly tree = new TreeState();
  private lastCheckpointAt = Date.now();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly writer: SqliteWriter | KyselyWriter;
  private readonly publisher: LogPublisher;
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
    this.publisher = new LogPublisher(opts, this.logger, this.counters);
    const ctx: BatchContext = { tree: this.tree, signer, every: this.every };
    const native = store.engine === 'sqlite' ? store.sqlite : undefined;
    this.writer = native
      ? new SqliteWriter(native, store.db, ctx)
      : new KyselyWriter(store.db, store.engine === 'postgres', ctx);
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
          if (log.tree.frontier.size > log.tree.lastCheckpointSize && Date.now() - log.lastCheckpointAt >= interval) {
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
    return this.tree.frontier.size;
  }

  /** The root of the current tree, hex. */
  rootHash(): string {
    return this.tree.frontier.root().toString('hex');
  }

  private async resync(db: Db): Promise<void> {
    const head = await db.selectFrom('audit_head').selectAll().where('id', '=', 1).executeTakeFirstOrThrow();
    const size = Number(head.tree_size);
    if (size !== this.tree.frontier.size) this.tree.frontier = await loadFrontier(db, size);
    if (size !== this.tree.blocks.next) this.tree.blocks = await loadBlockBuilder(db, size);
    const cp = await db
      .selectFrom('audit_checkpoint')
      .select(['tree_size', 'time'])
      .orderBy('tree_size', 'desc')
      .limit(1)
      .executeTakeFirst();
    this.tree.lastCheckpointSize = cp ? Number(cp.tree_size) : 0;
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
    // One writer per engine: the SQLite one through its native handle, kysely for the rest.
    const r = await this.writer.append(events);
    return this.committed(r.events, r.firstSeq, input.length, r.checkpoint);
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
    if (n > 0 && this.publisher.wanted) {
      this.publisher.events(events.map((e, i) => ({ ...e, seq: firstSeq + i })));
    }
    return { stored: n, duplicates: received - n, firstSeq, treeSize: this.tree.frontier.size, checkpoint };
  }

  private afterCheckpoint(cp: Checkpoint): void {
    this.tree.lastCheckpointSize = cp.tree_size;
    this.lastCheckpointAt = Date.now();
    this.counters.checkpoints++;
    const external: ExternalCheckpoint = { ...cp, public_key: this.signer.publicKeyPem };
    this.publisher.checkpoint(external);
  }

  /** Listens for committed events (in commit order); returns an unsubscribe function. */
  onAppend(listener: (events: StoredAuditEvent[]) => void): () => void {
    return this.publisher.onAppend(listener);
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
      if (latest && latest.tree_size === this.tree.frontier.size) return latest;
      const cp = this.signer.sign(this.tree.frontier.size, this.tree.frontier.root().toString('hex'), Date.now());
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
    await this.publisher.close();
  }
}
