/**
 * Opens the store: SQLite in the data dir by default, PostgreSQL when the URL says so. Migrations run
 * on open, under kysely's migration lock, so several servers may start against one PostgreSQL at once.
 */
import { accessSync, chmodSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, type Migration, type MigrationProvider, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { StoreOpenError } from './errors.js';
import { AccessSessionRepository } from './access-sessions.js';
import { AgentRepository } from './agents.js';
import { EntryRepository } from './entries.js';
import { DeviceRepository } from './devices.js';
import { JoinTokenRepository } from './join-tokens.js';
import { KvRepository } from './kv.js';
import { MfaRepository } from './mfa.js';
import { PolicySnapshotRepository } from './policy-snapshots.js';
import { OidcModelRepository } from './oidc-models.js';
import { SignalRepository } from './signals.js';
import { UserRepository } from './users.js';
import { migrations } from './migrations/index.js';
import { LockingSqliteDialect } from './sqlite-migration-lock.js';
import type { Database } from './schema.js';

export type Engine = 'sqlite' | 'postgres';

export interface OpenStoreOptions {
  /** `postgres://…` / `postgresql://…`, `sqlite:PATH`, or undefined for `<dataDir>/nevertrust.db`. */
  url?: string;
  dataDir: string;
  /** Run migrations (default true). */
  migrate?: boolean;
}

export interface Store {
  readonly engine: Engine;
  /** Where the data lives, for people: a file path or a redacted URL. */
  readonly location: string;
  readonly db: Kysely<Database>;
  /**
   * SQLite only: the better-sqlite3 handle behind `db` (one connection). Use it only while holding
   * kysely's connection (`db.connection().execute(…)`), so that no kysely transaction interleaves.
   */
  readonly sqlite?: SqliteDatabase.Database;
  readonly kv: KvRepository;
  readonly entries: EntryRepository;
  readonly joinTokens: JoinTokenRepository;
  readonly agents: AgentRepository;
  readonly policySnapshots: PolicySnapshotRepository;
  readonly users: UserRepository;
  /** The built-in OpenID provider's models (src/access/idp/adapter.ts). */
  readonly oidcModels: OidcModelRepository;
  /** People's sessions at the access proxy (src/access/auth/). */
  readonly accessSessions: AccessSessionRepository;
  /** People's second factors at the access proxy (src/access/mfa/). */
  readonly mfa: MfaRepository;
  /** Enrolled devices, their enrollment tokens and posture reports (src/server/devices/). */
  readonly devices: DeviceRepository;
  /** Revocation, risk and posture signals, numbered (issue #23, src/signals/). */
  readonly signals: SignalRepository;
  /** Resolves when the database answers; used by /readyz. */
  ping(): Promise<void>;
  /** Names of applied migrations, oldest first. */
  appliedMigrations(): Promise<string[]>;
  close(): Promise<void>;
}

const MIGRATION_TABLE = 'nevertrust_migration';
const MIGRATION_LOCK_TABLE = 'nevertrust_migration_lock';

class StaticMigrations implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations;
  }
}

/** `postgres://user:secret@host/db` → `postgres://user:***@host/db`: URLs end up in logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}

export function isPostgresUrl(url: string | undefined): boolean {
  return url !== undefined && /^postgres(ql)?:\/\//i.test(url);
}

function ensureDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, constants.W_OK | constants.R_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new StoreOpenError(
      `data dir ${dir} is not writable (${code}): pick another with --data-dir DIR or fix its permissions`,
      { cause: e },
    );
  }
}

/** Where the backup and restore steps are documented (named in the errors that need them). */
export const RESTORE_DOC = 'docs/operations.md#backup-and-restore';

/**
 * A SQLite corruption error (`SQLITE_CORRUPT*`, `SQLITE_NOTADB`), as one line that names the file
 * and what to do; undefined for any other error. Corruption can surface at open, in a migration, or
 * in the first query that reads a damaged page, so every start-up step passes its errors through here.
 */
export function sqliteCorruption(e: unknown, file: string): StoreOpenError | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !(code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')) return undefined;
  return new StoreOpenError(
    `SQLite database ${file} is damaged (${(e as Error).message}): stop the server and restore it from backup (${RESTORE_DOC})`,
    { cause: e },
  );
}

/**
 * Refuses an initialised data dir whose database is missing or empty: SQLite would silently create a
 * new one, i.e. a new CA and an empty audit log that verifies. Initialised means the server has run
 * here: the audit signing key or the admin token, which it writes only once the database exists. A
 * KEK alone does not count, since it may be provisioned before the first start; it is named
 * in the message when it is there.
 */
