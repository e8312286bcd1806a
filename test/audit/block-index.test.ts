/**
 * The block query index (`audit_block`, migration 0005) on SQLite and PostgreSQL, over logs of
 * several blocks: every filtered query, paged to the end, returns exactly what a plain filter over
 * the appended events returns, in log order; the index follows restarts, interleaved writers and
 * sealing; an index edited with SQL is named by verify and can hide an event but never add one;
 * reindex rebuilds it from the rows while the log keeps appending.
 */
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type AuditEventInput,
  AuditLog,
  type AuditQuery,
  normalizeEvent,
  queryAuditLog,
  reindexLog,
  sealSegments,
  verifyLog,
} from '../../src/audit/index.js';
import { BLOCK_EVENTS } from '../../src/store/audit-blocks.js';
import { openStore, type Store } from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase('auditblk'), dataDir: tempDir() }) },
];

const T0 = 1_767_225_600_000;
// Times mostly rise with seq, but every 97th event arrives late (a spilled event shipped later).
const timeOf = (i: number) => (i % 97 === 0 ? T0 + i * 10 - 3_600_000 : T0 + i * 10);

function ev(i: number): AuditEventInput {
  return {
    kind: i % 50 === 7 ? 'admin.action' : 'access.decision',
    time: timeOf(i),
    decision_id: `d-${i}`,
    source: i % 3 ? { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 37}` } : { user: `user-${i % 5}` },
    target: { service: `target-${i % 11}`, method: 'GET' },
    ...(i % 13 ? { outcome: i % 9 === 0 ? ('deny' as const) : ('allow' as const) } : {}),
  };
}

/** What a query must return: a plain filter over the inputs, newest first. */
function expected(n: number, q: AuditQuery, from = 0): number[] {
  const out: number[] = [];
  for (let i = n - 1; i >= from; i--) {
    const e = ev(i);
    const source = e.source?.spiffe_id ?? e.source?.user;
    if (q.source !== undefined && source !== q.source) continue;
    if (q.target !== undefined && e.target?.service !== q.target) continue;
    if (q.outcome !== undefined && e.outcome !== q.outcome) continue;
    if (q.kind !== undefined && e.kind !== q.kind) continue;
    if (q.since !== undefined && timeOf(i) < q.since) continue;
    if (q.until !== undefined && timeOf(i) >= q.until) continue;
    out.push(i);
  }
  return out;
}

/** Every page of a query, following next_cursor to the end. */
async function allPages(store: Store, q: AuditQuery): Promise<number[]> {
  const seqs: number[] = [];
  let cursor: number | undefined;
  for (let page = 0; page < 1000; page++) {
    const r = await queryAuditLog(store, { ...q, ...(cursor === undefined ? {} : { cursor }) });
    seqs.push(...r.events.map((e) => e.seq));
    if (r.next_cursor === undefined) return seqs;
    cursor = r.next_cursor;
  }
  throw new Error('too many pages');
}

const QUERIES: AuditQuery[] = [
  { source: 'spiffe://example.org/ns/prod/sa/svc-4', limit: 1000 },
  { source: 'user-2', outcome: 'deny', limit: 7 },
  { target: 'target-3', outcome: 'allow', limit: 300 },
  { kind: 'admin.action', limit: 50 },
  { kind: 'admin.action', target: 'target-1', limit: 3 },
  { outcome: 'deny', since: T0 + 20_000, until: T0 + 70_000, limit: 100 },
  { source: 'spiffe://example.org/ns/prod/sa/svc-1', since: T0 - 3_600_000, until: T0 + 5_000, limit: 20 },
  { target: 'target-0', kind: 'access.decision', outcome: 'allow', source: 'user-0', limit: 1000 },
];

describe.each(engines)('block query index on $name', ({ open }) => {
  const stores: Store[] = [];
  const logs: AuditLog[] = [];
  afterAll(async () => {
    for (const l of logs) await l.close().catch(() => {});
    for (const s of stores) await s.close();
  });

  async function setup() {
    const where = await open();
    const store = await openStore(where);
    stores.push(store);
    const openLog = async () => {
      const log = await AuditLog.open(store, {
        dataDir: where.dataDir,
        checkpointEvery: 5000,
        checkpointIntervalMs: 0,
      });
      logs.push(log);
      return log;
    };
    return { store, where, openLog };
  }

  async function appendRange(log: AuditLog, from: number, to: number, batch: number) {
    for (let i = from; i < to; i += batch) {
      await log.append(Array.from({ length: Math.min(batch, to - i) }, (_, k) => normalizeEvent(ev(i + k))));
    }
  }

  it('answers every filter across blocks, paged to the end, as a plain filter would; across a restart', async () => {
    const { store, openLog } = await setup();
    let log = await openLog();
    // Batches that end inside a block, exactly at a block's end, and span two blocks.
    await appendRange(log, 0, 1, 1);
    await appendRange(log, 1, 3000, 2999);
    await appendRange(log, 3000, BLOCK_EVENTS, BLOCK_EVENTS - 3000);
    await appendRange(log, BLOCK_EVENTS, 9000, 2500);
    await log.close();
    // A new process resumes the partial block from the rows.
    log = await openLog();
    await appendRange(log, 9000, 10_000, 333);
    const n = 10_000;

    const blocks = await store.db.selectFrom('audit_block').select(['block', 'size']).orderBy('block').execute();
    expect(blocks.map((b) => [Number(b.block), Number(b.size)])).toEqual([
      [0, BLOCK_EVENTS],
      [1, BLOCK_EVENTS],
      [2, n - 2 * BLOCK_EVENTS],
    ]);
    for (const q of QUERIES) {
      const want = expected(n, q);
      expect(want.length, JSON.stringify(q)).toBeGreaterThan(0);
      expect(await allPages(store, q), JSON.stringify(q)).toEqual(want);
    }
    // A value never stored matches nothing; a cursor inside a block starts there.
    expect((await queryAuditLog(store, { source: 'nobody' })).events).toEqual([]);
    const page = await queryAuditLog(store, { target: 'target-5', cursor: 5000, limit: 4 });
    expect(page.events.map((e) => e.seq)).toEqual(expected(5000, { target: 'target-5' }).slice(0, 4));
    expect((await verifyLog(store)).ok).toBe(true);
  });

  it('keeps the index when another writer appends between our batches', async () => {
    const { store, where, openLog } = await setup();
    const a = await openLog();
    const other = await openStore(where);
    stores.push(other);
    const b = await AuditLog.open(other, { dataDir: where.dataDir, checkpointEvery: 5000, checkpointIntervalMs: 0 });
    logs.push(b);
    for (let i = 0; i < 6000; i += 1500) await appendRange(i % 3000 === 0 ? a : b, i, i + 1500, 1500);
    for (const q of QUERIES.slice(0, 4)) expect(await allPages(store, q)).toEqual(expected(6000, q));
    expect((await verifyLog(store)).ok).toBe(true);
  });

  it('drops wholly sealed blocks; queries skip sealed events', async () => {
    const { store, openLog } = await setup();
    const log = await openLog();
    await appendRange(log, 0, 9000, 3000);
    const dir = tempDir();
    // Everything older than T0 + 50 s (seq ≈ 5,000) leaves the database, in 256-leaf segments.
    await sealSegments(log, { dir, hotWindowMs: 1000, now: T0 + 51_000, maxSegmentEvents: 8192 });
    const head = await store.db.selectFrom('audit_head').select('sealed_size').executeTakeFirstOrThrow();
    const sealed = Number(head.sealed_size);
    expect(sealed).toBeGreaterThan(BLOCK_EVENTS);
    const blocks = await store.db.selectFrom('audit_block').select('block').orderBy('block').execute();
    expect(blocks.map((b) => Number(b.block))).toEqual([1, 2]);
    const columns = await store.db.selectFrom('audit_block_column').select('block').distinct().execute();
    expect(columns.map((b) => Number(b.block)).sort()).toEqual([1, 2]);
    const q = { source: 'spiffe://example.org/ns/prod/sa/svc-4', limit: 1000 };
    expect(await allPages(store, q)).toEqual(expected(9000, q, sealed));
    expect((await verifyLog(store, { segmentDir: dir })).ok).toBe(true);
  });

  it('verify names an event the index was edited to hide; the query then misses it but adds no other', async () => {
    const { store, openLog } = await setup();
    const log = await openLog();
    await appendRange(log, 0, 6000, 3000);
    const victim = 5000;
    const pos = victim - BLOCK_EVENTS;
    const q = { source: 'spiffe://example.org/ns/prod/sa/svc-5', limit: 1000 };
    expect(await allPages(store, q)).toContain(victim);
    // Point the victim's source entry at another source's term, as someone hiding it would.
    const row = await store.db
      .selectFrom('audit_block_column')
      .select('ids')
      .where('block', '=', 1)
      .where('field', '=', 'source')
      .executeTakeFirstOrThrow();
    const other = await store.db
      .selectFrom('audit_term')
      .select('id')
      .where('field', '=', 'source')
      .where('value', '=', 'spiffe://example.org/ns/prod/sa/svc-6')
      .executeTakeFirstOrThrow();
    const ids = Buffer.from(row.ids);
    ids.writeInt32LE(Number(other.id), pos * 4);
    await store.db
      .updateTable('audit_block_column')
      .set({ ids })
      .where('block', '=', 1)
      .where('field', '=', 'source')
      .execute();

    const hidden = await allPages(store, q);
    expect(hidden).toEqual(expected(6000, q).filter((s) => s !== victim));
    // The other source's query reads the forged entry, but the row's own source keeps the victim out.
    const q6 = { source: 'spiffe://example.org/ns/prod/sa/svc-6', limit: 1000 };
    expect(await allPages(store, q6)).toEqual(expected(6000, q6));
    const report = await verifyLog(store);
    expect(report.ok).toBe(false);
    expect(report.firstBad).toMatchObject({ index: victim, kind: 'changed' });
    expect(report.firstBad?.message).toMatch(/audit_block 1.*source/);
  });

  it('verify names the first event of a narrowed time range, a deleted column and a deleted block', async () => {
    const { store, openLog } = await setup();
    const log = await openLog();
    await appendRange(log, 0, 9000, 3000);
    await store.db
      .updateTable('audit_block')
      .set({ max_time: T0 + 5000 * 10 })
      .where('block', '=', 1)
      .execute();
    let report = await verifyLog(store);
    expect(report.firstBad).toMatchObject({ index: 5001, kind: 'changed' });
    expect(report.firstBad?.message).toMatch(/time range/);
    // A column removed, then the whole block.
    await sql`delete from audit_block_column where block = 1 and field = 'target'`.execute(store.db);
    report = await verifyLog(store);
    expect(report.firstBad).toMatchObject({ index: BLOCK_EVENTS, kind: 'changed' });
    expect(report.firstBad?.message).toMatch(/target is not indexed/);
    await sql`delete from audit_block where block = 1`.execute(store.db);
    report = await verifyLog(store);
    expect(report.firstBad).toMatchObject({ index: BLOCK_EVENTS, kind: 'changed' });
    expect(report.firstBad?.message).toMatch(/block is missing/);
  });

  it('reindex rebuilds a damaged index from the rows while the log keeps appending', async () => {
    const { store, openLog } = await setup();
    const log = await openLog();
    await appendRange(log, 0, 9000, 3000);
    // Damage: a column zeroed, a whole block gone, a stray block past the end of the log.
    await store.db
      .updateTable('audit_block_column')
      .set({ ids: Buffer.alloc(BLOCK_EVENTS * 4) })
      .where('block', '=', 0)
      .where('field', '=', 'target')
      .execute();
    await sql`delete from audit_block where block = 1`.execute(store.db);
    await store.db
      .insertInto('audit_block')
      .values({ block: 40, size: 1, min_time: 0, max_time: 0, present: Buffer.alloc(4096) })
      .execute();
    expect((await verifyLog(store)).ok).toBe(false);

    const appending = appendRange(log, 9000, 13_000, 500);
    const r = await reindexLog(store);
    await appending;
    expect(r.removed).toBe(1);
    expect(r.blocks).toBeGreaterThanOrEqual(3);
    const report = await verifyLog(store);
    expect(report).toMatchObject({ ok: true, indexChecked: true, treeSize: 13_000 });
    for (const q of QUERIES) expect(await allPages(store, q), JSON.stringify(q)).toEqual(expected(13_000, q));
    // Rebuilding an intact index changes nothing.
    const before = await store.db
      .selectFrom('audit_block_column')
      .selectAll()
      .orderBy('block')
      .orderBy('field')
      .execute();
    await reindexLog(store);
    expect(
      await store.db.selectFrom('audit_block_column').selectAll().orderBy('block').orderBy('field').execute(),
    ).toEqual(before);
  });
});
