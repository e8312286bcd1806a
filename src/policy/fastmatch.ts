/**
 * Rules precompiled for the decision hot path. The policy model keeps only the fields a document
 * wrote, so `from`/`to` entries come in many object shapes and matcher strings are slices of the
 * YAML text; matching them directly makes every property load polymorphic and every string
 * compare a cache miss into the source text. Here each rule is copied once, at compile time,
 * into fixed-shape objects (every field present, `null` when absent) holding flat strings, so the
 * matching code below sees one hidden class per type. Semantics are exactly those of
 * `rules.ts` (`matchRule`), which `explain` keeps using; the property test holds both to the
 * naive evaluator.
 */
import { evalCondition, readsClock } from './conditions.js';
import { cidrAny } from './match.js';
import type { Cidr, Condition, OperationMatch, Rule, SourceMatch, StringMatcher } from './model.js';
import { methodBit, NO_METHOD_BIT } from './path.js';
import type { NormalizedRequest } from './request.js';
import { MATCH, NOMATCH, type RuleResult } from './rules.js';

const EXACT = 0;
const PREFIX = 1;
const SUFFIX = 2;
const PRESENCE = 3;
// Every bit: a rule without `methods` accepts any request, with or without a method.
const ANY_METHOD = -1;

/**
 * A copy of `s` that owns its characters: YAML scalars are slices of the whole document text,
 * which keeps that text alive and scatters compares across it.
 */
export function flatString(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

class Pattern {
  readonly kind: number;
  readonly value: string;
  constructor(m: StringMatcher) {
    this.kind = m.kind === 'exact' ? EXACT : m.kind === 'prefix' ? PREFIX : m.kind === 'suffix' ? SUFFIX : PRESENCE;
    this.value = m.kind === 'presence' ? '' : flatString(m.value);
  }
}

function patterns(ms: readonly StringMatcher[] | undefined): Pattern[] | null {
  return ms === undefined ? null : ms.map((m) => new Pattern(m));
}

/** `matchString` of match.ts on a compiled pattern's kind (EXACT, PREFIX, SUFFIX, PRESENCE) and value. */
export function holds(kind: number, value: string, v: string): boolean {
  switch (kind) {
    case EXACT:
      return v === value;
    case PREFIX:
      return v.startsWith(value);
    case SUFFIX:
      return v.endsWith(value);
    default:
      return v !== '';
  }
}

/** `matchAny` of match.ts over compiled patterns: a missing value never matches. */
function anyOf(ps: Pattern[], v: string | undefined): boolean {
  if (v === undefined) return false;
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i] as Pattern;
    if (holds(p.kind, p.value, v)) return true;
  }
  return false;
}

class Source {
  readonly principals: Pattern[] | null;
  readonly notPrincipals: Pattern[] | null;
  readonly requestPrincipals: Pattern[] | null;
  readonly notRequestPrincipals: Pattern[] | null;
  readonly namespaces: Pattern[] | null;
  readonly notNamespaces: Pattern[] | null;
  readonly services: Pattern[] | null;
  readonly notServices: Pattern[] | null;
  readonly ipBlocks: readonly Cidr[] | null;
  readonly notIpBlocks: readonly Cidr[] | null;
  readonly remoteIpBlocks: readonly Cidr[] | null;
  readonly notRemoteIpBlocks: readonly Cidr[] | null;
  constructor(s: SourceMatch) {
    this.principals = patterns(s.principals);
    this.notPrincipals = patterns(s.notPrincipals);
    this.requestPrincipals = patterns(s.requestPrincipals);
    this.notRequestPrincipals = patterns(s.notRequestPrincipals);
    this.namespaces = patterns(s.namespaces);
    this.notNamespaces = patterns(s.notNamespaces);
    this.services = patterns(s.services);
    this.notServices = patterns(s.notServices);
    this.ipBlocks = s.ipBlocks ?? null;
    this.notIpBlocks = s.notIpBlocks ?? null;
    this.remoteIpBlocks = s.remoteIpBlocks ?? null;
    this.notRemoteIpBlocks = s.notRemoteIpBlocks ?? null;
  }
}

