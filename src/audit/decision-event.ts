/**
 * An access decision as an audit event, in one place: what enforcement points record for every
 * decision (`enforce()`/`refuse()` in src/pep/decision.ts). The shapes here are structural, so the
 * audit module needs nothing from the policy engine or the enforcement points.
 *
 * Two ways to record one, storing the same event: `decisionEvent()` builds the event object for any
 * `record()`; `AuditRecorder.recordDecision()` copies the same fields into the queue's columns and
 * builds the event only when the writer drains the queue, so that the decision path retains no
 * per-decision object (retained ones get promoted, and V8 then pretenures their allocation site:
 * every decision pays for old-space allocation and major GCs).
 */
import type { DryRunNote } from '../api/policy-tools.js';
import { clipText as clip } from './clip.js';
import { REASON_MAX, SHORT_TEXT_MAX, SOURCE_LIMITS, TARGET_LIMITS } from './event.js';

export type DecisionOutcome = 'allow' | 'deny' | 'step_up' | 'error';

/** The answer given: its id, the policy and rule that decided (null when none), why, and the snapshot version. */
export interface DecisionAnswer {
  decision_id: string;
  policy: string | null;
  rule: string | null;
  reason: string;
  version: string | null;
}

/** The request decided: the parts of an `AccessRequest` the record names. */
export interface DecisionRequest {
  source?: { spiffe_id?: string; user?: string; service?: string; ip?: string };
  target?: { spiffe_id?: string; service?: string };
  request?: { path?: string; method?: string };
}

/** Where a decision was made: what enforcement points pass to `enforce()` (pep's `DecisionContext`). */
export interface DecisionSite {
  /** Which enforcement point decided, e.g. `decide-api`, `nginx`, `envoy-grpc`, `middleware`, `sidecar`. */
  pep: string;
  /** The caller's network address. */
  ip?: string;
  /** Extra facts for the audit record (ignored XFCC, identity kind…); not to be changed after the call. */
  details?: Record<string, unknown>;
}

/** An access decision as recorded (an audit event input of kind `access.decision`). */
export interface AccessDecisionEvent {
  kind: 'access.decision';
  outcome: DecisionOutcome;
  decision_id: string;
  policy?: string;
  rule?: string;
  /** The enforcement point (`DecisionSite.pep`), which a deployment may name more precisely. */
  enforcer: string;
  source: { spiffe_id?: string; user?: string; service?: string; ip?: string };
  target: { spiffe_id?: string; service?: string; path?: string; method?: string };
  reason: string;
  /** The snapshot version that decided, the kind of enforcement point, and what it adds (flat values). */
  details?: Record<string, unknown>;
}

/**
 * The event for a decision from its flat fields (the columns `recordDecision()` queues). Strings are
 * clipped to the audit schema's limits, so an oversized request is still recorded.
 */
export function decisionEventOf(
  outcome: DecisionOutcome,
  decisionId: string,
  policy: string | null,
  rule: string | null,
  reason: string,
  version: string | null,
  pep: string,
  details: Record<string, unknown> | undefined,
  srcSpiffeId: string | undefined,
  srcUser: string | undefined,
  srcService: string | undefined,
  ip: string | undefined,
  tgtSpiffeId: string | undefined,
  tgtService: string | undefined,
  path: string | undefined,
  method: string | undefined,
  make: () => Record<string, unknown> = plain,
): AccessDecisionEvent {
  // Objects filled field by field from `make`: the queue's writer passes `bare` (see there).
  const source = make();
  source.spiffe_id = clip(srcSpiffeId, SOURCE_LIMITS.spiffe_id);
  source.user = clip(srcUser, SOURCE_LIMITS.user);
  source.service = clip(srcService, SOURCE_LIMITS.service);
  source.ip = clip(ip, SOURCE_LIMITS.ip);
  const target = make();
  target.spiffe_id = clip(tgtSpiffeId, TARGET_LIMITS.spiffe_id);
  target.service = clip(tgtService, TARGET_LIMITS.service);
  target.path = clip(path, TARGET_LIMITS.path);
  target.method = clip(method, TARGET_LIMITS.method);
  const all = make();
  all.pep = pep;
  all.version = version;
  if (details !== undefined) copyOwn(all, details);
  const e = make();
  e.kind = 'access.decision';
  e.outcome = outcome;
  e.decision_id = decisionId;
  e.policy = policy ?? undefined;
  e.rule = rule ?? undefined;
  e.enforcer = pep;
  e.source = source;
  e.target = target;
  e.reason = clip(reason, REASON_MAX);
  e.details = all;
  return e as unknown as AccessDecisionEvent;
}

