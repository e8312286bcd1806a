/**
 * Retention: events older than the hot window leave the database as sealed segments, gzip NDJSON
 * files that stay verifiable on their own. A segment covers leaves [from, to) with `to` a multiple of
 * 256, so the interior nodes the database keeps still answer proofs for the leaves that remain.
 *
 * File layout: line 1 is a header `{segment, from, to, frontier_from, checkpoint, public_key}`
 * (the tree's right edge at `from` and a signed checkpoint at `to`); every further line is one
 * event's canonical bytes, exactly as hashed.
 */
import { BLOCK_EVENTS } from '../store/audit-blocks.js';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { AuditProofError } from './errors.js';
import type { AuditLog } from './log.js';
import { loadFrontier, NODE_MIN_LEVEL } from './log-tree.js';
import { leafHash, MerkleFrontier } from './merkle.js';
import { type Checkpoint, verifyCheckpoint } from './signer.js';

const SEG = 2 ** NODE_MIN_LEVEL;

export interface SegmentHeader {
  segment: 1;
  from: number;
  to: number;
  frontier_from: { hash: string; size: number }[];
  checkpoint: Checkpoint;
  public_key: string;
}

const headerSchema = z.object({
  segment: z.literal(1),
  from: z.number().int().min(0),
  to: z.number().int().min(0),
  frontier_from: z.array(z.object({ hash: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().min(1) })),
  checkpoint: z.object({
    tree_size: z.number().int(),
    root_hash: z.string(),
    time: z.number(),
    key_id: z.string(),
    signature: z.string(),
  }),
  public_key: z.string(),
});

export interface SealOptions {
  /** Directory for segment files (created 0700). */
  dir: string;
  /** Events younger than this stay in the database (ms). */
  hotWindowMs: number;
  /** Largest segment, in events (rounded down to a multiple of 256; default 262,144). */
  maxSegmentEvents?: number;
  now?: number;
}

export interface SealedSegment {
  from: number;
  to: number;
  file: string;
  sha256: string;
  checkpoint: Checkpoint;
}

/**
 * Seals every full 256-leaf block older than the hot window into segment files and removes those
 * rows from the database. Safe to run while appends continue.
 *
 * @example
 * await sealSegments(log, { dir: './.nevertrust/audit-segments', hotWindowMs: 30 * 86_400_000 });
 */
export async function sealSegments(log: AuditLog, opts: SealOptions): Promise<SealedSegment[]> {
  const db = log.store.db;
  const cutoff = (opts.now ?? Date.now()) - opts.hotWindowMs;
  const maxEvents = Math.max(SEG, Math.floor((opts.maxSegmentEvents ?? 262_144) / SEG) * SEG);
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const out: SealedSegment[] = [];
  for (;;) {
    const head = await db.selectFrom('audit_head').select(['tree_size', 'sealed_size']).executeTakeFirstOrThrow();
    const from = Number(head.sealed_size);
    const recent = await db
      .selectFrom('audit_event')
      .select('seq')
      .where('seq', '>=', from)
      .where('time', '>=', cutoff)
      .orderBy('seq')
      .limit(1)
      .executeTakeFirst();
    const limit = recent ? Number(recent.seq) : Number(head.tree_size);
    const to = Math.min(from + maxEvents, Math.floor(limit / SEG) * SEG);
    if (to <= from) return out;
    const fr = await loadFrontier(db, from);
    const toFrontier = await loadFrontier(db, to);
    const existing = await log.checkpointAt(to);
    const checkpoint = existing ?? log.signer.sign(to, toFrontier.root().toString('hex'), Date.now());
    if (!existing) {
      await db
        .insertInto('audit_checkpoint')
        .values(checkpoint)
        .onConflict((oc) => oc.column('tree_size').doNothing())
        .execute();
    }
    const header: SegmentHeader = {
      segment: 1,
      from,
      to,
      frontier_from: fr.snapshot().map((e) => ({ hash: e.hash.toString('hex'), size: e.size })),
      checkpoint,
      public_key: log.signer.publicKeyPem,
    };
    const rows = await db
      .selectFrom('audit_event')
      .select(['seq', 'body'])
      .where('seq', '>=', from)
      .where('seq', '<', to)
      .orderBy('seq')
      .execute();
    if (rows.length !== to - from) {
      throw new AuditProofError(
        `cannot seal ${from}..${to - 1}: ${to - from - rows.length} rows are missing (run verify)`,
      );
    }
    const text = `${JSON.stringify(header)}\n${rows.map((r) => r.body).join('\n')}\n`;
    const gz = gzipSync(text);
    const name = `audit-${String(from).padStart(12, '0')}-${String(to).padStart(12, '0')}.ndjson.gz`;
    const path = join(opts.dir, name);
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, gz);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const sha256 = createHash('sha256').update(gz).digest('hex');
    await db.transaction().execute(async (trx) => {
      await trx
        .insertInto('audit_segment')
        .values({ from_seq: from, to_seq: to, file: name, sha256, created_at: Date.now() })
        .execute();
      await trx.deleteFrom('audit_event').where('seq', '>=', from).where('seq', '<', to).execute();
      // Query-index blocks wholly sealed go too; a block sealed part-way keeps pointing at the
      // sealed positions, whose rows a query then no longer finds.
      const sealedBlocks = Math.floor(to / BLOCK_EVENTS);
      await trx.deleteFrom('audit_block_column').where('block', '<', sealedBlocks).execute();
      await trx.deleteFrom('audit_block').where('block', '<', sealedBlocks).execute();
      await trx.deleteFrom('audit_block_edges').where('block', '<', sealedBlocks).execute();
      await trx.updateTable('audit_head').set({ sealed_size: to }).where('id', '=', 1).execute();
    });
    out.push({ from, to, file: path, sha256, checkpoint });
  }
}

