import { describe, expect, it } from 'vitest';
import { decide, pathOptionsFor } from '../../src/policy/index.js';
import { checkMethod, normalizePath } from '../../src/policy/path.js';
import { snap } from './helpers.js';

const POLICIES = `apiVersion: nevertrust.dev/v1
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
`;
const policy = snap(POLICIES);
const lenientPolicy = snap(POLICIES, { path: pathOptionsFor('lenient') });
const call = (path: string, method = 'POST') =>
  decide(policy, { target: { service: 'payment-service' }, request: { method, path } });
const callLenient = (path: string) =>
  decide(lenientPolicy, { target: { service: 'payment-service' }, request: { method: 'POST', path } });
// Lenient mode (`path_normalization: lenient`) is the normalization before strict mode existed:
// these tables assert that it stays exactly as it was.
const LENIENT = pathOptionsFor('lenient');

describe('lenient path normalization', () => {
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
    expect(normalizePath(raw, LENIENT)).toEqual({ ok: true, path: want });
  });

  it('keeps // when merging is off and decodes %2F only when asked', () => {
    expect(normalizePath('/a//b', { ...LENIENT, mergeSlashes: false })).toEqual({ ok: true, path: '/a//b' });
    expect(normalizePath('/v1/charges%2F..%2Fadmin', { ...LENIENT, decodeSlashes: true })).toEqual({
      ok: true,
      path: '/v1/admin',
    });
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
    for (const opts of [LENIENT, {}]) {
      const r = normalizePath(raw, opts);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toContain(why);
    }
  });

  it('can reject encoded dots outright', () => {
    expect(normalizePath('/v1/%2e%2e/x', { ...LENIENT, encodedDots: 'reject' }).ok).toBe(false);
  });
});

// Backends resolve these differently (Tomcat and Spring drop `;…` from a segment, many decode
// `%2f`, `%25` twice or accept overlong UTF-8): `/v1/charges/..;/admin` is `/v1/admin` to a Spring
// app. Lenient mode lets them match `/v1/charges*`; strict mode (the default) refuses them.
const DECODED_DIFFERENTLY = [
  ['/v1/charges/..;/admin', '";" path parameter'],
  ['/v1/charges;x=1', '";" path parameter'],
  ['/v1/charges/%2f..%2fadmin', 'encoded slash (%2F)'],
  ['/v1/charges/%2F..%2Fadmin', 'encoded slash (%2F)'],
  ['/v1/charges/%5c..%5cadmin', 'encoded backslash (%5C)'],
  ['/v1/charges/..%3b/admin', 'encoded ";" (%3B) path parameter'],
  ['/v1/charges/%2e%2e%2fadmin', 'encoded dot (%2E)'],
  ['/v1/charges/%252e%252e/admin', 'double-encoded escape (%252E)'],
  ['/v1/charges/%252f', 'double-encoded escape (%252F)'],
  ['/v1/charges/%c0%ae%c0%ae/admin', 'not well-formed UTF-8 at offset 12'],
  ['/v1/charges/%e0%80%ae', 'not well-formed UTF-8'],
  ['/v1/charges/%ed%a0%80', 'not well-formed UTF-8'],
  ['/v1/charges/%f4%90%80%80', 'not well-formed UTF-8'],
  ['/v1/charges/%c3', 'not well-formed UTF-8'],
  ['/v1/charges/%a9', 'not well-formed UTF-8'],
  ['/v1/charges/%c3%28', 'not well-formed UTF-8'],
  ['/v1/charges/../admin', '".." segment'],
  ['/v1/charges/./x', '"." segment'],
  ['/v1/charges/x/..', '".." segment'],
  ['/v1/charges\\..\\admin', 'backslash'],
] as const;

describe('strict path normalization (the default)', () => {
  it.each(DECODED_DIFFERENTLY)('%s is denied, the reason naming the rule', (path, why) => {
    const r = call(path);
    expect(r).toMatchObject({ decision: 'deny', policy: null, rule: null });
    expect(r.reason).toContain(why);
    expect(r.reason).toContain('(refused by path_normalization: strict)');
  });

  it.each(DECODED_DIFFERENTLY.slice(0, 10))('%s matches /v1/charges* in lenient mode, as before', (path) => {
    expect(callLenient(path).decision).toBe('allow');
  });

  it.each([
    ['/v1/charges', '/v1/charges'],
    ['/v1//charges', '/v1/charges'],
    ['/v1/charges/%61b', '/v1/charges/ab'],
    ['/v1/charges/caf%c3%a9', '/v1/charges/caf%C3%A9'],
    ['/v1/charges/%F0%9F%98%80', '/v1/charges/%F0%9F%98%80'],
    ['/v1/charges/%25zz', '/v1/charges/%25zz'],
    ['/v1/charges/...', '/v1/charges/...'],
    ['/v1/charges/x?q=../..;%2f', '/v1/charges/x'],
  ])('keeps %s as %s', (raw, want) => {
    expect(normalizePath(raw)).toEqual({ ok: true, path: want });
    expect(call(raw).decision).toBe('allow');
  });

  it('decode_and_merge_slashes decodes %2F and %5C, then checks what they make', () => {
    const o = pathOptionsFor('decode_and_merge_slashes');
    expect(normalizePath('/v1/charges%2Fx%5cy', o)).toEqual({ ok: true, path: '/v1/charges/x/y' });
    expect(normalizePath('/v1/charges/%2f..%2fadmin', o)).toMatchObject({ ok: false });
    expect(normalizePath('/v1/charges/..;/admin', o)).toMatchObject({ ok: false });
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
    const r = callLenient(p);
    const n = normalizePath(p, LENIENT);
    expect(call(p).decision).toBe('deny');
    // Allowed only when the resolved path really is under /v1/charges with no dot segment left
    // (`..%2F` stays one opaque segment, as in Istio: %2F is not decoded by default).
    if (r.decision === 'allow') {
      expect(n.ok && n.path.startsWith('/v1/charges') && !/\/\.\.?(\/|$)/.test(n.path)).toBe(true);
    } else expect(r.decision).toBe('deny');
    expect(n.ok && /^\/admin/.test(n.path) ? r.decision : 'deny').toBe('deny');
  });

  it('escapes into the denied admin area are denied (lenient: by the DENY rule)', () => {
    expect(callLenient('/v1/charges/%2e%2e/charges/admin')).toMatchObject({ decision: 'deny', policy: 'no-admin' });
    expect(callLenient('/x/../admin')).toMatchObject({ decision: 'deny', policy: 'no-admin' });
    expect(callLenient('/v1/charges/1').decision).toBe('allow');
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
