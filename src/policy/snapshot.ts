/**
 * The compiled snapshot's shape: compiled policies and rules, the target index, and the per-call
 * scratch state its decisions use. Built by compile.ts, read by plan.ts and evaluate.ts; kept apart
 * from both so that the compiled layer has no import cycle (compile → plan → these types).
 */
import type { FastRule } from './fastmatch.js';
import type { Policy, Rule } from './model.js';
import type { PathOptions } from './path.js';
import { PatternIndex } from './pattern-index.js';
import { blankRequest, type IdInfo, type NormalizedRequest } from './request.js';
import type { RuleResult } from './rules.js';

/** A policy in a snapshot, with its position (evaluation order) and a scratch stamp for dedup. */
export interface CompiledPolicy {
  readonly policy: Policy;
  readonly order: number;
  readonly rules: CompiledRule[];
  /** @internal lookup scratch: the generation in which this policy was last visited. */
  stamp: number;
  /** @internal lookup scratch: whether the target applied in that generation. */
  applies: boolean;
  /**
   * @internal False when being found through its bucket already proves that the target applies:
   * the target has no labels and at most one of spiffeIds/services/namespace, which is the
   * bucket's key (its pattern matched the request, or the namespace is equal, or it is global).
   */
  readonly targetCheck: boolean;
}

export interface CompiledRule {
  readonly policy: CompiledPolicy;
  readonly rule: Rule;
  /** Global evaluation order (policy order, then rule order). */
  readonly seq: number;
  /** @internal `<ACTION> policy "<id>" rule "<id>"`, built once so reasons cost one concatenation. */
  readonly label: string;
  /** @internal The reason of an allow by this rule, built once: the common decision allocates no string. */
  readonly allowReason: string;
  /** @internal `policy.policy.id` and `rule.id`, held here so a decision reads one object, not three. */
  readonly policyId: string;
  readonly ruleId: string;
  /** @internal the rule precompiled for matching (see fastmatch.ts). */
  readonly fast: FastRule;
  /** @internal lookup scratch. */
  stamp: number;
}

/** Rules of one target bucket, indexed by the source principal. */
export class RuleIndex {
  readonly byPrincipal = new PatternIndex<CompiledRule>();
  /** Rules that can match without a principal (no `from`, or a `from` without `principals`). */
  readonly always: CompiledRule[] = [];

  add(cr: CompiledRule): void {
    const from = cr.rule.from;
    if (!from || from.some((s) => !s.principals)) {
      this.always.push(cr);
      return;
    }
    for (const s of from) for (const m of s.principals ?? []) this.byPrincipal.add(m, cr);
  }
}

/** Policies sharing one target key, with their rules indexed. */
export interface Bucket {
  readonly policies: CompiledPolicy[];
  readonly rules: RuleIndex;
}

export interface CompileOptions {
  /** Istio's default for a workload that no policy selects: allow. Off by default (zero trust). */
  istioDefaultAllow?: boolean;
  /** Path normalization applied to every request. */
  path?: PathOptions;
}

/** An immutable compiled policy set. `version` is the SHA-256 of its content. */
export interface PolicySnapshot {
  readonly version: string;
  readonly policies: readonly Policy[];
  readonly options: Readonly<CompileOptions>;
  readonly compiled: readonly CompiledPolicy[];
  /** @internal */
  readonly index: TargetIndex;
  /**
   * @internal Every SPIFFE ID the policies name exactly (targets and principals), with its
   * derivations and its plan (plan.ts): the decision's one lookup per ID.
   */
  readonly ids: ReadonlyMap<string, IdInfo>;
  readonly ruleCount: number;
  /** @internal The working lists of this snapshot's decisions (see {@link DecisionScratch}). */
  readonly scratch: DecisionScratch;
}

/** @internal */
export interface TargetIndex {
  bySpiffe: PatternIndex<Bucket>;
  byService: PatternIndex<Bucket>;
  byNamespace: Map<string, Bucket>;
  global: Bucket;
}

/** The result of candidate lookup, in evaluation order. */
export interface Candidates {
  applicable: CompiledPolicy[];
  rules: CompiledRule[];
}

const NO_POLICIES: CompiledPolicy[] = [];
const NO_RULES: CompiledRule[] = [];

/**
 * The working state of a decision against one snapshot, owned by that snapshot. A decision is
 * synchronous and never re-enters the engine, so one set of lists serves every call without
 * allocating; each is emptied after use so that it never pins a request's or another call's data.
 * Only the request can be needed twice at once (reading the input may run the caller's getters,
 * which may decide again): `busy` sends such a nested call to a fresh one.
 * @internal
 */
export class DecisionScratch {
  /**
   * The stamp of the candidate lookup in progress: a policy or rule of this snapshot whose
   * `stamp` equals it was already visited by that lookup.
   */
  generation = 0;
  /** Target buckets the lookup visits. */
  readonly buckets: Bucket[] = [];
  /** Rules one bucket offers the source principal. */
  readonly found: CompiledRule[] = [];
  /** The general lookup's result lists. */
  readonly candidates: Candidates = { applicable: [], rules: [] };
  /** The candidates of a planned request: lists of the plan itself, never modified; reset after use. */
  readonly planned: Candidates = { applicable: NO_POLICIES, rules: NO_RULES };
  /** A plan's candidate rules merged from several of its lists (see planRules). */
  readonly merged: CompiledRule[] = [];
  /** Each candidate rule's result, by position. */
  readonly results: RuleResult[] = [];
  /** The request a decision derives into (see `busy`). */
  readonly request: NormalizedRequest = blankRequest();
  busy = false;

  /** Resets {@link planned} to lists that are never modified, dropping the plan's. */
  releasePlanned(): void {
    this.planned.applicable = NO_POLICIES;
    this.planned.rules = NO_RULES;
  }
}
