import { type Kysely, PostgresAdapter } from 'kysely';

/**
 * Signals (issue #23): every revocation, risk score and posture signal, in the order the store
 * numbers them, so an enforcement point that was away resumes from the last number it saw.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  await db.schema
    .createTable('signals')
    .addColumn('seq', pg ? 'bigserial' : 'integer', (c) => (pg ? c.primaryKey() : c.primaryKey().autoIncrement()))
    .addColumn('kind', 'text', (c) => c.notNull())
    // What it is about, as one lookup key: `session:<id>`, `user:<name>`, `device:<id>`, `entry:<id>`,
    // `agent:<id>`, `svid:<serial>`.
    .addColumn('subject', 'text', (c) => c.notNull())
    // The signal (JSON, `signalSchema` of src/api/signals.ts).
    .addColumn('signal', 'text', (c) => c.notNull())
    .addColumn('received_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('signals_subject').on('signals').columns(['subject', 'seq']).execute();
  await db.schema.createIndex('signals_received').on('signals').column('received_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('signals').execute();
}
