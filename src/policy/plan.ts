/**
 * Per-target decision plans, worked out at compile time. For a request whose target is a SPIFFE
 * ID the policies name, and whose target attributes all derive from that ID, the candidates are
 * fixed: the policies whose target selects the ID (in order) and, among their rules, those a
 * given source principal can reach. The snapshot's ID table maps each such ID to its
 * derivations and its plan, so a decision gets both from the one lookup that derives the ID,
 * instead of walking target buckets, stamping, deduplicating and sorting per request.
 *
 * Requests outside that (an ID no policy names, explicit target service, namespace or labels)
 * take the general candidate lookup of evaluate.ts, which decides the same.
 */
import { SpiffeIdError } from '../spiffe/id.js';
import { flatString, holds } from './fastmatch.js';
import { PatternIndex } from './pattern-index.js';
import { deriveIdInfo, deriveRequest, type IdInfo, type NormalizedRequest } from './request.js';
import { targetApplies } from './rules.js';
import type { Bucket, CompiledPolicy, CompiledRule, TargetIndex } from './snapshot.js';

const NO_PRINCIPALS: ReadonlyMap<string, CompiledRule[]> = new Map();

/** The candidates of every request whose target is one ID (see the module comment). */
export class TargetPlan {
  /** The snapshot's index this plan belongs to: a request derived for another snapshot is not trusted. */
  readonly owner: TargetIndex;
  /** Policies whose target selects the ID, in evaluation order. */
  readonly policies: CompiledPolicy[];
  /**
   * Rules of those policies that name the principal exactly, by principal, in evaluation order.
   * Empty when {@link rows} hold them (nothing reads both).
   */
  readonly byPrincipal: ReadonlyMap<string, CompiledRule[]>;
  /** Rules of those policies that any source may reach (no `from`, or a `from` without principals). */
  readonly always: CompiledRule[];
  /** Rules reached through a prefix, suffix or presence principal; `null` when there are none. */
  readonly patterns: PatternIndex<CompiledRule> | null;
  /**
   * Every policy is an enforced ALLOW, so the decision is the first rule that matches, or the
   * default deny: nothing else (DENY, STEP_UP, AUDIT, CUSTOM, dry-run) can take part.
   */
  readonly allowOnly: boolean;
  /**
   * For an allow-only plan whose rules are all reached through exact principals (the common
   * case): every principal's rules as consecutive rows of one flat array, `[count, (methods,
   * pathKind, path, rule) × count]` (cells at the `ROW_*` offsets below), and where each
   * principal's rows begin. A decision then
   * reads the method mask and path pattern of its candidates from adjacent cells, built here in
   * one go, instead of from a rule, its matcher and its pattern objects scattered over the heap.
   * `pathKind` is a pattern kind of fastmatch.ts, {@link ROW_ANY_PATH}, or {@link ROW_GENERAL}
   * for a rule the row cannot express. `null` for other plans.
   */
  readonly rows: PlanCell[] | null;
  readonly rowStart: ReadonlyMap<string, number> | null;

