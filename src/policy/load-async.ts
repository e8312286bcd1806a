/**
 * Loads a policy path without stalling the event loop: the reading, parsing and validation run on a
 * worker thread; the main thread takes the policies back chunk by chunk and compiles them in steps
 * (yielding between chunks and steps), because the compiled index is made of class instances and
 * shared references that cannot cross threads.
 */
import { setImmediate as turn } from 'node:timers/promises';
import { deserialize } from 'node:v8';
import { siblingWorker, spawnWorker } from '../util/worker.js';
import { compileSteps } from './compile.js';
import { compileOptions, type LoadOptions } from './load.js';
import type { LoadWorkerInput, LoadWorkerResult } from './load-worker.js';
import type { Policy } from './model.js';
import { PolicyLoadError, type PolicyIssue } from './yamldoc.js';
import type { PolicySnapshot } from './snapshot.js';

/** Policies per serialized chunk: small enough that taking one in is a short pause. */
const CHUNK = 64;

export interface LoadResult {
  snapshot: PolicySnapshot;
  warnings: PolicyIssue[];
}

/**
 * Like `loadPolicies`, off the event loop. Rejects with {@link PolicyLoadError} (every issue, or
 * the worker's failure as an issue on `path`); nothing partial is ever returned.
 *
 * @example
 * const { snapshot } = await loadPoliciesOffThread('policies/');
 */
export async function loadPoliciesOffThread(
  path: string,
  opts: LoadOptions = {},
  signal?: AbortSignal,
): Promise<LoadResult> {
  const data: LoadWorkerInput = { path, opts, chunkSize: CHUNK };
  const result = await new Promise<LoadWorkerResult>((resolve, reject) => {
    const worker = spawnWorker(siblingWorker(import.meta.url, 'load-worker'), { workerData: data });
    let settled = false;
    signal?.addEventListener('abort', () => void worker.terminate(), { once: true });
    worker.once('message', (m: LoadWorkerResult) => {
      settled = true;
      resolve(m);
      void worker.terminate();
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`policy loading worker exited with code ${code}`));
    });
  }).catch((err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    throw new PolicyLoadError([{ file: path, line: 1, column: 1, field: '(file)', message: `loading failed: ${msg}` }]);
  });
  if (!result.ok) throw new PolicyLoadError(result.issues);
  const policies: Policy[] = [];
  for (const c of result.chunks) {
    // One push per policy: spreading a large chunk into push() could overflow the argument limit.
    for (const p of deserialize(new Uint8Array(c)) as Policy[]) policies.push(p);
    await turn();
    signal?.throwIfAborted();
  }
  // Compiled in steps, yielding between them: requests keep being served while the index is built.
  const steps = compileSteps(policies, compileOptions(opts));
  for (;;) {
    const r = steps.next();
    if (r.done) return { snapshot: r.value, warnings: result.warnings };
    await turn();
    signal?.throwIfAborted();
  }
}
