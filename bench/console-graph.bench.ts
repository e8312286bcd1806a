/**
 * Console service graph benchmark: `GET /v1/admin/graph` over a log of CONSOLE_GRAPH_EVENTS decision
 * events (default 10,000,000) beside the same aggregation as one SQL `GROUP BY source, target,
 * outcome` over the rows (same SQLite file, same window, same counts — checked).
 *
 * The log: 200 workloads in 5 namespaces, 1,500 (source, target) edges with a skewed traffic mix
 * (a few hot edges, a long tail), 1,350 of them allowed by the policy and 150 not (always denied),
 * and 100 more pairs the policy allows that never call (unused edges),
 * 2 % denials on allowed edges, 5 % of the traffic from 40 people to 10 apps; spread evenly over 7
 * days, every 97th event 30 s late. Appended through the log's batch path (`AuditLog.append`, 20,000
 * per batch), so rows, Merkle tree, terms and block index are the real ones. Then the graph plugin's
 * summarizer runs to the end (in a server it runs in the background as blocks fill; timed here).
 *
 * Measured through a real server (policy + audit + graph plugins, admin token, HTTP on 127.0.0.1):
 * (a) the graph over 24 h and 7 d, cold (the first query after the server starts) and warm (median
 * of 5), beside the SQL peer (median of 3); (b) the console's graph page in headless Chromium at
 * `#/graph/<from>..<to>` (console plugin added, the admin token on every request): from navigation
 * start to the first drawn frame and to the ELK-laid-out one, cold and warm (p50 of 5 reloads),
 * with the graph call's Resource Timing; target ≤ 2 s first view. No peer: a table of its own.
 *
 * Run: node --import tsx --expose-gc bench/console-graph.bench.ts   (~10 minutes and ~7 GB of disk at
 *      10,000,000 on 2 cores; CONSOLE_GRAPH_EVENTS=1000000 for a quick run; CONSOLE_GRAPH_DIR=<dir> keeps
 *      the filled data directory and reuses it on the next run; CONSOLE_GRAPH_PARTS=b runs part (b) only)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';
import { request } from 'undici';
import type { GraphResponse } from '../src/api/graph.js';
import { AuditLog, normalizeEvent } from '../src/audit/index.js';
import { ServiceGraph } from '../src/audit/graph.js';
import { findTermId } from '../src/audit/terms.js';
import { configSchema } from '../src/config/index.js';
import { readAdminToken, startServer } from '../src/server/index.js';
import { auditPlugin } from '../src/server/plugins/audit.js';
import { consolePlugin } from '../src/server/plugins/console.js';
import { graphPlugin } from '../src/server/plugins/graph.js';
import { policyPlugin } from '../src/server/plugins/policy.js';
import { sessionsPlugin } from '../src/server/plugins/sessions.js';
import { openStore, type Store } from '../src/store/index.js';
import { createLogger } from '../src/util/logger.js';
import { type Figure, report } from './harness.js';

const N = Number(process.env.CONSOLE_GRAPH_EVENTS ?? 10_000_000);
const DAY = 86_400_000;
const T_END = Date.UTC(2026, 11, 1);
const T_START = T_END - 7 * DAY;
const WORKLOADS = 200;
const EDGES = 1500;
const FORBIDDEN = 150;
const UNUSED = 100;
const PEOPLE = 40;
const APPS = 10;

const ns = (w: number) => ['payments', 'orders', 'search', 'identity', 'edge'][w % 5] as string;
const wl = (w: number) => `spiffe://example.org/ns/${ns(w)}/sa/wl-${w}`;

/** A small deterministic generator (mulberry32): the same log on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 1,500 distinct (source, target) workload pairs; the last FORBIDDEN are not in the policy. */
const edges: [number, number][] = (() => {
  const r = rng(7);
  const seen = new Set<string>();
  const out: [number, number][] = [];
  while (out.length < EDGES) {
    const s = Math.floor(r() * WORKLOADS);
    const t = Math.floor(r() * WORKLOADS);
    if (s === t || seen.has(`${s}>${t}`)) continue;
    seen.add(`${s}>${t}`);
    out.push([s, t]);
  }
  return out;
})();

