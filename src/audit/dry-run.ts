/**
 * What dry-run policies would have decided over a window, added up from the dry-run notes that
 * decision events carry (`details.dry_run`, written by `enforce()` through `withDryRunNotes`). A
 * bounded scan of the log, newest first: at most `maxExamined` decision events are looked at.
 */
import type { DryRunAnswer, DryRunNote, DryRunPolicy } from '../api/policy-tools.js';
import { toIso } from '../api/fields.js';
import type { Store } from '../store/index.js';
import { DRY_RUN_DETAIL } from './decision-event.js';
import type { StoredAuditEvent } from './event.js';
import { queryAuditLog } from './query.js';

/** A dry-run policy of the snapshot in force. */
export interface DryRunPolicyInForce {
  policy: string;
  /** Its `dryRunSince`. */
  since?: string;
}

/** What {@link summarizeDryRuns} looks at. */
export interface DryRunWindow {
  /** Epoch ms, inclusive. */
  from: number;
  /** Epoch ms, exclusive. */
  to: number;
  /** Decision events examined at most. */
  maxExamined: number;
  /** The dry-run policies in force: listed even when no decision names them. */
  inForce: readonly DryRunPolicyInForce[];
}

/** Changes kept per policy as examples. */
const MAX_EXAMPLES = 5;
/** Matching events read per page of the scan. */
const PAGE = 1000;
const OUTCOMES = new Set(['allow', 'deny', 'step_up']);

/** The notes of a decision event, or undefined when it has none (or they are not notes). */
function notesOf(e: StoredAuditEvent): DryRunNote[] | undefined {
  const v = e.details?.[DRY_RUN_DETAIL];
  if (!Array.isArray(v)) return undefined;
  // Events may come from any enforcement point that reports: only well-formed notes count.
  const notes = v.filter(
    (n): n is DryRunNote =>
      typeof n === 'object' &&
      n !== null &&
      typeof (n as DryRunNote).policy === 'string' &&
      OUTCOMES.has((n as DryRunNote).decision),
  );
  return notes.length > 0 ? notes : undefined;
}

const hasNotes = (e: StoredAuditEvent) => notesOf(e) !== undefined;

/** The caller or callee as an event names it. */
function label(p: { spiffe_id?: string; user?: string; service?: string; ip?: string } | undefined): string | null {
  return p?.spiffe_id ?? p?.user ?? p?.service ?? p?.ip ?? null;
}

function emptySummary(policy: string, inForce: DryRunPolicyInForce | undefined): DryRunPolicy {
  return {
    policy,
    ...(inForce?.since !== undefined ? { since: inForce.since } : {}),
    in_force: inForce !== undefined,
    decisions: 0,
    would_deny_allowed: 0,
    would_allow_denied: 0,
    agree: 0,
    other: 0,
    examples: [],
  };
}

/** Counts one note of event `e` into `s`; a change is kept as an example while there is room. */
function count(s: DryRunPolicy, e: StoredAuditEvent, n: DryRunNote): void {
  s.decisions++;
  const enforced = e.outcome ?? 'deny';
  // An enforced error denied (fail closed): a dry-run deny agrees with it.
  const was = enforced === 'error' ? 'deny' : enforced;
  if (n.decision === was) {
    s.agree++;
    return;
  }
  if (was === 'allow') s.would_deny_allowed++;
  else if (n.decision === 'allow') s.would_allow_denied++;
  else s.other++;
  if (s.examples.length < MAX_EXAMPLES) {
    s.examples.push({
      event_id: e.id,
      time: toIso(e.time),
      source: label(e.source),
      target: label(e.target),
      enforced,
      dry_run: n.decision,
    });
  }
}

/**
 * Adds up the dry-run notes of the decisions in `[from, to)`, newest first, per policy.
 *
 * @example
 * const now = Date.now();
 * const s = await summarizeDryRuns(store, { from: now - 86_400_000, to: now, maxExamined: 100_000, inForce: [{ policy: 'new-deny' }] });
 * s.policies[0]; // { policy: 'new-deny', decisions: 120, would_deny_allowed: 3, … }
 */
export async function summarizeDryRuns(store: Store, w: DryRunWindow): Promise<DryRunAnswer> {
  const known = new Map(w.inForce.map((p) => [p.policy, p]));
  const byPolicy = new Map<string, DryRunPolicy>();
  for (const p of w.inForce) byPolicy.set(p.policy, emptySummary(p.policy, p));
  let examined = 0;
  let limited = false;
  let cursor: number | undefined;
  for (;;) {
    const page = await queryAuditLog(
      store,
      { kind: 'access.decision', since: w.from, until: w.to, limit: PAGE, cursor },
      { match: hasNotes, maxExamined: w.maxExamined - examined },
    );
    examined += page.examined ?? 0;
    for (const e of page.events) {
      for (const n of notesOf(e) ?? []) {
        let s = byPolicy.get(n.policy);
        if (!s) {
          s = emptySummary(n.policy, known.get(n.policy));
          byPolicy.set(n.policy, s);
        }
        count(s, e, n);
      }
    }
    if (page.next_cursor === undefined) break;
    if (page.scan_limited || examined >= w.maxExamined) {
      limited = true;
      break;
    }
    cursor = page.next_cursor;
  }
  return {
    from: toIso(w.from),
    to: toIso(w.to),
    examined,
    scan_limited: limited,
    policies: [...byPolicy.values()],
  };
}
