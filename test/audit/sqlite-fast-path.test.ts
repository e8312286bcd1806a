/**
 * The SQLite append path runs on the better-sqlite3 handle with prepared statements; the generic
 * kysely path (what PostgreSQL uses) must store exactly the same rows, nodes, head, checkpoints and
 * query-index blocks, and the two must interleave on one database (another process appending
 * between our batches).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, type AuditEventInput, normalizeEvent, verifyLog } from '../../src/audit/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

function ev(i: number): AuditEventInput {
  return {
    id: `ev-${i}`,
    kind: i % 7 ? 'access.decision' : 'admin.action',
    time: 1_767_225_600_000 + i,
    ...(i % 5 ? { decision_id: `d-${i}` } : {}),
    source: i % 3 ? { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 11}` } : { user: 'ops', ip: '10.0.0.9' },
    target:
      i % 4 ? { service: `svc-${i % 13}`, method: 'GET', path: `/v1/x/${i}` } : { host: 'db.internal', port: 5432 },
    ...(i % 9 ? { outcome: i % 20 === 0 ? ('deny' as const) : ('allow' as const) } : {}),
    details: { n: i, note: 'naïve — ünïcode ✓' },
  };
}

const dump = async (store: Store) => ({
  events: await store.db.selectFrom('audit_event').selectAll().orderBy('seq').execute(),
  nodes: await store.db.selectFrom('audit_node').selectAll().orderBy('level').orderBy('idx').execute(),
  head: await store.db.selectFrom('audit_head').select(['tree_size', 'root_hash', 'sealed_size']).execute(),
  checkpoints: await store.db.selectFrom('audit_checkpoint').select(['tree_size', 'root_hash']).execute(),
  blocks: await store.db.selectFrom('audit_block').selectAll().orderBy('block').execute(),
  columns: await store.db.selectFrom('audit_block_column').selectAll().orderBy('block').orderBy('field').execute(),
});

describe('SQLite append fast path', () => {
  const stores: Store[] = [];
  const logs: AuditLog[] = [];
  afterAll(async () => {
    for (const l of logs) await l.close();
    for (const s of stores) await s.close();
  });

  async function append(store: Store, dataDir: string, kysely: boolean, batches: number[][]) {
    // Without the native handle the log takes the generic kysely path.
    const s: Store = kysely ? { ...store, sqlite: undefined } : store;
    const log = await AuditLog.open(s, { dataDir, checkpointEvery: 700, checkpointIntervalMs: 0 });
    logs.push(log);
    for (const b of batches) await log.append(b.map((i) => normalizeEvent(ev(i))));
    return log;
  }

  it('stores the same bytes, hashes, nodes, head, checkpoints and index blocks as the kysely path', async () => {
    const batches = [
      [0],
      [1, 2, 3, 1],
      Array.from({ length: 1500 }, (_, i) => 4 + i),
      [5, 6, 1504, 1505],
      // Across the first index block's end (4,096 events).
      Array.from({ length: 4000 }, (_, i) => 1506 + i),
    ];
    const dumps = [];
    for (const kysely of [false, true]) {
      const dataDir = tempDir();
      const store = await openStore({ dataDir });
      stores.push(store);
      expect(store.sqlite).toBeDefined();
      await append(store, dataDir, kysely, batches);
      dumps.push(await dump(store));
      const report = await verifyLog(store);
      expect(report.ok).toBe(true);
    }
    expect(dumps[0]?.events.length).toBe(5506);
    expect(dumps[0]?.nodes.length).toBeGreaterThan(0);
    expect(dumps[0]?.blocks.map((b) => b.size)).toEqual([4096, 5506 - 4096]);
    expect(dumps[0]).toEqual(dumps[1]);
  });

  it('interleaves with another writer on the same database (resyncs the frontier)', async () => {
    const dataDir = tempDir();
    const a = await openStore({ dataDir });
    const b = await openStore({ dataDir });
    stores.push(a, b);
    const fast = await AuditLog.open(a, { dataDir, checkpointEvery: 700, checkpointIntervalMs: 0 });
    const slow = await AuditLog.open(
      { ...b, sqlite: undefined },
      { dataDir, checkpointEvery: 700, checkpointIntervalMs: 0 },
    );
    logs.push(fast, slow);
    let next = 0;
    for (let round = 0; round < 6; round++) {
      const n = 100 + round * 37;
      const batch = Array.from({ length: n }, () => normalizeEvent(ev(next++)));
      const r = await (round % 2 ? slow : fast).append(batch);
      expect(r.stored).toBe(n);
    }
    // A re-sent batch is skipped by either writer.
    expect((await fast.append([normalizeEvent(ev(3)), normalizeEvent(ev(next++))])).stored).toBe(1);
    expect(fast.treeSize).toBe(next);
    const report = await verifyLog(a);
    expect(report.ok).toBe(true);
    expect((await dump(a)).head[0]?.tree_size).toBe(next);
  });
});
