/**
 * Starts one signing worker thread, from compiled JavaScript or from TypeScript sources
 * (see util/worker.ts for how a `.ts` worker is loaded).
 * @internal
 */
import type { Worker } from 'node:worker_threads';
import { siblingWorker, spawnWorker } from '../util/worker.js';

export function spawnSigningWorker(script?: URL): Worker {
  return spawnWorker(script ?? siblingWorker(import.meta.url, 'signing-worker'));
}
