import { type Kysely, sql } from 'kysely';

/**
 * People for the built-in OpenID provider (`users`) and the provider's own models (`idp_model`:
 * sessions, grants, codes, refresh tokens…), so a restart keeps sessions and refresh tokens.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('username', 'text', (c) => c.primaryKey())
    .addColumn('email', 'text')
    .addColumn('name', 'text')
    // JSON array of group names, sorted.
    .addColumn('groups', 'text', (c) => c.notNull())
    // Self-describing scrypt hash (src/access/idp/password.ts).
    .addColumn('password_hash', 'text', (c) => c.notNull())
    .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('idp_model')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('grant_id', 'text')
    .addColumn('uid', 'text')
    .addColumn('user_code', 'text')
    .addColumn('expires_at', 'bigint')
    .addColumn('consumed_at', 'bigint')
    .addPrimaryKeyConstraint('idp_model_pk', ['kind', 'id'])
    .execute();
  await db.schema.createIndex('idp_model_grant').on('idp_model').column('grant_id').execute();
  await db.schema.createIndex('idp_model_uid').on('idp_model').column('uid').execute();
  await db.schema.createIndex('idp_model_expires').on('idp_model').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table idp_model`.execute(db);
  await sql`drop table users`.execute(db);
}
