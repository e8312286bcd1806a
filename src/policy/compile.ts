/**
 * The compiled snapshot: an immutable, content-addressed index over a policy set. Candidate
 * policies are found by target (SPIFFE ID, service, namespace) and candidate rules by source
 * principal through hash maps and length-bucketed prefix/suffix tables, so a decision touches
 * only the rules that could match, however many rules the snapshot holds.
 */
import { createHash } from 'node:crypto';
import { FastRule } from './fastmatch.js';
import type { Policy, Rule, StringMatcher } from './model.js';
import { PatternIndex } from './pattern-index.js';
import { buildIdTable } from './plan.js';
import {
  type Bucket,
  type CompiledPolicy,
  type CompiledRule,
  type CompileOptions,
  DecisionScratch,
  type PolicySnapshot,
  RuleIndex,
  type TargetIndex,
} from './snapshot.js';

function newBucket(): Bucket {
  return { policies: [], rules: new RuleIndex() };
}

function labelOf(policy: Policy, rule: Rule): string {
  return `${policy.action} policy ${JSON.stringify(policy.id)} rule ${JSON.stringify(rule.id)}`;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Canonical JSON (sorted keys, no source locations) so that the version is a content hash. */
function canonical(v: unknown): string {
  if (typeof v === 'bigint') return `"${v.toString()}"`;
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v)
      .filter((k) => k !== 'loc' && (v as Record<string, unknown>)[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * Compiles policies (in evaluation order) into an immutable snapshot.
 * Throws if two policies share an id.
 *
 * @example
 * const snap = compile(loadPolicyText(yamlText, 'payments.yaml'));
 * decide(snap, { source: { spiffe_id: '…' }, target: { spiffe_id: '…' }, request: { method: 'POST', path: '/v1/charges' } });
 */
export function compile(policies: readonly Policy[], options: CompileOptions = {}): PolicySnapshot {
  const steps = compileSteps(policies, options);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Policies compiled between two yields of {@link compileSteps}. */
const STEP = 256;

/**
 * {@link compile} in steps: yields after every few hundred policies, so a caller on the event loop
 * can serve requests between steps while a large set compiles. Returns the same snapshot.
 *
 * @example
 * const steps = compileSteps(policies);
 * for (let r = steps.next(); ; r = steps.next()) { if (r.done) return r.value; await setImmediate(); }
 */
export function* compileSteps(
  policies: readonly Policy[],
  options: CompileOptions = {},
): Generator<void, PolicySnapshot, void> {
  const ids = new Set<string>();
  for (const p of policies) {
    if (ids.has(p.id))
      throw new Error(`${p.loc.file}:${p.loc.line}:${p.loc.column}: duplicate policy name ${JSON.stringify(p.id)}`);
    ids.add(p.id);
  }
  // Frozen and hashed policy by policy in the loop below, so no single step walks the whole set.
  const frozen = Object.freeze(policies.map((p) => p));
  // The version: the SHA-256 of canonical({ policies, options }), fed piece by piece.
  const hash = createHash('sha256').update(`{"options":${canonical(options)},"policies":[`);
  const index: TargetIndex = {
    bySpiffe: new PatternIndex(),
    byService: new PatternIndex(),
    byNamespace: new Map(),
    global: newBucket(),
  };
  // One bucket per distinct target pattern, so policies with the same target share a rule index.
  const spiffeBuckets = new Map<string, Bucket>();
  const serviceBuckets = new Map<string, Bucket>();
  const bucketFor = (store: Map<string, Bucket>, idx: PatternIndex<Bucket>, m: StringMatcher): Bucket => {
    const key = `${m.kind}:${m.kind === 'presence' ? '' : m.value}`;
    let b = store.get(key);
    if (!b) {
      b = newBucket();
      store.set(key, b);
      idx.add(m, b);
    }
    return b;
  };
  let seq = 0;
  let ruleCount = 0;
  const compiled: CompiledPolicy[] = [];
  for (let order = 0; order < frozen.length; order++) {
    if (order > 0 && order % STEP === 0) yield;
    const policy = deepFreeze(frozen[order] as Policy);
    hash.update(order > 0 ? `,${canonical(policy)}` : canonical(policy));
    const t = policy.target;
    const selectors = (t.spiffeIds ? 1 : 0) + (t.services ? 1 : 0) + (t.namespace !== undefined ? 1 : 0);
    const targetCheck = t.labels !== undefined || selectors > 1;
    const cp: CompiledPolicy = { policy, order, rules: [], stamp: 0, applies: false, targetCheck };
    const rules = (policy.rules ?? []).map((rule): CompiledRule => {
      const label = labelOf(policy, rule);
      return {
        policy: cp,
        rule,
        seq: seq++,
        label,
        // Shares `label`'s characters rather than copying them.
        allowReason: `${label} matched: allow`,
        policyId: policy.id,
        ruleId: rule.id,
        fast: new FastRule(rule),
        stamp: 0,
      };
    });
    cp.rules.push(...rules);
    ruleCount += rules.length;
    compiled.push(cp);
    const buckets: Bucket[] = [];
    if (t.spiffeIds) for (const m of t.spiffeIds) buckets.push(bucketFor(spiffeBuckets, index.bySpiffe, m));
    else if (t.services) for (const m of t.services) buckets.push(bucketFor(serviceBuckets, index.byService, m));
    else if (t.namespace !== undefined) {
      let b = index.byNamespace.get(t.namespace);
      if (!b) {
        b = newBucket();
        index.byNamespace.set(t.namespace, b);
      }
      buckets.push(b);
    } else buckets.push(index.global);
    for (const b of buckets) {
      b.policies.push(cp);
      for (const r of rules) b.rules.add(r);
    }
  }
  yield;
  index.bySpiffe.seal();
  index.byService.seal();
  const allBuckets = [
    ...spiffeBuckets.values(),
    ...serviceBuckets.values(),
    ...index.byNamespace.values(),
    index.global,
  ];
  for (const b of allBuckets) b.rules.byPrincipal.seal();
  yield;
  const idTable = buildIdTable(index, compiled);
  const version = `sha256:${hash.update(']}').digest('hex')}`;
  return Object.freeze({
    version,
    policies: frozen,
    options: Object.freeze({ ...options }),
    compiled,
    index,
    ids: idTable,
    ruleCount,
    scratch: new DecisionScratch(),
  });
}
