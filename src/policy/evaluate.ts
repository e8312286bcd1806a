/**
 * The decision: candidate lookup — the target's precompiled plan (plan.ts) when it has one, else
 * the compiled index — then Istio's order (CUSTOM → DENY → ALLOW) extended with STEP_UP, AUDIT
 * records and dry-run records. Fails closed: a request that cannot be normalized, and any thrown
 * error, deny with a reason.
 */
import { type FastRule, matchFast, matchSimple } from './fastmatch.js';
import type { Action } from './model.js';
import { methodBit } from './path.js';
import {
  type PlanCell,
  planFor,
  planRules,
  ROW_CELLS,
  ROW_GENERAL,
  ROW_KIND,
  ROW_METHODS,
  ROW_PATH,
  ROW_RULE,
  rowAccepts,
  type TargetPlan,
} from './plan.js';
import {
  type AccessRequest,
  deriveRequest,
  type FlatAccessRequest,
  fromFlat,
  type NormalizedRequest,
  resetRequest,
} from './request.js';
import { MATCH, type RuleResult, targetApplies, unknownMatches } from './rules.js';
import type { Bucket, Candidates, CompiledPolicy, CompiledRule, PolicySnapshot } from './snapshot.js';

export type DecisionKind = 'allow' | 'deny' | 'step_up';

/** What a dry-run policy would have done had it been enforced. */
export interface DryRunRecord {
  policy: string;
  action: Action;
  /** The rule of that policy that matched, if any. */
  rule: string | null;
  /** The decision had this policy been enforced. */
  wouldDecide: DecisionKind;
  /** True when that differs from the actual decision. */
  wouldChange: boolean;
}

export interface Decision {
  decision: DecisionKind;
  /** The policy that decided; `null` for default deny and request errors. */
  policy: string | null;
  rule: string | null;
  reason: string;
  /** Snapshot version that decided. */
  version: string;
  /** AUDIT rules that matched (they never change the decision). */
  audit?: { policy: string; rule: string }[];
  dryRun?: DryRunRecord[];
}

export interface DecideOptions {
  /** Epoch ms used when the request has no `request.time` (default `Date.now()`). */
  now?: number;
}

/**
 * Finds the policies whose target selects the request's workload and, among their rules, the
 * ones that could match the source principal. Never scans the whole snapshot.
 */
export function lookupCandidates(snap: PolicySnapshot, r: NormalizedRequest): Candidates {
  const c = findCandidates(snap, r);
  return { applicable: c.applicable.slice(), rules: c.rules.slice() };
}

/** {@link lookupCandidates} into the snapshot's scratch lists (valid until the next call). */
function findCandidates(snap: PolicySnapshot, r: NormalizedRequest): Candidates {
  const scratch = snap.scratch;
  const gen = ++scratch.generation;
  const idx = snap.index;
  const buckets = scratch.buckets;
  idx.bySpiffe.collect(r.targetSpiffeId, buckets);
  idx.byService.collect(r.targetService, buckets);
  if (r.targetNamespace !== undefined) {
    const b = idx.byNamespace.get(r.targetNamespace);
    if (b) buckets.push(b);
  }
  if (idx.global.policies.length > 0) buckets.push(idx.global);
  const c = scratch.candidates;
  const applicable = c.applicable;
  const rules = c.rules;
  clear(applicable);
  clear(rules);
  for (let bi = 0; bi < buckets.length; bi++) {
    const b = buckets[bi] as Bucket;
    const ps = b.policies;
    for (let pi = 0; pi < ps.length; pi++) {
      const cp = ps[pi] as CompiledPolicy;
      if (cp.stamp !== gen) {
        cp.stamp = gen;
        cp.applies = !cp.targetCheck || targetApplies(cp.policy, r);
        if (cp.applies) applicable.push(cp);
      }
    }
    const found = scratch.found;
    clear(found);
    b.rules.byPrincipal.collect(r.sourcePrincipal, found);
    const always = b.rules.always;
    for (let i = 0; i < always.length; i++) found.push(always[i] as CompiledRule);
    for (let i = 0; i < found.length; i++) {
      const cr = found[i] as CompiledRule;
      if (cr.stamp !== gen && cr.policy.applies) {
        cr.stamp = gen;
        rules.push(cr);
      }
    }
  }
  // Drop the references so that the scratch lists never pin a replaced snapshot.
  clear(buckets);
  clear(scratch.found);
  if (applicable.length > 1) applicable.sort(byOrder);
  // Insertion sort: candidate lists are short and mostly sorted already.
  for (let i = 1; i < rules.length; i++) {
    const x = rules[i] as CompiledRule;
    let j = i - 1;
    while (j >= 0 && (rules[j] as CompiledRule).seq > x.seq) {
      rules[j + 1] = rules[j] as CompiledRule;
      j--;
    }
    rules[j + 1] = x;
  }
  return c;
}

