import { describe, expect, it } from 'vitest';
import { checkMethod, decide, normalizePath } from '../../src/policy/index.js';
import { snap } from './helpers.js';

const policy = snap(`apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: charges }
spec:
  action: ALLOW
  target: { services: [payment-service] }
  rules:
    - to: [{ methods: [POST, GET], paths: [/v1/charges*] }]
---
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: no-admin }
spec:
  action: DENY
  target: { services: [payment-service] }
  rules:
    - to: [{ paths: [/admin*, /v1/charges/admin*] }]
`);
const call = (path: string, method = 'POST') =>
  decide(policy, { target: { service: 'payment-service' }, request: { method, path } });

describe('path normalization', () => {
  it.each([
    ['/v1/charges/../admin', '/v1/admin'],
    ['/v1/charges/%2e%2e/admin', '/v1/admin'],
    ['/v1/charges/%2E%2e/admin', '/v1/admin'],
    ['/v1/charges/.%2E/admin', '/v1/admin'],
    ['/v1//charges', '/v1/charges'],
    ['/v1\\charges\\..\\..\\admin', '/admin'],
    ['/v1/./charges', '/v1/charges'],
    ['/v1/charges?x=../../admin', '/v1/charges'],
    ['/v1/charges#frag', '/v1/charges'],
    ['/%61dmin', '/admin'],
    ['/../../../admin', '/admin'],
    ['/v1/charges/', '/v1/charges/'],
    ['/v1/charges/x/..', '/v1/charges/'],
    ['/a%2Fb', '/a%2Fb'],
    ['/a%2fb', '/a%2Fb'],
    ['/a%5cb', '/a%5Cb'],
  ])('%s → %s', (raw, want) => {
    expect(normalizePath(raw)).toEqual({ ok: true, path: want });
  });

  it('keeps // when merging is off and decodes %2F only when asked', () => {
    expect(normalizePath('/a//b', { mergeSlashes: false })).toEqual({ ok: true, path: '/a//b' });
    expect(normalizePath('/v1/charges%2F..%2Fadmin', { decodeSlashes: true })).toEqual({ ok: true, path: '/v1/admin' });
  });

  it.each([
    ['/a\0b', 'null byte'],
    ['/a%00b', 'null byte'],
    ['/a%zzb', 'invalid percent-escape'],
    ['/a%4', 'invalid percent-escape'],
    ['relative/path', 'must begin with /'],
    ['/a b', 'must be percent-encoded'],
    ['/ü', 'non-ASCII'],
    ['/a\nb', 'control character'],
    [`/${'a'.repeat(5000)}`, 'longer than'],
  ])('refuses %j', (raw, why) => {
    const r = normalizePath(raw);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain(why);
  });

  it('can reject encoded dots outright', () => {
    expect(normalizePath('/v1/%2e%2e/x', { encodedDots: 'reject' }).ok).toBe(false);
  });
});

describe('path attacks never match /v1/charges*', () => {
  it.each([
    '/v1/charges/../admin',
    '/v1/charges/%2e%2e/admin',
    '/v1/charges/%2E%2e/admin',
    '/v1/charges/%2E%2e/',
    '/v1/charges/..%2f..%2fadmin',
    '/v1/charges\\..\\..\\admin',
    '/v1/charges/./../../admin',
    '/v1/charges//..//..//admin',
  ])('%s', (p) => {
    const r = call(p);
    const n = normalizePath(p);
    // Allowed only when the resolved path really is under /v1/charges with no dot segment left
    // (`..%2F` stays one opaque segment, as in Istio: %2F is not decoded by default).
    if (r.decision === 'allow') {
      expect(n.ok && n.path.startsWith('/v1/charges') && !/\/\.\.?(\/|$)/.test(n.path)).toBe(true);
    } else expect(r.decision).toBe('deny');
    expect(n.ok && /^\/admin/.test(n.path) ? r.decision : 'deny').toBe('deny');
  });

  it('escapes into the denied admin area are denied', () => {
    expect(call('/v1/charges/%2e%2e/charges/admin')).toMatchObject({ decision: 'deny', policy: 'no-admin' });
    expect(call('/x/../admin')).toMatchObject({ decision: 'deny', policy: 'no-admin' });
    expect(call('/v1/charges/1').decision).toBe('allow');
  });

  it('refused paths deny with the reason', () => {
    expect(call('/v1/charges%00')).toMatchObject({
      decision: 'deny',
      reason: 'invalid request: path contains a null byte',
    });
    expect(call(`/v1/charges/${'x'.repeat(5000)}`).reason).toContain('longer than');
  });
});

describe('methods', () => {
  it('lower-case and unknown methods are denied with a reason', () => {
    expect(call('/v1/charges', 'post')).toMatchObject({
      decision: 'deny',
      reason: 'invalid request: method "post" must be upper-case',
    });
    expect(call('/v1/charges', 'BREW').reason).toContain('unknown method');
    expect(call('/v1/charges', 'POST').decision).toBe('allow');
    expect(checkMethod('PATCH')).toBeUndefined();
  });
});
