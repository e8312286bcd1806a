/**
 * Table types for kysely. One interface per table; times are integer milliseconds since the epoch
 * (the same on SQLite and PostgreSQL, where int8 is parsed back to a number).
 */
import type { Generated } from 'kysely';

export interface KvTable {
  namespace: string;
  key: string;
  value: string;
  version: number;
  updated_at: number;
}

export interface RegistrationEntryTable {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: string;
  x509_svid_ttl: number;
  jwt_svid_ttl: number;
  dns_names: string;
  hint: string;
  admin: number;
  expires_at: number | null;
  revision: number;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

export interface JoinTokenTable {
  token_hash: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  agent_id: string | null;
}

export interface AgentTable {
  spiffe_id: string;
  attestation: string;
  serial: string;
  svid_expires_at: number;
  attested_at: number;
  renewed_at: number;
  banned: number;
  remote_addr: string;
}

export interface PolicySnapshotTable {
  version: string;
  created_at: number;
  source: string;
  documents: string;
  rule_count: number;
}

export interface AuditEventTable {
  /** Merkle leaf index. */
  seq: number;
  id: string;
  time: number;
  /** `audit_term` ids of the event's kind, outcome ('' when none), source key and target key. */
  kind_term: number;
  outcome_term: number;
  source_term: number;
  target_term: number;
  decision_id: string | null;
  /** Canonical JSON of the event including `seq`: exactly the hashed bytes. */
  body: string;
  /** SHA-256(0x00 ‖ body), 32 bytes. */
  leaf_hash: Buffer;
}

/** The dictionary of repeated strings events are filtered by (migration 0004). */
export interface AuditTermTable {
  id: number;
  /** 'kind' | 'outcome' | 'source' | 'target' */
  field: string;
  value: string;
}

/** The query index: one row per block of 4,096 consecutive events (migration 0005, audit-blocks.ts). */
export interface AuditBlockTable {
  /** floor(seq / 4096) */
  block: number;
  /** Positions filled (the last block grows until it holds 4,096). */
  size: number;
  min_time: number;
  max_time: number;
  /** Four bitmaps of 8,192 bits (kind, outcome, source, target): bit `id & 8191` set when present. */
  present: Buffer;
}

/** The term ids of one field of one block (migration 0005). */
export interface AuditBlockColumnTable {
  block: number;
  /** 'kind' | 'outcome' | 'source' | 'target' */
  field: string;
  /** int32 little-endian term ids, one per position (0: no event). */
  ids: Buffer;
}

/** A full block's decision edges (migration 0011; format in src/store/audit-block-edges.ts). */
export interface AuditBlockEdgesTable {
  block: number;
  data: Buffer;
}

export interface AuditNodeTable {
  level: number;
  idx: number;
  hash: string;
}

export interface AuditCheckpointTable {
  tree_size: number;
  root_hash: string;
  time: number;
  key_id: string;
  signature: string;
}

export interface AuditHeadTable {
  id: number;
  tree_size: number;
  root_hash: string;
  sealed_size: number;
  updated_at: number;
}

export interface AuditSegmentTable {
  from_seq: number;
  to_seq: number;
  file: string;
  sha256: string;
  created_at: number;
}

/** A person of the built-in OpenID provider (migration 0006). */
export interface UserTable {
  username: string;
  email: string | null;
  name: string | null;
  /** Sorted JSON array of group names. */
  groups: string;
  password_hash: string;
  disabled: number;
  created_at: number;
  updated_at: number;
}

/** A model of the built-in OpenID provider (session, grant, code, refresh token…; migration 0006). */
export interface IdpModelTable {
  kind: string;
  id: string;
  /** The model's JSON payload. */
  payload: string;
  grant_id: string | null;
  uid: string | null;
  user_code: string | null;
  expires_at: number | null;
  consumed_at: number | null;
}

/** People's sessions at the access proxy (migration 0007, access-sessions.ts). */
export interface AccessSessionTable {
  token_hash: string;
  id: string;
  host: string;
  issuer: string;
  sub: string;
  provider_sid: string | null;
  person: string;
  tokens: string;
  token_expires_at: number | null;
  created_at: number;
  expires_at: number;
  last_seen_at: number;
  ended_at: number | null;
  end_reason: string | null;
  /** JSON {at, methods} (migration 0008): the session's last second factor. */
  mfa: string | null;
  /** The proxy's user name for the person (migration 0008): ending sessions by name. */
  user_name: string | null;
  /** The device the session is bound to (migration 0009): its certificate must come with every request. */
  device_id: string | null;
}

export interface AccessSessionChangeTable {
  seq: Generated<number>;
  session_id: string;
  kind: string;
  time: number;
}

export interface AccessLoginStateTable {
  state_hash: string;
  host: string;
  sealed: string;
  expires_at: number;
}

export interface AccessLogoutTokenTable {
  jti_hash: string;
  expires_at: number;
}

/** People's second factors (migration 0008, mfa.ts). */
export interface MfaFactorTable {
  id: string;
  issuer: string;
  sub: string;
  user_name: string;
  kind: string;
  name: string;
  secret: string | null;
  totp_last_step: number | null;
  credential_id: string | null;
  public_key: string | null;
  counter: number | null;
  transports: string | null;
  aaguid: string | null;
  created_at: number;
  confirmed_at: number | null;
  last_used_at: number | null;
}

export interface MfaRecoveryCodeTable {
  code_hash: string;
  issuer: string;
  sub: string;
  created_at: number;
  used_at: number | null;
}

export interface MfaAttemptTable {
  key: string;
  failures: number;
  window_start: number;
  locked_until: number | null;
}

export interface MfaEnrollLinkTable {
  token_hash: string;
  user_name: string;
  created_by: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

export interface DeviceTable {
  id: string;
  owner: string;
  name: string | null;
  spiffe_id: string;
  enrolled_at: number;
  cert_serial: string;
  cert_not_after: number;
  renewed_at: number | null;
  revoked_at: number | null;
  revoked_reason: string | null;
  /** JSON `DevicePosture` (src/api/devices.ts). */
  posture: string | null;
  posture_at: number | null;
}

export interface DeviceTokenTable {
  token_hash: string;
  owner: string;
  device_id: string | null;
  created_by: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  used_by: string | null;
}

export interface DeviceReportTable {
  seq: Generated<number>;
  device_id: string;
  source: string;
  collected_at: number;
  received_at: number;
  posture: string;
  report: string;
}

export interface SignalTable {
  seq: Generated<number>;
  kind: string;
  subject: string;
  /** JSON `Signal` (src/api/signals.ts). */
  signal: string;
  received_at: number;
}

export interface MfaChallengeTable {
  id: string;
  session_id: string;
  kind: string;
  challenge: string;
  expires_at: number;
}

export interface Database {
  nevertrust_kv: KvTable;
  registration_entries: RegistrationEntryTable;
  join_tokens: JoinTokenTable;
  agents: AgentTable;
  policy_snapshots: PolicySnapshotTable;
  audit_event: AuditEventTable;
  audit_term: AuditTermTable;
  audit_block: AuditBlockTable;
  audit_block_column: AuditBlockColumnTable;
  audit_block_edges: AuditBlockEdgesTable;
  audit_node: AuditNodeTable;
  audit_checkpoint: AuditCheckpointTable;
  audit_head: AuditHeadTable;
  audit_segment: AuditSegmentTable;
  users: UserTable;
  idp_model: IdpModelTable;
  access_sessions: AccessSessionTable;
  access_session_changes: AccessSessionChangeTable;
  access_login_states: AccessLoginStateTable;
  access_logout_tokens: AccessLogoutTokenTable;
  mfa_factors: MfaFactorTable;
  mfa_recovery_codes: MfaRecoveryCodeTable;
  mfa_attempts: MfaAttemptTable;
  mfa_enroll_links: MfaEnrollLinkTable;
  mfa_challenges: MfaChallengeTable;
  devices: DeviceTable;
  device_tokens: DeviceTokenTable;
  device_reports: DeviceReportTable;
  signals: SignalTable;
}
