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
};

/** `GET /v1/admin/whoami`. */
export interface Whoami {
  id: string;
  kind: 'token' | 'person';
  user?: string;
  groups?: string[];
  mfa_at?: string;
  mfa_fresh: boolean;
}

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

/** One live access-proxy session (`GET /v1/admin/sessions`). */
export interface SessionWire {
  id: string;
  user: string;
  person: string;
  issuer: string;
  host: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  mfa: { at: string; methods: string[] } | null;
  device: {
    id: string;
    owner: string;
    compliant: boolean | null;
    posture_age_s: number | null;
    managed: boolean;
    encrypted: boolean;
    os_patched: boolean;
    edr_active: boolean;
  } | null;
}

/** `GET /v1/admin/svids?within=`. */
export interface SvidExpiry {
  spiffe_id: string;
  serial: string;
  expires_at: string;
  kind: 'workload' | 'agent' | 'device';
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

/** `GET /v1/admin/graph`. */
export interface GraphWire {
  from: string;
  to: string;
  events: number;
  computed_ms: number;
  policy_version: string | null;
  nodes: { id: string; label: string; kind: 'workload' | 'person' | 'other' }[];
  edges: GraphEdge[];
}

export interface GraphEdge {
  source: string;
  target: string;
  allowed: number;
  denied: number;
  other: number;
  first_seen: string | null;
  last_seen: string | null;
  new: boolean;
  policy: 'allowed' | 'not_allowed' | 'unknown';
  unused: boolean;
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

/** `GET /v1/admin/policy/lint` (src/policy/lint.ts `LintFinding`). */
export interface LintFinding {
  severity: 'error' | 'warning';
  code: string;
  file: string;
  line: number;
  column: number;
  policy: string;
  rule?: string;
  message: string;
}

/** `POST /v1/admin/policy/evaluate`: the decision and src/policy/explain.ts's explanation. */
export interface EvaluateAnswer {
  decision: {
    allow?: boolean;
    outcome?: string;
    decision?: string;
    policy: string | null;
    rule: string | null;
    reason: string;
  };
  explanation: {
    request?: Record<string, unknown>;
    notSelected?: number;
    candidates: {
      policy: string;
      action: string;
      dryRun: boolean;
      file: string;
      line: number;
      rules: { rule: string; line: number; result: string; why: string[] }[];
    }[];
  };
}

/** `GET /v1/admin/policy/dry-run?window=`. */
export interface DryRunWire {
  from: string;
  to: string;
  policies: {
    policy: string;
    since?: string;
    decisions: number;
    would_deny_allowed: number;
    would_allow_denied: number;
    agree: number;
    examples: { event_id: string; time: string; source: string; target: string; enforced: string; dry_run: string }[];
  }[];
}
