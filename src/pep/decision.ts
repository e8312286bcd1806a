/**
 * The one decision step every enforcement point shares: decide against the snapshot in force,
 * give the decision an id, and record it. Fails closed: no snapshot, or any error, denies with a
 * reason. Recording never blocks: the recorder is an event emitter the audit log listens to.
 */
import { coarseNow } from '../audit/coarse-clock.js';
import {
  type AccessDecisionEvent,
  type DecisionAnswer,
  type DecisionOutcome,
  type DecisionRequest,
  type DecisionSite,
  type DryRunNote,
  decisionEvent,
  withDryRunNotes,
} from '../audit/decision-event.js';
import { newEventId } from '../audit/event.js';
import { type Decision, type DryRunRecord, decide } from '../policy/evaluate.js';
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
 * recorded (and still denied). Built by `decisionEvent()` (src/audit/decision-event.ts).
 */
export type { AccessDecisionEvent } from '../audit/decision-event.js';

/**
 * Where decisions are recorded (an `AuditRecorder` and the server's `ServerEvents` satisfy it).
 * A recorder with `recordDecision` (an `AuditRecorder`) is given the decision's parts instead of a
 * built event, and records the same event without keeping a per-decision object alive.
 */
export interface DecisionRecorder {
  record(e: AccessDecisionEvent): void;
  recordDecision?(d: DecisionAnswer, r: DecisionRequest, site: DecisionSite, outcome: DecisionOutcome): void;
}

/** The snapshot in force; `undefined` means no policy, which denies everything. */
export type SnapshotProvider = () => PolicySnapshot | undefined;

/** Context recorded with a decision (never secrets). */
/** Where a decision is made; one shape with the audit side's {@link DecisionSite}. */
export type DecisionContext = DecisionSite;

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
  let site = ctx;
  try {
    const snap = snapshot();
    if (!snap) {
      out = deny(id, 'no policy snapshot in force: every request is denied');
      outcome = 'deny';
    } else {
      const d = decide(snap, request);
      // What dry-run policies would have decided goes into the record (rare: only when one selects
      // the workload), so `GET /v1/admin/policy/dry-run` can count it.
      if (d.dryRun) site = withDryRun(ctx, d.dryRun);
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
  recordDecision(recorder, out, request, site, outcome);
  return out;
}

/** `ctx` with the dry-run records of a decision in its details. */
function withDryRun(ctx: DecisionContext, dry: readonly DryRunRecord[]): DecisionContext {
  return { ...ctx, details: withDryRunNotes(ctx.details, dryRunNotes(dry)) };
}

/**
 * A decision's dry-run records as decision events and the admin API write them.
 *
 * @example
 * dryRunNotes(decide(snap, request).dryRun ?? []); // [{ policy: 'new-deny', rule: 'r1', decision: 'deny', changed: true }]
 */
export function dryRunNotes(dry: readonly DryRunRecord[]): DryRunNote[] {
  return dry.map((r) => ({ policy: r.policy, rule: r.rule, decision: r.wouldDecide, changed: r.wouldChange }));
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
  try {
    if (recorder.recordDecision) recorder.recordDecision(d, r, ctx, outcome);
    else recorder.record(decisionEvent(d, r, ctx, outcome));
  } catch {
    // A failing listener must not turn a decision into an error; the audit side reports its own faults.
  }
}