function sourceMatches(s: Source, r: NormalizedRequest): boolean {
  if (s.principals !== null && !anyOf(s.principals, r.sourcePrincipal)) return false;
  if (s.notPrincipals !== null && anyOf(s.notPrincipals, r.sourcePrincipal)) return false;
  if (s.requestPrincipals !== null && !anyOf(s.requestPrincipals, r.requestPrincipal)) return false;
  if (s.notRequestPrincipals !== null && anyOf(s.notRequestPrincipals, r.requestPrincipal)) return false;
  if (s.namespaces !== null && !anyOf(s.namespaces, r.sourceNamespace)) return false;
  if (s.notNamespaces !== null && anyOf(s.notNamespaces, r.sourceNamespace)) return false;
  if (s.services !== null && !anyOf(s.services, r.sourceService)) return false;
  if (s.notServices !== null && anyOf(s.notServices, r.sourceService)) return false;
  if (s.ipBlocks !== null && !cidrAny(s.ipBlocks, r.sourceIp)) return false;
  if (s.notIpBlocks !== null && cidrAny(s.notIpBlocks, r.sourceIp)) return false;
  if (s.remoteIpBlocks !== null && !cidrAny(s.remoteIpBlocks, r.remoteIp)) return false;
  if (s.notRemoteIpBlocks !== null && cidrAny(s.notRemoteIpBlocks, r.remoteIp)) return false;
  return true;
}

class Operation {
  readonly methods: Pattern[] | null;
  readonly notMethods: Pattern[] | null;
  readonly paths: Pattern[] | null;
  readonly notPaths: Pattern[] | null;
  readonly hosts: Pattern[] | null;
  readonly notHosts: Pattern[] | null;
  readonly ports: readonly number[] | null;
  readonly notPorts: readonly number[] | null;
  constructor(o: OperationMatch) {
    this.methods = patterns(o.methods);
    this.notMethods = patterns(o.notMethods);
    this.paths = patterns(o.paths);
    this.notPaths = patterns(o.notPaths);
    this.hosts = patterns(o.hosts);
    this.notHosts = patterns(o.notHosts);
    this.ports = o.ports ?? null;
    this.notPorts = o.notPorts ?? null;
  }
}

function operationMatches(o: Operation, r: NormalizedRequest): boolean {
  if (o.methods !== null && !anyOf(o.methods, r.method)) return false;
  if (o.notMethods !== null && anyOf(o.notMethods, r.method)) return false;
  if (o.paths !== null && !anyOf(o.paths, r.path)) return false;
  if (o.notPaths !== null && anyOf(o.notPaths, r.path)) return false;
  if (o.hosts !== null && !anyOf(o.hosts, r.host)) return false;
  if (o.notHosts !== null && anyOf(o.notHosts, r.host)) return false;
  if (o.ports !== null && (r.port === undefined || !o.ports.includes(r.port))) return false;
  if (o.notPorts !== null && r.port !== undefined && o.notPorts.includes(r.port)) return false;
  return true;
}

