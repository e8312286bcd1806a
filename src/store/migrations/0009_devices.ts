import { type Kysely, PostgresAdapter } from 'kysely';

/**
 * Devices (issue #22): enrolled devices with their certificate and latest posture, one-time
 * enrollment tokens bound to an owner, the posture reports received (collector or MDM webhook),
 * and the device a session is bound to (`access_sessions.device_id`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  // The device whose certificate was presented at login: later requests of the session must present
  // a certificate of the same device, so a copied cookie is useless on another machine.
  await db.schema.alterTable('access_sessions').addColumn('device_id', 'text').execute();
  await db.schema
    .createTable('devices')
    // What follows `/device/` in its SPIFFE ID.
    .addColumn('id', 'text', (c) => c.primaryKey())
    // The person the device belongs to (the name policy compares with the session's user).
    .addColumn('owner', 'text', (c) => c.notNull())
    // A name for people (the host name it enrolled with).
    .addColumn('name', 'text')
    .addColumn('spiffe_id', 'text', (c) => c.notNull())
    .addColumn('enrolled_at', 'bigint', (c) => c.notNull())
    // The certificate last issued (lower-case hex serial) and when it expires; a renewal replaces both.
    .addColumn('cert_serial', 'text', (c) => c.notNull())
    .addColumn('cert_not_after', 'bigint', (c) => c.notNull())
    .addColumn('renewed_at', 'bigint')
    .addColumn('revoked_at', 'bigint')
    .addColumn('revoked_reason', 'text')
    // The latest posture (JSON DevicePosture, src/api/devices.ts); null before the first report.
    .addColumn('posture', 'text')
    .addColumn('posture_at', 'bigint')
    .execute();
  await db.schema.createIndex('devices_owner').on('devices').column('owner').execute();
  await db.schema
    .createTable('device_tokens')
    // SHA-256 of the token: the token itself is shown once and never stored.
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('owner', 'text', (c) => c.notNull())
    // The device id the token is for, when the admin chose one; else the device proposes its own.
    .addColumn('device_id', 'text')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .addColumn('used_by', 'text')
    .execute();
  await db.schema
    .createTable('device_reports')
    .addColumn('seq', pg ? 'bigserial' : 'integer', (c) => (pg ? c.primaryKey() : c.primaryKey().autoIncrement()))
    .addColumn('device_id', 'text', (c) => c.notNull())
    // `collector` (the device's own signed report) or `mdm` (a webhook).
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('collected_at', 'bigint', (c) => c.notNull())
    .addColumn('received_at', 'bigint', (c) => c.notNull())
    // JSON DevicePosture (the facts) and the report as received (JSON), for the history.
    .addColumn('posture', 'text', (c) => c.notNull())
    .addColumn('report', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('device_reports_device').on('device_reports').columns(['device_id', 'seq']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['device_reports', 'device_tokens', 'devices']) await db.schema.dropTable(t).execute();
  await db.schema.alterTable('access_sessions').dropColumn('device_id').execute();
}
