/**
 * `audit verify`: recomputes the whole log from its stored bytes and checks it against everything
 * that was written at append time: each row's leaf hash and seq, the stored subtree roots, the head,
 * every signed checkpoint in the database and, optionally, checkpoints kept outside it. It stops at
 * the first index that was changed, removed or inserted.
 *
 * What it can pin down exactly: a row edited, deleted or inserted with SQL (its bytes, leaf hash,
 * seq or position disagree), and a query-index block edited to hide an event (audit_block). An attacker who also rewrites leaf hashes and subtree roots is still
 * caught by the signed checkpoints, which bound the change to the range since the last good one.
 */
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { z } from 'zod';
import {
  BLOCK_EVENTS,
  TERM_FIELDS,
  type TermField,
  type EventTerms,
  mayContain,
  readColumn,
} from '../store/audit-blocks.js';
import type { ProblemKind, VerifyProblem, VerifyReport } from '../api/audit.js';
import { EdgeTally, encodeBlockEdges, outcomeClassOf, readBlockEdges } from '../store/audit-block-edges.js';
import type { Store } from '../store/index.js';
import type { AuditBlockTable } from '../store/schema.js';
import type { StoredAuditEvent } from './event.js';
import { legacySourceKey, sourceKey, targetKey } from './event.js';
import type { ExternalCheckpoint } from './log-publish.js';
import { loadFrontier, NODE_MIN_LEVEL } from './log-tree.js';
import { leafHash, MerkleFrontier } from './merkle.js';
import { segmentPath, verifySegmentFile } from './retention.js';
import { AuditSigner, type Checkpoint, keyIdOf, verifyCheckpoint } from './signer.js';

export type { ProblemKind, VerifyProblem, VerifyReport };

export interface VerifyOptions {
  /** PEM public key to trust; default: the key in the store (and the external file's, which must agree). */
  publicKey?: string;
  /** Checkpoints kept outside the database (see {@link readCheckpointFile}). */
  externalCheckpoints?: ExternalCheckpoint[];
  /** Where sealed segment files are. */
  segmentDir?: string;
  pageSize?: number;
}

const externalSchema = z.object({
  tree_size: z.number().int().min(0),
  root_hash: z.string().regex(/^[0-9a-f]{64}$/),
  time: z.number(),
  key_id: z.string(),
  signature: z.string(),
  public_key: z.string(),
});

/**
 * Reads an external checkpoint file (one JSON checkpoint per line, as the log appends them).
 *
 * @example
 * const ext = readCheckpointFile('/secure/audit-checkpoints.ndjson');
 */
export function readCheckpointFile(path: string): ExternalCheckpoint[] {
  const out: ExternalCheckpoint[] = [];
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new Error(`${path}:${i + 1}: not JSON`);
    }
    const p = externalSchema.safeParse(v);
    if (!p.success) throw new Error(`${path}:${i + 1}: not a checkpoint (${p.error.issues[0]?.message})`);
    out.push(p.data);
  });
  return out;
}

/**
 * Checks the query index (`audit_block`) against the rows: every event must sit at its position in
 * its block with its own term ids, inside the block's time range and marked in its bitmaps. A block
 * edited to leave an event out would hide it from every query without touching a hashed byte.
 */
const EMPTY = new Uint8Array(0);

async function hasBlockIndex(store: Store): Promise<boolean> {
  try {
    await store.db.selectFrom('audit_block').select('block').limit(1).execute();
    await store.db.selectFrom('audit_block_column').select('block').limit(1).execute();
    return true;
  } catch {
    return false;
  }
}

class BlockChecker {
  private current: { block: number; row: AuditBlockTable | undefined; cols: Int32Array[] } | undefined;

  constructor(private readonly store: Store) {}

