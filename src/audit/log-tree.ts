/**
 * The log's Merkle tree as stored: which interior nodes are kept (subtrees of 256 leaves or more),
 * subtree hashes read from the database, and the frontier (the tree's right edge) rebuilt from them
 * in O(log n) reads, through kysely or synchronously through the SQLite writer's statements. Shared
 * by the log, its writers, retention and verification.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../store/index.js';
import { AuditProofError } from './errors.js';
import {
  EMPTY_ROOT,
  edgeSizes,
  type FrontierEntry,
  MerkleFrontier,
  merkleRoot,
  nodeHash,
  type SubtreeSource,
  splitPoint,
} from './merkle.js';

/** Interior nodes at this level and above are stored (subtrees of 256 leaves or more). */
export const NODE_MIN_LEVEL = 8;
const NODE_MIN_SIZE = 2 ** NODE_MIN_LEVEL;

/** The database, or a transaction on it. */
export type Db = Kysely<Database> | Transaction<Database>;

function missingLeaves(start: number, end: number): AuditProofError {
  return new AuditProofError(`leaves ${start}..${end - 1} are not all in the database (sealed or removed)`);
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
      if (rows.length !== n) throw missingLeaves(start, end);
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

/** Stored nodes and leaf hashes read synchronously (the SQLite writer's prepared statements). */
export interface SyncTreeReads {
  node: { get(level: number, idx: number): string | undefined };
  leaves: { all(start: number, end: number): Buffer[] };
}

/** {@link loadFrontier} for the synchronous SQLite path (same reads, same errors). */
export function loadFrontierSync(st: SyncTreeReads, size: number): MerkleFrontier {
  const subtree = (start: number, end: number): Buffer => {
    const n = end - start;
    if (n <= 0) return EMPTY_ROOT;
    if (n >= NODE_MIN_SIZE && (n & (n - 1)) === 0 && start % n === 0) {
      const hash = st.node.get(Math.log2(n), start / n);
      if (hash !== undefined) return Buffer.from(hash, 'hex');
    }
    if (n <= NODE_MIN_SIZE) {
      const rows = st.leaves.all(start, end);
      if (rows.length !== n) throw missingLeaves(start, end);
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