const pick = rng(42);
function input(i: number) {
  const time = T_START + Math.floor((i * 7 * DAY) / N) - (i % 97 === 0 ? 30_000 : 0);
  const id = String(i).padStart(12, '0');
  const common = {
    id: `019a0000-0000-7000-8000-${id}`,
    kind: 'access.decision',
    time,
    decision_id: `019a0001-0000-7000-8000-${id}`,
    enforcer: 'sidecar',
    latency_us: 3,
  };
  if (i % 20 === 7) {
    const u = Math.floor(pick() * PEOPLE);
    return {
      ...common,
      source: { user: `person-${u}@example.com`, ip: `10.9.0.${u}` },
      target: { service: `app-${u % APPS}`, method: 'GET', path: '/dashboard' },
      outcome: u % 13 === 0 ? ('deny' as const) : ('allow' as const),
      reason: 'rule people matched',
      policy: 'people',
      rule: 'staff',
    };
  }
  // Skewed: the square of a uniform number puts most traffic on the first edges.
  const k = Math.floor(pick() ** 2 * EDGES);
  const [s, t] = edges[k] as [number, number];
  const forbidden = k >= EDGES - FORBIDDEN;
  const deny = forbidden || pick() < 0.02;
  return {
    ...common,
    source: { spiffe_id: wl(s), ip: `10.0.${s >> 8}.${s & 255}` },
    target: { spiffe_id: wl(t), method: i % 3 ? 'GET' : 'POST', path: `/v1/items/${i % 1000}` },
    outcome: deny ? ('deny' as const) : ('allow' as const),
    reason: deny ? 'no rule allows the request' : 'rule callers matched',
    ...(deny ? {} : { policy: `wl-${t}-ingress`, rule: 'callers' }),
  };
}

/** The policy: for each target, one ALLOW of its allowed callers. */
function writePolicies(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const callers = new Map<number, number[]>();
  for (const [s, t] of edges.slice(0, EDGES - FORBIDDEN)) callers.set(t, [...(callers.get(t) ?? []), s]);
  // And UNUSED allowed pairs that never call: least-privilege candidates.
  const called = new Set(edges.map(([s, t]) => `${s}>${t}`));
  const r = rng(99);
  for (let added = 0; added < UNUSED; ) {
    const s = Math.floor(r() * WORKLOADS);
    const t = Math.floor(r() * WORKLOADS);
    if (s === t || called.has(`${s}>${t}`)) continue;
    called.add(`${s}>${t}`);
    callers.set(t, [...(callers.get(t) ?? []), s]);
    added++;
  }
  const docs = [...callers].map(
    ([t, ss]) => `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: wl-${t}-ingress }
spec:
  action: ALLOW
  target: { spiffeIds: ["${wl(t)}"] }
  rules:
    - name: callers
      from: [{ principals: [${ss.map((s) => `"${wl(s)}"`).join(', ')}] }]
`,
  );
  writeFileSync(join(dir, 'workloads.yaml'), docs.join('---\n'));
}

async function fill(store: Store, dataDir: string): Promise<void> {
  const log = await AuditLog.open(store, { dataDir, checkpointEvery: 100_000, checkpointIntervalMs: 0 });
  const have = log.treeSize;
  if (have >= N) {
    process.stderr.write(`reusing ${have.toLocaleString('en-US')} events in ${dataDir}\n`);
    await log.close();
    return;
  }
  if (have > 0) throw new Error(`${dataDir} holds ${have} events, fewer than ${N}: remove it`);
  process.stderr.write(`appending ${N.toLocaleString('en-US')} events…\n`);
  const t0 = performance.now();
  for (let i = 0; i < N; i += 20_000) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + 20_000); j++) batch.push(normalizeEvent(input(j)));
    await log.append(batch);
    if (i % 1_000_000 === 0 && i > 0)
      process.stderr.write(`  ${i.toLocaleString('en-US')} (${Math.round(i / ((performance.now() - t0) / 1000))}/s)\n`);
  }
  process.stderr.write(`  ${Math.round(N / ((performance.now() - t0) / 1000)).toLocaleString('en-US')} events/s\n`);
  await log.close();
}

/** The peer: the same counts as one GROUP BY over the rows (the time index narrows the window). */
async function peerGraph(store: Store, from: number, to: number): Promise<Map<string, number[]>> {
  const kind = (await findTermId(store.db, 'kind', 'access.decision')) as number;
  const rows = await store.db
    .selectFrom('audit_event')
    .select((eb) => [
      'source_term',
      'target_term',
      'outcome_term',
      eb.fn.countAll<number>().as('n'),
      eb.fn.min('time').as('first'),
      eb.fn.max('time').as('last'),
    ])
    .where('kind_term', '=', kind)
    .where('time', '>=', from)
    .where('time', '<', to)
    .groupBy(['source_term', 'target_term', 'outcome_term'])
    .execute();
  const terms = new Map<number, string>();
  for (const t of await store.db.selectFrom('audit_term').select(['id', 'value']).execute())
    terms.set(Number(t.id), t.value);
  const out = new Map<string, number[]>();
  for (const r of rows) {
    const k = `${terms.get(Number(r.source_term))} ${terms.get(Number(r.target_term))}`;
    const c = out.get(k) ?? [0, 0, 0];
    const o = terms.get(Number(r.outcome_term));
    const at = o === 'allow' ? 0 : o === 'deny' ? 1 : 2;
    c[at] = (c[at] ?? 0) + Number(r.n);
    out.set(k, c);
  }
  return out;
}

