import type { Kysely } from 'kysely';

/**
 * MFA at the access proxy (src/access/mfa/): people's second factors (TOTP, WebAuthn), their
 * recovery codes, attempt counters with lockout, admin-issued enrollment links, one-time WebAuthn
 * challenges, and the MFA state of a session (`access_sessions.mfa`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // JSON {at, methods}: when the session last passed a second factor and with which methods.
  await db.schema.alterTable('access_sessions').addColumn('mfa', 'text').execute();
  // The person's name at the proxy (its user claim): an admin's reset or revocation by name ends
  // every session of that person, factors or not.
  await db.schema.alterTable('access_sessions').addColumn('user_name', 'text').execute();
  await db.schema.createIndex('access_sessions_user').on('access_sessions').column('user_name').execute();
  await db.schema
    .createTable('mfa_factors')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('sub', 'text', (c) => c.notNull())
    // The person's name for admins (`nevertrust user mfa list alice`): the proxy's user claim.
    .addColumn('user_name', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    // TOTP: the secret sealed (AES-256-GCM) under the proxy's key; null for WebAuthn.
    .addColumn('secret', 'text')
    // TOTP: the last time step accepted; a code of that step or an older one is never accepted again.
    .addColumn('totp_last_step', 'bigint')
    // WebAuthn: base64url credential id, COSE public key (base64url), signature counter, transports.
    .addColumn('credential_id', 'text', (c) => c.unique())
    .addColumn('public_key', 'text')
    .addColumn('counter', 'bigint')
    .addColumn('transports', 'text')
    .addColumn('aaguid', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    // Null while a TOTP enrollment waits for its first valid code.
    .addColumn('confirmed_at', 'bigint')
    .addColumn('last_used_at', 'bigint')
    .execute();
  await db.schema.createIndex('mfa_factors_subject').on('mfa_factors').columns(['issuer', 'sub']).execute();
  await db.schema.createIndex('mfa_factors_user').on('mfa_factors').column('user_name').execute();
  await db.schema
    .createTable('mfa_recovery_codes')
    .addColumn('code_hash', 'text', (c) => c.primaryKey())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('sub', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .execute();
  await db.schema
    .createIndex('mfa_recovery_codes_subject')
    .on('mfa_recovery_codes')
    .columns(['issuer', 'sub'])
    .execute();
  await db.schema
    .createTable('mfa_attempts')
    // `user:<issuer> <sub>` or `ip:<address>`.
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('failures', 'integer', (c) => c.notNull())
    .addColumn('window_start', 'bigint', (c) => c.notNull())
    .addColumn('locked_until', 'bigint')
    .execute();
  await db.schema
    .createTable('mfa_enroll_links')
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('user_name', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .execute();
  await db.schema
    .createTable('mfa_challenges')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('session_id', 'text', (c) => c.notNull())
    // `webauthn.register` or `webauthn.authenticate`.
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('challenge', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['mfa_challenges', 'mfa_enroll_links', 'mfa_attempts', 'mfa_recovery_codes', 'mfa_factors']) {
    await db.schema.dropTable(t).execute();
  }
  await db.schema.dropIndex('access_sessions_user').execute();
  await db.schema.alterTable('access_sessions').dropColumn('user_name').execute();
  await db.schema.alterTable('access_sessions').dropColumn('mfa').execute();
}
