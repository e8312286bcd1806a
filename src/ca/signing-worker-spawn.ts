/**
 * Starts one signing worker thread, from compiled JavaScript or from TypeScript sources.
 *
 * Built (dist/ca/*.js), the worker is the sibling `signing-worker.js`. Run from sources (tsx in
 * benchmarks, vitest in tests) this module is a `.ts` file and Node cannot load the `.ts` worker by
 * itself — a worker does not inherit the parent's loader hooks, and `--import` in a worker's
 * execArgv is ignored — so the worker first registers tsx (a dev dependency, present wherever
 * sources are run) and then imports the `.ts` worker.
 * @internal
 */
import { Worker } from 'node:worker_threads';

export function spawnSigningWorker(script?: URL): Worker {
  const here = import.meta.url;
  const fromSources = here.endsWith('.ts');
  const target = script ?? new URL(fromSources ? './signing-worker.ts' : './signing-worker.js', here);
  if (!target.pathname.endsWith('.ts')) return new Worker(target);
  // The ESM API (`tsx/esm/api`): tsx's main entry registers its hooks on the main thread only.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(target.href)}); });`;
  return new Worker(boot, { eval: true });
}
