/**
 * MFA in the policy language: `auth.mfa_age` (freshness, measured at request.time or the clock),
 * `auth.methods` (RFC 8176 amr values), failing closed when unknown, and what a step-up asks for.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  acceptsMethod,
  decide,
  explain,
  lintPolicies,
  PolicyLoadError,
  parsePolicyText,
  stepUpRequirement,
} from '../../src/policy/index.js';
import { exportIstio } from '../../src/policy/export.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { snap } from './helpers.js';

/** An ALLOW policy `name` that lets everyone reach `service`: what the STEP_UP policies stand in front of. */
function allowEveryone(service: string, name = service): string {
  return `
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: ${name} }
spec:
  action: ALLOW
  target: { services: [${service}] }
  rules: [{ name: everyone }]
---`;
}

const POLICIES = `${allowEveryone('portal')}
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: admin-delete-webauthn }
spec:
  action: STEP_UP
  target: { services: [portal] }
  rules:
    - name: webauthn
      to: [{ methods: [DELETE], paths: ["/admin*"] }]
      when: [{ key: auth.methods, notValues: [hwk, swk] }]
    - name: within-15-minutes
      to: [{ methods: [DELETE], paths: ["/admin*"] }]
      when: [{ key: auth.mfa_age, gt: 900 }]
`;

const NOW = Date.parse('2026-12-07T10:00:00Z');
const NOW_S = NOW / 1000;

function req(
  source: { amr?: string[]; mfa_time?: number },
  method = 'DELETE',
  path = '/admin/users/bob',
  time?: string,
) {
  return {
    source: { user: 'alice', mfa: source.mfa_time !== undefined, ...source },
    target: { service: 'portal' },
    request: { method, path, ...(time ? { time } : {}) },
  };
}

