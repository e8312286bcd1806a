import { describe, expect, it } from 'vitest';
import { decide, PolicyLoadError, parsePolicyText } from '../../src/policy/index.js';
import { d, ID, req, snap } from './helpers.js';

const ap = (ns: string, spec: string, name = 'p', extra = '') =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n${extra}spec:\n${spec
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')}\n`;

const foo = { ns: 'foo', app: 'httpbin' };

describe('Istio AuthorizationPolicy semantics', () => {
  it('spec: {} denies everything for the selected workload', () => {
    const s = snap(
      `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: deny-all, namespace: foo }\nspec: {}\n`,
    );
    expect(d(s, req(foo, {}, { ns: 'foo', sa: 'sleep' }))).toBe('deny');
  });

  it('rules: [{}] matches every request; no rules matches nothing', () => {
    const allowAll = snap(ap('foo', 'action: ALLOW\nrules:\n- {}'));
    expect(d(allowAll, req(foo, { method: 'DELETE', path: '/x' }))).toBe('allow');
    const noRules = snap(ap('foo', 'action: ALLOW'));
    expect(d(noRules, req(foo))).toBe('deny');
    const denyNoRules = snap(ap('foo', 'action: DENY'));
    // A DENY without rules matches nothing, and there is no ALLOW policy: Istio allows.
    expect(d(denyNoRules, req(foo))).toBe('allow');
  });

  it('no ALLOW policy for a selected workload allows; DENY overrides ALLOW', () => {
    const s = snap(
      ap('foo', 'action: DENY\nrules:\n- to:\n  - operation:\n      methods: [DELETE]', 'deny-delete') +
        '---\n' +
        ap('foo', 'action: ALLOW\nrules:\n- to:\n  - operation:\n      methods: [GET, DELETE]', 'allow-get'),
    );
    expect(d(s, req(foo, { method: 'GET' }))).toBe('allow');
    expect(decide(s, req(foo, { method: 'DELETE' }))).toMatchObject({
      decision: 'deny',
      policy: 'foo/deny-delete',
      rule: '0',
    });
    expect(d(s, req(foo, { method: 'POST' }))).toBe('deny');
    const onlyDeny = snap(ap('foo', 'action: DENY\nrules:\n- to:\n  - operation:\n      methods: [DELETE]'));
    expect(d(onlyDeny, req(foo, { method: 'POST' }))).toBe('allow');
  });

  it('a workload no policy selects is denied unless the Istio-compatible default is on', () => {
    const yaml = ap('bar', 'rules:\n- {}');
    expect(d(snap(yaml), req(foo))).toBe('deny');
    expect(d(snap(yaml, { istioDefaultAllow: true }), req(foo))).toBe('allow');
  });

  it('exact, prefix, suffix and presence matching', () => {
    const s = snap(
      ap(
        'foo',
        'rules:\n- to:\n  - operation:\n      paths: [/exact, /pre/*, "*.json"]\n- from:\n  - source:\n      requestPrincipals: ["*"]\n  to:\n  - operation:\n      paths: [/jwt]',
      ),
    );
    expect(d(s, req(foo, { path: '/exact' }))).toBe('allow');
    expect(d(s, req(foo, { path: '/exact/x' }))).toBe('deny');
    expect(d(s, req(foo, { path: '/pre/a/b' }))).toBe('allow');
    expect(d(s, req(foo, { path: '/data/x.json' }))).toBe('allow');
    expect(d(s, req(foo, { path: '/jwt' }))).toBe('deny');
    expect(d(s, req(foo, { path: '/jwt' }, { ns: 'foo', sa: 'x', claims: { iss: 'https://idp', sub: 'u' } }))).toBe(
      'allow',
    );
  });

  it('principals, namespaces and not* fields', () => {
    const s = snap(
      ap(
        'foo',
        'rules:\n- from:\n  - source:\n      principals: [cluster.local/ns/foo/sa/*]\n      notPrincipals: [cluster.local/ns/foo/sa/evil]\n- from:\n  - source:\n      namespaces: [bar]\n  to:\n  - operation:\n      notMethods: [DELETE]\n      notPaths: [/admin*]',
      ),
    );
    expect(d(s, req(foo, {}, { ns: 'foo', sa: 'sleep' }))).toBe('allow');
    expect(d(s, req(foo, {}, { ns: 'foo', sa: 'evil' }))).toBe('deny');
    expect(d(s, req(foo, {}, { ns: 'bar', sa: 'x' }))).toBe('allow');
    expect(d(s, req(foo, { method: 'DELETE' }, { ns: 'bar', sa: 'x' }))).toBe('deny');
    expect(d(s, req(foo, { path: '/admin/x' }, { ns: 'bar', sa: 'x' }))).toBe('deny');
    expect(d(s, req(foo, {}, { ns: 'baz', sa: 'x' }))).toBe('deny');
  });

  it('from and to: at least one entry matches; fields AND, values OR', () => {
    const s = snap(
      ap(
        'foo',
        'rules:\n- from:\n  - source: { namespaces: [a] }\n  - source: { namespaces: [b] }\n  to:\n  - operation: { methods: [GET], paths: [/x] }\n  - operation: { methods: [POST], paths: [/y] }',
      ),
    );
    expect(d(s, req(foo, { method: 'GET', path: '/x' }, { ns: 'b', sa: 's' }))).toBe('allow');
    expect(d(s, req(foo, { method: 'POST', path: '/y' }, { ns: 'a', sa: 's' }))).toBe('allow');
    expect(d(s, req(foo, { method: 'GET', path: '/y' }, { ns: 'a', sa: 's' }))).toBe('deny');
  });

  it('when keys: nested claims, headers, source.ip CIDR (v4 and v6), ports', () => {
    const s = snap(
      ap(
        'foo',
        `rules:
- when:
  - key: request.auth.claims[groups]
    values: [admins]
  - key: request.auth.claims[realm][role]
    values: [oper*]
- to:
  - operation: { ports: ["8443"] }
  when:
  - key: request.headers[X-Env]
    notValues: [prod]
  - key: source.ip
    values: [10.0.0.0/8, "2001:db8::/32"]`,
      ),
    );
    const claims = { iss: 'i', sub: 's', groups: ['dev', 'admins'], realm: { role: 'operator' } };
    expect(d(s, req(foo, {}, { ns: 'a', sa: 'b', claims }))).toBe('allow');
    expect(d(s, req(foo, {}, { ns: 'a', sa: 'b', claims: { ...claims, realm: { role: 'dev' } } }))).toBe('deny');
    expect(d(s, req(foo, { port: 8443 }, { ns: 'a', sa: 'b', ip: '10.1.2.3', headers: { 'x-env': 'dev' } }))).toBe(
      'allow',
    );
    expect(d(s, req(foo, { port: 8443 }, { ns: 'a', sa: 'b', ip: '2001:db8::1', headers: { 'x-env': 'dev' } }))).toBe(
      'allow',
    );
    expect(d(s, req(foo, { port: 8443 }, { ns: 'a', sa: 'b', ip: '11.1.2.3', headers: { 'x-env': 'dev' } }))).toBe(
      'deny',
    );
    expect(d(s, req(foo, { port: 8443 }, { ns: 'a', sa: 'b', ip: '10.1.2.3', headers: { 'x-env': 'prod' } }))).toBe(
      'deny',
    );
    expect(d(s, req(foo, { port: 80 }, { ns: 'a', sa: 'b', ip: '10.1.2.3', headers: { 'x-env': 'dev' } }))).toBe(
      'deny',
    );
  });

  it('unknown when keys are rejected with file:line:col (Istio would ignore them)', () => {
    const yaml = ap('foo', 'rules:\n- when:\n  - key: request.auth.claimz[groups]\n    values: [a]');
    expect(() => parsePolicyText(yaml, 'ap.yaml')).toThrow(PolicyLoadError);
    try {
      parsePolicyText(yaml, 'ap.yaml');
    } catch (e) {
      const i = (e as PolicyLoadError).issues[0];
      expect(i).toMatchObject({ file: 'ap.yaml', line: 9, column: 12, field: 'spec.rules[0].when[0].key' });
      expect(i?.message).toContain('unknown condition key');
    }
  });

  it('applicability: namespace, root namespace, selector.matchLabels', () => {
    const s = snap(
      ap('istio-system', 'action: DENY\nrules:\n- to:\n  - operation: { paths: [/root-deny] }', 'root') +
        '---\n' +
        ap(
          'foo',
          'selector:\n  matchLabels: { app: httpbin, version: v1 }\naction: DENY\nrules:\n- to:\n  - operation: { paths: [/v1-deny] }',
          'sel',
        ) +
        '---\n' +
        ap('foo', 'rules:\n- {}', 'allow-all') +
        '---\n' +
        ap('bar', 'rules:\n- {}', 'allow-all'),
    );
    const v1 = { ns: 'foo', app: 'httpbin', labels: { app: 'httpbin', version: 'v1' } };
    const v2 = { ns: 'foo', app: 'httpbin', labels: { app: 'httpbin', version: 'v2' } };
    expect(d(s, req(v1, { path: '/v1-deny' }))).toBe('deny');
    expect(d(s, req(v2, { path: '/v1-deny' }))).toBe('allow');
    expect(d(s, req({ ns: 'bar', app: 'x' }, { path: '/root-deny' }))).toBe('deny');
    expect(d(s, req({ ns: 'bar', app: 'x' }, { path: '/ok' }))).toBe('allow');
    // The app label is derived from the SPIFFE ID's service account when no labels are given.
    const s2 = snap(ap('foo', 'selector:\n  matchLabels: { app: httpbin }\nrules:\n- {}'));
    expect(d(s2, { target: { spiffe_id: ID('foo', 'httpbin') }, request: { method: 'GET', path: '/' } })).toBe('allow');
  });

  it('AUDIT never changes the decision but is recorded', () => {
    const s = snap(
      ap('foo', 'action: AUDIT\nrules:\n- {}', 'audit') +
        '---\n' +
        ap('foo', 'rules:\n- to:\n  - operation: { methods: [GET] }', 'allow'),
    );
    const a = decide(s, req(foo, { method: 'GET' }));
    expect(a.decision).toBe('allow');
    expect(a.audit).toEqual([{ policy: 'foo/audit', rule: '0' }]);
    expect(d(s, req(foo, { method: 'POST' }))).toBe('deny');
    const onlyAudit = snap(ap('foo', 'action: AUDIT\nrules:\n- {}', 'audit'));
    expect(d(onlyAudit, req(foo))).toBe('allow'); // selected, no ALLOW policy: Istio allows
  });

  it('CUSTOM is evaluated first and fails closed without a provider', () => {
    const s = snap(
      ap(
        'foo',
        'action: CUSTOM\nprovider: { name: ext-authz }\nrules:\n- to:\n  - operation: { paths: [/ext*] }',
        'c',
      ) +
        '---\n' +
        ap('foo', 'rules:\n- {}', 'a'),
    );
    expect(decide(s, req(foo, { path: '/ext/1' }))).toMatchObject({ decision: 'deny', policy: 'foo/c' });
    expect(d(s, req(foo, { path: '/other' }))).toBe('allow');
  });

  it('v1beta1 loads the same; dry-run annotation decides nothing', () => {
    const s = snap(
      ap('foo', 'action: DENY\nrules:\n- {}', 'dry', '  annotations:\n    istio.io/dry-run: "true"\n').replace(
        'security.istio.io/v1',
        'security.istio.io/v1beta1',
      ) +
        '---\n' +
        ap('foo', 'rules:\n- {}', 'allow'),
    );
    const r = decide(s, req(foo));
    expect(r.decision).toBe('allow');
    expect(r.dryRun).toEqual([
      { policy: 'foo/dry', action: 'DENY', rule: '0', wouldDecide: 'deny', wouldChange: true },
    ]);
  });

  it('lower-case methods in a policy are rejected', () => {
    expect(() => parsePolicyText(ap('foo', 'rules:\n- to:\n  - operation: { methods: [get] }'), 'm.yaml')).toThrow(
      /m\.yaml:\d+:\d+: spec\.rules\[0\]\.to\[0\]\.operation\.methods\[0\]/,
    );
  });
});
