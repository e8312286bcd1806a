import type { Kysely } from 'kysely';

/** A small versioned key/value table for state that is one document (CA state, server identity…). */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('nevertrust_kv')
    .ifNotExists()
    .addColumn('namespace', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('nevertrust_kv_pk', ['namespace', 'key'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('nevertrust_kv').ifExists().execute();
}