/** One rule, compiled. */
export class FastRule {
  readonly from: Source[] | null;
  readonly to: Operation[] | null;
  readonly when: readonly Condition[];
  /**
   * The rule has one `from` entry and it names only `principals`. The compiled index reaches
   * such a rule only through the principal index, i.e. after one of those principals matched the
   * request, so `from` holds already and {@link matchFast} skips it.
   */
  readonly fromImplied: boolean;
  /** A `request.time` or `auth.mfa_age` condition may read the clock: only then does a decision read it. */
  readonly clock: boolean;
  /**
   * The rule is only a method and path test (see {@link matchSimple}): no `when`, no `from` left
   * to check, and at most one `to` entry naming nothing but exact methods and paths. Such a rule
   * matches without visiting `to`, its operation and its pattern lists, each a separate object.
   */
  readonly simple: boolean;
  /** Simple rules: the methods as a mask of {@link methodBit}s (every bit when `methods` is absent). */
  readonly methods: number;
  /** Simple rules: the first path pattern's kind, or -1 when the rule has no `paths`. */
  readonly pathKind: number;
  /** Simple rules: the first path pattern's value. */
  readonly path: string;
  /** Simple rules: the other path patterns, `null` when there are none. */
  readonly morePaths: Pattern[] | null;
  constructor(rule: Rule) {
    this.from = rule.from === undefined ? null : rule.from.map((s) => new Source(s));
    const only = rule.from?.length === 1 ? (rule.from[0] as SourceMatch) : undefined;
    this.fromImplied =
      only?.principals !== undefined && Object.entries(only).every(([k, v]) => k === 'principals' || v === undefined);
    this.to = rule.to === undefined ? null : rule.to.map((o) => new Operation(o));
    this.when = rule.when;
    this.clock = rule.when.some(readsClock);
    const op = rule.to?.length === 1 ? (rule.to[0] as OperationMatch) : undefined;
    const opSimple =
      rule.to === undefined ||
      (op !== undefined &&
        Object.entries(op).every(([k, v]) => k === 'methods' || k === 'paths' || v === undefined) &&
        (op.methods ?? []).every((m) => m.kind === 'exact' && methodBit(m.value) < NO_METHOD_BIT) &&
        op.paths?.length !== 0);
    this.simple = rule.when.length === 0 && (rule.from === undefined || this.fromImplied) && opSimple;
    let mask = 0;
    if (op?.methods === undefined) mask = ANY_METHOD;
    else for (const m of op.methods) if (m.kind === 'exact') mask |= methodBit(m.value);
    this.methods = mask;
    const paths = op?.paths === undefined ? [] : (patterns(op.paths) ?? []);
    this.pathKind = paths.length === 0 ? -1 : (paths[0] as Pattern).kind;
    this.path = paths.length === 0 ? '' : (paths[0] as Pattern).value;
    this.morePaths = paths.length > 1 ? paths.slice(1) : null;
  }
}

/**
 * {@link matchFast} for a {@link FastRule.simple} rule, given the request method's
 * {@link methodBit}: match exactly when the method is among the rule's and the path among its
 * paths (a rule without `paths` accepts any path, a missing path matches no `paths`).
 */
export function matchSimple(fr: FastRule, method: number, path: string | undefined): boolean {
  if ((fr.methods & method) === 0) return false;
  const kind = fr.pathKind;
  if (kind < 0) return true;
  if (path === undefined) return false;
  if (holds(kind, fr.path, path)) return true;
  const more = fr.morePaths;
  return more !== null && anyOf(more, path);
}

/**
 * `matchRule` of rules.ts on a compiled rule: at least one `from`, at least one `to`, every
 * `when`. Only for candidates found through the compiled index (see {@link FastRule.fromImplied}).
 */
export function matchFast(fr: FastRule, r: NormalizedRequest, now: number): RuleResult {
  const from = fr.from;
  if (from !== null && !fr.fromImplied) {
    let ok = false;
    for (let i = 0; i < from.length && !ok; i++) ok = sourceMatches(from[i] as Source, r);
    if (!ok) return NOMATCH;
  }
  const to = fr.to;
  if (to !== null) {
    let ok = false;
    for (let i = 0; i < to.length && !ok; i++) ok = operationMatches(to[i] as Operation, r);
    if (!ok) return NOMATCH;
  }
  const when = fr.when;
  if (when.length === 0) return MATCH;
  let unknown: string | undefined;
  for (let i = 0; i < when.length; i++) {
    const c = when[i] as Condition;
    const v = evalCondition(c, r, now);
    if (v === false) return NOMATCH;
    if (v === undefined && unknown === undefined) unknown = c.key;
  }
  return unknown === undefined ? MATCH : { kind: 'unknown', key: unknown };
}