/** Empties a short list; `pop` is inlined where assigning `length` is a runtime call. */
function clear<T>(a: T[]): void {
  while (a.length > 0) a.pop();
}

function byOrder(a: CompiledPolicy, b: CompiledPolicy): number {
  return a.order - b.order;
}

const NO_ALLOW_MATCHED = 'no ALLOW rule matched (default deny)';

type Verdict = { decision: DecisionKind; policy: string | null; rule: string | null; reason: string };

function counts(cr: CompiledRule, res: RuleResult): boolean {
  return res.kind === 'match' || (res.kind === 'unknown' && unknownMatches(cr.policy.policy));
}

function why(verb: string, cr: CompiledRule, res: RuleResult, r: NormalizedRequest): string {
  if (res.kind === 'unknown')
    return `${cr.label} could not be evaluated (request lacks ${lacking(res.key, r)}); failing closed: ${verb}`;
  return `${cr.label} matched: ${verb}`;
}

// C0/C1 controls, line and paragraph separators, bidi overrides: a caller's text must not break
// or disguise the reason's line in logs and audit records.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * The missing attribute, and for a `device.*` key why the enforcement point has no posture
 * (`source.device.unknown_reason`: no device certificate, a stale report…), so that a denial names
 * the stale or missing signal. Only built on the fail-closed path.
 */
function lacking(key: string, r: NormalizedRequest): string {
  const why = r.device?.unknown_reason;
  if (why === undefined || why === '' || !key.startsWith('device.')) return key;
  return `${key}: ${why.replace(UNSAFE_TEXT, ' ')}`;
}

function isEnforced(cp: CompiledPolicy, extra: CompiledPolicy | null): boolean {
  return !cp.policy.dryRun || cp === extra;
}

/**
 * Combines rule results into a verdict. `extra` is a dry-run policy to treat as enforced.
 * @internal exported for explain.
 */
export function combine(
  c: Candidates,
  results: readonly RuleResult[],
  r: NormalizedRequest,
  snap: PolicySnapshot,
  extra: CompiledPolicy | null,
): Verdict {
  const rules = c.rules;
  for (let pass = 0; pass < 2; pass++) {
    const action: Action = pass === 0 ? 'CUSTOM' : 'DENY';
    for (let i = 0; i < rules.length; i++) {
      const cr = rules[i] as CompiledRule;
      const p = cr.policy.policy;
      if (p.action !== action || !isEnforced(cr.policy, extra)) continue;
      const res = results[i] as RuleResult;
      if (!counts(cr, res)) continue;
      const reason =
        action === 'CUSTOM'
          ? `${why('deny', cr, res, r)} (CUSTOM provider ${JSON.stringify(p.provider ?? '')} is not available to this engine; failing closed)`
          : why('deny', cr, res, r);
      return { decision: 'deny', policy: p.id, rule: cr.rule.id, reason };
    }
  }
  let hasAllow = false;
  let selected = false;
  let nativeSelects = false;
  for (const cp of c.applicable) {
    if (!isEnforced(cp, extra)) continue;
    selected = true;
    if (cp.policy.action === 'ALLOW') hasAllow = true;
    if (cp.policy.origin === 'native') nativeSelects = true;
  }
  let allowed: Verdict | undefined;
  if (hasAllow) {
    for (let i = 0; i < rules.length; i++) {
      const cr = rules[i] as CompiledRule;
      if (cr.policy.policy.action !== 'ALLOW' || !isEnforced(cr.policy, extra)) continue;
      const res = results[i] as RuleResult;
      if (res.kind === 'match') {
        allowed = {
          decision: 'allow',
          policy: cr.policy.policy.id,
          rule: cr.rule.id,
          reason: why('allow', cr, res, r),
        };
        break;
      }
    }
    if (!allowed) return { decision: 'deny', policy: null, rule: null, reason: NO_ALLOW_MATCHED };
  } else if (!selected) {
    const target = r.targetSpiffeId ?? r.targetService ?? '(no target)';
    if (!snap.options.istioDefaultAllow) {
      return {
        decision: 'deny',
        policy: null,
        rule: null,
        reason: `no policy selects target ${target} (default deny)`,
      };
    }
    allowed = {
      decision: 'allow',
      policy: null,
      rule: null,
      reason: `no policy selects target ${target}; Istio-compatible default allows`,
    };
  } else if (nativeSelects) {
    return {
      decision: 'deny',
      policy: null,
      rule: null,
      reason: 'no ALLOW policy applies to the target (default deny)',
    };
  } else {
    allowed = {
      decision: 'allow',
      policy: null,
      rule: null,
      reason:
        'the workload is selected by Istio policies but none of them is ALLOW, and no DENY matched (Istio semantics)',
    };
  }
  for (let i = 0; i < rules.length; i++) {
    const cr = rules[i] as CompiledRule;
    if (cr.policy.policy.action !== 'STEP_UP' || !isEnforced(cr.policy, extra)) continue;
    const res = results[i] as RuleResult;
    if (counts(cr, res))
      return { decision: 'step_up', policy: cr.policy.policy.id, rule: cr.rule.id, reason: why('step up', cr, res, r) };
  }
  return allowed;
}

