/**
 * The service graph (src/audit/graph.ts) on SQLite and PostgreSQL over a log of several blocks:
 * every window — whole blocks read from their summaries, blocks cut by the window's edges, the open
 * last block — counts exactly what a plain count over the stored rows gives, `new` included; a
 * summary edited with SQL is named by verify and dropped by reindex, after which the graph is right
 * again; the policy overlay, unused edges, scope and the bound.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compile, parsePolicyText } from '../../src/policy/index.js';
import {
  type AuditEventInput,
  AuditLog,
  normalizeEvent,
  reindexLog,
  sealSegments,
  type StoredAuditEvent,
  verifyLog,
} from '../../src/audit/index.js';
import { sourceKey, targetKey } from '../../src/audit/event.js';
import { ServiceGraph } from '../../src/audit/graph.js';
import type { GraphResponse } from '../../src/api/graph.js';
import { BLOCK_EVENTS } from '../../src/store/audit-blocks.js';
import { openStore, type Store } from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase('auditgraph'), dataDir: tempDir() }) },
];

const T0 = 1_767_225_600_000;
const N = 3 * BLOCK_EVENTS + 1000;
// Times rise with seq; every 97th event arrives 5 s late (a spilled event shipped later).
const timeOf = (i: number) => (i % 97 === 0 ? T0 + i * 10 - 5_000 : T0 + i * 10);
const svc = (n: number) => `spiffe://example.org/ns/prod/sa/svc-${n}`;

function ev(i: number): AuditEventInput {
  // Edges that start late in the log (svc-30.. only after event 9000) are new in late windows.
  const late = i > 9000 && i % 5 === 0;
  return {
    kind: i % 50 === 7 ? 'admin.action' : 'access.decision',
    time: timeOf(i),
    decision_id: `d-${i}`,
    source: late
      ? { spiffe_id: svc(30 + (i % 3)) }
      : i % 4
        ? { spiffe_id: svc(i % 23) }
        : { user: `user-${i % 5}`, ip: '10.0.0.9' },
    target: { service: `target-${i % 11}`, method: 'GET' },
    ...(i % 13
      ? { outcome: i % 9 === 0 ? ('deny' as const) : i % 17 === 0 ? ('step_up' as const) : ('allow' as const) }
      : {}),
  };
}

interface Expected {
  source: string;
  target: string;
  allowed: number;
  denied: number;
  other: number;
  first_seen: string;
  last_seen: string;
  new: boolean;
}

/** The graph's edges by a plain count over the stored rows. */
async function reference(store: Store, from: number, to: number): Promise<Expected[]> {
  const rows = await store.db.selectFrom('audit_event').select('body').orderBy('seq').execute();
  const events = rows.map((r) => JSON.parse(r.body) as StoredAuditEvent).filter((e) => e.kind === 'access.decision');
  const count = (lo: number, hi: number) => {
    const m = new Map<string, Expected & { lo: number; hi: number }>();
    for (const e of events) {
      if (e.time < lo || e.time >= hi) continue;
      const k = JSON.stringify([sourceKey(e), targetKey(e)]);
      const c = m.get(k) ?? {
        source: sourceKey(e),
        target: targetKey(e),
        allowed: 0,
        denied: 0,
        other: 0,
        first_seen: '',
        last_seen: '',
        new: false,
        lo: e.time,
        hi: e.time,
      };
      if (e.outcome === 'allow') c.allowed++;
      else if (e.outcome === 'deny') c.denied++;
      else c.other++;
      c.lo = Math.min(c.lo, e.time);
      c.hi = Math.max(c.hi, e.time);
      m.set(k, c);
    }
    return m;
  };
  const cur = count(from, to);
  const prev = count(from - (to - from), from);
  return [...cur].map(([k, { lo, hi, ...c }]) => ({
    ...c,
    first_seen: new Date(lo).toISOString(),
    last_seen: new Date(hi).toISOString(),
    new: !prev.has(k),
  }));
}

const byEnds = (a: { source: string; target: string }, b: { source: string; target: string }) =>
  a.source.localeCompare(b.source) || a.target.localeCompare(b.target);

