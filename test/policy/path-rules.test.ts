import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decide,
  lintPolicies,
  loadPolicies,
  PolicyLoadError,
  parsePolicyDocuments,
  parsePolicyText,
  pathOptionsFor,
} from '../../src/policy/index.js';

const doc = (action: string, paths: string, field = 'paths') => `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: p }
spec:
  action: ${action}
  target: { services: [payment-service] }
  rules:
    - name: r
      to:
        - ${field}: ${paths}
`;
const issuesOf = (text: string, mode: 'strict' | 'lenient' = 'strict') =>
  parsePolicyDocuments(text, 'rules.yaml', { path: pathOptionsFor(mode) }).issues;

const dir = mkdtempSync(join(tmpdir(), 'nt-path-rules-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Request paths are normalized before any rule sees them, so a rule path that normalization would
// change can never match: a DENY rule on `/v1//admin` silently never denied. Such paths are refused
// at load, with file and line.
describe('rule paths that no request could match are refused at load', () => {
  it('a DENY rule on a path with // is refused with file, line and what to write', () => {
    const file = join(dir, 'deny.yaml');
    writeFileSync(
      file,
      `${doc('ALLOW', '["/v1/*"]')}---\n${doc('DENY', '["/v1//admin", "/v1//internal*"]').replace('name: p', 'name: d')}`,
    );
    let err: unknown;
    try {
      loadPolicies(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyLoadError);
    const issues = (err as PolicyLoadError).issues;
    expect(issues).toHaveLength(2);
    expect(issues[0]).toMatchObject({ line: 21, field: 'spec.rules[0].to[0].paths[0]' });
    expect(issues[0]?.file).toContain('deny.yaml');
    expect(issues[0]?.message).toContain('"/v1//admin" is not normalized');
    expect(issues[0]?.message).toContain('write "/v1/admin"');
    expect(issues[1]?.message).toContain('write "/v1/internal*"');
  });

  it('written normalized, the DENY rule denies what it says, // or not', () => {
    const s = loadPolicies(
      writeAndReturn(
        'ok.yaml',
        `${doc('ALLOW', '["/v1/*"]')}---\n${doc('DENY', '["/v1/admin"]').replace('name: p', 'name: d')}`,
      ),
    );
    const call = (path: string) =>
      decide(s, { target: { service: 'payment-service' }, request: { method: 'GET', path } });
    expect(call('/v1//admin')).toMatchObject({ decision: 'deny', policy: 'd' });
    expect(call('/v1/admin')).toMatchObject({ decision: 'deny', policy: 'd' });
    expect(call('/v1/charges').decision).toBe('allow');
  });

  it.each([
    ['/v1/./admin', '"/v1/admin"'],
    ['/v1/x/../admin', '"/v1/admin"'],
    ['/v1/%61dmin', '"/v1/admin"'],
    ['/v1/a%2fb', 'encoded slash'],
    ['/v1/a;b', 'path parameter'],
    ['/v1/%252e', 'double-encoded'],
    ['/v1/%c0%ae', 'not well-formed UTF-8'],
    ['/v1/..;/admin*', 'path parameter'],
    ['"*//admin"', 'write "*/admin"'],
    ['"*/../admin"', 'refused by path_normalization: strict'],
    ['/v1//admin*', 'write "/v1/admin*"'],
  ])('%s is refused (%s)', (path, why) => {
    for (const action of ['DENY', 'ALLOW']) {
      for (const field of ['paths', 'notPaths']) {
        const issues = issuesOf(doc(action, `[${path}]`, field));
        expect(issues, `${action} ${field}`).toHaveLength(1);
        expect(issues[0]?.message).toContain(why);
        expect(issues[0]?.line).toBe(10);
      }
    }
  });

  it('normalized paths, partial dot segments in prefixes and suffixes load as before', () => {
    expect(
      issuesOf(doc('DENY', '[/v1/admin, /v1/admin/*, /v1/charges/.*, /.well-known/*, "*.json", "*", /v1/caf%C3%A9]')),
    ).toEqual([]);
  });

  it('in lenient mode, what lenient request normalization keeps is accepted (as before)', () => {
    expect(issuesOf(doc('DENY', '[/v1/a;b, /v1/a%2Fb, /v1/..;/admin*]'), 'lenient')).toEqual([]);
    expect(issuesOf(doc('DENY', '["/v1//admin"]'), 'lenient')).toHaveLength(1);
    expect(issuesOf(doc('DENY', '["/v1/a%2fb"]'), 'lenient')[0]?.message).toContain('write "/v1/a%2Fb"');
  });

  it('Istio documents get the same check', () => {
    const istio = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: i, namespace: payments }
spec:
  action: DENY
  rules:
    - to:
        - operation:
            paths: ["/v1//admin"]
`;
    const issues = issuesOf(istio);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ line: 9 });
  });
});

describe('policy lint: a prefix * that does not follow /', () => {
  const text =
    doc('ALLOW', '[/v1/charges*, /v1/refunds/*, /v1/refunds]') +
    '---\n' +
    doc('DENY', '[/admin/*]', 'notPaths').replace('name: p', 'name: d').replace('/admin/*', '/public*');
  const policies = parsePolicyText(text, 'lint.yaml');

  it('keeps its literal meaning: /v1/charges* matches /v1/chargesadmin', () => {
    const s = loadPolicies(writeAndReturn('literal.yaml', doc('ALLOW', '[/v1/charges*]')));
    const call = (path: string) =>
      decide(s, { target: { service: 'payment-service' }, request: { method: 'GET', path } });
    expect(call('/v1/chargesadmin').decision).toBe('allow');
    expect(call('/v1/charges/1').decision).toBe('allow');
  });

  it('warns, suggesting the path and the path with /*', () => {
    const f = lintPolicies(policies).filter((x) => x.code === 'path-prefix-without-slash');
    expect(f).toHaveLength(2);
    expect(f[0]).toMatchObject({ severity: 'warning', file: 'lint.yaml', line: 8, policy: 'p', rule: 'r' });
    expect(f[0]?.message).toContain('"/v1/charges*" also matches "/v1/chargesadmin"');
    expect(f[0]?.message).toContain('write "/v1/charges" and "/v1/charges/*"');
    expect(f[1]).toMatchObject({ policy: 'd' });
    expect(f[1]?.message).toContain('"/public*"');
  });
});

function writeAndReturn(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}