// Shared default so that a call without options allocates nothing for them.
const NO_OPTIONS: DecideOptions = Object.freeze({});

/**
 * Every decision object is built here, always with the same properties in the same order
 * (`audit` and `dryRun` are added after, only when present), so that its consumers see one shape.
 */
function decision(
  kind: DecisionKind,
  policy: string | null,
  rule: string | null,
  reason: string,
  version: string,
): Decision {
  return { decision: kind, policy, rule, reason, version };
}

/**
 * The clock for `request.time` and `auth.mfa_age` conditions, read only when a rule that has one is evaluated
 * (most decisions never need it). `NaN` until read.
 */
function clock(fr: FastRule, now: number, opts: DecideOptions): number {
  return fr.clock && Number.isNaN(now) ? (opts.now ?? Date.now()) : now;
}

/**
 * Decides one request against a compiled snapshot. Never throws: any error denies with the
 * error as reason.
 *
 * @example
 * const d = decide(snapshot, {
 *   source: { spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway' },
 *   target: { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service' },
 *   request: { method: 'POST', path: '/v1/charges' },
 * });
 * // { decision: 'allow', policy: 'payment-service-ingress', rule: 'gateway-charges', reason: '…', version: 'sha256:…' }
 */
export function decide(
  snap: PolicySnapshot,
  input: AccessRequest | FlatAccessRequest,
  opts: DecideOptions = NO_OPTIONS,
): Decision {
  // The request is derived into one reused object: it never leaves this call, and a fresh one
  // per decision would be most of what a decision allocates. Reading the input can run the
  // caller's code (getters), which could call decide again: such a nested call gets its own.
  const scratch = snap.scratch;
  const into = scratch.busy ? undefined : scratch.request;
  scratch.busy = true;
  try {
    // IDs are looked up in the snapshot's own table first: that one lookup also finds the plan.
    const r = deriveRequest(fromFlat(input), snap.options.path, snap.ids, into);
    if (typeof r === 'string') return decision('deny', null, null, `invalid request: ${r}`, snap.version);
    return decideNormalized(snap, r, opts);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    return decision('deny', null, null, `evaluation error: ${msg}`, snap.version);
  } finally {
    if (into !== undefined) {
      // Drop the request's references (and through its target entry, the snapshot's).
      resetRequest(into);
      scratch.busy = false;
    }
  }
}