export interface SegmentVerifyResult {
  ok: boolean;
  from: number;
  to: number;
  /** First bad leaf index, when not ok. */
  firstBadIndex?: number;
  message: string;
  header?: SegmentHeader;
  /** The tree's right edge at `to`, recomputed from the file. */
  frontierEnd?: MerkleFrontier;
}

/**
 * Verifies a segment file on its own: every line's seq, the leaves folded onto the right edge at
 * `from` give the signed root at `to`, and the checkpoint's signature holds (with `publicKey`, else
 * the key in the file).
 *
 * @example
 * verifySegmentFile('audit-000000000000-000000262144.ndjson.gz').ok
 */
export function verifySegmentFile(file: string, publicKey?: string): SegmentVerifyResult {
  let lines: string[];
  try {
    lines = gunzipSync(readFileSync(file)).toString('utf8').split('\n');
  } catch (e) {
    return { ok: false, from: 0, to: 0, message: `cannot read ${file}: ${(e as Error).message}` };
  }
  if (lines[lines.length - 1] === '') lines.pop();
  let header: SegmentHeader;
  try {
    header = headerSchema.parse(JSON.parse(lines[0] ?? '')) as SegmentHeader;
  } catch {
    return { ok: false, from: 0, to: 0, message: `${file} has no valid segment header` };
  }
  const { from, to } = header;
  const fail = (i: number, message: string): SegmentVerifyResult => ({
    ok: false,
    from,
    to,
    firstBadIndex: i,
    message,
    header,
  });
  const frontier = new MerkleFrontier(
    header.frontier_from.map((e) => ({ hash: Buffer.from(e.hash, 'hex'), size: e.size })),
  );
  if (frontier.size !== from)
    return fail(from, `segment header's frontier covers ${frontier.size} leaves, not ${from}`);
  let expected = from;
  for (let i = 1; i < lines.length; i++) {
    const body = lines[i] as string;
    let seq: unknown;
    try {
      seq = (JSON.parse(body) as { seq?: unknown }).seq;
    } catch {
      return fail(expected, `leaf ${expected} is not valid JSON (changed)`);
    }
    if (seq !== expected) {
      return typeof seq === 'number' && seq > expected
        ? fail(expected, `leaf ${expected} was removed (next line is seq ${seq})`)
        : fail(typeof seq === 'number' ? seq : expected, `a line was inserted before leaf ${expected}`);
    }
    frontier.push(leafHash(body));
    expected++;
  }
  if (expected !== to) return fail(expected, `segment ends at ${expected}, header says ${to}: leaves removed`);
  const cp = header.checkpoint;
  if (cp.tree_size !== to || cp.root_hash !== frontier.root().toString('hex')) {
    return fail(from, `leaves ${from}..${to - 1} do not hash to the signed root at ${to}: one of them was changed`);
  }
  if (!verifyCheckpoint(cp, publicKey ?? header.public_key)) {
    return fail(from, `the checkpoint at ${to} is not signed by the audit key`);
  }
  return { ok: true, from, to, message: `leaves ${from}..${to - 1} verified`, header, frontierEnd: frontier };
}

/** Where a segment row's file is: absolute, or relative to `dir`. */
export function segmentPath(dir: string | undefined, file: string): string | undefined {
  if (isAbsolute(file)) return existsSync(file) ? file : undefined;
  if (!dir) return undefined;
  const p = join(dir, file);
  return existsSync(p) ? p : undefined;
}
