/**
 * Starts a worker thread from compiled JavaScript or from TypeScript sources.
 *
 * Built (dist/…/*.js), the worker is a sibling `.js` file. Run from sources (tsx in benchmarks,
 * vitest in tests) the caller is a `.ts` file and Node cannot load a `.ts` worker by itself — a
 * worker does not inherit the parent's loader hooks, and `--import` in a worker's execArgv is
 * ignored — so the worker first registers tsx (a dev dependency, present wherever sources are run)
 * and then imports the `.ts` worker.
 *
 * @example
 * const w = spawnWorker(new URL(import.meta.url.endsWith('.ts') ? './job.ts' : './job.js', import.meta.url), { n: 1 });
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

export function spawnWorker(script: URL, options: Omit<WorkerOptions, 'eval'> = {}): Worker {
  if (!script.pathname.endsWith('.ts')) return new Worker(script, options);
  // The ESM API (`tsx/esm/api`): tsx's main entry registers its hooks on the main thread only.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(script.href)}); });`;
  return new Worker(boot, { ...options, eval: true });
}

/** The sibling worker module `name` of the module at `here` (`.ts` from sources, `.js` when built). */
export function siblingWorker(here: string, name: string): URL {
  return new URL(`./${name}${here.endsWith('.ts') ? '.ts' : '.js'}`, here);
}
