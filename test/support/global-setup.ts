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

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const pg = await startEmbeddedPostgres({ fsync: false });
  project.provide('pgAdminUrl', pg.adminUrl);
  return () => pg.stop();
}
