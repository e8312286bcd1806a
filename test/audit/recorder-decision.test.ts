/**
 * The recorder's decision fast path (`recordDecision`, used by `enforce()`/`refuse()`): every
 * decision still becomes exactly one audit event, and the event stored is the one `record()` of the
 * built event stores — hostile requests included (oversized strings, secrets in details, keys that
 * shadow `pep`/`version`, a `__proto__` key, no source or target), through queue growth and wrap,
 * and when the queue is full and decisions overflow to the spill buffer.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  AuditLog,
  AuditRecorder,
  type DecisionAnswer,
  type DecisionRequest,
  type DecisionSite,
  decisionEvent,
} from '../../src/audit/index.js';
import { EventQueue } from '../../src/audit/event-queue.js';
import { type AccessDecisionEvent, enforce, refuse } from '../../src/pep/decision.js';
import { compile, parsePolicyText } from '../../src/policy/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

const stores: Store[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
});

/** A real SQLite log, and the events it was handed (what it stored), in order. */
async function capturedLog(opts: { maxQueue?: number; batchSize?: number } = {}) {
  const dataDir = tempDir();
  const store = await openStore({ dataDir });
  stores.push(store);
  const log = await AuditLog.open(store, { dataDir, checkpointEvery: 1000, checkpointIntervalMs: 0 });
  const stored: AuditEvent[] = [];
  const recorder = new AuditRecorder({
    sink: {
      append: async (events) => {
        const r = await log.append(events);
        stored.push(...events);
        return r;
      },
    },
    spillDir: join(dataDir, 'spill'),
    ...opts,
  });
  return { log, recorder, stored };
}

/** The stored event without what differs between any two recordings (its id and time). */
const content = (e: AuditEvent) => {
  const { id: _id, time: _time, ...rest } = e;
  return rest;
};

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ';

