/**
 * Merkle proofs, checked by a small verifier written here from the RFC 6962 definitions (recursive
 * MTH, PATH and SUBPROOF), independent of src/audit's iterative verifier.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  consistencyProof,
  inclusionProof,
  leafHash,
  MerkleFrontier,
  memorySource,
  merkleRoot,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle.js';

import { LEAF, mth, rootFromPath, subproofRoots, H } from './reference.js';

/**
 * What normalizeEvent made of `input` (without the generated id), or the error it threw: the fast
 * path and the zod path must give the same.
 */
function normalizeOutcome(
  normalizeEvent: typeof import('../../src/audit/event.js').normalizeEvent,
  input: unknown,
  maxBytes: number,
  fastPath: boolean,
) {
  try {
    const { id: _id, ...rest } = normalizeEvent(input, { now: 5, maxBytes, fastPath });
    return { ok: rest };
  } catch (err) {
    return { err: (err as Error).name, message: (err as Error).message };
  }
}

const leavesOf = (n: number) => Array.from({ length: n }, (_, i) => LEAF(Buffer.from(`event-${i}`)));

describe('merkle', () => {
  it('hashes leaves and nodes as RFC 6962 says', () => {
    expect(leafHash(Buffer.from('x'))).toEqual(LEAF(Buffer.from('x')));
    expect(merkleRoot([])).toEqual(H());
    // RFC 6962 test vector for the empty tree
    expect(merkleRoot([]).toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    for (const n of [1, 2, 3, 5, 7, 8, 9, 100, 257]) expect(merkleRoot(leavesOf(n))).toEqual(mth(leavesOf(n)));
  });

  it('the frontier gives MTH at every size and reports completed subtrees', () => {
    const leaves = leavesOf(300);
    const f = new MerkleFrontier();
    const completed: string[] = [];
    leaves.forEach((l, i) => {
      f.push(l, (level, idx, hash) => {
        const size = 2 ** level;
        expect(hash).toEqual(mth(leaves.slice(idx * size, (idx + 1) * size)));
        completed.push(`${level}:${idx}`);
      });
      expect(f.root()).toEqual(mth(leaves.slice(0, i + 1)));
    });
    expect(completed).toContain('8:0');
    expect(new MerkleFrontier(f.snapshot()).root()).toEqual(f.root());
  });

  it('inclusion proofs verify with the independent verifier and ours, for every leaf of many sizes', async () => {
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33]) {
      const leaves = leavesOf(n);
      const root = mth(leaves);
      for (let m = 0; m < n; m++) {
        const proof = await inclusionProof(m, n, memorySource(leaves));
        expect(rootFromPath(m, n, leaves[m] as Buffer, proof)).toEqual(root);
        expect(verifyInclusion(m, n, leaves[m] as Buffer, proof, root)).toBe(true);
        // a wrong leaf or a wrong index fails
        expect(verifyInclusion(m, n, LEAF(Buffer.from('forged')), proof, root)).toBe(false);
        if (n > 1) expect(verifyInclusion((m + 1) % n, n, leaves[m] as Buffer, proof, root)).toBe(false);
      }
    }
  });

  it('consistency proofs verify with the independent verifier and ours', async () => {
    for (const n of [1, 2, 3, 5, 8, 9, 16, 17, 33]) {
      const leaves = leavesOf(n);
      const newRoot = mth(leaves);
      for (let m = 1; m <= n; m++) {
        const oldRoot = mth(leaves.slice(0, m));
        const proof = await consistencyProof(m, n, memorySource(leaves));
        if (m === n) expect(proof).toEqual([]);
        else expect(subproofRoots(m, n, true, proof, oldRoot)).toEqual([oldRoot, newRoot]);
        expect(verifyConsistency(m, n, oldRoot, newRoot, proof)).toBe(true);
        if (m < n) expect(verifyConsistency(m, n, LEAF(Buffer.from('x')), newRoot, proof)).toBe(false);
      }
    }
  });

  it('property: proofs hold for random sizes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 600 }), fc.nat(), fc.nat(), async (n, a, b) => {
        const leaves = leavesOf(n);
        const src = memorySource(leaves);
        const m = a % n;
        const root = mth(leaves);
        const p = await inclusionProof(m, n, src);
        expect(rootFromPath(m, n, leaves[m] as Buffer, p)).toEqual(root);
        const old = (b % n) + 1;
        const cp = await consistencyProof(old, n, src);
        const oldRoot = mth(leaves.slice(0, old));
        if (old < n) expect(subproofRoots(old, n, true, cp, oldRoot)).toEqual([oldRoot, root]);
        expect(verifyConsistency(old, n, oldRoot, root, cp)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });
});

