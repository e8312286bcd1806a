import { type Kysely, PostgresAdapter, sql } from 'kysely';
import { BLOCK_EVENTS, blockEvents, builderFrom, TERM_FIELDS, writeBlocks } from '../audit-blocks.js';
import type { Database } from '../schema.js';

/**
 * The audit query index moves from four B-tree indexes on the term columns to blocks of 4,096
 * consecutive events: `audit_block` (time range and a presence bitmap per field) and
 * `audit_block_column` (per field, the events' term ids as int32s); see src/store/audit-blocks.ts
 * for why. The four indexes are dropped; rows, bytes, hashes and the other indexes (id, decision
 * id, time) are unchanged. Existing rows are indexed in place, a block at a time; `down` restores
 * the four indexes.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  const blob = pg ? 'bytea' : 'blob';
  await sql
    .raw(`create table audit_block (
    block ${pg ? 'bigint' : 'integer'} primary key not null,
    size integer not null,
    min_time bigint not null,
    max_time bigint not null,
    present ${blob} not null
  )`)
    .execute(db);
  await sql
    .raw(`create table audit_block_column (
    block bigint not null,
    field text not null,
    ids ${blob} not null,
    primary key (block, field)
  )`)
    .execute(db);
  // Typed as today's schema: the tables read and written here have exactly these columns at 0005.
  const typed = db as unknown as Kysely<Database>;
  const max = await sql<{ n: number | string | null }>`select max(seq) as n from audit_event`.execute(db);
  const end = max.rows[0]?.n === null || max.rows[0]?.n === undefined ? 0 : Number(max.rows[0].n) + 1;
  for (let start = 0; start < end; start += BLOCK_EVENTS) {
    const rows = await blockEvents(typed, start, start + BLOCK_EVENTS);
    if (rows.length === 0) continue; // sealed
    await writeBlocks(typed, builderFrom(start, rows).take());
  }
  for (const f of TERM_FIELDS) await sql.raw(`drop index if exists audit_event_${f}`).execute(db);
  if (!pg) await dropSqliteStats(db, `idx in (${TERM_FIELDS.map((f) => `'audit_event_${f}'`).join(', ')})`);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  const tail = pg ? ', seq' : '';
  for (const f of TERM_FIELDS) {
    await sql.raw(`create index audit_event_${f} on audit_event (${f}_term${tail})`).execute(db);
  }
  await sql`drop table audit_block_column`.execute(db);
  await sql`drop table audit_block`.execute(db);
  // The 0004 log seeds planner statistics for all its indexes when it finds none for the table.
  if (!pg) await dropSqliteStats(db, "tbl = 'audit_event'");
}

/** Removes seeded SQLite planner statistics (a database never analyzed has no sqlite_stat1 table). */
async function dropSqliteStats(db: Kysely<unknown>, where: string): Promise<void> {
  const have = await sql<{ n: number }>`select count(*) as n from sqlite_master where name = 'sqlite_stat1'`.execute(
    db,
  );
  if (Number(have.rows[0]?.n ?? 0) > 0) await sql.raw(`delete from sqlite_stat1 where ${where}`).execute(db);
}