/** Decisions as enforcement points meet them, hostile ones included. */
function cases(): { d: DecisionAnswer; r: DecisionRequest; site: DecisionSite; outcome: 'allow' | 'deny' | 'error' }[] {
  const out: ReturnType<typeof cases> = [];
  for (let i = 0; i < 2500; i++) {
    const d: DecisionAnswer = {
      decision_id: `019aa8c1-7c2e-7a3b-9f10-${i.toString(16).padStart(12, '0')}`,
      policy: i % 3 ? 'payments-ingress' : null,
      rule: i % 3 ? `r${i % 10}` : null,
      reason: i % 97 === 0 ? `x${'y'.repeat(5000)}` : 'rule matched',
      version: i % 5 ? 'sha256:3f2a9c' : null,
    };
    const r: DecisionRequest =
      i % 11 === 0
        ? {}
        : {
            source: { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 200}`, ip: `10.0.0.${i & 255}` },
            target: { spiffe_id: 'spiffe://example.org/ns/prod/sa/payments', service: 'payments' },
            request: {
              method: i % 2 ? 'GET' : 'P'.repeat(100),
              path: i % 13 === 0 ? `/${'a'.repeat(9000)}` : `/v1/r/${i}`,
            },
          };
    const details: Record<string, unknown> | undefined =
      i % 4 === 0
        ? undefined
        : i % 4 === 1
          ? { identity: 'x509', authorization: `Bearer ${JWT}` }
          : i % 4 === 2
            ? (JSON.parse('{"__proto__": "x", "version": "shadowed", "pep": "other", "token": "t"}') as Record<
                string,
                unknown
              >)
            : { ignored_identity_headers: ['x-forwarded-client-cert'], note: JWT };
    const site: DecisionSite = {
      pep: i % 7 ? 'sidecar' : 'middleware',
      ...(i % 2 ? { ip: '192.0.2.9' } : {}),
      details,
    };
    out.push({ d, r, site, outcome: i % 17 === 0 ? 'error' : i % 3 ? 'allow' : 'deny' });
  }
  return out;
}

describe('AuditRecorder.recordDecision', () => {
  it('stores exactly the event record(decisionEvent(...)) stores, one per decision, hostile input included', async () => {
    const fast = await capturedLog({ batchSize: 300 });
    const slow = await capturedLog({ batchSize: 300 });
    const all = cases();
    for (const c of all) {
      fast.recorder.recordDecision(c.d, c.r, c.site, c.outcome);
      slow.recorder.record(decisionEvent(c.d, c.r, c.site, c.outcome));
    }
    await fast.recorder.flush();
    await slow.recorder.flush();
    expect(fast.log.treeSize).toBe(all.length);
    expect(fast.recorder.stats()).toMatchObject({ recorded: all.length, shipped: all.length, rejected: 0, lost: 0 });
    expect(fast.recorder.stats().clipped).toBe(slow.recorder.stats().clipped);
    expect(fast.stored.map(content)).toEqual(slow.stored.map(content));
    // The hostile parts were handled as record() handles them: clipped, scrubbed, not prototype-polluting.
    const e = fast.stored[2] as AuditEvent;
    expect(e.details).toMatchObject({ pep: 'other', version: 'shadowed' });
    expect(Object.getPrototypeOf(e.details)).not.toBe('x');
    expect(JSON.stringify(fast.stored)).not.toContain(JWT);
    await fast.recorder.close();
    await slow.recorder.close();
  });

  it('a full queue spills fast-path decisions to disk and ships them unchanged', async () => {
    const fast = await capturedLog({ maxQueue: 50, batchSize: 20 });
    const slow = await capturedLog({ maxQueue: 50, batchSize: 20 });
    const all = cases().slice(0, 400);
    for (const c of all) {
      fast.recorder.recordDecision(c.d, c.r, c.site, c.outcome);
      slow.recorder.record(decisionEvent(c.d, c.r, c.site, c.outcome));
    }
    expect(fast.recorder.stats().spilled + fast.recorder.stats().queued).toBeGreaterThan(0);
    await fast.recorder.flush();
    await slow.recorder.flush();
    expect(fast.log.treeSize).toBe(all.length);
    const byId = (a: { decision_id?: string }, b: { decision_id?: string }) =>
      (a.decision_id as string).localeCompare(b.decision_id as string);
    expect(fast.stored.map(content).sort(byId)).toEqual(slow.stored.map(content).sort(byId));
    await fast.recorder.close();
    await slow.recorder.close();
  });

  it('throws once the recorder is closed, as record() does', async () => {
    const { recorder } = await capturedLog();
    await recorder.close();
    const [c] = cases();
    expect(() => recorder.recordDecision(c!.d, c!.r, c!.site, c!.outcome)).toThrow(/closed/);
  });
});

describe('enforce() and refuse() with an AuditRecorder', () => {
  const snap = compile(
    parsePolicyText(
      'apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata: { name: pay }\nspec:\n  action: ALLOW\n  target: { spiffeIds: [spiffe://example.org/ns/prod/sa/payments] }\n  rules:\n    - name: gw\n      from: [{ principals: [spiffe://example.org/ns/prod/sa/gw] }]\n      to: [{ methods: [GET] }]\n',
      'p.yaml',
    ),
  );
  const request = (i: number) => ({
    source: { spiffe_id: `spiffe://example.org/ns/prod/sa/${i % 2 ? 'gw' : 'other'}` },
    target: { spiffe_id: 'spiffe://example.org/ns/prod/sa/payments' },
    request: { method: 'GET', path: `/v1/x/${'z'.repeat(i % 5 === 0 ? 5000 : 1)}` },
  });

  it('use the fast path, and store what a plain record() recorder is given', async () => {
    const fast = await capturedLog();
    const slow = await capturedLog();
    // A recorder without recordDecision gets the built event, as before.
    const given: AccessDecisionEvent[] = [];
    const plain = {
      record: (e: AccessDecisionEvent) => {
        given.push(e);
        slow.recorder.record(e);
      },
    };
    const answers: string[] = [];
    for (let i = 0; i < 300; i++) {
      const ctx = { pep: 'middleware', ip: '10.1.2.3', details: { identity: 'x509' } };
      const a =
        i % 10 === 0
          ? refuse('x509_invalid: expired', request(i), fast.recorder, ctx)
          : enforce(() => snap, request(i), fast.recorder, ctx);
      answers.push(a.decision_id);
      const b =
        i % 10 === 0
          ? refuse('x509_invalid: expired', request(i), plain, ctx)
          : enforce(() => snap, request(i), plain, ctx);
      expect(b.decision).toBe(a.decision);
    }
    await fast.recorder.flush();
    await slow.recorder.flush();
    expect(fast.stored.map((e) => e.decision_id)).toEqual(answers);
    const noIds = (e: AuditEvent) => ({ ...content(e), decision_id: undefined });
    expect(fast.stored.map(noIds)).toEqual(slow.stored.map(noIds));
    expect(fast.stored.filter((e) => e.outcome === 'allow').length).toBeGreaterThan(0);
    // Such a recorder gets ordinary objects, as it always did.
    for (const e of given.slice(0, 3)) {
      for (const o of [e, e.source, e.target, e.details]) expect(Object.getPrototypeOf(o)).toBe(Object.prototype);
    }
    await fast.recorder.close();
    await slow.recorder.close();
  });

  it('give an AuditRecorder the decision parts, not a built event (nothing per decision is kept but strings)', () => {
    const calls: string[] = [];
    const recorder = {
      record: () => calls.push('record'),
      recordDecision: (d: DecisionAnswer, r: DecisionRequest, site: DecisionSite, outcome: string) => {
        calls.push(`recordDecision ${outcome} ${site.pep} ${r.target?.spiffe_id} ${d.decision_id.length}`);
      },
    };
    enforce(() => snap, request(1), recorder, { pep: 'sidecar' });
    refuse('no identity', request(2), recorder, { pep: 'sidecar' });
    expect(calls).toEqual([
      'recordDecision allow sidecar spiffe://example.org/ns/prod/sa/payments 36',
      'recordDecision deny sidecar spiffe://example.org/ns/prod/sa/payments 36',
    ]);
  });
});

describe('EventQueue decision columns', () => {
  it('give back decisions and plain events in order through growth and wrap-around', () => {
    const q = new EventQueue(3000);
    const all = cases();
    const want: unknown[] = [];
    let seq = 0;
    const pushSome = (from: number, n: number) => {
      for (let i = from; i < from + n; i++) {
        const c = all[i % all.length]!;
        seq++;
        if (i % 3 === 0) {
          const plain = { kind: 'admin.action', n: i };
          expect(q.push(plain, seq, seq)).toBe(true);
          want.push(plain);
        } else {
          expect(q.pushDecision(c.d, c.r, c.site, c.outcome, seq, seq)).toBe(true);
          want.push(decisionEvent(c.d, c.r, c.site, c.outcome));
        }
      }
    };
    pushSome(0, 700);
    const a = q.take(500);
    pushSome(700, 2000); // grows from 1,024 through 2,048 to 3,000 with the head mid-ring
    const b = q.take(q.length);
    expect([...a.inputs, ...b.inputs]).toEqual(want.slice(0, a.inputs.length + b.inputs.length));
    expect([...a.seqs, ...b.seqs]).toEqual(Array.from({ length: a.seqs.length + b.seqs.length }, (_, i) => i + 1));
    expect(q.length).toBe(0);
  });
});
