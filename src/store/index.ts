export {
  type AccessSessionChange,
  type AccessSessionRecord,
  AccessSessionRepository,
} from './access-sessions.js';
export { type AgentRecord, AgentRepository } from './agents.js';
export {
  DEVICE_REPORTS_KEPT,
  type DeviceReportRecord,
  DeviceRepository,
  type DeviceTokenGrant,
  type NewDevice,
  type NewDeviceToken,
} from './devices.js';
export { DuplicateEntryError, EntryRepository, type NewEntry } from './entries.js';
export { JoinTokenRepository, type TokenRedemption } from './join-tokens.js';
export { type PolicySnapshotRecord, PolicySnapshotRepository } from './policy-snapshots.js';
export { StoreConflictError, StoreOpenError } from './errors.js';
export { type KvEntry, KvRepository } from './kv.js';
export {
  type MfaAttemptLimit,
  type MfaChallenge,
  type MfaFactorKind,
  type MfaFactorRecord,
  type MfaFailure,
  MfaRepository,
  type MfaSubjectKey,
  type NewMfaFactor,
  userAttemptKey,
} from './mfa.js';
export { OidcModelRepository, type OidcModelRow } from './oidc-models.js';
export { SignalRepository } from './signals.js';
export { DuplicateUserError, type NewUser, type UserChanges, type UserRecord, UserRepository } from './users.js';
export {
  type Engine,
  isPostgresUrl,
  migrateToLatest,
  type OpenStoreOptions,
  openStore,
  RESTORE_DOC,
  redactUrl,
  type Store,
  sqliteCorruption,
} from './open.js';
export type { Database } from './schema.js';
