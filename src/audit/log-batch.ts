/**
 * What the log's two writers (native SQLite in `log-sqlite.ts`, kysely for PostgreSQL in
 * `log-kysely.ts`) share: the in-memory state a batch advances (frontier, query-index block, last
 * checkpoint size, term cache) with the one rollback that puts it back when the batch's transaction
 * fails, the stored-node collector, the checkpoint-due rule, and what a committed batch reports.
 */
import { BlockBuilder } from '../store/audit-blocks.js';
import type { AuditEvent } from './event.js';
import { NODE_MIN_LEVEL } from './log-tree.js';
import { MerkleFrontier } from './merkle.js';
import type { AuditSigner, Checkpoint } from './signer.js';
import { TermDictionary } from './terms.js';

/** The columns of a stored event row, in the order both writers bind them. */
export const COLUMNS = 'seq, id, time, kind_term, outcome_term, source_term, target_term, decision_id, body, leaf_hash';

/**
 * The log's memory of the tree, as this process knows it. A batch advances it before its
 * transaction commits; {@link TreeState.attempt} restores it when the transaction fails, so memory
 * and database never disagree.
 */
export class TreeState {
  frontier = new MerkleFrontier();
  /** The query-index block being filled (its next position is the frontier's size). */
  blocks = new BlockBuilder();
  lastCheckpointSize = 0;
  readonly terms = new TermDictionary();

  /** Runs one synchronous batch attempt; if it throws, the memory is as before it. */
  attempt<T>(run: () => T): T {
    const undo = this.begin();
    try {
      return run();
    } catch (e) {
      undo();
      throw e;
    }
  }

  /** {@link attempt} for an asynchronous batch. */
  async attemptAsync<T>(run: () => Promise<T>): Promise<T> {
    const undo = this.begin();
    try {
      return await run();
    } catch (e) {
      undo();
      throw e;
    }
  }

  /** Snapshots the memory and opens a term transaction; returns what undoes both. */
  private begin(): () => void {
    const before = this.frontier.clone();
    const beforeBlocks = this.blocks.clone();
    const beforeCheckpointSize = this.lastCheckpointSize;
    this.terms.begin();
    return () => {
      this.frontier = before;
      this.blocks = beforeBlocks;
      this.lastCheckpointSize = beforeCheckpointSize;
      this.terms.rollback();
    };
  }
}

/** What a writer needs from the log: its memory, its signer and its checkpoint interval. */
export interface BatchContext {
  readonly tree: TreeState;
  readonly signer: AuditSigner;
  /** Sign a checkpoint once this many events were appended since the last one. */
  readonly every: number;
}

/** What one committed batch transaction stored. */
export interface BatchOutcome {
  events: AuditEvent[];
  firstSeq: number;
  checkpoint: Checkpoint | undefined;
}

/** An interior node to store. */
export interface NodeRow {
  level: number;
  idx: number;
  hash: string;
}

/** Collects the interior nodes a batch completes that are stored (level ≥ NODE_MIN_LEVEL). */
export function storedNodes(): {
  nodes: NodeRow[];
  onComplete: (level: number, idx: number, hash: Buffer) => void;
} {
  const nodes: NodeRow[] = [];
  const onComplete = (level: number, idx: number, hash: Buffer) => {
    if (level >= NODE_MIN_LEVEL) nodes.push({ level, idx, hash: hash.toString('hex') });
  };
  return { nodes, onComplete };
}

/** The checkpoint of the tree's new `root` when one is due after a batch, signed; else undefined. */
export function dueCheckpoint(ctx: BatchContext, root: string): Checkpoint | undefined {
  const { frontier, lastCheckpointSize } = ctx.tree;
  if (frontier.size - lastCheckpointSize < ctx.every) return undefined;
  return ctx.signer.sign(frontier.size, root, Date.now());
}

/** Whether an append failed on the unique index of event ids (a re-sent event). */
export function isDuplicateId(e: unknown): boolean {
  const err = e as { code?: unknown; constraint?: unknown; message?: unknown };
  if (err.code === '23505') return err.constraint === 'audit_event_id'; // PostgreSQL unique_violation
  return err.code === 'SQLITE_CONSTRAINT_UNIQUE' && String(err.message).includes('audit_event.id');
}