describe('auth.mfa_age and auth.methods', () => {
  const s = snap(POLICIES);
  const at = (r: ReturnType<typeof req>) => decide(s, r, { now: NOW });

  it('WebAuthn within 15 minutes for DELETE on /admin*', () => {
    expect(at(req({ amr: ['pwd', 'hwk'], mfa_time: NOW_S - 60 })).decision).toBe('allow');
    expect(at(req({ amr: ['pwd', 'swk', 'user'], mfa_time: NOW_S - 900 })).decision).toBe('allow');
    expect(at(req({ amr: ['pwd', 'otp'], mfa_time: NOW_S - 60 }))).toMatchObject({
      decision: 'step_up',
      policy: 'admin-delete-webauthn',
      rule: 'webauthn',
    });
    expect(at(req({ amr: ['pwd', 'hwk'], mfa_time: NOW_S - 901 }))).toMatchObject({
      decision: 'step_up',
      rule: 'within-15-minutes',
    });
    // Other methods and paths are not concerned.
    expect(at(req({ amr: ['pwd'] }, 'GET')).decision).toBe('allow');
    expect(at(req({ amr: ['pwd'] }, 'DELETE', '/docs/1')).decision).toBe('allow');
  });

  it('unknown fails closed in STEP_UP: no mfa_time, no amr', () => {
    const noTime = at(req({ amr: ['pwd', 'hwk'] }));
    expect(noTime).toMatchObject({ decision: 'step_up', rule: 'within-15-minutes' });
    expect(noTime.reason).toContain('request lacks auth.mfa_age');
    const noAmr = at(req({ mfa_time: NOW_S - 10 }));
    expect(noAmr).toMatchObject({ decision: 'step_up', rule: 'webauthn' });
    expect(noAmr.reason).toContain('request lacks auth.methods');
    // An empty list is known: no method of those was used.
    expect(at(req({ amr: [], mfa_time: NOW_S - 10 })).rule).toBe('webauthn');
  });

  it('unknown never allows: an ALLOW rule on freshness needs mfa_time', () => {
    const t = snap(`
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: fresh-only }
spec:
  action: ALLOW
  target: { services: [vault] }
  rules:
    - when: [{ key: auth.mfa_age, lte: 60 }, { key: auth.methods, values: ["*wk"] }]
`);
    const r = (source: Record<string, unknown>) =>
      decide(t, { source, target: { service: 'vault' }, request: { method: 'GET', path: '/' } }, { now: NOW }).decision;
    expect(r({ amr: ['hwk'], mfa_time: NOW_S - 60 })).toBe('allow');
    expect(r({ amr: ['swk'], mfa_time: NOW_S - 61 })).toBe('deny');
    expect(r({ amr: ['otp'], mfa_time: NOW_S })).toBe('deny');
    expect(r({ amr: ['hwk'] })).toBe('deny');
    expect(r({ mfa_time: NOW_S })).toBe('deny');
  });

  it('freshness is measured at request.time when the request has one, else at the clock', () => {
    const t0 = Date.parse('2026-12-01T08:00:00Z') / 1000;
    const plus = (s: number) => new Date((t0 + s) * 1000).toISOString();
    // The clock (NOW, days later) does not matter when request.time is given.
    expect(at(req({ amr: ['hwk'], mfa_time: t0 }, 'DELETE', '/admin', plus(100))).decision).toBe('allow');
    expect(at(req({ amr: ['hwk'], mfa_time: t0 }, 'DELETE', '/admin', plus(900))).decision).toBe('allow');
    expect(at(req({ amr: ['hwk'], mfa_time: t0 }, 'DELETE', '/admin', plus(901))).decision).toBe('step_up');
    // Without request.time: the decision's clock.
    expect(decide(s, req({ amr: ['hwk'], mfa_time: t0 }), { now: (t0 + 899) * 1000 }).decision).toBe('allow');
    expect(decide(s, req({ amr: ['hwk'], mfa_time: t0 }), { now: (t0 + 960) * 1000 }).decision).toBe('step_up');
    // Default clock: Date.now().
    const nowS = Math.floor(Date.now() / 1000);
    expect(decide(s, req({ amr: ['hwk'], mfa_time: nowS - 5 })).decision).toBe('allow');
    expect(decide(s, req({ amr: ['hwk'], mfa_time: nowS - 3600 })).decision).toBe('step_up');
  });

  it('a rule demanding MFA within 60 s steps up again after 60 s', () => {
    const t = snap(`${allowEveryone('vault', 'all')}
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: fresh }
spec:
  action: STEP_UP
  target: { services: [vault] }
  rules: [{ name: within-60s, when: [{ key: auth.mfa_age, gt: 60 }] }]
`);
    const r = { source: { mfa: true, mfa_time: NOW_S, amr: ['otp'] }, target: { service: 'vault' }, request: {} };
    const at = (s: number) => decide(t, r, { now: NOW + s * 1000 }).decision;
    expect([at(0), at(30), at(60), at(61), at(3600)]).toEqual(['allow', 'allow', 'allow', 'step_up', 'step_up']);
    const d = decide(t, r, { now: NOW + 61_000 });
    expect(stepUpRequirement(t, d, r)).toEqual({ maxAge: 60 });
  });

  it('a second factor from the future counts only within the clock skew', () => {
    expect(at(req({ amr: ['hwk'], mfa_time: NOW_S + 30 })).decision).toBe('allow');
    const far = at(req({ amr: ['hwk'], mfa_time: NOW_S + 3600 }));
    expect(far).toMatchObject({ decision: 'step_up', rule: 'within-15-minutes' });
  });

  it('reads the clock only for rules that measure an age (or a time of day)', () => {
    let reads = 0;
    const opts = {
      get now() {
        reads++;
        return NOW;
      },
    };
    // A policy set without age or time conditions never reads it.
    const plain = snap(POLICIES.replace(/auth\.mfa_age, gt: 900/, 'auth.mfa, equals: false'));
    decide(plain, req({ amr: ['hwk'], mfa_time: NOW_S }), opts);
    expect(reads).toBe(0);
    decide(s, req({ amr: ['hwk'], mfa_time: NOW_S }), opts);
    expect(reads).toBeGreaterThan(0);
  });

  it('all four string forms match amr values', () => {
    const forms = (v: string) =>
      snap(`
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: m }
spec:
  action: ALLOW
  target: { services: [x] }
  rules: [{ when: [{ key: auth.methods, values: ["${v}"] }] }]
`);
    const ok = (v: string, amr: string[]) =>
      decide(forms(v), { source: { amr }, target: { service: 'x' }, request: { method: 'GET', path: '/' } })
        .decision === 'allow';
    expect(ok('hwk', ['pwd', 'hwk'])).toBe(true);
    expect(ok('hwk', ['hwkx'])).toBe(false);
    expect(ok('hw*', ['pwd', 'hwk'])).toBe(true);
    expect(ok('*wk', ['swk'])).toBe(true);
    expect(ok('*wk', ['otp'])).toBe(false);
    expect(ok('*', ['otp'])).toBe(true);
    expect(ok('*', [])).toBe(false);
  });

  it('explain says how old the second factor is', () => {
    const e = explain(s, req({ amr: ['hwk'], mfa_time: NOW_S - 1000 }), { now: NOW });
    const why = e.candidates.flatMap((c) => c.rules.flatMap((r) => r.why));
    expect(why).toContain('when[0] auth.mfa_age: holds (age 1000 s)');
    const none = explain(s, req({ amr: ['hwk'] }), { now: NOW });
    expect(none.candidates.flatMap((c) => c.rules.flatMap((r) => r.why))).toContain(
      'when[0] auth.mfa_age: unknown (no mfa_time)',
    );
    expect(none.decision.decision).toBe('step_up');
  });

  it('refuses misuse at load time with the position, and in Istio documents', () => {
    const issues = (yaml: string) => {
      try {
        parsePolicyText(yaml, 'p.yaml');
      } catch (e) {
        if (e instanceof PolicyLoadError) return e.issues.map((i) => `${i.line}: ${i.message}`);
        throw e;
      }
      return [];
    };
    const doc = (when: string) =>
      `apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata: { name: x }\nspec:\n  action: STEP_UP\n  target: {}\n  rules:\n    - when:\n        - ${when}\n`;
    expect(issues(doc('{ key: auth.mfa_age, values: ["900"] }')).join()).toContain(
      'field "values" does not apply to key "auth.mfa_age"',
    );
    expect(issues(doc('{ key: auth.mfa_age, gt: "900" }'))).not.toEqual([]);
    expect(issues(doc('{ key: auth.methods, gt: 1 }')).join()).toContain(
      'field "gt" does not apply to key "auth.methods"',
    );
    expect(issues(doc('{ key: auth.methods }')).join()).toContain('needs values or notValues');
    expect(issues(doc('{ key: auth.methods, notValues: [""] }')).join()).toContain('empty string never matches');
    const istio = `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: x, namespace: ns }\nspec:\n  rules:\n    - when:\n        - key: auth.methods\n          values: [hwk]\n`;
    expect(issues(istio).join()).toContain('unknown condition key "auth.methods"');
  });

  it('Istio export skips rules on auth.methods and auth.mfa_age with a warning', () => {
    const t = snap(`
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: deny-otp-only }
spec:
  action: DENY
  target: { spiffeIds: [spiffe://example.org/ns/corp/sa/portal] }
  rules:
    - name: no-hwk
      when: [{ key: auth.methods, notValues: [hwk] }]
    - name: stale
      when: [{ key: auth.mfa_age, gt: 60 }]
`);
    const { warnings } = exportIstio(t.policies);
    expect(warnings).toContain('deny-otp-only/no-hwk: conditions without an Istio equivalent; rule skipped');
    expect(warnings).toContain('deny-otp-only/stale: conditions without an Istio equivalent; rule skipped');
  });
});