  /** `intern` gives one string object per principal, shared with the ID table (see buildIdTable). */
  constructor(owner: TargetIndex, policies: CompiledPolicy[], intern: (s: string) => string) {
    this.owner = owner;
    this.policies = policies;
    const byPrincipal = new Map<string, CompiledRule[]>();
    const always: CompiledRule[] = [];
    let patterns: PatternIndex<CompiledRule> | null = null;
    // Policies come in order and their rules in order, so every list is built sorted by `seq`.
    for (const cp of policies) {
      for (const cr of cp.rules) {
        const from = cr.rule.from;
        if (!from || from.some((s) => !s.principals)) {
          always.push(cr);
          continue;
        }
        for (const s of from) {
          for (const m of s.principals ?? []) {
            if (m.kind === 'exact') {
              const key = intern(m.value);
              const list = byPrincipal.get(key);
              if (list === undefined) byPrincipal.set(key, [cr]);
              else if (list[list.length - 1] !== cr) list.push(cr);
            } else {
              patterns ??= new PatternIndex();
              patterns.add(m, cr);
            }
          }
        }
      }
    }
    patterns?.seal();
    this.always = always;
    this.patterns = patterns;
    this.allowOnly = policies.length > 0 && policies.every((cp) => cp.policy.action === 'ALLOW' && !cp.policy.dryRun);
    if (this.allowOnly && patterns === null && always.length === 0) {
      const rows: PlanCell[] = [];
      const rowStart = new Map<string, number>();
      for (const [principal, list] of byPrincipal) {
        rowStart.set(principal, rows.length);
        rows.push(list.length);
        for (const cr of list) {
          const fr = cr.fast;
          const one = fr.simple && fr.morePaths === null;
          const at = rows.length;
          rows[at + ROW_METHODS] = fr.methods;
          rows[at + ROW_KIND] = one ? fr.pathKind : ROW_GENERAL;
          rows[at + ROW_PATH] = one ? flatString(fr.path) : '';
          rows[at + ROW_RULE] = cr;
        }
      }
      this.rows = rows;
      this.rowStart = rowStart;
      this.byPrincipal = NO_PRINCIPALS;
    } else {
      this.rows = null;
      this.rowStart = null;
      this.byPrincipal = byPrincipal;
    }
  }
}

/** A cell of {@link TargetPlan.rows}. */
export type PlanCell = number | string | CompiledRule;
/*
 * The layout of {@link TargetPlan.rows}: at a principal's start, its number of rows; then each row
 * as ROW_CELLS cells, at these offsets from the row's first cell.
 */
/** Row cell: the rule's method mask (methodBit bits). */
export const ROW_METHODS = 0;
/** Row cell: the path pattern kind (fastmatch.ts), {@link ROW_ANY_PATH} or {@link ROW_GENERAL}. */
export const ROW_KIND = 1;
/** Row cell: the path pattern (flat string), `''` when the kind has none. */
export const ROW_PATH = 2;
/** Row cell: the CompiledRule itself. */
export const ROW_RULE = 3;
/** Cells per row. */
export const ROW_CELLS = 4;
/** Row path kind: the rule has no `paths` (any path). */
export const ROW_ANY_PATH = -1;
/** Row path kind: match the row's rule with fastmatch.ts. */
export const ROW_GENERAL = -2;

/**
 * Whether a row's method mask and path pattern accept the request (its method as a methodBit
 * and its path); only for rows whose kind is not {@link ROW_GENERAL}. As `matchSimple`.
 */
export function rowAccepts(
  methods: number,
  kind: number,
  pattern: string,
  method: number,
  path: string | undefined,
): boolean {
  if ((methods & method) === 0) return false;
  if (kind === ROW_ANY_PATH) return true;
  return path !== undefined && holds(kind, pattern, path);
}

const NONE: CompiledRule[] = [];

/**
 * The plan's candidate rules for a source principal, in evaluation order, each once. Usually one
 * of the plan's own lists (do not modify it); otherwise `out` (the snapshot's scratch list,
 * emptied first), valid until the next call.
 */
export function planRules(plan: TargetPlan, principal: string | undefined, out: CompiledRule[]): CompiledRule[] {
  const exact = principal === undefined ? NONE : (plan.byPrincipal.get(principal) ?? NONE);
  const always = plan.always;
  const patterns = plan.patterns;
  if (patterns === null) {
    if (always.length === 0) return exact;
    if (exact.length === 0) return always;
  }
  while (out.length > 0) out.pop();
  for (let i = 0; i < exact.length; i++) out.push(exact[i] as CompiledRule);
  for (let i = 0; i < always.length; i++) out.push(always[i] as CompiledRule);
  patterns?.collect(principal, out);
  // Insertion sort by evaluation order, dropping repeats (a rule may name several principals
  // that match): the lists are short and their parts already sorted.
  let n = 0;
  for (let i = 0; i < out.length; i++) {
    const x = out[i] as CompiledRule;
    let j = n - 1;
    while (j >= 0 && (out[j] as CompiledRule).seq > x.seq) j--;
    if (j >= 0 && out[j] === x) continue;
    for (let k = n; k > j + 1; k--) out[k] = out[k - 1] as CompiledRule;
    out[j + 1] = x;
    n++;
  }
  while (out.length > n) out.pop();
  return out;
}

