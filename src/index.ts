/**
 * `nevertrust`: the library parts by area. Most applications import a subpath instead
 * (`nevertrust/spiffe`, `nevertrust/policy`, `nevertrust/workload`, `nevertrust/mtls`,
 * `nevertrust/middleware`, `nevertrust/audit`).
 */
export * as policy from './policy/index.js';
export * as spiffe from './spiffe/index.js';
export * as workload from './workload/index.js';
export { type Config, loadConfig } from './config/index.js';
export { type RunningServer, startServer } from './server/index.js';