describe('lint', () => {
  it('warns on STEP_UP rules that a second factor cannot end', () => {
    const t = snap(`
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: inverted }
spec:
  action: STEP_UP
  target: { services: [x] }
  rules:
    - name: fresh-steps-up
      when: [{ key: auth.mfa_age, lt: 900 }]
    - name: hwk-steps-up
      when: [{ key: auth.methods, values: [hwk] }]
    - name: mfa-steps-up
      when: [{ key: auth.mfa, equals: true }]
    - name: right
      to: [{ methods: [DELETE] }]
      when: [{ key: auth.methods, notValues: [hwk] }, { key: auth.mfa_age, gt: 60 }]
`);
    const f = lintPolicies(t.policies).filter((x) => x.code === 'step-up-unsatisfiable');
    expect(f.map((x) => x.rule)).toEqual(['fresh-steps-up', 'hwk-steps-up', 'mfa-steps-up']);
    expect(f[0]).toMatchObject({ severity: 'warning', line: 9 });
    expect(lintPolicies(snap(POLICIES).policies).filter((x) => x.code === 'step-up-unsatisfiable')).toEqual([]);
  });
});

describe('stepUpRequirement', () => {
  const s = snap(POLICIES);

  it('reads the fired rule and merges the policy’s other rules for the same request', () => {
    const r = req({ amr: ['pwd', 'otp'], mfa_time: NOW_S - 60 });
    const d = decide(s, r, { now: NOW });
    expect(d.rule).toBe('webauthn');
    expect(stepUpRequirement(s, d, r, { now: NOW })).toEqual({ methods: ['hwk', 'swk'], maxAge: 900 });
    // Without the request: rules with the same from/to are merged.
    expect(stepUpRequirement(s, d)).toEqual({ methods: ['hwk', 'swk'], maxAge: 900 });
    const stale = decide(s, req({ amr: ['hwk'], mfa_time: NOW_S - 1000 }), { now: NOW });
    expect(stale.rule).toBe('within-15-minutes');
    expect(stepUpRequirement(s, stale)).toEqual({ methods: ['hwk', 'swk'], maxAge: 900 });
  });

  it('merges only rules that apply to the request apart from MFA', () => {
    const t = snap(`${allowEveryone('portal')}
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: step }
spec:
  action: STEP_UP
  target: { services: [portal] }
  rules:
    - name: any-mfa-for-admin
      to: [{ paths: ["/admin*"] }]
      when: [{ key: auth.mfa, equals: false }]
    - name: hwk-for-delete
      to: [{ methods: [DELETE] }]
      when: [{ key: auth.methods, notValues: [hwk] }]
    - name: fresh-for-risky
      when: [{ key: risk.score, gt: 0.5 }, { key: auth.mfa_age, gte: 300 }]
    - name: otp-or-hwk-for-payouts
      to: [{ paths: ["/payouts*"] }]
      when: [{ key: auth.methods, notValues: [otp, hwk] }]
`);
    const ask = (r: Parameters<typeof decide>[1]) => {
      const d = decide(t, r, { now: NOW });
      return { rule: d.rule, need: stepUpRequirement(t, d, r, { now: NOW }) };
    };
    // GET /admin without MFA: only the admin rule applies.
    expect(ask({ ...req({}, 'GET', '/admin'), source: { mfa: false, risk_score: 0.1 } })).toEqual({
      rule: 'any-mfa-for-admin',
      need: {},
    });
    // DELETE /admin with high risk: the hwk rule and the freshness rule (gte 300 → 299 s) as well.
    expect(ask({ ...req({}, 'DELETE', '/admin'), source: { mfa: false, risk_score: 0.9 } })).toEqual({
      rule: 'any-mfa-for-admin',
      need: { methods: ['hwk'], maxAge: 299 },
    });
    // Low risk: the freshness rule's risk condition is false, it is not merged.
    expect(
      ask({ ...req({}, 'DELETE', '/admin'), source: { mfa: true, amr: ['otp'], mfa_time: NOW_S, risk_score: 0.1 } }),
    ).toEqual({ rule: 'hwk-for-delete', need: { methods: ['hwk'] } });
    // Unknown risk counts (STEP_UP fails closed).
    expect(
      ask({ ...req({}, 'DELETE', '/payouts/1'), source: { mfa: true, amr: ['pwd'], mfa_time: NOW_S } }).need,
    ).toEqual({ methods: ['hwk'], maxAge: 299 });
  });

  it('is empty for other decisions and for a rule the snapshot does not have', () => {
    const allow = decide(s, req({ amr: ['hwk'], mfa_time: NOW_S }), { now: NOW });
    expect(allow.decision).toBe('allow');
    expect(stepUpRequirement(s, allow)).toEqual({});
    expect(stepUpRequirement(s, { decision: 'step_up', policy: 'gone', rule: 'webauthn' })).toEqual({});
    expect(stepUpRequirement(s, { decision: 'step_up', policy: 'portal', rule: 'everyone' })).toEqual({});
    expect(stepUpRequirement(s, { decision: 'step_up', policy: 'admin-delete-webauthn', rule: 'nope' })).toEqual({});
  });

  it('acceptsMethod checks a factor’s method against the requirement', () => {
    expect(acceptsMethod({ methods: ['hwk', 'swk'] }, 'swk')).toBe(true);
    expect(acceptsMethod({ methods: ['hwk', 'swk'] }, 'otp')).toBe(false);
    expect(acceptsMethod({ methods: ['*wk'] }, 'hwk')).toBe(true);
    expect(acceptsMethod({}, 'otp')).toBe(true);
  });
});

