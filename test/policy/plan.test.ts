import { describe, expect, it } from 'vitest';
import { type AccessRequest, compile, decide, type Policy } from '../../src/policy/index.js';
import { decideNormalized } from '../../src/policy/evaluate.js';
import type { Rule } from '../../src/policy/model.js';
import { normalizeRequest } from '../../src/policy/request.js';
import { methodBit, NO_METHOD_BIT, OTHER_METHOD_BIT, type PathOptions } from '../../src/policy/path.js';
import { deriveRequest } from '../../src/policy/request.js';

const loc = { file: 't', line: 1, column: 1 };
const TARGET = 'spiffe://td/ns/a/sa/api';
const CALLER = 'td/ns/a/sa/web';

function allowPolicy(rules: Rule[], id = 'p'): Policy {
  return {
    id,
    origin: 'native',
    action: 'ALLOW',
    dryRun: false,
    loc,
    target: { spiffeIds: [{ kind: 'exact', value: TARGET }] },
    rules,
  };
}

function rule(id: string, to: Rule['to']): Rule {
  return { id, loc, from: [{ principals: [{ kind: 'exact', value: CALLER }] }], to, when: [] };
}

function request(method: string | undefined, path: string | undefined): AccessRequest {
  return {
    source: { spiffe_id: `spiffe://${CALLER}` },
    target: { spiffe_id: TARGET },
    request: { method, path },
  };
}

/** decide() (planned) and decideNormalized() on a plainly normalized request (general lookup). */
function both(policies: Policy[], input: AccessRequest, path?: PathOptions) {
  const snap = compile(policies, { path });
  const n = normalizeRequest(input, path);
  if (!n.ok) throw new Error(n.reason);
  const planned = decide(snap, input);
  expect(planned).toEqual(decideNormalized(snap, n.req));
  return planned;
}

describe('method bits', () => {
  it('give every request exactly one bit', () => {
    const bits = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'].map(methodBit);
    expect(new Set(bits).size).toBe(9);
    for (const b of bits) expect(b > 0 && b < NO_METHOD_BIT && (b & (b - 1)) === 0).toBe(true);
    expect(methodBit(undefined)).toBe(NO_METHOD_BIT);
    expect(methodBit('get')).toBe(OTHER_METHOD_BIT);
    expect(methodBit('FOO')).toBe(OTHER_METHOD_BIT);
  });
});