function observed(g: GraphResponse): Expected[] {
  return g.edges
    .filter((e) => !e.unused)
    .map(({ source, target, allowed, denied, other, first_seen, last_seen, new: isNew }) => ({
      source,
      target,
      allowed,
      denied,
      other,
      first_seen: first_seen as string,
      last_seen: last_seen as string,
      new: isNew,
    }))
    .sort(byEnds);
}

// Whole log; whole blocks 1–2 inside with block 0 and the open block 3 cut; a window whose
// previous window holds block 1 whole; a window inside one block; a window with nothing in it.
const WINDOWS: [string, number, number][] = [
  ['the whole log', T0 - 60_000, T0 + N * 10 + 1],
  ['blocks 1-2 whole, 0 and 3 cut', T0 + 30_000, T0 + 125_000],
  ['previous window holds block 1 whole', T0 + 85_000, T0 + 140_000],
  ['inside block 2', T0 + 90_000, T0 + 95_000],
  ['after the log', T0 + N * 10 + 10_000, T0 + N * 10 + 20_000],
];

const POLICY = `
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: target-1-ingress }
spec:
  action: ALLOW
  target: { services: [target-1] }
  rules:
    - name: from-svc-1
      from: [{ principals: ["spiffe://example.org/ns/prod/sa/svc-1"] }]
---
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: target-9-ingress }
spec:
  action: ALLOW
  target: { services: [target-9] }
  rules:
    - name: from-svc-99
      from: [{ principals: ["spiffe://example.org/ns/prod/sa/svc-99"] }]
---
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: people-to-target-2 }
spec:
  action: ALLOW
  target: { services: [target-2] }
  rules:
    - name: with-a-token
      from: [{ requestPrincipals: ["*"] }]
`;

