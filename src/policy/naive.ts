/**
 * A deliberately simple reference evaluator: scans every policy and every rule, with its own
 * copy of the matching rules written as plainly as possible. The property tests check that the
 * compiled index decides exactly as this does. Not for production use (cost grows with rules).
 */
import { evalCondition } from './conditions.js';
import { cidrContains } from './match.js';
import type { Cidr, OperationMatch, Policy, Rule, SourceMatch, StringMatcher } from './model.js';
import type { NormalizedRequest } from './request.js';

export interface NaiveDecision {
  decision: 'allow' | 'deny' | 'step_up';
  policy: string | null;
  rule: string | null;
}

function str(m: StringMatcher, v: string | undefined): boolean {
  if (v === undefined) return false;
  if (m.kind === 'presence') return v.length > 0;
  if (m.kind === 'exact') return v === m.value;
  if (m.kind === 'prefix') return v.slice(0, m.value.length) === m.value;
  return v.length >= m.value.length && v.slice(v.length - m.value.length) === m.value;
}

function some(ms: readonly StringMatcher[] | undefined, v: string | undefined): boolean {
  return (ms ?? []).some((m) => str(m, v));
}

function ipIn(cs: readonly Cidr[] | undefined, ip: NormalizedRequest['sourceIp']): boolean {
  return ip !== undefined && (cs ?? []).some((c) => cidrContains(c, ip));
}

function source(s: SourceMatch, r: NormalizedRequest): boolean {
  const pos = (ms: readonly StringMatcher[] | undefined, v: string | undefined) => ms === undefined || some(ms, v);
  const neg = (ms: readonly StringMatcher[] | undefined, v: string | undefined) => ms === undefined || !some(ms, v);
  return (
    pos(s.principals, r.sourcePrincipal) &&
    neg(s.notPrincipals, r.sourcePrincipal) &&
    pos(s.requestPrincipals, r.requestPrincipal) &&
    neg(s.notRequestPrincipals, r.requestPrincipal) &&
    pos(s.namespaces, r.sourceNamespace) &&
    neg(s.notNamespaces, r.sourceNamespace) &&
    pos(s.services, r.sourceService) &&
    neg(s.notServices, r.sourceService) &&
    (s.ipBlocks === undefined || ipIn(s.ipBlocks, r.sourceIp)) &&
    (s.notIpBlocks === undefined || !ipIn(s.notIpBlocks, r.sourceIp)) &&
    (s.remoteIpBlocks === undefined || ipIn(s.remoteIpBlocks, r.remoteIp)) &&
    (s.notRemoteIpBlocks === undefined || !ipIn(s.notRemoteIpBlocks, r.remoteIp))
  );
}

function operation(o: OperationMatch, r: NormalizedRequest): boolean {
  const pos = (ms: readonly StringMatcher[] | undefined, v: string | undefined) => ms === undefined || some(ms, v);
  const neg = (ms: readonly StringMatcher[] | undefined, v: string | undefined) => ms === undefined || !some(ms, v);
  return (
    pos(o.methods, r.method) &&
    neg(o.notMethods, r.method) &&
    pos(o.paths, r.path) &&
    neg(o.notPaths, r.path) &&
    pos(o.hosts, r.host) &&
    neg(o.notHosts, r.host) &&
    (o.ports === undefined || (r.port !== undefined && o.ports.includes(r.port))) &&
    (o.notPorts === undefined || r.port === undefined || !o.notPorts.includes(r.port))
  );
}

/** 'yes' | 'no' | 'unknown' */
function rule(p: Policy, ru: Rule, r: NormalizedRequest, now: number): 'yes' | 'no' | 'unknown' {
  if (ru.from !== undefined && !ru.from.some((s) => source(s, r))) return 'no';
  if (ru.to !== undefined && !ru.to.some((o) => operation(o, r))) return 'no';
  const vs = ru.when.map((c) => evalCondition(c, r, now));
  if (vs.includes(false)) return 'no';
  if (vs.includes(undefined))
    return p.origin === 'native' && (p.action === 'DENY' || p.action === 'STEP_UP') ? 'unknown' : 'no';
  return 'yes';
}

function applies(p: Policy, r: NormalizedRequest): boolean {
  const t = p.target;
  if (t.namespace !== undefined && t.namespace !== r.targetNamespace) return false;
  for (const [k, v] of Object.entries(t.labels ?? {})) if (r.targetLabels[k] !== v) return false;
  if (t.spiffeIds !== undefined && !some(t.spiffeIds, r.targetSpiffeId)) return false;
  if (t.services !== undefined && !some(t.services, r.targetService)) return false;
  return true;
}

/**
 * Decides by scanning everything, in the documented order: CUSTOM, DENY, then ALLOW (with
 * Istio's "no ALLOW policy" rule and the zero-trust default for unselected workloads), then STEP_UP.
 *
 * @example
 * naiveDecide(policies, normalized, { istioDefaultAllow: false, now: Date.now() }).decision
 */
export function naiveDecide(
  policies: readonly Policy[],
  r: NormalizedRequest,
  opts: { istioDefaultAllow?: boolean; now?: number } = {},
): NaiveDecision {
  const now = opts.now ?? Date.now();
  const live = policies.filter((p) => !p.dryRun && applies(p, r));
  const firstMatch = (action: Policy['action'], unknownCounts: boolean): NaiveDecision | undefined => {
    for (const p of live) {
      if (p.action !== action) continue;
      for (const ru of p.rules ?? []) {
        const m = rule(p, ru, r, now);
        if (m === 'yes' || (m === 'unknown' && unknownCounts)) {
          return {
            decision: action === 'ALLOW' ? 'allow' : action === 'STEP_UP' ? 'step_up' : 'deny',
            policy: p.id,
            rule: ru.id,
          };
        }
      }
    }
    return undefined;
  };
  const custom = firstMatch('CUSTOM', true);
  if (custom) return custom;
  const deny = firstMatch('DENY', true);
  if (deny) return deny;
  let allowed: NaiveDecision | undefined;
  if (live.some((p) => p.action === 'ALLOW')) {
    allowed = firstMatch('ALLOW', false);
    if (!allowed) return { decision: 'deny', policy: null, rule: null };
  } else if (live.length === 0) {
    if (!opts.istioDefaultAllow) return { decision: 'deny', policy: null, rule: null };
    allowed = { decision: 'allow', policy: null, rule: null };
  } else if (live.some((p) => p.origin === 'native')) {
    return { decision: 'deny', policy: null, rule: null };
  } else {
    allowed = { decision: 'allow', policy: null, rule: null };
  }
  return firstMatch('STEP_UP', true) ?? allowed;
}