/**
 * The plan for a normalized request, or `null` when the request must take the general lookup:
 * its target was not found in this snapshot's ID table, or an explicit attribute overrides what
 * the ID gives (the plan was worked out from the ID's derivations alone).
 */
export function planFor(index: TargetIndex, r: NormalizedRequest): TargetPlan | null {
  const k = r.targetInfo;
  if (k === undefined) return null;
  const plan = k.plan;
  if (
    plan === null ||
    plan.owner !== index ||
    r.targetLabels !== k.labels ||
    r.targetService !== k.service ||
    r.targetNamespace !== k.namespace ||
    r.targetSpiffeId !== k.id
  )
    return null;
  // Only a TargetPlan (buildIdTable below) is owned by a snapshot's index.
  return plan as TargetPlan;
}

/**
 * Builds a snapshot's ID table: every SPIFFE ID its policies name exactly, as a target or (in
 * Istio form) as a principal, with its derivations and plan. IDs whose candidates are the same
 * share one plan.
 */
export function buildIdTable(index: TargetIndex, compiled: readonly CompiledPolicy[]): Map<string, IdInfo> {
  const names = new Set<string>();
  for (const cp of compiled) {
    for (const m of cp.policy.target.spiffeIds ?? []) if (m.kind === 'exact') names.add(m.value);
    for (const cr of cp.rules)
      for (const s of cr.rule.from ?? [])
        for (const m of s.principals ?? []) if (m.kind === 'exact') names.add(`spiffe://${m.value}`);
  }
  const plans = new Map<string, TargetPlan>();
  const ids = new Map<string, IdInfo>();
  // One flat string object per principal, used both as the ID table's principal and as the
  // plans' key: a request's principal then equals its key by identity, and the lookup never
  // compares characters.
  const strings = new Map<string, string>();
  const intern = (s: string): string => {
    let v = strings.get(s);
    if (v === undefined) {
      v = flatString(s);
      strings.set(s, v);
    }
    return v;
  };
  for (const name of names) {
    const id = flatString(name);
    const info = deriveIdInfo(id);
    if (info instanceof SpiffeIdError) continue;
    const principal = intern(info.principal);
    const plan = info.labels === undefined ? null : planOf(index, id, plans, intern);
    ids.set(id, {
      id,
      principal,
      namespace: info.namespace,
      service: info.service,
      labels: info.labels,
      plan,
    });
  }
  return ids;
}

/** The plan of a request targeting `id` with nothing but the ID's derivations. */
function planOf(
  index: TargetIndex,
  id: string,
  plans: Map<string, TargetPlan>,
  intern: (s: string) => string,
): TargetPlan | null {
  const r = deriveRequest({ target: { spiffe_id: id } }, undefined, undefined);
  if (typeof r === 'string') return null;
  // The buckets the general lookup would visit for this request (see findCandidates).
  const buckets: Bucket[] = [];
  index.bySpiffe.collect(r.targetSpiffeId, buckets);
  index.byService.collect(r.targetService, buckets);
  if (r.targetNamespace !== undefined) {
    const b = index.byNamespace.get(r.targetNamespace);
    if (b) buckets.push(b);
  }
  buckets.push(index.global);
  const seen = new Set<CompiledPolicy>();
  const policies: CompiledPolicy[] = [];
  for (const b of buckets)
    for (const cp of b.policies) {
      if (seen.has(cp)) continue;
      seen.add(cp);
      if (!cp.targetCheck || targetApplies(cp.policy, r)) policies.push(cp);
    }
  policies.sort((a, b) => a.order - b.order);
  const key = policies.map((cp) => cp.order).join(',');
  let plan = plans.get(key);
  if (plan === undefined) {
    plan = new TargetPlan(index, policies, intern);
    plans.set(key, plan);
  }
  return plan;
}
