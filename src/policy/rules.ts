/**
 * Matching one rule against one request, shared by the compiled evaluator and `explain`
 * (the naive reference evaluator deliberately has its own copy).
 */
import { evalCondition } from './conditions.js';
import { cidrAny, matchAny } from './match.js';
import type { OperationMatch, Policy, Rule, SourceMatch } from './model.js';
import type { NormalizedRequest } from './request.js';

/** `match`, `nomatch`, or `unknown` naming the condition key whose attribute was missing. */
export type RuleResult =
  | { readonly kind: 'match' }
  | { readonly kind: 'nomatch' }
  | { readonly kind: 'unknown'; readonly key: string };

export const MATCH: RuleResult = Object.freeze({ kind: 'match' });
export const NOMATCH: RuleResult = Object.freeze({ kind: 'nomatch' });

/** Does one `from[].source` match? Within it fields AND, values OR; `not*` excludes. */
export function sourceMatches(s: SourceMatch, r: NormalizedRequest): boolean {
  if (s.principals && !matchAny(s.principals, r.sourcePrincipal)) return false;
  if (s.notPrincipals && matchAny(s.notPrincipals, r.sourcePrincipal)) return false;
  if (s.requestPrincipals && !matchAny(s.requestPrincipals, r.requestPrincipal)) return false;
  if (s.notRequestPrincipals && matchAny(s.notRequestPrincipals, r.requestPrincipal)) return false;
  if (s.namespaces && !matchAny(s.namespaces, r.sourceNamespace)) return false;
  if (s.notNamespaces && matchAny(s.notNamespaces, r.sourceNamespace)) return false;
  if (s.services && !matchAny(s.services, r.sourceService)) return false;
  if (s.notServices && matchAny(s.notServices, r.sourceService)) return false;
  if (s.ipBlocks && !cidrAny(s.ipBlocks, r.sourceIp)) return false;
  if (s.notIpBlocks && cidrAny(s.notIpBlocks, r.sourceIp)) return false;
  if (s.remoteIpBlocks && !cidrAny(s.remoteIpBlocks, r.remoteIp)) return false;
  if (s.notRemoteIpBlocks && cidrAny(s.notRemoteIpBlocks, r.remoteIp)) return false;
  return true;
}

/** Does one `to[].operation` match? */
export function operationMatches(o: OperationMatch, r: NormalizedRequest): boolean {
  if (o.methods && !matchAny(o.methods, r.method)) return false;
  if (o.notMethods && matchAny(o.notMethods, r.method)) return false;
  if (o.paths && !matchAny(o.paths, r.path)) return false;
  if (o.notPaths && matchAny(o.notPaths, r.path)) return false;
  if (o.hosts && !matchAny(o.hosts, r.host)) return false;
  if (o.notHosts && matchAny(o.notHosts, r.host)) return false;
  if (o.ports && (r.port === undefined || !o.ports.includes(r.port))) return false;
  if (o.notPorts && r.port !== undefined && o.notPorts.includes(r.port)) return false;
  return true;
}

/**
 * Matches a rule: at least one `from`, at least one `to`, every `when`.
 *
 * @example
 * matchRule(rule, req, Date.now()).kind // 'match' | 'nomatch' | 'unknown'
 */
export function matchRule(rule: Rule, r: NormalizedRequest, now: number): RuleResult {
  if (rule.from) {
    let ok = false;
    for (const s of rule.from) if (sourceMatches(s, r)) ok = true;
    if (!ok) return NOMATCH;
  }
  if (rule.to) {
    let ok = false;
    for (const o of rule.to) if (operationMatches(o, r)) ok = true;
    if (!ok) return NOMATCH;
  }
  let unknown: string | undefined;
  for (const c of rule.when) {
    const v = evalCondition(c, r, now);
    if (v === false) return NOMATCH;
    if (v === undefined && unknown === undefined) unknown = c.key;
  }
  return unknown === undefined ? MATCH : { kind: 'unknown', key: unknown };
}

/**
 * Whether an `unknown` result counts as a match: native DENY and STEP_UP rules fail closed
 * (a rule that cannot be evaluated denies); Istio documents keep Envoy's behaviour (no match).
 */
export function unknownMatches(p: Policy): boolean {
  return p.origin === 'native' && (p.action === 'DENY' || p.action === 'STEP_UP');
}

/** Does the policy's target select this request's workload? */
export function targetApplies(p: Policy, r: NormalizedRequest): boolean {
  const t = p.target;
  if (t.namespace !== undefined && t.namespace !== r.targetNamespace) return false;
  if (t.labels) {
    for (const k in t.labels) if (r.targetLabels[k] !== t.labels[k]) return false;
  }
  if (t.spiffeIds && !matchAny(t.spiffeIds, r.targetSpiffeId)) return false;
  if (t.services && !matchAny(t.services, r.targetService)) return false;
  return true;
}
