/**
 * The shapes the console reads from the admin API. Existing contracts come from src/api/ (types
 * only: nothing of the server is bundled), the audit log's among them (src/api/audit.ts). The
 * stored event, the policy snapshot's fields it shows, and the console's new endpoints (docs:
 * console-design, "New admin endpoints") are described here as the server sends them, until
 * src/api/ holds their contracts (console.ts, sessions.ts, graph.ts, policy-tools.ts) and these
 * become `import type` from there.
 */
import type { AgentWire } from '../../api/agents.js';
import type { Checkpoint, InclusionProofResult, VerifyReport } from '../../api/audit.js';
import type { DevicePosture, DeviceWire } from '../../api/devices.js';
import type { EntryWire } from '../../api/entries.js';
import type { GraphEdge, GraphResponse } from '../../api/graph.js';
import type { DryRunAnswer, EvaluateAnswer, LintFindingWire } from '../../api/policy-tools.js';
import type { SessionWire, SvidExpiryWire, WhoamiWire } from '../../api/sessions.js';
import type { MfaFactorWire, UserWire } from '../../api/users.js';

export type {
  AgentWire,
  Checkpoint,
  DevicePosture,
  DeviceWire,
  EntryWire,
  InclusionProofResult,
  MfaFactorWire,
  UserWire,
  VerifyReport,
  EvaluateAnswer,
  SessionWire,
};
export type { GraphEdge };
export type GraphWire = GraphResponse;
export type Whoami = WhoamiWire;
export type SvidExpiry = SvidExpiryWire;
export type LintFinding = LintFindingWire;
export type DryRunWire = DryRunAnswer;

/** An audit event as stored (src/audit/event.ts `StoredAuditEvent`); times in epoch ms. */
export interface AuditEvent {
  schema_version: number;
  id: string;
  seq: number;
  time: number;
  kind: string;
  decision_id?: string;
  request_id?: string;
  trace_id?: string;
  source?: Record<string, string | undefined>;
  target?: Record<string, string | number | undefined>;
  outcome?: 'allow' | 'deny' | 'step_up' | 'error';
  reason?: string;
  policy?: string;
  rule?: string;
  enforcer?: string;
  latency_us?: number;
  details?: Record<string, unknown>;
  redacted?: string[];
}

/** `GET /v1/admin/audit/events`. */
export interface AuditPage {
  events: AuditEvent[];
  next_cursor?: number;
  scan_limited?: boolean;
}

/** `GET /v1/admin/audit/events/<id>`. */
export interface EventWithProof {
  event: AuditEvent;
  inclusion: InclusionProofResult | null;
  public_key?: string;
  note?: string;
}

/** `GET /v1/admin/audit/checkpoints`. */
export interface CheckpointList {
  checkpoints: Checkpoint[];
  key_id: string;
  public_key: string;
}

/** `GET /v1/admin/ca` (the CA's `toJSON()`). */
export interface CaState {
  trustDomain: string;
  sequence: number;
  authorities: {
    id: string;
    status: string;
    notBefore: string;
    notAfter: string;
    x509Fingerprint?: string;
    jwtKid?: string;
  }[];
}

/** `GET /v1/admin/policy`. */
export interface PolicyStatus {
  source: string;
  version: string;
  rules: number;
  loaded_at: string;
  last_error: string | null;
  warnings: unknown[];
}

/** One compiled policy of `GET /v1/admin/policy/snapshot` (the fields the console shows). */
export interface SnapshotPolicy {
  id: string;
  origin: string;
  action: string;
  dryRun: boolean;
  loc?: { file: string; line: number };
  rules: { id: string }[];
}
