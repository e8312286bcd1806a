import { type Kysely, PostgresAdapter, sql } from 'kysely';

/**
 * The service graph's per-block edge summary (src/store/audit-block-edges.ts): for each full block
 * of the audit query index, its decision events counted per (source, target, outcome) with the
 * first and last time of each edge. Derived data, filled lazily and in the background, never on the
 * append path; an empty table is a valid state (every block is then summarized on first use).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  await sql
    .raw(`create table audit_block_edges (
    block ${pg ? 'bigint' : 'integer'} primary key not null,
    data ${pg ? 'bytea' : 'blob'} not null
  )`)
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table audit_block_edges`.execute(db);
}