describe.each(engines)('service graph on $name', ({ open }) => {
  const stores: Store[] = [];
  const logs: AuditLog[] = [];
  afterAll(async () => {
    for (const l of logs) await l.close().catch(() => {});
    for (const s of stores) await s.close();
  });

  /** A store with the log filled (batches that end inside blocks and span them). */
  async function filled(): Promise<Store> {
    return (await filledLog()).store;
  }

  async function filledLog(): Promise<{ store: Store; log: AuditLog; dataDir: string }> {
    const where = await open();
    const store = await openStore(where);
    stores.push(store);
    const log = await AuditLog.open(store, { dataDir: where.dataDir, checkpointEvery: 5000, checkpointIntervalMs: 0 });
    logs.push(log);
    for (let i = 0; i < N; i += 1500)
      await log.append(Array.from({ length: Math.min(1500, N - i) }, (_, k) => normalizeEvent(ev(i + k))));
    return { store, log, dataDir: where.dataDir };
  }

  const summaries = async (store: Store) =>
    (await store.db.selectFrom('audit_block_edges').select('block').orderBy('block').execute()).map((r) =>
      Number(r.block),
    );

  it('counts every window exactly as the rows do: from summaries, cut blocks and the open block', async () => {
    const store = await filled();
    const graph = new ServiceGraph(store);
    expect(await summaries(store)).toEqual([]);
    for (const [, from, to] of WINDOWS) {
      const g = await graph.graph({ from, to, scope: 'all' });
      const want = (await reference(store, from, to)).sort(byEnds);
      expect(observed(g)).toEqual(want);
      expect(g.events).toBe(want.reduce((n, e) => n + e.allowed + e.denied + e.other, 0));
      expect(g.truncated).toBe(false);
      expect(g.from).toBe(new Date(from).toISOString());
    }
    // Full blocks inside a window (or its previous window) were summarized on the way; the open one never.
    expect(await summaries(store)).toEqual([0, 1, 2]);
    // The same again from stored summaries, by a fresh instance (no memory of the first).
    const [, from, to] = WINDOWS[1] as [string, number, number];
    const again = await new ServiceGraph(store).graph({ from, to, scope: 'all' });
    expect(observed(again)).toEqual((await reference(store, from, to)).sort(byEnds));
    // The in-memory roll-up of runs of whole blocks (one block per run here): built, then used.
    const rolled = new ServiceGraph(store, { chunkBlocks: 1 });
    for (let round = 0; round < 2; round++) {
      for (const [, from, to] of WINDOWS) {
        const g = await rolled.graph({ from, to, scope: 'all' });
        expect(observed(g)).toEqual((await reference(store, from, to)).sort(byEnds));
      }
    }
    // Some edges of the late window really are new, and some are not.
    const late = await graph.graph({ from: T0 + 90_000, to: T0 + 120_000, scope: 'all' });
    expect(late.edges.filter((e) => e.new).map((e) => e.source)).toContain(svc(30));
    expect(late.edges.some((e) => !e.new)).toBe(true);
  });

  it('names nodes with a short label and a kind, and keeps to the scope', async () => {
    const store = await filled();
    const graph = new ServiceGraph(store);
    const all = await graph.graph({ from: T0 - 60_000, to: T0 + N * 10 + 1, scope: 'all' });
    const node = (id: string) => all.nodes.find((n) => n.id === id);
    expect(node(svc(3))).toEqual({ id: svc(3), label: 'svc-3', kind: 'workload' });
    expect(node('user-2')).toEqual({ id: 'user-2', label: 'user-2', kind: 'person' });
    expect(node('target-4')).toEqual({ id: 'target-4', label: 'target-4', kind: 'workload' });
    const ids = new Set(all.nodes.map((n) => n.id));
    for (const e of all.edges) expect(ids.has(e.source) && ids.has(e.target)).toBe(true);

    const people = await graph.graph({ from: T0 - 60_000, to: T0 + N * 10 + 1, scope: 'people' });
    const workloads = await graph.graph({ from: T0 - 60_000, to: T0 + N * 10 + 1, scope: 'workloads' });
    expect(people.edges.length).toBeGreaterThan(0);
    expect(people.edges.every((e) => e.source.startsWith('user-'))).toBe(true);
    expect(workloads.edges.every((e) => e.source.startsWith('spiffe://'))).toBe(true);
    expect(people.edges.length + workloads.edges.length).toBe(all.edges.length);
    expect(people.events + workloads.events).toBe(all.events);
  });

  it('overlays the policy: allowed, not allowed, unknown, and allowed pairs nobody used', async () => {
    const store = await filled();
    const snap = compile(parsePolicyText(POLICY, 'graph.yaml'));
    const g = await new ServiceGraph(store).graph({
      from: T0 - 60_000,
      to: T0 + N * 10 + 1,
      scope: 'all',
      policy: snap,
    });
    expect(g.policy_version).toBe(snap.version);
    const edge = (s: string, t: string) => g.edges.find((e) => e.source === s && e.target === t);
    expect(edge(svc(1), 'target-1')).toMatchObject({ policy: 'allowed', unused: false });
    expect(edge(svc(2), 'target-1')).toMatchObject({ policy: 'not_allowed' });
    // A rule on JWT principals: the person's name does not say whether a token matched.
    const people = g.edges.filter((e) => e.source.startsWith('user-') && e.target === 'target-2');
    expect(people.length).toBeGreaterThan(0);
    for (const e of people) expect(e.policy).toBe('unknown');
    expect(edge('user-1', 'target-3')).toMatchObject({ policy: 'not_allowed' });
    // svc-99 never called target-9: a least-privilege candidate, with no counts and no times.
    expect(edge(svc(99), 'target-9')).toEqual({
      source: svc(99),
      target: 'target-9',
      allowed: 0,
      denied: 0,
      other: 0,
      first_seen: null,
      last_seen: null,
      new: false,
      policy: 'allowed',
      unused: true,
    });
    expect(g.edges.filter((e) => e.unused)).toHaveLength(1);
    expect(g.nodes.find((n) => n.id === svc(99))).toEqual({ id: svc(99), label: 'svc-99', kind: 'workload' });
    // Unused edges are about workloads: not in the people's view.
    const people2 = await new ServiceGraph(store).graph({ from: T0, to: T0 + N * 10, scope: 'people', policy: snap });
    expect(people2.edges.some((e) => e.unused)).toBe(false);
  });

  it('keeps the most active edges when there are more than the bound, and says so', async () => {
    const store = await filled();
    const full = await new ServiceGraph(store).graph({ from: T0 - 60_000, to: T0 + N * 10 + 1, scope: 'all' });
    const top = await new ServiceGraph(store).graph({
      from: T0 - 60_000,
      to: T0 + N * 10 + 1,
      scope: 'all',
      maxEdges: 10,
    });
    expect(top.truncated).toBe(true);
    expect(top.edges).toHaveLength(10);
    const total = (e: { allowed: number; denied: number; other: number }) => e.allowed + e.denied + e.other;
    const tenth = full.edges.map(total).sort((a, b) => b - a)[9] as number;
    for (const e of top.edges) expect(total(e)).toBeGreaterThanOrEqual(tenth);
    // The total is of every edge in scope, not of the ten kept.
    expect(top.events).toBe(full.events);
    expect(new Set(top.nodes.map((n) => n.id))).toEqual(new Set(top.edges.flatMap((e) => [e.source, e.target])));
  });

  it('an edited summary is found by verify; reindex drops it and the graph counts right again', async () => {
    const store = await filled();
    const graph = new ServiceGraph(store);
    expect(await graph.summarize()).toBe(3);
    expect(await graph.summarize()).toBe(0);
    expect((await verifyLog(store)).ok).toBe(true);
    const [, from, to] = WINDOWS[0] as [string, number, number];
    const want = (await reference(store, from, to)).sort(byEnds);

    // An attacker lowers the denials of block 1's first edge by one (the int32 after its allowed count).
    const row = await store.db
      .selectFrom('audit_block_edges')
      .selectAll()
      .where('block', '=', 1)
      .executeTakeFirstOrThrow();
    const data = Buffer.from(row.data);
    const n = data.length / 36;
    const deniedAt = 16 * n + 3 * 4;
    const edited = Buffer.from(data);
    edited.writeInt32LE(data.readInt32LE(deniedAt) + 1, deniedAt);
    await store.db.updateTable('audit_block_edges').set({ data: edited }).where('block', '=', 1).execute();
    expect(observed(await graph.graph({ from, to, scope: 'all' }))).not.toEqual(want);

    const report = await verifyLog(store);
    expect(report.ok).toBe(false);
    expect(report.firstBad?.message).toMatch(/edge summary of block 1 \(audit_block_edges\) disagrees/);
    expect(report.firstBad?.message).toMatch(/audit reindex/);

    await reindexLog(store);
    expect(await summaries(store)).toEqual([]);
    expect(observed(await graph.graph({ from, to, scope: 'all' }))).toEqual(want);
    expect((await verifyLog(store)).ok).toBe(true);

    // A summary stored for the open block (never full) is wrong by being there.
    await store.db
      .insertInto('audit_block_edges')
      .values({ block: 3, data: Buffer.alloc(0) })
      .execute();
    expect((await verifyLog(store)).firstBad?.message).toMatch(/block 3 .* not full/);
  });

  it('sealing part of a summarized block: verify still passes, and sealed blocks lose their summaries', async () => {
    const { store, log, dataDir } = await filledLog();
    expect(await new ServiceGraph(store).summarize()).toBe(3);
    const dir = join(dataDir, 'segments');
    // Events before ~6,000 sealed: block 0 whole, block 1 in part.
    await sealSegments(log, { dir, hotWindowMs: 1000, now: T0 + 61_000, maxSegmentEvents: 8192 });
    const sealed = Number(
      (await store.db.selectFrom('audit_head').select('sealed_size').executeTakeFirstOrThrow()).sealed_size,
    );
    expect(sealed).toBeGreaterThan(BLOCK_EVENTS);
    expect(sealed % BLOCK_EVENTS).not.toBe(0);
    expect(await summaries(store)).toEqual([1, 2]);
    const report = await verifyLog(store, { segmentDir: dir });
    expect(report.firstBad).toBeUndefined();
    expect(report.ok).toBe(true);
  });
});