  /** A message when the index disagrees with the event at `seq`, else undefined. */
  async check(seq: number, e: EventTerms): Promise<string | undefined> {
    const block = Math.floor(seq / BLOCK_EVENTS);
    if (this.current?.block !== block) {
      const row = await this.store.db
        .selectFrom('audit_block')
        .selectAll()
        .where('block', '=', block)
        .executeTakeFirst();
      const stored = await this.store.db
        .selectFrom('audit_block_column')
        .select(['field', 'ids'])
        .where('block', '=', block)
        .execute();
      const byField = new Map(stored.map((c) => [c.field, c.ids]));
      const cols = TERM_FIELDS.map((f) => readColumn(byField.get(f) ?? EMPTY));
      this.current = { block, row, cols };
    }
    const { row: b, cols } = this.current;
    const where = `the query index (audit_block ${block}) disagrees with event ${seq}`;
    if (!b) return `${where}: the block is missing, so queries cannot find the event`;
    const pos = seq - block * BLOCK_EVENTS;
    const ids = [e.kind_term, e.outcome_term, e.source_term, e.target_term];
    for (let f = 0; f < 4; f++) {
      const col = cols[f] as Int32Array;
      const id = Number(ids[f]);
      const field = TERM_FIELDS[f] as TermField;
      if (pos >= col.length || col[pos] !== id || !mayContain(b.present, field, id)) {
        return `${where}: its ${field} is not indexed as stored, so queries on it miss or misattribute the event`;
      }
    }
    const time = Number(e.time);
    if (time < Number(b.min_time) || time > Number(b.max_time)) {
      return `${where}: its time is outside the block's time range, so time-filtered queries miss it`;
    }
    return undefined;
  }
}

async function hasEdgeSummaries(store: Store): Promise<boolean> {
  try {
    await store.db.selectFrom('audit_block_edges').select('block').limit(1).execute();
    return true;
  } catch {
    return false;
  }
}

/** A row as the edge-summary check reads it: its term ids, time and the kind and outcome as text. */
interface SummaryRow {
  kind: string | null;
  outcome: string | null;
  source_term: number | string;
  target_term: number | string;
  time: number | string;
}

/**
 * Checks the service graph's per-block edge summaries (`audit_block_edges`, migration 0011) against
 * the rows: a block's decisions, counted again, must encode to the stored bytes. A summary edited to
 * hide an edge (or a denial) would otherwise mislead every graph over its block.
 */
class EdgeSummaryChecker {
  private block = -1;
  private rows = 0;
  // The block's first rows were sealed into a segment: its summary cannot be counted again here.
  private sealedPart = false;
  private tally = new EdgeTally();

  constructor(private readonly store: Store) {}

  /** Adds the row at `seq` (in order); a message when the block it ends disagrees with its summary. */
  async add(seq: number, row: SummaryRow): Promise<string | undefined> {
    const block = Math.floor(seq / BLOCK_EVENTS);
    const problem = block === this.block ? undefined : await this.finish();
    if (block !== this.block) {
      this.block = block;
      this.rows = 0;
      this.sealedPart = seq > block * BLOCK_EVENTS;
      this.tally = new EdgeTally();
    }
    this.rows++;
    if (row.kind === 'access.decision') {
      const time = Number(row.time);
      this.tally.add(Number(row.source_term), Number(row.target_term), outcomeClassOf(row.outcome), time, block);
    }
    return problem;
  }

  /** Compares the block being read with its stored summary, if it has one. */
  async finish(): Promise<string | undefined> {
    if (this.block < 0) return undefined;
    const block = this.block;
    this.block = -1;
    const stored = (await readBlockEdges(this.store.db, [block])).get(block);
    if (!stored || this.sealedPart) return undefined;
    const where = `the service graph's edge summary of block ${block} (audit_block_edges)`;
    if (this.rows !== BLOCK_EVENTS) return `${where} exists but its block is not full, so graphs over it miscount`;
    if (!encodeBlockEdges(this.tally).equals(stored))
      return `${where} disagrees with the block's decision events, so graphs over it miscount`;
    return undefined;
  }
}

interface CpCheck {
  cp: Checkpoint;
  source: 'database' | 'external';
}

