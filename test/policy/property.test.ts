import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Action, compile, decide, type Policy } from '../../src/policy/index.js';
import { decideNormalized } from '../../src/policy/evaluate.js';
import type { Condition, OperationMatch, Rule, SourceMatch, StringMatcher, Target } from '../../src/policy/model.js';
import { naiveDecide } from '../../src/policy/naive.js';
import { normalizeRequest } from '../../src/policy/request.js';

const loc = { file: 'gen', line: 1, column: 1 };
const NS = ['a', 'b'];
const SA = ['web', 'api', 'db'];
const principal = (ns: string, sa: string) => `td/ns/${ns}/sa/${sa}`;
const PRINCIPALS = NS.flatMap((n) => SA.map((s) => principal(n, s)));
const PATHS = ['/', '/v1/x', '/v1/y', '/admin', '/admin/z'];
const DEVICES = ['laptop-1', 'laptop-22', 'build.corp'];

const strMatcher = (values: string[]): fc.Arbitrary<StringMatcher> =>
  fc.oneof(
    fc.constantFrom(...values).map((value) => ({ kind: 'exact' as const, value })),
    fc.constantFrom(...values).map((v) => ({ kind: 'prefix' as const, value: v.slice(0, Math.max(1, v.length - 2)) })),
    fc.constantFrom(...values).map((v) => ({ kind: 'suffix' as const, value: v.slice(2) || v })),
    fc.constant({ kind: 'presence' as const }),
  );
const list = <T>(a: fc.Arbitrary<T>) => fc.option(fc.array(a, { minLength: 1, maxLength: 2 }), { nil: undefined });

const source: fc.Arbitrary<SourceMatch> = fc
  .record({
    principals: list(strMatcher(PRINCIPALS)),
    notPrincipals: list(strMatcher(PRINCIPALS)),
    namespaces: list(strMatcher(NS)),
    services: list(strMatcher(SA)),
  })
  .map(strip);
const operation: fc.Arbitrary<OperationMatch> = fc
  .record({
    methods: list(fc.constantFrom('GET', 'POST').map((value) => ({ kind: 'exact' as const, value }))),
    paths: list(strMatcher(PATHS)),
    notPaths: list(strMatcher(PATHS)),
  })
  .map(strip);
const condition: fc.Arbitrary<Condition> = fc.oneof(
  fc.boolean().map((value) => ({ kind: 'bool' as const, key: 'auth.mfa', attr: 'auth.mfa' as const, value })),
  fc.constantFrom(0.3, 0.8).map((value) => ({
    kind: 'number' as const,
    key: 'risk.score',
    attr: 'risk.score' as const,
    op: 'gt' as const,
    value,
  })),
  // The age reads the clock (or request.time): the compiled path must read it exactly when needed.
  fc.tuple(fc.constantFrom('gt' as const, 'lte' as const), fc.constantFrom(60, 900)).map(([op, value]) => ({
    kind: 'number' as const,
    key: 'auth.mfa_age',
    attr: 'auth.mfa_age' as const,
    op,
    value,
  })),
  fc
    .tuple(fc.boolean(), fc.array(strMatcher(['hwk', 'swk', 'otp']), { minLength: 1, maxLength: 2 }))
    .map(([neg, ms]) => ({
      kind: 'string' as const,
      key: 'auth.methods',
      attr: { type: 'field' as const, name: 'auth.methods' as const },
      ...(neg ? { notValues: ms } : { values: ms }),
    })),
  // Device keys (issue #22): a string key with every match form, a bool key, and posture.
  fc.tuple(fc.boolean(), fc.array(strMatcher(DEVICES), { minLength: 1, maxLength: 2 })).map(([negate, ms]) => ({
    kind: 'string' as const,
    key: 'device.id',
    attr: { type: 'field' as const, name: 'device.id' as const },
    ...(negate ? { notValues: ms } : { values: ms }),
  })),
  fc
    .tuple(fc.constantFrom('device.owner_is_user' as const, 'device.os_patched' as const), fc.boolean())
    .map(([attr, value]) => ({ kind: 'bool' as const, key: attr, attr, value })),
);
const rule = (i: number): fc.Arbitrary<Rule> =>
  fc
    .record({
      from: list(source),
      to: list(operation),
      when: fc.array(condition, { maxLength: 2 }),
    })
    .map((r) => strip({ id: `r${i}`, loc, ...r }));
const target: fc.Arbitrary<Target> = fc.oneof(
  fc.constant({}),
  fc.constantFrom(...NS).map((namespace) => ({ namespace })),
  fc.record({ namespace: fc.constantFrom(...NS), labels: fc.constantFrom(...SA).map((app) => ({ app })) }),
  fc
    .array(strMatcher(PRINCIPALS.map((p) => `spiffe://${p}`)), { minLength: 1, maxLength: 2 })
    .map((spiffeIds) => ({ spiffeIds })),
  fc.array(strMatcher(SA), { minLength: 1, maxLength: 2 }).map((services) => ({ services })),
);
const policy = (i: number): fc.Arbitrary<Policy> =>
  fc
    .record({
      origin: fc.constantFrom('native' as const, 'istio' as const),
      action: fc.constantFrom<Action>('ALLOW', 'ALLOW', 'DENY', 'STEP_UP', 'AUDIT', 'CUSTOM'),
      dryRun: fc.constantFrom(false, false, false, true),
      target,
      rules: fc.option(
        fc.integer({ min: 1, max: 3 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, k) => rule(k)))),
        { nil: undefined, freq: 6 },
      ),
    })
    .map((p) => strip({ id: `p${i}`, loc, ...p, rules: p.rules as Rule[] | undefined }));
