/**
 * The decision's working state belongs to the snapshot it decides with (snapshot.ts's
 * DecisionScratch), not to the module: once a snapshot is replaced and dropped, nothing the
 * engine keeps between calls may hold its policies alive.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { type AccessRequest, compile, decide, type Policy } from '../../src/policy/index.js';
import type { Rule } from '../../src/policy/model.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const loc = { file: 't', line: 1, column: 1 };
const TARGET = 'spiffe://td/ns/a/sa/api';
const CALLER = 'td/ns/a/sa/web';

function rule(id: string, principal: Rule['from']): Rule {
  return { id, loc, from: principal, to: [{ methods: [{ kind: 'exact', value: 'GET' }] }], when: [] };
}

/** An ALLOW reached by an exact and a prefix principal (the plan merges its lists) and a DENY. */
function policies(): Policy[] {
  const base = {
    origin: 'native' as const,
    dryRun: false,
    loc,
    target: { spiffeIds: [{ kind: 'exact' as const, value: TARGET }] },
  };
  return [
    {
      ...base,
      id: 'allow',
      action: 'ALLOW',
      rules: [
        rule('exact', [{ principals: [{ kind: 'exact', value: CALLER }] }]),
        rule('prefix', [{ principals: [{ kind: 'prefix', value: 'td/ns/a/' }] }]),
      ],
    },
    {
      ...base,
      id: 'deny',
      action: 'DENY',
      rules: [rule('admin', [{ principals: [{ kind: 'exact', value: 'td/ns/x/sa/y' }] }])],
    },
  ];
}

const planned: AccessRequest = {
  source: { spiffe_id: `spiffe://${CALLER}` },
  target: { spiffe_id: TARGET },
  request: { method: 'GET', path: '/' },
};
// Explicit target labels take the general candidate lookup instead of the plan.
const general: AccessRequest = { ...planned, target: { spiffe_id: TARGET, labels: { app: 'api' } } };

/** Decides with a fresh snapshot and drops it; returns weak references to its compiled policies. */
function decideAndDrop(input: AccessRequest): WeakRef<object>[] {
  const snap = compile(policies());
  expect(decide(snap, input)).toMatchObject({ decision: 'allow', policy: 'allow', rule: 'exact' });
  return snap.compiled.map((cp) => new WeakRef(cp));
}

async function collect(): Promise<void> {
  // A WeakRef's target stays alive until the job that created or read it ends.
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 0));
    gc();
  }
}

describe('decision scratch state', () => {
  it('does not keep a dropped snapshot alive after a planned decision', async () => {
    const refs = decideAndDrop(planned);
    await collect();
    expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true]);
  });

  it('does not keep a dropped snapshot alive after the general lookup', async () => {
    const refs = decideAndDrop(general);
    await collect();
    expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true]);
  });

  it('is the snapshot’s own: decisions on two snapshots interleave without mixing', () => {
    const a = compile(policies());
    const b = compile(policies().filter((p) => p.id === 'deny'));
    for (let i = 0; i < 3; i++) {
      expect(decide(a, general).decision).toBe('allow');
      expect(decide(b, general).decision).toBe('deny');
      expect(decide(a, planned).decision).toBe('allow');
      expect(decide(b, planned).decision).toBe('deny');
    }
    expect(a.scratch).not.toBe(b.scratch);
  });
});