function sameCounts(g: GraphResponse, peer: Map<string, number[]>): void {
  const seen = g.edges.filter((e) => !e.unused);
  if (g.truncated || seen.length !== peer.size) throw new Error(`edges: graph ${seen.length}, peer ${peer.size}`);
  for (const e of seen) {
    const want = peer.get(`${e.source} ${e.target}`);
    if (!want || want[0] !== e.allowed || want[1] !== e.denied || want[2] !== e.other)
      throw new Error(`counts differ on ${e.source} → ${e.target}`);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const v = await f();
  return [performance.now() - t, v];
}

/** One page load's figures, in ms from navigation start (the page's own performance marks). */
interface FirstView {
  /** Cytoscape's first drawn frame (its breadth-first layout). */
  initial: number;
  /** The frame after ELK's layered layout. */
  elk: number;
  /** The `/v1/admin/graph` call: request start to response end, and its bytes on the wire. */
  api: number;
  apiStart: number;
  apiBytes: number;
}

/** Waits for the ELK-drawn graph, then reads the marks and the graph call's Resource Timing. */
async function readFirstView(page: import('playwright-core').Page): Promise<FirstView> {
  await page.waitForFunction(() => performance.getEntriesByName('graph-layout-elk').length > 0, undefined, {
    timeout: 60_000,
    polling: 50,
  });
  // Given as text: tsx would wrap a function's inner arrows in its own helper, unknown in the page.
  return page.evaluate<FirstView>(`(() => {
    const mark = (n) => performance.getEntriesByName(n)[0].startTime;
    const call = performance.getEntriesByType('resource').find((e) => e.name.includes('/v1/admin/graph'));
    return {
      initial: mark('graph-layout-initial'),
      elk: mark('graph-layout-elk'),
      api: call.responseEnd - call.startTime,
      apiStart: call.startTime,
      apiBytes: call.encodedBodySize,
    };
  })()`);
}

/**
 * Part (b): the console's graph page in Chromium over a fixed window (`#/graph/<from>..<to>`),
 * against a fresh server (its caches empty) with the console plugin; the admin token rides on every
 * request. Cold: the first load (server and browser caches empty); warm: 5 reloads.
 */
async function browserFirstView(
  config: ReturnType<typeof configSchema.parse>,
  dataDir: string,
  from: number,
  to: number,
): Promise<{ cold: FirstView; warm: FirstView[] }> {
  const policy = policyPlugin();
  const audit = auditPlugin({ anomaly: false });
  const server = await startServer({
    config,
    logger: createLogger('silent'),
    plugins: [
      policy,
      audit,
      graphPlugin({ audit: audit.handle, policy: policy.handle }),
      sessionsPlugin(), // whoami, which the console's layout asks for
      consolePlugin(),
    ],
  });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.setExtraHTTPHeaders({ authorization: `Bearer ${readAdminToken(dataDir) as string}` });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // Chromium asks for /favicon.ico on its own (the shell names no icon); any other failure counts.
    page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && errors.push(r.url()));
    page.on(
      'console',
      (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && errors.push(m.text()),
    );
    const range = `${new Date(from).toISOString()}..${new Date(to).toISOString()}`;
    await page.goto(`${server.url}/console/#/graph/${range}`);
    const cold = await readFirstView(page);
    const warm: FirstView[] = [];
    for (let r = 0; r < 5; r++) {
      await page.reload();
      warm.push(await readFirstView(page));
    }
    const edges = await page.locator('[data-testid="graph-table"] [data-testid="row"]').count();
    if (edges === 0) throw new Error('the page drew no edge');
    if (errors.length > 0) throw new Error(`the page logged errors: ${errors.join('; ')}`);
    return { cold, warm };
  } finally {
    await browser.close();
    await server.close();
  }
}