describe('canonical event bytes', () => {
  it('canonicalEvent equals canonicalJson of the event with its seq, for every field', async () => {
    const { canonicalEvent, canonicalJson, normalizeEvent } = await import('../../src/audit/event.js');
    const e = normalizeEvent({
      kind: 'access.decision',
      decision_id: 'd1',
      request_id: 'r1',
      trace_id: 't1',
      time: '2026-11-22T10:00:00Z',
      source: { spiffe_id: 'spiffe://example.org/a', user: 'alice@example.com', device_id: 'd-42', ip: '10.0.0.1' },
      target: { service: 'payments', port: 8443, method: 'POST', path: '/v1/charges', host: 'p.internal' },
      outcome: 'step_up',
      reason: 'mfa "required"\n',
      policy: 'p',
      rule: 'r',
      enforcer: 'sidecar',
      latency_us: 2.5,
      details: { z: [1, { b: 2, a: 'ü' }], a: null, password: 'x' },
    });
    expect(e.time).toBe(Date.parse('2026-11-22T10:00:00Z'));
    expect(canonicalEvent(e, 7)).toBe(canonicalJson({ ...e, seq: 7 }));
    expect(canonicalEvent(e)).toBe(canonicalJson(e));
    expect(JSON.parse(canonicalEvent(e, 7))).toEqual({ ...e, seq: 7 });
    const bare = normalizeEvent({ kind: 'admin.action' });
    expect(canonicalEvent(bare, 0)).toBe(canonicalJson({ ...bare, seq: 0 }));
    expect(bare.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
  it('property: canonicalEvent equals canonicalJson, with and without details, for any characters', async () => {
    const { canonicalEvent, canonicalJson, normalizeEvent } = await import('../../src/audit/event.js');
    const text = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 20 }),
      fc.constantFrom('"\\\u0001', '\ud800', '😀', 'Bearer abcdefghijklmnop'),
    );
    const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
    const arb = fc.record({
      kind: fc.constantFrom('access.decision', 'admin.action'),
      request_id: opt(fc.constantFrom('r-1', 'x:y')),
      trace_id: opt(fc.constant('t-1')),
      decision_id: opt(fc.constant('d-1')),
      source: opt(fc.record({ spiffe_id: opt(text), user: opt(text), ip: opt(text), namespace: opt(text) })),
      target: opt(
        fc.record({
          service: opt(text),
          port: opt(fc.integer({ min: 0, max: 65535 })),
          path: opt(text),
          host: opt(text),
        }),
      ),
      outcome: opt(fc.constantFrom('allow', 'deny', 'step_up', 'error')),
      reason: opt(text),
      rule: opt(text),
      latency_us: opt(fc.double({ min: 0, max: 1e12, noNaN: true })),
      details: opt(
        fc.dictionary(fc.oneof(text, fc.constantFrom('10', '9', '0', 'token')), fc.jsonValue({ maxDepth: 3 })),
      ),
    });
    let checked = 0;
    fc.assert(
      fc.property(arb, fc.nat(), (input, seq) => {
        let e: ReturnType<typeof normalizeEvent>;
        try {
          e = normalizeEvent(input, { now: 5 });
        } catch {
          return; // invalid input: nothing to encode
        }
        checked++;
        expect(canonicalEvent(e, seq)).toBe(canonicalJson({ ...e, seq }));
        expect(canonicalEvent(e)).toBe(canonicalJson(e));
      }),
      { numRuns: 3000 },
    );
    expect(checked).toBeGreaterThan(1000);
  });
});