const plain = (): Record<string, unknown> => ({});

/**
 * Null-prototype objects, for the queue's writer: it builds a whole batch of events at once, and a
 * scavenge during the drain would make V8 pretenure an object literal's allocation site (objects
 * from `Object.create` have none), after which every event is allocated in old space.
 */
export const bare = (): Record<string, unknown> => Object.create(null) as Record<string, unknown>;

/** What `{ ...from }` copies (own enumerable string keys, `__proto__` as a plain key), into `to`. */
function copyOwn(to: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const k of Object.keys(from)) {
    if (k === '__proto__')
      Object.defineProperty(to, k, { value: from[k], enumerable: true, writable: true, configurable: true });
    else to[k] = from[k];
  }
}

/**
 * The event for decision `d` of request `r` at `site`.
 *
 * @example
 * recorder.record(decisionEvent(d, request, { pep: 'middleware', ip }, 'deny'));
 */
export function decisionEvent(
  d: DecisionAnswer,
  r: DecisionRequest,
  site: DecisionSite,
  outcome: DecisionOutcome,
): AccessDecisionEvent {
  const src = r.source;
  const tgt = r.target;
  return decisionEventOf(
    outcome,
    d.decision_id,
    d.policy,
    d.rule,
    d.reason,
    d.version,
    site.pep,
    site.details,
    src?.spiffe_id,
    src?.user,
    src?.service,
    site.ip ?? src?.ip,
    tgt?.spiffe_id,
    tgt?.service,
    r.request?.path,
    r.request?.method,
  );
}

/**
 * What one dry-run policy would have decided, as a decision event keeps it: `details.dry_run` is a
 * list of these (`GET /v1/admin/policy/dry-run` adds them up). Recorded only when a dry-run policy
 * selected the request's workload.
 */
export type { DryRunNote };

/** The key of the dry-run notes in a decision event's `details`. */
export const DRY_RUN_DETAIL = 'dry_run';

// Notes kept per event: a decision event must stay within the log's size limit (16 KiB) whatever
// the policy set; the ones past it are counted in `dry_run_omitted`.
const MAX_DRY_RUN_NOTES = 8;

/**
 * `details` with the dry-run notes of a decision added (a new object: the site's details are not
 * changed). Policy and rule names are clipped to the schema's limit.
 *
 * @example
 * site.details = withDryRunNotes(site.details, [{ policy: 'new-deny', rule: 'r1', decision: 'deny', changed: true }]);
 */
export function withDryRunNotes(
  details: Record<string, unknown> | undefined,
  notes: readonly DryRunNote[],
): Record<string, unknown> {
  const kept = notes.slice(0, MAX_DRY_RUN_NOTES).map((n) => ({
    policy: clip(n.policy, SHORT_TEXT_MAX) as string,
    rule: n.rule === null ? null : (clip(n.rule, SHORT_TEXT_MAX) as string),
    decision: n.decision,
    changed: n.changed,
  }));
  const out: Record<string, unknown> = { ...details, [DRY_RUN_DETAIL]: kept };
  if (notes.length > kept.length) out.dry_run_omitted = notes.length - kept.length;
  return out;
}
