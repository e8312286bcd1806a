import { type Kysely, PostgresAdapter } from 'kysely';

/**
 * People's sessions at the access proxy (src/access/auth/), the change feed that tells every proxy
 * to drop a session from its cache, one-time login states, and seen back-channel logout token ids.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  await db.schema
    .createTable('access_sessions')
    // SHA-256 of the cookie token: a database leak gives no usable cookie.
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    // Public handle for logs, audit and the assertion's `sid`.
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('sub', 'text', (c) => c.notNull())
    .addColumn('provider_sid', 'text')
    .addColumn('person', 'text', (c) => c.notNull())
    // AES-256-GCM sealed JSON {refresh_token, id_token}.
    .addColumn('tokens', 'text', (c) => c.notNull())
    .addColumn('token_expires_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('last_seen_at', 'bigint', (c) => c.notNull())
    .addColumn('ended_at', 'bigint')
    .addColumn('end_reason', 'text')
    .execute();
  await db.schema
    .createIndex('access_sessions_sid')
    .on('access_sessions')
    .columns(['issuer', 'provider_sid'])
    .execute();
  await db.schema.createIndex('access_sessions_sub').on('access_sessions').columns(['issuer', 'sub']).execute();
  await db.schema
    .createTable('access_session_changes')
    .addColumn('seq', pg ? 'bigserial' : 'integer', (c) => (pg ? c.primaryKey() : c.primaryKey().autoIncrement()))
    .addColumn('session_id', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('access_login_states')
    .addColumn('state_hash', 'text', (c) => c.primaryKey())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('sealed', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('access_logout_tokens')
    .addColumn('jti_hash', 'text', (c) => c.primaryKey())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['access_logout_tokens', 'access_login_states', 'access_session_changes', 'access_sessions']) {
    await db.schema.dropTable(t).execute();
  }
}