describe('nevertrust policy eval', () => {
  it('takes mfa_time and amr and prints what a step-up asks for', async () => {
    const dir = tempDir();
    const input = join(dir, 'req.json');
    const at = Date.parse('2026-12-07T10:00:00Z') / 1000;
    const request = (amr: string[], mfaTime: number) => ({
      source: {
        claims: { iss: 'https://idp.example.org', sub: 'alice' },
        mfa: true,
        mfa_time: mfaTime,
        amr,
        risk_score: 0.1,
        device: { managed: true, os_patched: true },
      },
      target: { spiffe_id: 'spiffe://example.org/ns/corp/sa/portal' },
      request: { method: 'DELETE', path: '/admin/users/bob', time: '2026-12-07T10:00:00Z' },
    });
    writeFileSync(input, JSON.stringify(request(['pwd', 'hwk'], at - 960)));
    const stale = await runCli([
      'policy',
      'eval',
      '--policies',
      'examples/policies/conditional-access',
      '--input',
      input,
    ]);
    expect(stale.code, stale.stderr).toBe(0);
    expect(JSON.parse(stale.stdout)).toMatchObject({
      decision: 'step_up',
      rule: 'within-15-minutes',
      step_up: { methods: ['hwk', 'swk'], maxAge: 900 },
    });
    writeFileSync(input, JSON.stringify(request(['pwd', 'hwk'], at - 600)));
    const fresh = await runCli([
      'policy',
      'eval',
      '--policies',
      'examples/policies/conditional-access',
      '--input',
      input,
      '--explain',
    ]);
    const e = JSON.parse(fresh.stdout);
    expect(e.decision.decision).toBe('allow');
    expect(e.step_up).toBeUndefined();
    expect(JSON.stringify(e.candidates)).toContain('when[0] auth.mfa_age: does not hold (age 600 s)');
  }, 60_000);
});
