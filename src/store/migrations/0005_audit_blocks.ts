import { type Kysely, PostgresAdapter, sql } from 'kysely';
import { builderFrom, type EventTerms } from '../audit-blocks.js';

/**
 * The audit query index moves from four B-tree indexes on the term columns to `audit_block`: one
 * row per 4,096 consecutive events with their term ids as int32 columns, the block's time range and
 * a presence bitmap per field (see src/store/audit-blocks.ts for why). The index on the term columns is
 * dropped; rows, bytes, hashes and the other indexes (id, decision id, time) are unchanged. Existing
 * rows are indexed in place, 4,096 at a time; `down` restores the four indexes.
 */
const FIELDS = ['kind', 'outcome', 'source', 'target'] as const;

export async function up(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  const blob = pg ? 'bytea' : 'blob';
  await sql
    .raw(`create table audit_block (
    block ${pg ? 'bigint' : 'integer'} primary key not null,
    size integer not null,
    min_time bigint not null,
    max_time bigint not null,
    kinds ${blob} not null,
    outcomes ${blob} not null,
    sources ${blob} not null,
    targets ${blob} not null,
    present ${blob} not null
  )`)
    .execute(db);
  const typed = db as unknown as Kysely<{
    audit_event: EventTerms & { seq: number };
    audit_block: Record<string, unknown>;
  }>;
  const max = await sql<{ n: number | string | null }>`select max(seq) as n from audit_event`.execute(db);
  const end = max.rows[0]?.n === null || max.rows[0]?.n === undefined ? 0 : Number(max.rows[0].n) + 1;
  for (let start = 0; start < end; start += 4096) {
    const rows = await typed
      .selectFrom('audit_event')
      .select(['seq', 'kind_term', 'outcome_term', 'source_term', 'target_term', 'time'])
      .where('seq', '>=', start)
      .where('seq', '<', start + 4096)
      .orderBy('seq')
      .execute();
    if (rows.length === 0) continue; // sealed
    for (const row of builderFrom(start, rows).take())
      await typed
        .insertInto('audit_block')
        .values({ ...row })
        .execute();
  }
  for (const f of FIELDS) await sql.raw(`drop index if exists audit_event_${f}`).execute(db);
  if (!pg)
    await sql`delete from sqlite_stat1 where idx in ('audit_event_kind', 'audit_event_outcome', 'audit_event_source', 'audit_event_target')`
      .execute(db)
      .catch(() => {});
}

export async function down(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  const tail = pg ? ', seq' : '';
  for (const f of FIELDS) {
    await sql.raw(`create index audit_event_${f} on audit_event (${f}_term${tail})`).execute(db);
  }
  await sql`drop table audit_block`.execute(db);
}