/** {@link decide} for an already normalized request. */
export function decideNormalized(
  snap: PolicySnapshot,
  r: NormalizedRequest,
  opts: DecideOptions = NO_OPTIONS,
): Decision {
  const plan = planFor(snap.index, r);
  const scratch = snap.scratch;
  let c: Candidates;
  if (plan !== null) {
    if (plan.rows !== null) return firstAllowInRows(snap, plan, plan.rows, r, opts);
    const rules = planRules(plan, r.sourcePrincipal, scratch.merged);
    if (plan.allowOnly) return firstAllow(snap, rules, r, opts);
    c = scratch.planned;
    c.applicable = plan.policies;
    c.rules = rules;
  } else c = findCandidates(snap, r);
  const results = scratch.results;
  clear(results);
  let now = Number.NaN;
  for (let i = 0; i < c.rules.length; i++) {
    const fr = (c.rules[i] as CompiledRule).fast;
    now = clock(fr, now, opts);
    results[i] = matchFast(fr, r, now);
  }
  const v = combine(c, results, r, snap, null);
  const d = decision(v.decision, v.policy, v.rule, v.reason, snap.version);
  let audit: Decision['audit'];
  let dry: CompiledPolicy[] | undefined;
  for (let i = 0; i < c.rules.length; i++) {
    const cr = c.rules[i] as CompiledRule;
    const p = cr.policy.policy;
    if (p.action === 'AUDIT' && !p.dryRun && (results[i] as RuleResult).kind === 'match') {
      if (!audit) audit = [];
      audit.push({ policy: p.id, rule: cr.rule.id });
    }
  }
  for (const cp of c.applicable) {
    if (!cp.policy.dryRun) continue;
    if (!dry) dry = [];
    dry.push(cp);
  }
  if (audit) d.audit = audit;
  if (dry) {
    d.dryRun = dry.map((cp) => {
      const w = combine(c, results, r, snap, cp);
      let rule: string | null = null;
      for (let i = 0; i < c.rules.length; i++) {
        const cr = c.rules[i] as CompiledRule;
        if (cr.policy === cp && counts(cr, results[i] as RuleResult)) {
          rule = cr.rule.id;
          break;
        }
      }
      return {
        policy: cp.policy.id,
        action: cp.policy.action,
        rule,
        wouldDecide: w.decision,
        wouldChange: w.decision !== v.decision,
      };
    });
  }
  scratch.releasePlanned();
  return d;
}

/**
 * The decision when every candidate policy is an enforced ALLOW (see `TargetPlan.allowOnly`):
 * what {@link combine} decides then — the first rule in order whose result is a match allows,
 * else the default deny — evaluating rules only until that first match.
 */
function firstAllow(
  snap: PolicySnapshot,
  rules: readonly CompiledRule[],
  r: NormalizedRequest,
  opts: DecideOptions,
): Decision {
  const method = methodBit(r.method);
  let now = Number.NaN;
  for (let i = 0; i < rules.length; i++) {
    const cr = rules[i] as CompiledRule;
    now = clock(cr.fast, now, opts);
    if (ruleMatches(cr.fast, r, method, now)) return allowBy(cr, snap);
  }
  return decision('deny', null, null, NO_ALLOW_MATCHED, snap.version);
}

/** {@link firstAllow} over a plan's {@link TargetPlan.rows}: the same rules in the same order. */
function firstAllowInRows(
  snap: PolicySnapshot,
  plan: TargetPlan,
  rows: readonly PlanCell[],
  r: NormalizedRequest,
  opts: DecideOptions,
): Decision {
  const principal = r.sourcePrincipal;
  const at = principal === undefined ? undefined : plan.rowStart?.get(principal);
  if (at !== undefined) {
    const method = methodBit(r.method);
    const path = r.path;
    let now = Number.NaN;
    const end = at + 1 + ROW_CELLS * (rows[at] as number);
    for (let o = at + 1; o < end; o += ROW_CELLS) {
      const kind = rows[o + ROW_KIND] as number;
      let match: boolean;
      if (kind !== ROW_GENERAL)
        match = rowAccepts(rows[o + ROW_METHODS] as number, kind, rows[o + ROW_PATH] as string, method, path);
      else {
        const fr = (rows[o + ROW_RULE] as CompiledRule).fast;
        now = clock(fr, now, opts);
        match = ruleMatches(fr, r, method, now);
      }
      if (match) return allowBy(rows[o + ROW_RULE] as CompiledRule, snap);
    }
  }
  return decision('deny', null, null, NO_ALLOW_MATCHED, snap.version);
}

/** Whether an ALLOW rule counts as matched (`match`; `unknown` never allows). */
function ruleMatches(fr: FastRule, r: NormalizedRequest, method: number, now: number): boolean {
  return fr.simple ? matchSimple(fr, method, r.path) : matchFast(fr, r, now) === MATCH;
}

function allowBy(cr: CompiledRule, snap: PolicySnapshot): Decision {
  return decision('allow', cr.policyId, cr.ruleId, cr.allowReason, snap.version);
}
