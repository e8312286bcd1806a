/**
 * Explanations: for every policy whose target selects the request's workload, every rule and
 * why it matched or not, next to the decision itself.
 */
import { evalCondition, mfaAge } from './conditions.js';
import { type Decision, type DecideOptions, decideNormalized } from './evaluate.js';
import { formatStringMatcher, type Rule, type StringMatcher } from './model.js';
import {
  type AccessRequest,
  type FlatAccessRequest,
  fromFlat,
  type NormalizedRequest,
  normalizeRequest,
} from './request.js';
import { operationMatches, sourceMatches, targetApplies } from './rules.js';
import type { PolicySnapshot } from './snapshot.js';

export interface RuleExplanation {
  rule: string;
  line: number;
  result: 'match' | 'no_match' | 'unknown';
  /** Why, one line per part: `from: …`, `to: …`, `when[0] …`. */
  why: string[];
}

export interface PolicyExplanation {
  policy: string;
  action: string;
  origin: 'native' | 'istio';
  dryRun: boolean;
  file: string;
  line: number;
  /** `undefined` rules: the policy has no rules and matches nothing. */
  rules: RuleExplanation[];
}

export interface Explanation {
  decision: Decision;
  /** The derived attributes the rules saw. */
  request: Record<string, unknown>;
  candidates: PolicyExplanation[];
  /** Policies whose target does not select this workload. */
  notSelected: number;
}

const list = (ms: readonly StringMatcher[] | undefined) => (ms ?? []).map(formatStringMatcher).join(', ');

function explainRule(rule: Rule, r: NormalizedRequest, now: number): RuleExplanation {
  const why: string[] = [];
  let ok = true;
  let unknown = false;
  if (rule.from) {
    const i = rule.from.findIndex((s) => sourceMatches(s, r));
    if (i < 0) {
      ok = false;
      const pr = rule.from.map((s) => list(s.principals)).filter(Boolean);
      why.push(
        `from: no source matched (principal ${r.sourcePrincipal ?? '(none)'}${pr.length ? `; rule wants ${pr.join(' | ')}` : ''})`,
      );
    } else why.push(`from[${i}] matched`);
  } else why.push('from: any source');
  if (rule.to) {
    const i = rule.to.findIndex((o) => operationMatches(o, r));
    if (i < 0) {
      ok = false;
      const ops = rule.to.map((o) => `${list(o.methods) || '*'} ${list(o.paths) || '*'}`);
      why.push(
        `to: no operation matched (${r.method ?? '(no method)'} ${r.path ?? '(no path)'}; rule wants ${ops.join(' | ')})`,
      );
    } else why.push(`to[${i}] matched`);
  } else why.push('to: any operation');
  rule.when.forEach((c, i) => {
    const v = evalCondition(c, r, now);
    if (v === false) ok = false;
    if (v === undefined) unknown = true;
    // An age is worked out from two attributes: say which one it came to, or why there is none.
    let detail = '';
    if (c.kind === 'number' && c.attr === 'auth.mfa_age') {
      const age = mfaAge(r, now);
      detail =
        age !== undefined
          ? ` (age ${Math.floor(age)} s)`
          : r.mfaTime === undefined
            ? ' (no mfa_time)'
            : ' (mfa_time lies in the future)';
    }
    // A device attribute the enforcement point left out says why (no certificate, stale posture).
    if (v === undefined && c.key.startsWith('device.') && r.device?.unknown_reason)
      detail = ` (${r.device.unknown_reason})`;
    const state = v === undefined ? (detail ? 'unknown' : 'attribute missing') : v ? 'holds' : 'does not hold';
    why.push(`when[${i}] ${c.key}: ${state}${detail}`);
  });
  return { rule: rule.id, line: rule.loc.line, result: !ok ? 'no_match' : unknown ? 'unknown' : 'match', why };
}

/**
 * Decides and explains. Slower than {@link decide} (it scans every policy); for CLI and debugging.
 *
 * @example
 * const e = explain(snapshot, { source_service: 'api-gateway', target_service: 'payment-service', method: 'GET', path: '/' });
 * e.candidates[0]?.rules[0]?.why // ['from[0] matched', 'to: no operation matched (GET /; rule wants POST /v1/charges)']
 */
export function explain(
  snap: PolicySnapshot,
  input: AccessRequest | FlatAccessRequest,
  opts: DecideOptions = {},
): Explanation {
  const now = opts.now ?? Date.now();
  const n = normalizeRequest(fromFlat(input), snap.options.path);
  if (!n.ok) {
    return {
      decision: {
        decision: 'deny',
        policy: null,
        rule: null,
        reason: `invalid request: ${n.reason}`,
        version: snap.version,
      },
      request: {},
      candidates: [],
      notSelected: snap.policies.length,
    };
  }
  const r = n.req;
  const candidates: PolicyExplanation[] = [];
  let notSelected = 0;
  for (const p of snap.policies) {
    if (!targetApplies(p, r)) {
      notSelected++;
      continue;
    }
    candidates.push({
      policy: p.id,
      action: p.action,
      origin: p.origin,
      dryRun: p.dryRun,
      file: p.loc.file,
      line: p.loc.line,
      rules: (p.rules ?? []).map((ru) => explainRule(ru, r, now)),
    });
  }
  // Addresses are held as bigints; show them as the request wrote them.
  const raw = fromFlat(input);
  const ips: Record<string, string | undefined> = {
    sourceIp: raw.source?.ip,
    remoteIp: raw.source?.remote_ip ?? raw.source?.ip,
    destinationIp: raw.target?.ip,
  };
  const request: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (v !== undefined) request[k] = k in ips ? ips[k] : v;
  return { decision: decideNormalized(snap, r, opts), request, candidates, notSelected };
}
