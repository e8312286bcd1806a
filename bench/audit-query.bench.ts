/**
 * Audit query benchmark: the first page (100, newest first) of filtered queries over a large SQLite
 * log, through the block index (ours, `queryAuditLog`) beside the same filters through B-tree
 * indexes on the term columns — the layout before migration 0005 — built on the same database for
 * the peer and dropped after. Same rows, same pages (checked), medians of five.
 *
 * The log: AUDIT_QUERY_EVENTS events (default 1,000,000; the figures in docs/audit.md are for
 * 10,000,000), 5,000 sources, 500 targets, 5 % denies, 0.1 % admin actions that are never denied,
 * one event per 10 ms, appended with `AuditLog.append` in batches of 20,000 (the rate is printed).
 *
 * Run: node --import tsx --expose-gc bench/audit-query.bench.ts   (about 1 minute at 1,000,000;
 *      AUDIT_QUERY_EVENTS=10000000 takes ~10 minutes and ~8 GB of disk)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import { type AuditQuery, AuditLog, normalizeEvent, queryAuditLog } from '../src/audit/index.js';
import { findTermId } from '../src/audit/terms.js';
import { openStore, type Store } from '../src/store/index.js';
import { type Figure, report } from './harness.js';

const N = Number(process.env.AUDIT_QUERY_EVENTS ?? 1_000_000);
const T0 = 1_767_225_600_000;
const END = T0 + N * 10;
const pad = (i: number) => String(i).padStart(12, '0');

function input(i: number) {
  const admin = i % 1000 === 500;
  return {
    id: `019a0000-0000-7000-8000-${pad(i)}`,
    kind: admin ? 'admin.action' : 'access.decision',
    time: T0 + i * 10,
    decision_id: `019a0001-0000-7000-8000-${pad(i)}`,
    source: { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 5000}`, ip: `10.0.${(i >> 8) & 255}.${i & 255}` },
    target: { service: `target-${(i * 7) % 500}`, method: i % 3 ? 'GET' : 'POST', path: `/v1/r${i % 10}/items/${i}` },
    outcome: i % 20 === 0 && !admin ? ('deny' as const) : ('allow' as const),
    reason: 'rule gateway-charges matched',
    policy: 'payments-ingress',
    rule: 'gateway-charges',
    enforcer: 'sidecar-node-3',
    latency_us: 2,
  };
}

const mid = T0 + Math.floor(N / 2) * 10;
const QUERIES: [string, AuditQuery][] = [
  ['--source', { source: 'spiffe://example.org/ns/prod/sa/svc-1234' }],
  ['--source --since (last hour)', { source: 'spiffe://example.org/ns/prod/sa/svc-1234', since: END - 3_600_000 }],
  ['--target --outcome deny', { target: 'target-40', outcome: 'deny' }],
  [
    '--target --outcome deny --kind admin.action (no match)',
    { target: 'target-40', outcome: 'deny', kind: 'admin.action' },
  ],
  ['--kind admin.action', { kind: 'admin.action' }],
  ['--outcome deny', { outcome: 'deny' }],
  ['--outcome deny, a page from the middle', { outcome: 'deny', cursor: Math.floor(N / 2) }],
  [
    '--source --target --outcome (no match)',
    { source: 'spiffe://example.org/ns/prod/sa/svc-1', target: 'target-8', outcome: 'allow' },
  ],
  [
    '--source --outcome deny, one hour mid-log',
    { source: 'spiffe://example.org/ns/prod/sa/svc-20', outcome: 'deny', since: mid, until: mid + 3_600_000 },
  ],
];

const TERM_COLUMN = {
  source: 'source_term',
  target: 'target_term',
  outcome: 'outcome_term',
  kind: 'kind_term',
} as const;

/** Peer: the filter through B-tree indexes on the term columns (the 0004 query, newest first). */
async function peerQuery(store: Store, q: AuditQuery): Promise<number[]> {
  let sel = store.db.selectFrom('audit_event').select(['seq', 'body']);
  for (const field of ['source', 'target', 'outcome', 'kind'] as const) {
    const value = q[field];
    if (value === undefined) continue;
    const term = await findTermId(store.db, field, value);
    if (term === undefined) return [];
    sel = sel.where(TERM_COLUMN[field], '=', term);
  }
  if (q.since !== undefined) sel = sel.where('time', '>=', q.since);
  if (q.until !== undefined) sel = sel.where('time', '<', q.until);
  if (q.cursor !== undefined) sel = sel.where('seq', '<', q.cursor);
  const rows = await sel.orderBy('seq', 'desc').limit(101).execute();
  return rows.slice(0, 100).map((r) => Number(r.seq));
}

async function median(f: () => Promise<unknown>): Promise<number> {
  await f();
  const ms: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    await f();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return ms[2] as number;
}

const dataDir = mkdtempSync(join(tmpdir(), 'nt-audit-query-'));
try {
  const store = await openStore({ dataDir });
  const log = await AuditLog.open(store, { dataDir, checkpointEvery: 100_000, checkpointIntervalMs: 0 });
  process.stderr.write(`appending ${N.toLocaleString('en-US')} events…\n`);
  const t0 = performance.now();
  for (let i = 0; i < N; i += 20_000) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + 20_000); j++) batch.push(normalizeEvent(input(j)));
    await log.append(batch);
  }
  const rate = N / ((performance.now() - t0) / 1000);
  process.stderr.write(`  ${Math.round(rate).toLocaleString('en-US')} events/s\n`);
  await log.close();

  const ours: number[] = [];
  const answers: number[][] = [];
  for (const [, q] of QUERIES) {
    answers.push((await queryAuditLog(store, q)).events.map((e) => e.seq));
    ours.push(await median(() => queryAuditLog(store, q)));
  }
  process.stderr.write('building the B-tree term indexes for the peer…\n');
  for (const [field, column] of Object.entries(TERM_COLUMN)) {
    await sql.raw(`create index peer_${field} on audit_event (${column})`).execute(store.db);
  }
  // As the 0004 log seeded them: sources and targets selective, outcomes and kinds not.
  for (const [field, stat] of [
    ['source', 2000],
    ['target', 20000],
    ['kind', 2_000_000],
    ['outcome', 3_000_000],
  ] as const) {
    await sql`insert into sqlite_stat1 (tbl, idx, stat) values ('audit_event', ${`peer_${field}`}, ${`${N} ${stat}`})`.execute(
      store.db,
    );
  }
  await sql`analyze sqlite_schema`.execute(store.db);
  const figures: Figure[] = [];
  for (let k = 0; k < QUERIES.length; k++) {
    const [name, q] = QUERIES[k] as [string, AuditQuery];
    const peerAnswer = await peerQuery(store, q);
    if (JSON.stringify(peerAnswer) !== JSON.stringify(answers[k])) {
      throw new Error(`${name}: the two layouts answer differently`);
    }
    figures.push({
      bench: 'audit-query',
      metric: `${name}: first page, ${N.toLocaleString('en-US')} events (${(answers[k] as number[]).length} found)`,
      unit: 'ms',
      peerName: 'B-tree term indexes (0004)',
      peer: await median(() => peerQuery(store, q)),
      ours: ours[k] as number,
      higherIsBetter: false,
    });
  }
  await store.close();
  report(figures);
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
