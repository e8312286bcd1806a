import { type Kysely, sql } from 'kysely';

/** Registration entries, join tokens, attested agents, and accepted policy snapshots. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('registration_entries')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('spiffe_id', 'text', (c) => c.notNull())
    .addColumn('parent_id', 'text', (c) => c.notNull())
    // Sorted JSON array, so equal selector sets compare equal.
    .addColumn('selectors', 'text', (c) => c.notNull())
    .addColumn('x509_svid_ttl', 'integer', (c) => c.notNull())
    .addColumn('jwt_svid_ttl', 'integer', (c) => c.notNull())
    .addColumn('dns_names', 'text', (c) => c.notNull())
    .addColumn('hint', 'text', (c) => c.notNull())
    .addColumn('admin', 'integer', (c) => c.notNull())
    .addColumn('expires_at', 'bigint')
    .addColumn('revision', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    // Soft delete: agents on other servers notice a deletion through updated_at.
    .addColumn('deleted_at', 'bigint')
    .execute();
  await db.schema
    .createIndex('registration_entries_unique')
    .on('registration_entries')
    .columns(['spiffe_id', 'parent_id', 'selectors'])
    .unique()
    .where(sql.ref('deleted_at'), 'is', null)
    .execute();
  await db.schema.createIndex('registration_entries_parent').on('registration_entries').column('parent_id').execute();
  await db.schema.createIndex('registration_entries_updated').on('registration_entries').column('updated_at').execute();

  await db.schema
    .createTable('join_tokens')
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .addColumn('agent_id', 'text')
    .execute();

  await db.schema
    .createTable('agents')
    .addColumn('spiffe_id', 'text', (c) => c.primaryKey())
    .addColumn('attestation', 'text', (c) => c.notNull())
    .addColumn('serial', 'text', (c) => c.notNull())
    .addColumn('svid_expires_at', 'bigint', (c) => c.notNull())
    .addColumn('attested_at', 'bigint', (c) => c.notNull())
    .addColumn('renewed_at', 'bigint', (c) => c.notNull())
    .addColumn('banned', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('remote_addr', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('policy_snapshots')
    .addColumn('version', 'text', (c) => c.primaryKey())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('documents', 'text', (c) => c.notNull())
    .addColumn('rule_count', 'integer', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('policy_snapshots_created').on('policy_snapshots').column('created_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['policy_snapshots', 'agents', 'join_tokens', 'registration_entries']) {
    await db.schema.dropTable(t).ifExists().execute();
  }
}
