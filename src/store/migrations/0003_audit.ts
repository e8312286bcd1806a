import { type Kysely, PostgresAdapter, sql } from 'kysely';

/**
 * The tamper-evident audit log (src/audit). `seq` is the Merkle leaf index. On SQLite it is the
 * rowid (INTEGER PRIMARY KEY), so every secondary index already ends in it and "newest first within
 * a filter" is an index range scan; on PostgreSQL the indexes name `seq` explicitly.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  const seqType = pg ? 'bigint' : 'integer';
  await db.schema
    .createTable('audit_event')
    .ifNotExists()
    .addColumn('seq', seqType, (c) => c.primaryKey().notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('decision_id', 'text')
    .addColumn('body', 'text', (c) => c.notNull())
    .addColumn('leaf_hash', 'text', (c) => c.notNull())
    .execute();
  const tail = pg ? ', seq' : '';
  // Every filter the query API offers has an index whose order is the log order within the filter.
  await sql`create unique index if not exists audit_event_id on audit_event (id)`.execute(db);
  await sql.raw(`create index if not exists audit_event_source on audit_event (source${tail})`).execute(db);
  await sql.raw(`create index if not exists audit_event_target on audit_event (target${tail})`).execute(db);
  await sql.raw(`create index if not exists audit_event_outcome on audit_event (outcome${tail})`).execute(db);
  await sql.raw(`create index if not exists audit_event_kind on audit_event (kind${tail})`).execute(db);
  await sql.raw(`create index if not exists audit_event_time on audit_event (time${tail})`).execute(db);
  await sql`create index if not exists audit_event_decision on audit_event (decision_id) where decision_id is not null`.execute(
    db,
  );

  // Roots of completed perfect subtrees of 256 leaves or more: O(log n) proofs and restart.
  await db.schema
    .createTable('audit_node')
    .ifNotExists()
    .addColumn('level', 'integer', (c) => c.notNull())
    .addColumn('idx', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_node_pk', ['level', 'idx'])
    .execute();

  await db.schema
    .createTable('audit_checkpoint')
    .ifNotExists()
    .addColumn('tree_size', 'bigint', (c) => c.primaryKey().notNull())
    .addColumn('root_hash', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .execute();

  // One row; appenders lock it first, which serializes appends across servers on one database.
  await db.schema
    .createTable('audit_head')
    .ifNotExists()
    .addColumn('id', 'integer', (c) => c.primaryKey().notNull())
    .addColumn('tree_size', 'bigint', (c) => c.notNull())
    .addColumn('root_hash', 'text', (c) => c.notNull())
    .addColumn('sealed_size', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await sql`insert into audit_head (id, tree_size, root_hash, sealed_size, updated_at)
    values (1, 0, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 0, 0)
    on conflict (id) do nothing`.execute(db);

  // Sealed, exported ranges [from_seq, to_seq) whose rows left the hot table.
  await db.schema
    .createTable('audit_segment')
    .ifNotExists()
    .addColumn('from_seq', 'bigint', (c) => c.primaryKey().notNull())
    .addColumn('to_seq', 'bigint', (c) => c.notNull())
    .addColumn('file', 'text', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['audit_segment', 'audit_head', 'audit_checkpoint', 'audit_node', 'audit_event']) {
    await db.schema.dropTable(t).ifExists().execute();
  }
}
