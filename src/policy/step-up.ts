/**
 * What a `step_up` decision asks for: which second factors can satisfy it and how fresh one must
 * be, read from the STEP_UP rules themselves, so that a challenge offers only factors that help and
 * API clients get RFC 9470's `acr_values`/`max_age`. Advisory only: the enforcement point decides
 * again after the step-up, so a requirement that is too loose costs another round, never access.
 */
import { evalCondition } from './conditions.js';
import type { DecideOptions, Decision } from './evaluate.js';
import { matchAny } from './match.js';
import { type Condition, formatStringMatcher, parseStringMatcher, type Rule } from './model.js';
import {
  type AccessRequest,
  type FlatAccessRequest,
  fromFlat,
  type NormalizedRequest,
  normalizeRequest,
} from './request.js';
import { operationMatches, sourceMatches } from './rules.js';
import type { PolicySnapshot } from './snapshot.js';

export interface StepUpRequirement {
  /**
   * A second factor with one of these RFC 8176 methods satisfies it (`hwk`, `swk`, `otp`…; Istio
   * string forms as the policy wrote them, see {@link acceptsMethod}). Absent: any second factor.
   */
  methods?: string[];
  /** The second factor may be at most this many seconds old (RFC 9470 `max_age`). Absent: any age. */
  maxAge?: number;
}

/** Condition keys that a step-up satisfies; every other condition is part of where a rule applies. */
const MFA_KEYS = new Set(['auth.mfa', 'auth.mfa_age', 'auth.methods']);
/** Whether a step-up can change what `c` reads (an MFA condition). */
export const isMfa = (c: Condition): boolean => MFA_KEYS.has(c.key);

interface RuleNeed {
  methods?: string[];
  maxAge?: number;
}

/** What satisfies one rule's MFA conditions. */
function ruleNeed(rule: Rule): RuleNeed {
  const need: RuleNeed = {};
  for (const c of rule.when) {
    if (c.kind === 'string' && c.attr.type === 'field' && c.attr.name === 'auth.methods' && c.notValues) {
      // "steps up unless one of these was used": any of them satisfies it; several such ANDed
      // conditions all stop matching once any of their methods is used.
      const ms = c.notValues.map(formatStringMatcher);
      need.methods = [...new Set([...(need.methods ?? []), ...ms])];
    } else if (c.kind === 'number' && c.attr === 'auth.mfa_age' && (c.op === 'gt' || c.op === 'gte')) {
      // `gt N` steps up when older than N s: N s old is fine. `gte N`: it must be younger than N,
      // in whole seconds N - 1.
      const max = c.op === 'gt' ? Math.floor(c.value) : Math.ceil(c.value) - 1;
      const bounded = Math.max(0, max);
      need.maxAge = need.maxAge === undefined ? bounded : Math.min(need.maxAge, bounded);
    }
  }
  return need;
}

/**
 * Whether a rule other than the fired one also applies to this request once MFA is left aside:
 * its `from`, `to` and non-MFA conditions (unknown counts: STEP_UP rules fail closed). Without
 * the request, only a rule with the fired rule's very `from`, `to` and non-MFA conditions counts.
 */
function alsoApplies(rule: Rule, fired: Rule, r: NormalizedRequest | undefined, now: number): boolean {
  if (r === undefined) {
    const rest = (x: Rule) => JSON.stringify([x.from, x.to, x.when.filter((c) => !isMfa(c))]);
    return rest(rule) === rest(fired);
  }
  if (rule.from && !rule.from.some((s) => sourceMatches(s, r))) return false;
  if (rule.to && !rule.to.some((o) => operationMatches(o, r))) return false;
  return rule.when.every((c) => isMfa(c) || evalCondition(c, r, now) !== false);
}

/** Methods acceptable to both: the first list's entries the second accepts (exact entries), or equal. */
function intersect(a: readonly string[], b: readonly string[]): string[] {
  const bm = b.map(parseStringMatcher);
  return a.filter((m) => b.includes(m) || (parseStringMatcher(m).kind === 'exact' && matchAny(bm, m)));
}

/**
 * The requirement of a `step_up` decision: the fired rule's `auth.methods` `notValues` (acceptable
 * methods) and `auth.mfa_age` `gt`/`gte` (`maxAge`), merged with those of the policy's other
 * STEP_UP rules that apply to the same request apart from MFA (rules fire one at a time: without
 * this, satisfying "WebAuthn" would be followed by a second step-up for "within 15 minutes").
 * Merging takes the smallest `maxAge` and the methods every rule accepts (when no one method
 * satisfies them all, the fired rule's methods: the next step-up asks for the rest).
 * Give the `request` that was decided for that merge; without it, only rules with the fired rule's
 * very `from`/`to`/other conditions are merged. `{}` for any other decision, or a policy or rule
 * that is not in `snap`.
 *
 * @example
 * const d = decide(snap, req);
 * if (d.decision === 'step_up') stepUpRequirement(snap, d, req); // { methods: ['hwk', 'swk'], maxAge: 900 }
 */
export function stepUpRequirement(
  snap: PolicySnapshot,
  decision: Pick<Decision, 'decision' | 'policy' | 'rule'>,
  request?: AccessRequest | FlatAccessRequest,
  opts: DecideOptions = {},
): StepUpRequirement {
  if (decision.decision !== 'step_up' || decision.policy === null || decision.rule === null) return {};
  // A scan, not an index: only step_up decisions ask, and a module cache would be state outside the snapshot.
  const policy = snap.policies.find((p) => p.id === decision.policy);
  if (policy?.action !== 'STEP_UP') return {};
  const rules = policy.rules ?? [];
  const fired = rules.find((r) => r.id === decision.rule);
  if (!fired) return {};
  let r: NormalizedRequest | undefined;
  if (request !== undefined) {
    const n = normalizeRequest(fromFlat(request), snap.options.path);
    if (n.ok) r = n.req;
  }
  const now = opts.now ?? Date.now();
  const own = ruleNeed(fired);
  let methods = own.methods;
  let maxAge = own.maxAge;
  for (const rule of rules) {
    if (rule === fired || !rule.when.some(isMfa) || !alsoApplies(rule, fired, r, now)) continue;
    const need = ruleNeed(rule);
    if (need.maxAge !== undefined) maxAge = maxAge === undefined ? need.maxAge : Math.min(maxAge, need.maxAge);
    if (need.methods !== undefined) {
      if (methods === undefined) methods = need.methods;
      else {
        const both = intersect(methods, need.methods);
        if (both.length > 0) methods = both;
      }
    }
  }
  const out: StepUpRequirement = {};
  if (methods !== undefined) out.methods = methods;
  if (maxAge !== undefined) out.maxAge = maxAge;
  return out;
}

/**
 * Whether a second factor with RFC 8176 method `method` can satisfy `req`'s methods.
 *
 * @example
 * acceptsMethod({ methods: ['hwk', 'swk'] }, 'otp') // false
 */
export function acceptsMethod(req: StepUpRequirement, method: string): boolean {
  return req.methods === undefined || matchAny(req.methods.map(parseStringMatcher), method);
}