describe('method-and-path rules on the planned path', () => {
  it('a rule without methods accepts a request without a method; one with methods does not', () => {
    expect(
      both([allowPolicy([rule('r', [{ paths: [{ kind: 'prefix', value: '/v1/' }] }])])], request(undefined, '/v1/x'))
        .decision,
    ).toBe('allow');
    expect(
      both([allowPolicy([rule('r', [{ methods: [{ kind: 'exact', value: 'GET' }] }])])], request(undefined, '/v1/x'))
        .decision,
    ).toBe('deny');
  });

  it('a rule with paths never matches a request without a path; one without paths does', () => {
    const withPaths = allowPolicy([rule('r', [{ paths: [{ kind: 'presence' }] }])]);
    expect(both([withPaths], request('GET', undefined)).decision).toBe('deny');
    const anyPath = allowPolicy([rule('r', [{ methods: [{ kind: 'exact', value: 'GET' }] }])]);
    expect(both([anyPath], request('GET', undefined)).decision).toBe('allow');
  });

  it('an empty paths or methods list matches nothing', () => {
    expect(both([allowPolicy([rule('r', [{ paths: [] }])])], request('GET', '/x')).decision).toBe('deny');
    expect(both([allowPolicy([rule('r', [{ methods: [] }])])], request('GET', '/x')).decision).toBe('deny');
  });

  it('every path pattern of a rule is tried, in any kind', () => {
    const p = allowPolicy([
      rule('r', [
        {
          methods: [
            { kind: 'exact', value: 'GET' },
            { kind: 'exact', value: 'POST' },
          ],
          paths: [
            { kind: 'exact', value: '/a' },
            { kind: 'prefix', value: '/b/' },
            { kind: 'suffix', value: '.json' },
          ],
        },
      ]),
    ]);
    for (const [m, path, want] of [
      ['GET', '/a', 'allow'],
      ['POST', '/b/c', 'allow'],
      ['GET', '/x/y.json', 'allow'],
      ['GET', '/a/', 'deny'],
      ['PUT', '/a', 'deny'],
      ['GET', '/b', 'deny'],
    ] as const)
      expect(both([p], request(m, path)).decision, `${m} ${path}`).toBe(want);
  });

  it('the first matching rule in order decides, with its policy, rule and reason', () => {
    const d = both(
      [
        allowPolicy([rule('get', [{ methods: [{ kind: 'exact', value: 'GET' }] }])], 'first'),
        allowPolicy([rule('any', undefined)], 'second'),
      ],
      request('POST', '/x'),
    );
    expect(d).toMatchObject({
      decision: 'allow',
      policy: 'second',
      rule: 'any',
      reason: 'ALLOW policy "second" rule "any" matched: allow',
    });
  });

  // Lenient mode resolves dot segments (strict mode refuses them: see path.test.ts).
  it('a dot segment never reaches a prefix it climbs out of', () => {
    const p = allowPolicy([rule('r', [{ paths: [{ kind: 'prefix', value: '/v1/charges' }] }])]);
    const lenient = { strict: false };
    expect(both([p], request('GET', '/v1/charges/../admin'), lenient).decision).toBe('deny');
    expect(both([p], request('GET', '/v1/charges/%2e%2e/admin'), lenient).decision).toBe('deny');
    expect(both([p], request('GET', '/v1/charges/x/../y'), lenient).decision).toBe('allow');
  });
});

describe('the planned path is only taken when it applies', () => {
  it('an explicit target service or labels take the general lookup, with their own outcome', () => {
    const snap = compile([
      {
        ...allowPolicy([rule('r', undefined)]),
        target: { spiffeIds: [{ kind: 'exact', value: TARGET }], labels: { app: 'api' } },
      },
    ]);
    expect(decide(snap, request('GET', '/')).decision).toBe('allow');
    expect(decide(snap, { ...request('GET', '/'), target: { spiffe_id: TARGET, service: 'other' } }).decision).toBe(
      'deny',
    );
    expect(
      decide(snap, { ...request('GET', '/'), target: { spiffe_id: TARGET, labels: { app: 'other' } } }).decision,
    ).toBe('deny');
  });

  it('a request derived for one snapshot is decided by another on its own policies', () => {
    const allows = compile([allowPolicy([rule('r', undefined)])]);
    const denies = compile([{ ...allowPolicy([rule('r', undefined)]), action: 'DENY' }]);
    const r = deriveRequest(request('GET', '/'), undefined, allows.ids, undefined);
    if (typeof r === 'string') throw new Error(r);
    expect(r.targetInfo?.plan).not.toBeNull();
    expect(decideNormalized(allows, r).decision).toBe('allow');
    expect(decideNormalized(denies, r).decision).toBe('deny');
  });

  it('a nested decision from the caller’s getter does not disturb the outer one', () => {
    const snap = compile([allowPolicy([rule('r', [{ methods: [{ kind: 'exact', value: 'GET' }] }])])]);
    let inner: string | undefined;
    const input = {
      source: { spiffe_id: `spiffe://${CALLER}` },
      target: { spiffe_id: TARGET },
      get request() {
        inner = decide(snap, {
          source: { spiffe_id: 'spiffe://td/ns/b/sa/x' },
          target: { spiffe_id: TARGET },
        }).decision;
        return { method: 'GET', path: '/' };
      },
    };
    expect(decide(snap, input).decision).toBe('allow');
    expect(inner).toBe('deny');
    // And the reused request object is clean for the next call.
    expect(decide(snap, { target: { spiffe_id: TARGET } }).decision).toBe('deny');
  });
});
