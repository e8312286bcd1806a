/**
 * Migrations 0004 (dictionary terms, binary leaf hashes) and 0005 (the block query index) convert an
 * existing log in place, on SQLite and PostgreSQL: the hashed bytes, leaf hashes, proofs, queries
 * and verification are the same after them, and the log keeps appending. Their `down`s restore the
 * 0003 layout.
 */
import { type Migration, Migrator, sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { type AuditEventInput, AuditLog, normalizeEvent, queryAuditLog, verifyLog } from '../../src/audit/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { migrations } from '../../src/store/migrations/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase('auditmig'), dataDir: tempDir() }) },
];

function ev(i: number): AuditEventInput {
  return {
    kind: i % 9 ? 'access.decision' : 'admin.action',
    time: 1_767_225_600_000 + i * 1000,
    decision_id: `d-${i}`,
    source: i % 4 ? { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 5}` } : { user: 'ops', ip: '10.0.0.9' },
    target: i % 6 ? { service: `target-${i % 3}`, method: 'GET' } : { host: 'db.internal', port: 5432 },
    ...(i % 7 ? { outcome: i % 4 === 1 ? ('deny' as const) : ('allow' as const) } : {}),
  };
}

const N = 4500;

function migratorFor(store: Store): Migrator {
  return new Migrator({
    db: store.db,
    provider: { getMigrations: async (): Promise<Record<string, Migration>> => migrations },
    migrationTableName: 'nevertrust_migration',
    migrationLockTableName: 'nevertrust_migration_lock',
  });
}

const queries = [
  { source: 'spiffe://example.org/ns/prod/sa/svc-2' },
  { source: 'ops', outcome: 'allow' as const },
  { target: 'db.internal' },
  { kind: 'admin.action' },
  { outcome: 'allow' as const, limit: 7 },
  { decision_id: 'd-42' },
  { since: 1_767_225_600_000 + 100_000, until: 1_767_225_600_000 + 120_000 },
];

describe.each(engines)('migrations 0004 and 0005 on $name', ({ open }) => {
  const stores: Store[] = [];
  afterAll(async () => {
    for (const s of stores) await s.close();
  });

  it('converts an existing log in place and back; bytes, hashes, proofs and queries unchanged', async () => {
    const where = await open();
    const store = await openStore(where);
    stores.push(store);
    let log = await AuditLog.open(store, { dataDir: where.dataDir, checkpointEvery: 100, checkpointIntervalMs: 0 });
    // More than one block of the 0005 query index (4,096 events).
    for (let i = 0; i < N; i += 1500) {
      await log.append(Array.from({ length: 1500 }, (_, j) => normalizeEvent(ev(i + j))));
    }
    const proof = await log.inclusionProof(321);
    await log.close();
    const bytes = async (s: Store) =>
      (await s.db.selectFrom('audit_event').select(['seq', 'id', 'body']).orderBy('seq').execute()).map((r) => ({
        ...r,
        seq: Number(r.seq),
      }));
    const before = await bytes(store);
    const answers = [];
    for (const q of queries) answers.push((await queryAuditLog(store, q)).events.map((e) => e.seq));
    expect(answers.every((a) => a.length > 0)).toBe(true);

    // Back to the 0003 layout: text columns and hex leaf hashes.
    const down = await migratorFor(store).migrateTo('0003_audit');
    expect(down.error).toBeUndefined();
    const old = await sql<{ source: string; outcome: string; leaf_hash: string }>`select source, outcome, leaf_hash
      from audit_event where seq = 4`.execute(store.db);
    expect(old.rows[0]).toMatchObject({ source: 'ops', outcome: 'allow' });
    expect(old.rows[0]?.leaf_hash).toMatch(/^[0-9a-f]{64}$/);

    // And forward again, as an upgrade does when the store opens.
    const up = await migratorFor(store).migrateToLatest();
    expect(up.error).toBeUndefined();
    expect(await bytes(store)).toEqual(before);
    const report = await verifyLog(store);
    expect(report).toMatchObject({ ok: true, treeSize: N, headSize: N });
    for (let k = 0; k < queries.length; k++) {
      expect((await queryAuditLog(store, queries[k] as (typeof queries)[number])).events.map((e) => e.seq)).toEqual(
        answers[k],
      );
    }
    log = await AuditLog.open(store, { dataDir: where.dataDir, checkpointEvery: 100, checkpointIntervalMs: 0 });
    expect(await log.inclusionProof(321)).toEqual(proof);
    // Terms created before the upgrade are reused; new ones continue after them.
    await log.append([normalizeEvent(ev(N)), normalizeEvent({ ...ev(N + 1), source: { user: 'new-user' } })]);
    expect((await queryAuditLog(store, { source: 'new-user' })).events.map((e) => e.seq)).toEqual([N + 1]);
    expect((await verifyLog(store)).ok).toBe(true);
    await log.close();
  });
});