describe('event validation fast path', () => {
  it('accepts and produces exactly what the zod schema path does', async () => {
    const { normalizeEvent } = await import('../../src/audit/event.js');
    const str = (...extra: unknown[]) =>
      fc.constantFrom(undefined, 'a', 'x'.repeat(300), 'Bearer abcdefghijklmnop', 'ok value', ...extra);
    const arb = fc.record(
      {
        schema_version: fc.constantFrom(undefined, 1, 2),
        id: fc.constantFrom(undefined, 'id-1', '', 'bad id', 'x'.repeat(129)),
        time: fc.constantFrom(undefined, 0, 1767225600000, -1, 1.5, '2026-11-22T10:00:00Z', 'nope', Number.NaN),
        kind: fc.constantFrom('access.decision', 'access.decision', 'a.b_c', 'Bad', '', 'x'.repeat(65), 3),
        decision_id: fc.constantFrom(undefined, 'd-1', 'bad id'),
        source: fc.constantFrom(
          undefined,
          {},
          { spiffe_id: 'spiffe://example.org/a', ip: '10.0.0.1' },
          { user: 'alice', extra: 1 },
          { ip: 'x'.repeat(65) },
          { user: 'Bearer abcdefghijklmnopqrst' },
          { user: undefined },
          'str',
        ),
        target: fc.constantFrom(
          undefined,
          { service: 's', port: 8443, method: 'GET' },
          { port: 70000 },
          { path: 5 },
          [],
        ),
        outcome: fc.constantFrom(undefined, 'allow', 'deny', 'step_up', 'error', 'maybe'),
        reason: str('x'.repeat(3000)),
        policy: str(),
        latency_us: fc.constantFrom(undefined, 0, 2.5, -1, Number.POSITIVE_INFINITY, 1e13),
        surprise: fc.constantFrom(undefined, undefined, undefined, 1),
        // Flat details take the fast path; anything the scrubber or zod must see does not.
        details: fc.constantFrom(
          undefined,
          undefined,
          { a: 1 },
          { pep: 'sidecar', version: 'sha256:ab', identity: 'x509', ok: true, none: null, skip: undefined },
          {},
          { nested: { a: 1 } },
          { list: ['x'] },
          { token: 'abc' },
          { api_key: 1 },
          { note: 'Bearer abcdefghijklmnopqrstuvwxyz' },
          { jwt: 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig' },
          { n: Number.NaN },
          { n: Number.POSITIVE_INFINITY },
          JSON.parse('{"__proto__": {"polluted": true}, "a": 1}'),
          Object.assign(Object.create(null), { a: 'null prototype' }),
          new Map([['a', 1]]),
          'not an object',
          { 2: 'b', 1: 'a', z: 'last' },
        ),
      },
      { requiredKeys: ['kind'] },
    );
    const run = (input: unknown, fastPath: boolean) => {
      try {
        const e = normalizeEvent(input, { now: 5, fastPath });
        const { id, ...rest } = e;
        return { ok: (input as { id?: string }).id === undefined ? rest : { ...rest, id } };
      } catch (err) {
        return { err: (err as Error).name, message: (err as Error).message };
      }
    };
    let fastHits = 0;
    fc.assert(
      fc.property(arb, (input) => {
        const a = run(input, true);
        const b = run(input, false);
        if ('ok' in a) fastHits++;
        expect(a).toEqual(b);
      }),
      { numRuns: 5000 },
    );
    expect(fastHits).toBeGreaterThan(0);
  });

  it('refuses the names of Object.prototype as fields, as zod does', async () => {
    const { normalizeEvent } = await import('../../src/audit/event.js');
    for (const where of ['source', 'target'] as const) {
      for (const k of ['constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
        const input = { kind: 'access.decision', [where]: { [k]: 'x' } };
        expect(normalizeOutcome(normalizeEvent, input, 16_384, true)).toEqual(
          normalizeOutcome(normalizeEvent, input, 16_384, false),
        );
        expect(() => normalizeEvent(input)).toThrow(/unknown field/);
      }
    }
  });

  it('flat details (what enforcement points record) give what zod gives, secrets and sizes included', async () => {
    const { normalizeEvent } = await import('../../src/audit/event.js');
    const key = fc.constantFrom(
      'pep',
      'version',
      'identity',
      '10',
      '2',
      'token',
      'api_key',
      'Authorization',
      '__proto__',
      'é',
    );
    const value = fc.oneof(
      fc.string(),
      fc.string({ maxLength: 900, size: 'max' }),
      fc.constantFrom(
        'Bearer abcdefghijklmnopqrst',
        'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig',
        '"\\\u0001',
        '😀'.repeat(50),
      ),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.constantFrom({ nested: 1 }, ['a']),
    );
    const arb = fc.record({
      details: fc.dictionary(key, value, { maxKeys: 5 }),
      maxBytes: fc.integer({ min: 300, max: 4000 }),
    });
    const run = (input: unknown, maxBytes: number, fastPath: boolean) =>
      normalizeOutcome(normalizeEvent, input, maxBytes, fastPath);
    // A decision as an enforcement point records it, with the details under test.
    const pepDecision = (details: unknown) => ({
      kind: 'access.decision',
      decision_id: 'd-1',
      outcome: 'deny',
      enforcer: 'sidecar',
      source: { spiffe_id: 'spiffe://example.org/ns/a/sa/b' },
      target: { path: '/v1/charges', method: 'POST' },
      details,
    });
    let kept = 0;
    fc.assert(
      fc.property(arb, ({ details, maxBytes }) => {
        const input = pepDecision(details);
        const a = run(input, maxBytes, true);
        expect(a).toEqual(run(input, maxBytes, false));
        if ('ok' in a && a.ok?.details && Object.keys(a.ok.details).length > 0) kept++;
      }),
      { numRuns: 4000 },
    );
    expect(kept).toBeGreaterThan(500);
    // Near the limit, where only the details' share of the bound keeps the fast path from
    // accepting an event zod refuses: the rest of the event is far below 1,500 bytes, the
    // details push it over.
    let refused = 0;
    for (let n = 800; n <= 1600; n += 25) {
      for (const v of ['x'.repeat(n), 'é'.repeat(n >> 1), '\u0001'.repeat(n >> 2)]) {
        const input = pepDecision({ pep: 'sidecar', note: v });
        const a = run(input, 1500, true);
        expect(a).toEqual(run(input, 1500, false));
        if ('err' in a) refused++;
      }
    }
    expect(refused).toBeGreaterThan(10);
  });

  it('checks the size limit exactly, whatever the characters (the fast path bounds before it encodes)', async () => {
    const { normalizeEvent, canonicalSize } = await import('../../src/audit/event.js');
    const text = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: 'grapheme', maxLength: 100 }),
      fc.string({ unit: 'binary', maxLength: 100 }),
      fc.constantFrom('"\\\u0001\u001f', '\ud800', '😀'.repeat(40), 'é'.repeat(150)),
    );
    const arb = fc.record({
      input: fc.record(
        {
          kind: fc.constant('access.decision'),
          reason: text,
          policy: text.map((s) => s.slice(0, 256)),
          source: fc.record({ user: text.map((s) => s.slice(0, 256)) }),
          target: fc.record({ path: text, port: fc.integer({ min: 0, max: 65535 }) }),
          latency_us: fc.double({ min: 0, max: 1e12, noNaN: true }),
          details: fc.dictionary(
            text.map((s) => s.slice(0, 40)),
            fc.oneof(text, fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null)),
            { maxKeys: 4 },
          ),
        },
        { requiredKeys: ['kind'] },
      ),
      maxBytes: fc.integer({ min: 100, max: 3000 }),
    });
    const run = (input: unknown, maxBytes: number, fastPath: boolean) =>
      normalizeOutcome(normalizeEvent, input, maxBytes, fastPath);
    fc.assert(
      fc.property(arb, ({ input, maxBytes }) => {
        const a = run(input, maxBytes, true);
        expect(a).toEqual(run(input, maxBytes, false));
        if ('ok' in a) {
          expect(canonicalSize(normalizeEvent(input, { now: 5, maxBytes: 1e9 }))).toBeLessThanOrEqual(maxBytes);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('new ids are UUIDv7 and increase within a millisecond', async () => {
    const { newEventId } = await import('../../src/audit/event.js');
    const ids = Array.from({ length: 3000 }, () => newEventId(1_767_225_600_000));
    for (const id of ids)
      expect(id).toMatch(/^019b[0-9a-f]{4}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
    // The 12-bit counter starts below 2^11, so 2,048 ids in one millisecond stay in order.
    const first = ids.slice(0, 2048);
    expect([...first].sort()).toEqual(first);
  });
});
