/**
 * Kysely's SQLite adapter assumes one process and takes no migration lock, so two processes starting
 * on one database file race on the migration table. This adapter takes a real lock in the lock table:
 * an atomic compare-and-set of a lease (expiry time in ms), so a crashed holder frees it after a minute.
 */
import { type Kysely, type MigrationLockOptions, SqliteAdapter, SqliteDialect, sql } from 'kysely';

const LEASE_MS = 60_000;
const WAIT_MS = 30_000;

class LockingSqliteAdapter extends SqliteAdapter {
  override async acquireMigrationLock(db: Kysely<unknown>, opt: MigrationLockOptions): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const now = Date.now();
      const res = await sql`update ${sql.table(opt.lockTable)} set is_locked = ${now + LEASE_MS}
        where id = ${opt.lockRowId} and (is_locked = 0 or is_locked < ${now})`.execute(db);
      if (Number(res.numAffectedRows ?? 0) === 1) return;
      if (Date.now() > deadline) {
        throw new Error(
          `another process has held the migration lock for over ${WAIT_MS / 1000}s; if none is running, wait a minute and retry`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  override async releaseMigrationLock(db: Kysely<unknown>, opt: MigrationLockOptions): Promise<void> {
    await sql`update ${sql.table(opt.lockTable)} set is_locked = 0 where id = ${opt.lockRowId}`.execute(db);
  }
}

export class LockingSqliteDialect extends SqliteDialect {
  override createAdapter(): SqliteAdapter {
    return new LockingSqliteAdapter();
  }
}
