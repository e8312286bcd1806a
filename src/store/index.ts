export { StoreConflictError, StoreOpenError } from './errors.js';
export { type KvEntry, KvRepository } from './kv.js';
export {
  type Engine,
  isPostgresUrl,
  migrateToLatest,
  type OpenStoreOptions,
  openStore,
  redactUrl,
  type Store,
} from './open.js';
export type { Database } from './schema.js';
