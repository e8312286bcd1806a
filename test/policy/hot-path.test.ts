import { describe, expect, it } from 'vitest';
import { compile, decide } from '../../src/policy/index.js';
import { lookupCandidates } from '../../src/policy/evaluate.js';
import { normalizePath } from '../../src/policy/path.js';
import { normalizeRequest } from '../../src/policy/request.js';

// The one-scan canonical check of normalizePath must send everything that is not already
// canonical to the full normalization, and must cut at the first `?` or `#` only. The table
// resolves dot segments and backslashes, which only lenient mode does (strict mode refuses them).
const LENIENT = { strict: false };
describe('normalizePath canonical fast path', () => {
  it.each([
    ['/v1/charges', '/v1/charges'],
    ['/', '/'],
    ['/a/.', '/a/'],
    ['/a/..', '/'],
    ['/a.', '/a.'],
    ['/a/b.?x=/../c', '/a/b.'],
    ['/a?x=/../c', '/a'],
    ['/a#/../b', '/a'],
    ['/a/./b', '/a/b'],
    ['/a//b', '/a/b'],
    ['/.well-known/x', '/.well-known/x'],
    ['/a%2e%2e/b', '/a../b'],
    ['/a/%2e%2e/b', '/b'],
    ['/a\\..\\b', '/b'],
  ])('%s → %s', (raw, want) => {
    expect(normalizePath(raw, LENIENT)).toEqual({ ok: true, path: want });
  });

  it.each([
    ['/v1/charges', '/v1/charges'],
    ['/a.', '/a.'],
    ['/a/b.?x=/../c', '/a/b.'],
    ['/a//b', '/a/b'],
    ['/.well-known/x', '/.well-known/x'],
    ['/a/b;c?x=;', null],
    ['/a/.', null],
    ['/a/..', null],
    ['/a/./b', null],
    ['/a%2e%2e/b', null],
    ['/a\\..\\b', null],
  ])('strict: %s → %s', (raw, want) => {
    const r = normalizePath(raw);
    if (want === null) expect(r.ok).toBe(false);
    else expect(r).toEqual({ ok: true, path: want });
  });

  it.each([
    ['', 'path must begin with /'],
    ['?x', 'path must begin with /'],
    ['a/b', 'path must begin with /'],
    ['/a b', 'path contains a character that must be percent-encoded: " "'],
    ['/a\u00e9', 'path contains a non-ASCII character'],
    ['/a\u007f', 'path contains a control character'],
    ['/a\u0000', 'path contains a null byte'],
    ['/a%zz', 'path has an invalid percent-escape at offset 2'],
    ['/a"b', 'path contains a character that must be percent-encoded: "\\""'],
  ])('refuses %j', (raw, reason) => {
    expect(normalizePath(raw)).toEqual({ ok: false, reason });
  });

  it('looks only at the part before the query, as before', () => {
    // Only the part before `?` is a path; a bad character after it is not looked at, as before.
    expect(normalizePath('/a?\u0000')).toEqual({ ok: true, path: '/a' });
  });
});

describe('normalized request shape', () => {
  const id = 'spiffe://example.org/ns/payments/sa/payment-service';

  it('derives app labels from the target ID, shared and read-only', () => {
    const a = normalizeRequest({ target: { spiffe_id: id } });
    const b = normalizeRequest({ target: { spiffe_id: id } });
    if (!a.ok || !b.ok) throw new Error('normalization failed');
    expect(a.req.targetLabels).toEqual({ app: 'payment-service' });
    expect(Object.isFrozen(a.req.targetLabels)).toBe(true);
    expect(b.req.targetLabels).toBe(a.req.targetLabels);
  });

  it('an explicit target service overrides the ID-derived app label', () => {
    const n = normalizeRequest({ target: { spiffe_id: id, service: 'other' } });
    if (!n.ok) throw new Error(n.reason);
    expect(n.req.targetService).toBe('other');
    expect(n.req.targetLabels).toEqual({ app: 'other' });
  });

  it('explicit labels win', () => {
    const n = normalizeRequest({ target: { spiffe_id: id, labels: { tier: 'x' } } });
    if (!n.ok) throw new Error(n.reason);
    expect(n.req.targetLabels).toEqual({ tier: 'x' });
  });

  it('every request has the same keys in the same order', () => {
    const a = normalizeRequest({});
    const b = normalizeRequest({
      source: { spiffe_id: id, ip: '10.0.0.1', claims: { iss: 'i', sub: 's', aud: 'a' } },
      target: { spiffe_id: id, port: 443, host: 'A.example' },
      request: { method: 'GET', path: '/x', headers: { 'X-A': '1' }, time: '2026-01-01T00:00:00Z' },
    });
    if (!a.ok || !b.ok) throw new Error('normalization failed');
    expect(Object.keys(b.req)).toEqual(Object.keys(a.req));
    expect(b.req.host).toBe('a.example');
    expect(b.req.headers).toEqual({ 'x-a': '1' });
  });

  it('bad input still denies with a reason', () => {
    const snap = compile([]);
    for (const input of [
      { source: { spiffe_id: 'not-an-id' } },
      { target: { spiffe_id: 'spiffe://' } },
      { request: { method: 'get' } },
      { request: { path: '/a%00' } },
      { source: { ip: '300.1.1.1' } },
    ]) {
      const d = decide(snap, input);
      expect(d.decision).toBe('deny');
      expect(d.reason).toMatch(/^invalid request: /);
    }
    // A non-object request is an evaluation error, not a crash.
    const d = decide(snap, null as unknown as Parameters<typeof decide>[1]);
    expect(d.decision).toBe('deny');
    expect(d.reason).toMatch(/^evaluation error: /);
  });
});

describe('lookupCandidates', () => {
  it('returns lists the next decision does not overwrite', () => {
    const loc = { file: 't', line: 1, column: 1 };
    const snap = compile([
      {
        id: 'p',
        origin: 'native',
        action: 'ALLOW',
        dryRun: false,
        loc,
        target: { services: [{ kind: 'exact', value: 'svc' }] },
        rules: [{ id: 'r', loc, when: [] }],
      },
    ]);
    const n = normalizeRequest({ target: { service: 'svc' } });
    const m = normalizeRequest({ target: { service: 'none' } });
    if (!n.ok || !m.ok) throw new Error('normalization failed');
    const c = lookupCandidates(snap, n.req);
    expect(c.rules.map((r) => r.rule.id)).toEqual(['r']);
    expect(decide(snap, { target: { service: 'none' } }).decision).toBe('deny');
    lookupCandidates(snap, m.req);
    expect(c.applicable.map((p) => p.policy.id)).toEqual(['p']);
    expect(c.rules.map((r) => r.rule.id)).toEqual(['r']);
  });
});
