import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import {
  accessRequestJsonSchema,
  decide,
  explain,
  lintPolicies,
  loadPolicies,
  PolicyLoadError,
  PolicyWatcher,
  parseAccessRequest,
  parsePolicyText,
  runPolicyTests,
} from '../../src/policy/index.js';
import { exportIstio, exportNetworkPolicies } from '../../src/policy/export.js';
import { policyGraph, toDot, toMermaid } from '../../src/policy/graph.js';
import { snap } from './helpers.js';

const native = (name: string, spec: string) =>
  `apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata:\n  name: ${name}\nspec:\n${spec
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')}\n`;

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'nt-policy-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function issuesOf(fn: () => unknown) {
  try {
    fn();
  } catch (e) {
    if (e instanceof PolicyLoadError) return e.issues;
    throw e;
  }
  throw new Error('expected a PolicyLoadError');
}

describe('examples', () => {
  it('payments and conditional-access test suites pass', () => {
    const r = runPolicyTests('examples/policies');
    expect(r.failed).toBe(0);
    expect(r.passed).toBeGreaterThanOrEqual(25);
  });
});

describe('conditional access and dry-run', () => {
  const s = loadPolicies('examples/policies/conditional-access');
  const base = {
    source: {
      claims: { iss: 'https://idp.example.org', sub: 'alice' },
      mfa: true,
      risk_score: 0.1,
      device: { managed: true, os_patched: true },
    },
    target: { spiffe_id: 'spiffe://example.org/ns/corp/sa/portal' },
    request: { method: 'GET', path: '/admin' },
  };
  it('steps up without MFA, denies on risk and unmanaged devices', () => {
    expect(decide(s, base).decision).toBe('allow');
    expect(decide(s, { ...base, source: { ...base.source, mfa: false } }).decision).toBe('step_up');
    expect(decide(s, { ...base, source: { ...base.source, risk_score: 0.95 } }).decision).toBe('deny');
    expect(
      decide(s, { ...base, source: { ...base.source, device: { managed: false, os_patched: true } } }).decision,
    ).toBe('deny');
    const missing = decide(s, { ...base, source: { ...base.source, risk_score: undefined } });
    expect(missing).toMatchObject({ decision: 'deny', policy: 'portal-high-risk' });
    expect(missing.reason).toContain('request lacks risk.score');
  });

  it('time-of-day and weekday conditions use the IANA time zone', () => {
    const t = snap(
      native(
        'office-hours',
        'action: ALLOW\ntarget: { services: [hr] }\nrules:\n  - when:\n      - key: request.time\n        timeZone: Europe/Berlin\n        weekdays: [Mon, Tue, Wed, Thu, Fri]\n        between: ["09:00", "18:00"]',
      ),
    );
    const at = (time: string) =>
      decide(t, { target: { service: 'hr' }, request: { method: 'GET', path: '/', time } }).decision;
    expect(at('2026-11-23T08:30:00Z')).toBe('allow'); // Monday 09:30 in Berlin
    expect(at('2026-11-23T07:30:00Z')).toBe('deny'); // 08:30 in Berlin
    expect(at('2026-11-22T10:00:00Z')).toBe('deny'); // Sunday
  });

  it('dry-run policies decide nothing and report what they would have done', () => {
    const t = snap(
      native('allow-all', 'action: ALLOW\ntarget: { services: [svc] }\nrules:\n  - name: all') +
        '---\n' +
        native(
          'block-post',
          'action: DENY\ndryRun: true\ndryRunSince: 2026-01-01\ntarget: { services: [svc] }\nrules:\n  - name: post\n    to: [{ methods: [POST] }]',
        ),
    );
    const r = decide(t, { target: { service: 'svc' }, request: { method: 'POST', path: '/' } });
    expect(r.decision).toBe('allow');
    expect(r.dryRun).toEqual([
      { policy: 'block-post', action: 'DENY', rule: 'post', wouldDecide: 'deny', wouldChange: true },
    ]);
    const g = decide(t, { target: { service: 'svc' }, request: { method: 'GET', path: '/' } });
    expect(g.dryRun?.[0]).toMatchObject({ rule: null, wouldDecide: 'allow', wouldChange: false });
  });

  it('explain lists candidate policies and why each rule matched or not', () => {
    const p = loadPolicies('examples/policies/payments');
    const e = explain(p, {
      source: { spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway' },
      target: { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service' },
      request: { method: 'GET', path: '/v1/charges' },
    });
    expect(e.decision.decision).toBe('deny');
    expect(e.candidates).toHaveLength(1);
    expect(e.candidates[0]?.rules[0]).toMatchObject({ result: 'no_match' });
    expect(e.candidates[0]?.rules[0]?.why.join(' ')).toContain('to: no operation matched (GET /v1/charges');
    expect(e.notSelected).toBe(1);
  });
});

describe('errors name file, line, column and field', () => {
  it('unknown fields', () => {
    const text = native('x', 'action: ALLOW\ntarget: {}\nrules:\n  - to:\n      - methods: [GET]\n        pathz: [/a]');
    const [i] = issuesOf(() => parsePolicyText(text, 'x.yaml'));
    expect(i).toMatchObject({ file: 'x.yaml', line: 11, column: 11, field: 'spec.rules[0].to[0].pathz' });
    expect(i?.message).toBe('unknown field "pathz"');
  });

  it('malformed YAML', () => {
    const [i] = issuesOf(() => parsePolicyText('apiVersion: nevertrust.dev/v1\nkind: [AccessPolicy\n', 'bad.yaml'));
    expect(i).toMatchObject({ file: 'bad.yaml', field: '(yaml)' });
    expect(i?.line).toBeGreaterThanOrEqual(2);
  });

  it('bad values: SPIFFE IDs, CIDRs, unnormalized paths, time zones, wrong condition operators', () => {
    const text = native(
      'x',
      'action: DENY\ntarget: {}\nrules:\n  - from: [{ principals: [api-gateway], ipBlocks: [10.0.0.1/8] }]\n    to: [{ paths: [/a/../b] }]\n    when:\n      - key: request.time\n        timeZone: Mars/Olympus\n        weekdays: [Mon]\n      - key: device.managed\n        gt: 1',
    );
    const issues = issuesOf(() => parsePolicyText(text, 'x.yaml'));
    const fields = issues.map((i) => i.field);
    expect(fields).toContain('spec.rules[0].from[0].principals[0]');
    expect(fields).toContain('spec.rules[0].from[0].ipBlocks[0]');
    expect(fields).toContain('spec.rules[0].to[0].paths[0]');
    expect(fields).toContain('spec.rules[0].when[0].timeZone');
    expect(fields).toContain('spec.rules[0].when[1].gt');
    for (const i of issues) expect(i.line).toBeGreaterThan(0);
  });

  it('a directory with one broken file is rejected whole', () => {
    const d = tmp();
    writeFileSync(join(d, 'a.yaml'), native('a', 'action: ALLOW\ntarget: { services: [a] }\nrules: [{}]'));
    writeFileSync(join(d, 'b.yaml'), native('b', 'action: PERMIT\ntarget: {}'));
    const issues = issuesOf(() => loadPolicies(d));
    expect(issues).toHaveLength(1);
    expect(issues[0]?.file).toMatch(/b\.yaml$/);
    expect(issues[0]).toMatchObject({ line: 6, field: 'spec.action' });
  });

  it('access requests are validated with the field named', () => {
    expect(() => parseAccessRequest({ source: { mfa: 'yes' } })).toThrow(/source\.mfa/);
    expect(parseAccessRequest({ source_service: 'a', target_service: 'b', method: 'GET', path: '/' })).toEqual({
      source: { service: 'a' },
      target: { service: 'b' },
      request: { method: 'GET', path: '/' },
    });
    const schema = accessRequestJsonSchema();
    expect(JSON.stringify(schema)).toContain('spiffe_id');
  });
});

describe('PolicyWatcher', () => {
  it('keeps the last good snapshot when a reload fails, and picks up fixes', async () => {
    const d = tmp();
    const f = join(d, 'p.yaml');
    writeFileSync(f, native('p', 'action: ALLOW\ntarget: { services: [svc] }\nrules: [{}]'));
    const w = new PolicyWatcher(d, { debounceMs: 20 });
    const good = w.current.version;
    const errors: PolicyLoadError[] = [];
    w.on('error', (e) => errors.push(e));
    writeFileSync(
      f,
      'apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec: {action: ALLOW, target: {}, rulez: []}\n',
    );
    expect(w.reload()).toBe(false);
    expect(w.current.version).toBe(good);
    expect(errors[0]?.message).toMatch(/p\.yaml:4:\d+: spec\.rulez: unknown field/);
    expect(decide(w.current, { target: { service: 'svc' }, request: { method: 'GET', path: '/' } }).decision).toBe(
      'allow',
    );
    const reloaded = new Promise((res) => w.once('reload', res));
    writeFileSync(f, native('p', 'action: ALLOW\ntarget: { services: [other] }\nrules: [{}]'));
    await reloaded;
    expect(w.current.version).not.toBe(good);
    w.close();
  });
});

describe('lint, graph, export', () => {
  const text =
    native(
      'svc-in',
      'action: ALLOW\ntarget: { spiffeIds: [spiffe://example.org/ns/prod/sa/svc] }\nrules:\n  - name: wide\n    from: [{ principals: [spiffe://example.org/ns/prod/sa/*] }]\n  - name: narrow\n    from: [{ principals: [spiffe://example.org/ns/prod/sa/web] }]\n    to: [{ methods: [GET] }]\n  - name: foreign\n    from: [{ principals: [spiffe://evil.org/ns/x/sa/y] }]\n  - name: open-admin\n    to: [{ paths: [/admin*] }]',
    ) +
    '---\n' +
    native(
      'deny-delete',
      'action: DENY\ntarget: { spiffeIds: [spiffe://example.org/ns/prod/sa/svc] }\nrules:\n  - to: [{ methods: [DELETE] }]',
    ) +
    '---\n' +
    native(
      'svc-delete',
      'action: ALLOW\ntarget: { spiffeIds: [spiffe://example.org/ns/prod/sa/svc] }\nrules:\n  - name: del\n    from: [{ principals: [spiffe://example.org/ns/prod/sa/web] }]\n    to: [{ methods: [DELETE], ports: [8443] }]',
    ) +
    '---\n' +
    native('old-dry', 'action: DENY\ndryRun: true\ndryRunSince: 2026-01-01\ntarget: {}\nrules: [{}]');
  const policies = parsePolicyText(text, 'lint.yaml');

  it('finds shadowed rules, overridden ALLOWs, foreign principals, open sensitive paths, stale dry-runs', () => {
    const f = lintPolicies(policies, { now: Date.parse('2026-11-22T00:00:00Z') });
    const codes = f.map((x) => `${x.code}:${x.rule ?? x.policy}`);
    expect(codes).toContain('shadowed-rule:narrow');
    expect(codes).toContain('foreign-principal:foreign');
    expect(codes).toContain('allow-everyone-sensitive:open-admin');
    expect(codes).toContain('allow-overridden-by-deny:del');
    expect(codes).toContain('stale-dry-run:old-dry');
    expect(f.find((x) => x.code === 'allow-everyone-sensitive')).toMatchObject({
      severity: 'error',
      file: 'lint.yaml',
    });
    expect(f.every((x) => x.line > 0)).toBe(true);
  });

  it('graph renders json, dot and mermaid', () => {
    const g = policyGraph(loadPolicies('examples/policies/payments').policies);
    expect(g.edges.map((e) => [e.from, e.to])).toContainEqual([
      'spiffe://example.org/ns/payments/sa/api-gateway',
      'spiffe://example.org/ns/payments/sa/payment-service',
    ]);
    expect(toDot(g)).toMatch(/^digraph policy \{/);
    expect(toMermaid(g)).toMatch(/^flowchart LR/);
  });

  it('NetworkPolicy export parses back: default deny per namespace plus one allow per edge', () => {
    const { manifests } = exportNetworkPolicies(loadPolicies('examples/policies/payments').policies);
    const docs = YAML.parseAllDocuments(manifests.map((m) => YAML.stringify(m)).join('---\n')).map((d) => d.toJS());
    const deny = docs.filter((d) => d.metadata.name === 'default-deny-ingress');
    expect(deny).toEqual([
      expect.objectContaining({
        kind: 'NetworkPolicy',
        metadata: expect.objectContaining({ namespace: 'payments' }),
        spec: { podSelector: {}, policyTypes: ['Ingress'] },
      }),
    ]);
    const allow = docs.filter((d) => d.metadata.name !== 'default-deny-ingress');
    expect(allow).toHaveLength(2);
    const gw = allow.find((d) => d.spec.podSelector.matchLabels.app === 'payment-service');
    expect(gw.spec.ingress[0].from[0]).toEqual({
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'payments' } },
      podSelector: { matchLabels: { app: 'api-gateway' } },
    });
  });

  it('Istio export parses back and decides the same requests', () => {
    const src = loadPolicies('examples/policies/payments');
    const { manifests, warnings } = exportIstio(src.policies);
    expect(warnings).toEqual([]);
    const text = manifests.map((m) => YAML.stringify(m)).join('---\n');
    const back = snap(text);
    for (const [from, to, method, path] of [
      ['api-gateway', 'payment-service', 'POST', '/v1/charges'],
      ['api-gateway', 'payment-service', 'GET', '/v1/charges'],
      ['payment-service', 'audit-service', 'POST', '/v1/events'],
      ['api-gateway', 'audit-service', 'POST', '/v1/events'],
    ] as const) {
      const r = {
        source: { spiffe_id: `spiffe://example.org/ns/payments/sa/${from}` },
        target: { spiffe_id: `spiffe://example.org/ns/payments/sa/${to}` },
        request: { method, path },
      };
      expect(decide(back, r).decision).toBe(decide(src, r).decision);
    }
    const ca = exportIstio(loadPolicies('examples/policies/conditional-access').policies);
    expect(ca.warnings.some((w) => w.includes('STEP_UP'))).toBe(true);
  });
});