/**
 * Verifies the log in `store`. Needs only the public key: runs directly against the database,
 * with or without a server.
 *
 * @example
 * const report = await verifyLog(store, { externalCheckpoints: readCheckpointFile('cps.ndjson') });
 * if (!report.ok) console.log(report.firstBad); // { index: 41, kind: 'changed', message: '…' }
 */
export async function verifyLog(store: Store, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const db = store.db;
  const pageSize = opts.pageSize ?? 5000;
  const report: VerifyReport = {
    ok: true,
    treeSize: 0,
    headSize: 0,
    root: '',
    checkpointsChecked: 0,
    externalCheckpointsChecked: 0,
    segmentsChecked: 0,
    indexChecked: false,
    unverifiedRanges: [],
    badCheckpoints: [],
  };
  const head = await db.selectFrom('audit_head').selectAll().where('id', '=', 1).executeTakeFirst();
  const headSize = Number(head?.tree_size ?? 0);
  const sealed = Number(head?.sealed_size ?? 0);
  report.headSize = headSize;

  // Which key to trust.
  let publicKey = opts.publicKey;
  const stored = await AuditSigner.loadPublic(store);
  if (!publicKey) publicKey = stored?.publicKeyPem;
  const trustedId = publicKey ? keyIdOf(createPublicKey(publicKey)) : undefined;

  const checks: CpCheck[] = [];
  const dbCps = await db.selectFrom('audit_checkpoint').selectAll().orderBy('tree_size').execute();
  for (const r of dbCps) {
    const cp: Checkpoint = {
      tree_size: Number(r.tree_size),
      root_hash: r.root_hash,
      time: Number(r.time),
      key_id: r.key_id,
      signature: r.signature,
    };
    if (!publicKey || !verifyCheckpoint(cp, publicKey)) {
      report.badCheckpoints.push({
        tree_size: cp.tree_size,
        source: 'database',
        message: `checkpoint at ${cp.tree_size} is not signed by the audit key ${trustedId ?? '(none)'}`,
      });
      continue;
    }
    checks.push({ cp, source: 'database' });
  }
  for (const cp of opts.externalCheckpoints ?? []) {
    const extId = keyIdOf(createPublicKey(cp.public_key));
    if (trustedId && extId !== trustedId) {
      report.badCheckpoints.push({
        tree_size: cp.tree_size,
        source: 'external',
        message: `external checkpoint at ${cp.tree_size} is signed by key ${extId}, but the log's key is ${trustedId}: the key in the database was replaced?`,
      });
      continue;
    }
    if (!verifyCheckpoint(cp, cp.public_key)) {
      report.badCheckpoints.push({
        tree_size: cp.tree_size,
        source: 'external',
        message: `external checkpoint at ${cp.tree_size} has a bad signature`,
      });
      continue;
    }
    checks.push({ cp, source: 'external' });
  }
  checks.sort((a, b) => a.cp.tree_size - b.cp.tree_size);
  let nextCheck = 0;
  let lastGood = 0;

  const fail = (index: number, kind: ProblemKind, message: string) => {
    report.ok = false;
    report.firstBad ??= { index, kind, message };
  };

  // Sealed segments first.
  let frontier = new MerkleFrontier();
  const segments = await db.selectFrom('audit_segment').selectAll().orderBy('from_seq').execute();
  for (const s of segments) {
    const from = Number(s.from_seq);
    const to = Number(s.to_seq);
    if (from !== frontier.size) {
      fail(
        frontier.size,
        'removed',
        `sealed segments are not contiguous: expected one from ${frontier.size}, found ${from}`,
      );
      break;
    }
    const path = segmentPath(opts.segmentDir, s.file);
    if (!path) {
      report.unverifiedRanges.push([from, to]);
      frontier = await loadFrontier(db, to);
      continue;
    }
    const r = verifySegmentFile(path, publicKey);
    report.segmentsChecked++;
    if (!r.ok || !r.frontierEnd || !r.header) {
      fail(r.firstBadIndex ?? from, 'changed', `segment ${s.file}: ${r.message}`);
      break;
    }
    const expected = frontier.snapshot().map((e) => e.hash.toString('hex'));
    if (JSON.stringify(expected) !== JSON.stringify(r.header.frontier_from.map((e) => e.hash))) {
      fail(from, 'changed', `segment ${s.file} does not continue the tree before it`);
      break;
    }
    frontier = r.frontierEnd;
  }
  while (nextCheck < checks.length && (checks[nextCheck] as CpCheck).cp.tree_size <= frontier.size) {
    const c = checks[nextCheck] as CpCheck;
    // Checkpoints inside sealed ranges were checked by their segments (or cannot be).
    if (c.cp.tree_size === frontier.size && c.cp.root_hash !== frontier.root().toString('hex')) {
      fail(lastGood, 'changed', `the tree at ${c.cp.tree_size} does not match its signed ${c.source} checkpoint`);
    }
    nextCheck++;
  }
  lastGood = frontier.size;

  // Stored interior nodes, compared as the recomputation completes each one.
  const nodes = new Map<string, string>();
  const nodeRows = await db.selectFrom('audit_node').selectAll().execute();
  for (const n of nodeRows) nodes.set(`${n.level}:${Number(n.idx)}`, n.hash);
  let nodeProblem: VerifyProblem | undefined;
  const onComplete = (level: number, idx: number, hash: Buffer) => {
    if (level < NODE_MIN_LEVEL || nodeProblem) return;
    const want = nodes.get(`${level}:${idx}`);
    if (want !== undefined && want !== hash.toString('hex')) {
      const size = 2 ** level;
      nodeProblem = {
        index: idx * size,
        kind: 'changed',
        message: `leaves ${idx * size}..${(idx + 1) * size - 1} do not hash to the subtree root stored when they were appended: one of them was changed (leaf hashes rewritten to match)`,
      };
    }
  };

  let p = frontier.size;
  if (!report.firstBad && sealed !== p) {
    fail(p, 'removed', `head says ${sealed} events were sealed, segments account for ${p}`);
  }
  let cursor = p;
  // A database not migrated to 0005 yet (verify opens it as it is) has no block index to check.
  report.indexChecked = await hasBlockIndex(store);
  const blocks = new BlockChecker(store);
  const summaries = (await hasEdgeSummaries(store)) ? new EdgeSummaryChecker(store) : undefined;
  let indexProblem: VerifyProblem | undefined;
  const indexFinding = (index: number, message: string): VerifyProblem => ({
    index,
    kind: 'changed',
    message: `${message} (the log itself verifies; \`nevertrust audit reindex\` rebuilds the index from the rows)`,
  });
  outer: while (!report.firstBad) {
    // The row's terms as text, each joined only from its own field: a term id pointed at another
    // value (or at a term of another field, or at none) then disagrees with the hashed event.
    const rows = await db
      .selectFrom('audit_event as e')
      .leftJoin('audit_term as k', (j) => j.onRef('k.id', '=', 'e.kind_term').on('k.field', '=', 'kind'))
      .leftJoin('audit_term as o', (j) => j.onRef('o.id', '=', 'e.outcome_term').on('o.field', '=', 'outcome'))
      .leftJoin('audit_term as s', (j) => j.onRef('s.id', '=', 'e.source_term').on('s.field', '=', 'source'))
      .leftJoin('audit_term as t', (j) => j.onRef('t.id', '=', 'e.target_term').on('t.field', '=', 'target'))
      .select([
        'e.seq',
        'e.kind_term',
        'e.outcome_term',
        'e.source_term',
        'e.target_term',
        'e.id',
        'e.time',
        'e.decision_id',
        'e.body',
        'e.leaf_hash',
        'k.value as kind',
        'o.value as outcome',
        's.value as source',
        't.value as target',
      ])
      .where('e.seq', '>=', cursor)
      .orderBy('e.seq')
      .limit(pageSize)
      .execute();
    if (rows.length === 0) break;
    for (const row of rows) {
      const seq = Number(row.seq);
      if (seq !== p) {
        fail(p, 'removed', `event ${p} is missing (the next row is ${seq})`);
        break outer;
      }
      // A leaf hash rewritten with SQL may not even be 32 bytes any more.
      if (!(Buffer.isBuffer(row.leaf_hash) && leafHash(row.body).equals(row.leaf_hash))) {
        fail(p, 'changed', `event ${p}: its bytes no longer match the leaf hash stored when it was appended`);
        break outer;
      }
      let e: StoredAuditEvent;
      try {
        e = JSON.parse(row.body) as StoredAuditEvent;
      } catch {
        fail(p, 'changed', `event ${p} is not valid JSON`);
        break outer;
      }
      if (e.seq !== p) {
        if (typeof e.seq === 'number' && e.seq > p) {
          fail(p, 'removed', `event ${p} was removed: the row at ${p} is event ${e.seq}, renumbered`);
        } else if (typeof e.seq === 'number') {
          fail(e.seq, 'inserted', `${p - e.seq} event(s) were inserted at ${e.seq}: event ${e.seq} now sits at ${p}`);
        } else fail(p, 'changed', `event ${p} has no seq`);
        break outer;
      }
      if (
        e.id !== row.id ||
        e.time !== Number(row.time) ||
        e.kind !== row.kind ||
        (sourceKey(e) !== row.source && legacySourceKey(e) !== row.source) ||
        targetKey(e) !== row.target ||
        (e.outcome ?? '') !== row.outcome ||
        (e.decision_id ?? null) !== row.decision_id
      ) {
        fail(p, 'changed', `event ${p}: an indexed column was changed (it disagrees with the hashed event)`);
        break outer;
      }
      // The query index is checked too, but reported only when the log itself is intact: a row
      // that was tampered with also disagrees with the index, and the log's own finding (which
      // range, what kind) is the one to act on. Rows past the head were never appended at all.
      if (report.indexChecked && !indexProblem && p < headSize) {
        const message = (await blocks.check(p, row)) ?? (await summaries?.add(p, row));
        if (message) indexProblem = indexFinding(p, message);
      }
      frontier.push(row.leaf_hash, onComplete);
      if (nodeProblem) {
        fail(nodeProblem.index, nodeProblem.kind, nodeProblem.message);
        break outer;
      }
      p++;
      while (nextCheck < checks.length && (checks[nextCheck] as CpCheck).cp.tree_size <= p) {
        const c = checks[nextCheck] as CpCheck;
        if (c.cp.tree_size === p) {
          if (c.cp.root_hash !== frontier.root().toString('hex')) {
            fail(
              lastGood,
              'changed',
              `leaves ${lastGood}..${p - 1} do not hash to the signed ${c.source} checkpoint at ${p}: one of them was changed`,
            );
            break outer;
          }
          if (c.source === 'external') report.externalCheckpointsChecked++;
          else report.checkpointsChecked++;
          lastGood = p;
        }
        nextCheck++;
      }
    }
    cursor = p;
  }
  if (report.indexChecked && !indexProblem && !report.firstBad) {
    const message = await summaries?.finish();
    if (message) indexProblem = indexFinding(p - 1, message);
  }
  report.treeSize = p;
  report.root = frontier.root().toString('hex');
  if (!report.firstBad) {
    const beyond = checks.filter((c) => c.cp.tree_size > p);
    const first = beyond[0];
    if (first) {
      fail(
        p,
        'removed',
        `a signed ${first.source} checkpoint covers ${first.cp.tree_size} events but the log has only ${p}: events from ${p} were removed`,
      );
    }
  }
  if (!report.firstBad) {
    if (p < headSize) fail(p, 'removed', `the log ends at ${p} but the head says ${headSize} events were appended`);
    else if (p > headSize)
      fail(headSize, 'inserted', `rows ${headSize}..${p - 1} were inserted after the last appended event`);
    else if (head && head.root_hash !== report.root)
      fail(lastGood, 'changed', 'the head root does not match the events');
  }
  if (!report.firstBad && indexProblem) fail(indexProblem.index, indexProblem.kind, indexProblem.message);
  if (report.badCheckpoints.length > 0) report.ok = false;
  return report;
}
