/**
 * The worker side of an off-thread load (see load-async.ts): reads, parses and validates a policy
 * path — the expensive part, seconds for tens of thousands of rules — and sends back either every
 * issue or the policies, serialized in chunks so the main thread can take them in without one long
 * pause.
 * @internal
 */
import { serialize } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { type LoadOptions, readPolicyTree } from './load.js';
import type { Policy } from './model.js';
import type { PolicyIssue } from './yamldoc.js';

export interface LoadWorkerInput {
  path: string;
  opts: LoadOptions;
  chunkSize: number;
}

export type LoadWorkerResult =
  | { ok: false; issues: PolicyIssue[]; warnings: PolicyIssue[] }
  | { ok: true; chunks: ArrayBuffer[]; warnings: PolicyIssue[] };

const input = workerData as LoadWorkerInput;
const tree = readPolicyTree(input.path, input.opts);
let result: LoadWorkerResult;
const transfer: ArrayBuffer[] = [];
if (tree.issues.length > 0) result = { ok: false, issues: tree.issues, warnings: tree.warnings };
else {
  for (let i = 0; i < tree.policies.length; i += input.chunkSize) {
    const b = serialize(tree.policies.slice(i, i + input.chunkSize) satisfies Policy[]);
    transfer.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
  }
  result = { ok: true, chunks: transfer, warnings: tree.warnings };
}
parentPort?.postMessage(result, transfer);