const policies = fc
  .integer({ min: 0, max: 8 })
  .chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => policy(i))));

const request = fc.record({
  src: fc.option(fc.tuple(fc.constantFrom(...NS), fc.constantFrom(...SA)), { nil: undefined }),
  dst: fc.tuple(fc.constantFrom(...NS), fc.constantFrom(...SA)),
  method: fc.constantFrom('GET', 'POST'),
  path: fc.constantFrom(...PATHS, '/v1/../admin', '//v1/x'),
  mfa: fc.option(fc.boolean(), { nil: undefined }),
  risk: fc.option(fc.constantFrom(0.1, 0.5, 0.9), { nil: undefined }),
  mfaAgo: fc.option(fc.constantFrom(0, 60, 61, 900, 1000, -30, -3600), { nil: undefined }),
  amr: fc.option(fc.subarray(['pwd', 'otp', 'hwk', 'swk']), { nil: undefined }),
  timed: fc.boolean(),
  labels: fc.boolean(),
  // No device, a device without posture (unknown_reason), or one with an id and posture.
  device: fc.option(
    fc.record({
      id: fc.option(fc.constantFrom(...DEVICES), { nil: undefined }),
      owner_is_user: fc.option(fc.boolean(), { nil: undefined }),
      os_patched: fc.option(fc.boolean(), { nil: undefined }),
      unknown_reason: fc.option(fc.constant('device posture is 1200 s old, the route allows 900 s'), {
        nil: undefined,
      }),
    }),
    { nil: undefined },
  ),
});

type GeneratedRequest = typeof request extends fc.Arbitrary<infer T> ? T : never;

// These properties are about the index, not normalization: the paths include a dot segment that
// lenient mode resolves (strict mode, the default, would refuse it before any rule is looked at).
const LENIENT = { strict: false };

/** The decisions' clock (the property is about agreement, any fixed clock will do). */
const NOW = Date.parse('2026-12-07T10:00:00Z');
const NOW_S = NOW / 1000;

/** The access request (and its normalized form) for one generated request. */
function accessRequest(r: GeneratedRequest) {
  const input = {
    source: {
      ...(r.src ? { spiffe_id: `spiffe://${principal(...r.src)}` } : {}),
      mfa: r.mfa,
      risk_score: r.risk,
      ...(r.mfaAgo === undefined ? {} : { mfa_time: NOW_S - r.mfaAgo }),
      ...(r.amr === undefined ? {} : { amr: r.amr }),
      ...(r.device === undefined ? {} : { device: strip(r.device) }),
    },
    target: {
      spiffe_id: `spiffe://${principal(...r.dst)}`,
      ...(r.labels ? { labels: { app: r.dst[1], tier: 'x' } } : {}),
    },
    // With request.time the age is measured there (an hour after the clock), else at the clock.
    request: { method: r.method, path: r.path, ...(r.timed ? { time: new Date(NOW + 3_600_000).toISOString() } : {}) },
  };
  const n = normalizeRequest(input, LENIENT);
  if (!n.ok) throw new Error(n.reason);
  return { input, n };
}

function strip<T extends object>(o: T): T {
  const out = {} as T;
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

describe('compiled index agrees with the naive evaluator', () => {
  it('on random policies and requests', () => {
    fc.assert(
      fc.property(
        policies,
        fc.array(request, { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        (ps, reqs, istioDefaultAllow) => {
          const snap = compile(ps, { istioDefaultAllow, path: LENIENT });
          for (const r of reqs) {
            const { input, n } = accessRequest(r);
            const fast = decide(snap, input, { now: NOW });
            const slow = naiveDecide(ps, n.req, { istioDefaultAllow, now: NOW });
            expect({ decision: fast.decision, policy: fast.policy, rule: fast.rule }).toEqual(slow);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});

// decide() takes a precompiled per-target plan when the target is an ID the policies name and
// nothing overrides what it derives; decideNormalized() on a plainly normalized request takes the
// general lookup. Both must give the very same decision, reason, audit and dry-run records.
describe('per-target plans decide exactly as the general lookup', () => {
  it('on random policies and requests', () => {
    fc.assert(
      fc.property(
        policies,
        fc.array(request, { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        (ps, reqs, istioDefaultAllow) => {
          const snap = compile(ps, { istioDefaultAllow, path: LENIENT });
          for (const r of reqs) {
            const { input, n } = accessRequest(r);
            expect(decide(snap, input, { now: NOW })).toEqual(decideNormalized(snap, n.req, { now: NOW }));
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
