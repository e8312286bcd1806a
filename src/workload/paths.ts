/**
 * Paths of the Workload API definition shipped with the package.
 */
import { join } from 'node:path';
import { packageRoot } from '../util/package-root.js';

/**
 * Absolute path of `proto/workloadapi.proto` (the SPIFFE Workload API definition).
 *
 * @example
 * ```ts
 * protoLoader.loadSync(workloadProtoPath());
 * ```
 */
export function workloadProtoPath(): string {
  return join(packageRoot(), 'proto', 'workloadapi.proto');
}