function refuseLostDatabase(dataDir: string, file: string): void {
  const size = existsSync(file) ? statSync(file).size : -1;
  if (size > 0) return;
  if (!['audit-signing.key', 'admin.token'].some((f) => existsSync(join(dataDir, f)))) return;
  const keys = ['kek', 'audit-signing.key', 'admin.token'].filter((f) => existsSync(join(dataDir, f)));
  throw new StoreOpenError(
    `data dir ${dataDir} is initialised (${keys.join(', ')}) but its database ${file} is ${size < 0 ? 'missing' : 'empty'}: ` +
      `restore the database file from backup (${RESTORE_DOC}); to start a new trust domain instead, use a new data dir`,
  );
}

function openSqlite(file: string): { db: Kysely<Database>; native: SqliteDatabase.Database } {
  let native: SqliteDatabase.Database;
  try {
    native = new SqliteDatabase(file);
    // Entries, agents and audit events are nobody else's business (CA keys are sealed anyway).
    chmodSync(file, 0o600);
    // 16 KiB pages for a new database (an existing one keeps its size: the pragma is a no-op there).
    // Appends touch the table and seven audit indexes; with 4 KiB pages a commit writes four times
    // as many WAL frames, one system call each, and the audit append ran at 25,000 rows/s instead
    // of 41,500 (bare INSERTs of the same rows and indexes on this machine).
    native.pragma('page_size = 16384');
    native.pragma('journal_mode = WAL');
    // WAL + NORMAL survives a killed process (kill -9); FULL is only needed against power loss.
    native.pragma('synchronous = NORMAL');
    native.pragma('busy_timeout = 5000');
    native.pragma('foreign_keys = ON');
  } catch (e) {
    throw (
      sqliteCorruption(e, file) ??
      new StoreOpenError(`cannot open SQLite database ${file}: ${(e as Error).message}`, { cause: e })
    );
  }
  return { db: new Kysely<Database>({ dialect: new LockingSqliteDialect({ database: native }) }), native };
}

async function openPostgres(url: string): Promise<Kysely<Database>> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    connectionTimeoutMillis: 5000,
    // int8 (bigint) columns hold millisecond times and counters, all below 2^53.
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  pool.on('error', () => {
    // An idle client lost its connection; the pool replaces it. Queries surface their own errors.
  });
  try {
    const client = await pool.connect();
    client.release();
  } catch (e) {
    await pool.end().catch(() => {});
    const err = e as NodeJS.ErrnoException;
    let target = redactUrl(url);
    try {
      const u = new URL(url);
      target = `${u.hostname}:${u.port || 5432}`;
    } catch {}
    throw new StoreOpenError(
      `cannot reach PostgreSQL at ${target} (${err.code ?? err.message}): is it running and is database.url / --database right?`,
      { cause: e },
    );
  }
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: new StaticMigrations(),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new StoreOpenError(`database migration ${failed} failed: ${(error as Error).message ?? String(error)}`, {
      cause: error,
    });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * Opens (and by default migrates) the store.
 *
 * @example
 * const store = await openStore({ dataDir: './.nevertrust' });           // SQLite
 * const pgStore = await openStore({ dataDir: '.', url: 'postgres://nevertrust@localhost/nevertrust' });
 */
export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const dataDir = resolve(opts.dataDir);
  let engine: Engine;
  let location: string;
  let db: Kysely<Database>;
  let native: SqliteDatabase.Database | undefined;
  if (opts.url !== undefined && isPostgresUrl(opts.url)) {
    engine = 'postgres';
    location = redactUrl(opts.url);
    db = await openPostgres(opts.url);
  } else if (opts.url !== undefined && !opts.url.startsWith('sqlite:')) {
    throw new StoreOpenError(
      `unsupported database URL "${redactUrl(opts.url)}": use postgres://… or sqlite:PATH, or leave it empty for SQLite in the data dir`,
    );
  } else {
    engine = 'sqlite';
    ensureDataDir(dataDir);
    const file = opts.url ? resolve(opts.url.slice('sqlite:'.length)) : join(dataDir, 'nevertrust.db');
    refuseLostDatabase(dataDir, file);
    location = file;
    ({ db, native } = openSqlite(file));
  }
  try {
    if (opts.migrate !== false) await migrateToLatest(db);
  } catch (e) {
    await db.destroy().catch(() => {});
    throw (engine === 'sqlite' && sqliteCorruption((e as { cause?: unknown }).cause ?? e, location)) || e;
  }
  let closed = false;
  return {
    engine,
    location,
    db,
    ...(native ? { sqlite: native } : {}),
    kv: new KvRepository(db),
    entries: new EntryRepository(db),
    joinTokens: new JoinTokenRepository(db),
    agents: new AgentRepository(db),
    policySnapshots: new PolicySnapshotRepository(db),
    users: new UserRepository(db),
    oidcModels: new OidcModelRepository(db),
    accessSessions: new AccessSessionRepository(db),
    mfa: new MfaRepository(db),
    devices: new DeviceRepository(db),
    signals: new SignalRepository(db),
    async ping() {
      await sql`select 1`.execute(db);
    },
    async appliedMigrations() {
      const rows = await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)} order by name`.execute(
        db,
      );
      return rows.rows.map((r) => r.name);
    },
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}
