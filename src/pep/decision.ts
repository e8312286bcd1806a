/**
 * The one decision step every enforcement point shares: decide against the snapshot in force,
 * give the decision an id, and record it. Fails closed: no snapshot, or any error, denies with a
 * reason. Recording never blocks: the recorder is an event emitter the audit log listens to.
 */
import { coarseNow } from '../audit/coarse-clock.js';
import { clipText as clip } from '../audit/clip.js';
import { newEventId, REASON_MAX, SOURCE_LIMITS, TARGET_LIMITS } from '../audit/event.js';
import { type Decision, decide } from '../policy/evaluate.js';
import type { AccessRequest } from '../policy/request.js';
import type { PolicySnapshot } from '../policy/snapshot.js';

/** The decision as enforcement points answer it (the native `/v1/decide` body). */
export interface EnforcedDecision {
  decision: Decision['decision'];
  /** True only for `allow`: a step-up is not an allow at a service PEP. */
  allow: boolean;
  policy: string | null;
  rule: string | null;
  reason: string;
  decision_id: string;
  /** Snapshot version that decided; `null` when no snapshot was in force. */
  version: string | null;
}

/**
 * An access decision as recorded: an audit event (`AuditEventInput` of kind `access.decision`), so
 * an `AuditRecorder` (`createSvidShipper`, `createHttpShipper`) takes it as it is, and the server's
 * `ctx.events` takes it too. The decision id, policy, rule and enforcement point are fields of their
 * own: `nevertrust audit query --decision-id` finds the record of an answer by the id the caller
 * was given. Strings are clipped to the audit schema's limits, so an oversized request is still
 * recorded (and still denied).
 */
export interface AccessDecisionEvent {
  kind: 'access.decision';
  outcome: 'allow' | 'deny' | 'step_up' | 'error';
  decision_id: string;
  policy?: string;
  rule?: string;
  /** The enforcement point (`DecisionContext.pep`), which a deployment may name more precisely. */
  enforcer: string;
  source: { spiffe_id?: string; user?: string; service?: string; ip?: string };
  target: { spiffe_id?: string; service?: string; path?: string; method?: string };
  reason: string;
  /** The snapshot version that decided, the kind of enforcement point, and what it adds (flat values). */
  details?: Record<string, unknown>;
}

/** Where decisions are recorded (an `AuditRecorder` and the server's `ServerEvents` satisfy it). */
export interface DecisionRecorder {
  record(e: AccessDecisionEvent): void;
}

/** The snapshot in force; `undefined` means no policy, which denies everything. */
export type SnapshotProvider = () => PolicySnapshot | undefined;

/** Context recorded with a decision (never secrets). */
export interface DecisionContext {
  /** Which enforcement point decided, e.g. `decide-api`, `nginx`, `envoy-grpc`, `middleware`, `sidecar`. */
  pep: string;
  /** The caller's network address. */
  ip?: string;
  /** Extra facts for the audit record (ignored XFCC, identity kind…). */
  details?: Record<string, unknown>;
}

/**
 * A fresh decision id, answered to the caller and recorded, to join the two: a UUIDv7 like event
 * ids (74 random bits; time-ordered, so the audit log's decision index grows at its right edge
 * instead of splitting random pages, as random v4 ids made it do).
 */
export function newDecisionId(): string {
  return newEventId(coarseNow());
}

/**
 * Decides `request` against the snapshot in force and records the decision. Never throws.
 *
 * @example
 * ```ts
 * const d = enforce(() => watcher.current, {
 *   source: { spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway' },
 *   target: { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service' },
 *   request: { method: 'POST', path: '/v1/charges' },
 * }, events, { pep: 'middleware', ip: '10.0.0.7' });
 * if (!d.allow) res.writeHead(403);
 * ```
 */
export function enforce(
  snapshot: SnapshotProvider,
  request: AccessRequest,
  recorder: DecisionRecorder | undefined,
  ctx: DecisionContext,
): EnforcedDecision {
  const id = newDecisionId();
  let out: EnforcedDecision;
  let outcome: AccessDecisionEvent['outcome'];
  try {
    const snap = snapshot();
    if (!snap) {
      out = deny(id, 'no policy snapshot in force: every request is denied');
      outcome = 'deny';
    } else {
      const d = decide(snap, request);
      out = {
        decision: d.decision,
        allow: d.decision === 'allow',
        policy: d.policy,
        rule: d.rule,
        reason: d.reason,
        decision_id: id,
        version: d.version,
      };
      outcome = d.decision;
    }
  } catch (e) {
    // decide() never throws by contract; a snapshot provider might. Fail closed either way.
    out = deny(id, `decision failed: ${(e as Error).message}`);
    outcome = 'error';
  }
  recordDecision(recorder, out, request, ctx, outcome);
  return out;
}

/**
 * A deny that never reached the policy engine (no identity, a bad certificate, malformed input),
 * recorded like any other decision.
 *
 * @example
 * ```ts
 * const d = refuse('x509_invalid: expired', request, events, { pep: 'sidecar', ip });
 * ```
 */
export function refuse(
  reason: string,
  request: AccessRequest,
  recorder: DecisionRecorder | undefined,
  ctx: DecisionContext,
): EnforcedDecision {
  const out = deny(newDecisionId(), reason);
  recordDecision(recorder, out, request, ctx, 'deny');
  return out;
}

function deny(id: string, reason: string): EnforcedDecision {
  return { decision: 'deny', allow: false, policy: null, rule: null, reason, decision_id: id, version: null };
}

function recordDecision(
  recorder: DecisionRecorder | undefined,
  d: EnforcedDecision,
  r: AccessRequest,
  ctx: DecisionContext,
  outcome: AccessDecisionEvent['outcome'],
): void {
  if (!recorder) return;
  const src = r.source;
  const tgt = r.target;
  try {
    recorder.record({
      kind: 'access.decision',
      outcome,
      decision_id: d.decision_id,
      policy: d.policy ?? undefined,
      rule: d.rule ?? undefined,
      enforcer: ctx.pep,
      source: {
        spiffe_id: clip(src?.spiffe_id, SOURCE_LIMITS.spiffe_id),
        user: clip(src?.user, SOURCE_LIMITS.user),
        service: clip(src?.service, SOURCE_LIMITS.service),
        ip: clip(ctx.ip ?? src?.ip, SOURCE_LIMITS.ip),
      },
      target: {
        spiffe_id: clip(tgt?.spiffe_id, TARGET_LIMITS.spiffe_id),
        service: clip(tgt?.service, TARGET_LIMITS.service),
        path: clip(r.request?.path, TARGET_LIMITS.path),
        method: clip(r.request?.method, TARGET_LIMITS.method),
      },
      reason: clip(d.reason, REASON_MAX) as string,
      details: { pep: ctx.pep, version: d.version, ...ctx.details },
    });
  } catch {
    // A failing listener must not turn a decision into an error; the audit side reports its own faults.
  }
}