const keep = process.env.CONSOLE_GRAPH_DIR;
// CONSOLE_GRAPH_PARTS=b runs only the browser's part (a quicker run when the API's figures are known).
const parts = process.env.CONSOLE_GRAPH_PARTS ?? 'ab';
const partA = parts.includes('a');
const partB = parts.includes('b');
const dataDir = keep ?? mkdtempSync(join(tmpdir(), 'nt-console-graph-'));
try {
  const policies = join(dataDir, 'policies');
  writePolicies(policies);
  let store = await openStore({ dataDir });
  await fill(store, dataDir);
  const [summarizeMs, blocks] = await timed(async () => {
    const g = new ServiceGraph(store);
    let n = 0;
    for (let k = await g.summarize(256); k > 0; k = await g.summarize(256)) n += k;
    return n;
  });
  process.stderr.write(`summarized ${blocks} blocks in ${(summarizeMs / 1000).toFixed(1)} s\n`);

  const windows = [
    ['24 h', T_END - DAY],
    ['7 d', T_START - 60_000],
  ] as const;
  const peer: { ms: number; answer: Map<string, number[]> }[] = [];
  for (const [, from] of partA ? windows : []) {
    const times: number[] = [];
    let answer = new Map<string, number[]>();
    for (let r = 0; r < 3; r++) {
      const [ms, a] = await timed(() => peerGraph(store, from, T_END + 1));
      times.push(ms);
      answer = a;
    }
    peer.push({ ms: median(times), answer });
  }
  await store.close();

  const config = configSchema.parse({ data_dir: dataDir, server: { port: 0, shutdown_timeout: 2 }, policies });
  const figures: Figure[] = [];
  const notes: string[] = [];
  for (const [w, [label, from]] of partA ? windows.entries() : []) {
    // A fresh server per window: its first query is cold (no process cache, the page cache warm from the peer's reads).
    const policy = policyPlugin();
    const audit = auditPlugin({ anomaly: false });
    const server = await startServer({
      config,
      logger: createLogger('silent'),
      plugins: [policy, audit, graphPlugin({ audit: audit.handle, policy: policy.handle })],
    });
    const token = readAdminToken(dataDir) as string;
    const get = async (): Promise<GraphResponse> => {
      const r = await request(`${server.url}/v1/admin/graph?from=${from}&to=${T_END + 1}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      if (r.statusCode !== 200) throw new Error(`graph: ${r.statusCode} ${await r.body.text()}`);
      return (await r.body.json()) as GraphResponse;
    };
    const [cold, first] = await timed(get);
    sameCounts(first, (peer[w] as { answer: Map<string, number[]> }).answer);
    const warm: number[] = [];
    for (let r = 0; r < 5; r++) warm.push((await timed(get))[0]);
    const { ms } = peer[w] as { ms: number };
    const what = `${label}: ${first.events.toLocaleString('en-US')} decisions, ${first.edges.length} edges (${first.edges.filter((e) => e.unused).length} unused), ${first.nodes.length} nodes`;
    figures.push(
      {
        bench: 'console-graph',
        metric: `${what}, cold`,
        unit: 'ms',
        peerName: 'SQL GROUP BY',
        peer: ms,
        ours: cold,
        higherIsBetter: false,
      },
      {
        bench: 'console-graph',
        metric: `${what}, warm p50`,
        unit: 'ms',
        peerName: 'SQL GROUP BY',
        peer: ms,
        ours: median(warm),
        higherIsBetter: false,
      },
    );
    notes.push(
      `${label}: server computed_ms ${first.computed_ms} (cold), answer ${JSON.stringify(first).length.toLocaleString('en-US')} bytes`,
    );
    await server.close();
  }
  store = await openStore({ dataDir });
  const size = Number(
    (
      await store.db
        .selectFrom('audit_block_edges')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirst()
    )?.n ?? 0,
  );
  await store.close();
  report(figures);
  process.stdout.write(`${notes.join('\n')}\n`);
  process.stdout.write(
    `block summaries stored: ${size}; summarizer: ${blocks} blocks in ${(summarizeMs / 1000).toFixed(1)} s\n`,
  );
  // (b) The first view in Chromium, against a fresh server per window.
  const views: string[] = [];
  for (const [label, from] of partB ? windows : []) {
    const { cold, warm } = await browserFirstView(config, dataDir, from, T_END + 1);
    const p50 = (k: keyof FirstView) => median(warm.map((v) => v[k]));
    const ms = (n: number) => `${Math.round(n).toLocaleString('en-US')} ms`;
    views.push(
      `| ${label} | ${ms(cold.initial)} | ${ms(cold.elk)} | ${ms(cold.api)} (${Math.round(cold.apiBytes / 1024)} KB) | ` +
        `${ms(p50('initial'))} | ${ms(p50('elk'))} | ${ms(p50('api'))} | ${cold.initial <= 2000 ? 'met' : 'MISSED'} |`,
    );
  }
  if (partB) {
    process.stdout.write(
      '\n(b) first view in Chromium, ms from navigation start (graph API: request start to response end, Resource Timing)\n' +
        '| window | cold: first drawn | cold: ELK laid out | cold: graph API | warm p50: first drawn | warm p50: ELK | warm p50: graph API | ≤ 2 s cold |\n' +
        '|---|---|---|---|---|---|---|---|\n' +
        `${views.join('\n')}\n`,
    );
  }
} finally {
  if (!keep) rmSync(dataDir, { recursive: true, force: true });
}
