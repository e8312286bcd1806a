/**
 * Focused micro-benchmark of the in-process decision hot path, `decide(snapshot, request)`, on
 * the 10,000-rule / 1,000-service set of policy-decision.bench.ts (same rules, same request mix:
 * 70 % allowed, 30 % denied with a `..` path that takes the slow normalization path).
 *
 * The machine is shared and noisy, so engines run in alternating rounds and the report gives the
 * median over rounds of each round's p50/p99. Peers: casbin's `enforceSync` on an equivalent
 * model (it does not normalize paths, so it gets pre-normalized ones) and, optionally, a previous
 * build of this engine (`BEFORE=/path/to/policy/index.js`) to compare implementations.
 *
 * tsx wraps TypeScript functions in helper code, so for real costs measure the built engine:
 *   npx tsc -p tsconfig.json
 *   IMPL=dist node --import tsx --expose-gc bench/policy-hot-path.bench.ts
 * Options (env): ROUNDS (default 7), SECONDS per engine per round (default 1.5),
 * IMPL=dist|src (default src), BEFORE=<module path>, CASBIN=0 to skip casbin,
 * NORMALIZED=1 to add a round for `decideNormalized` on pre-normalized requests,
 * PATH_NORMALIZATION=lenient|strict|decode_and_merge_slashes for this engine's snapshot (default
 * strict: the workload's `..` paths are then refused before any rule; lenient resolves them, as a
 * BEFORE build without the modes does).
 */
import { newEnforcer, newModelFromString } from 'casbin';
import { type LatencyStats, measureSync } from './harness.js';
import {
  CASBIN_MODEL,
  caller,
  edges,
  id,
  method,
  nativeYaml,
  pathPrefix,
  RULES_PER_SERVICE,
  requests,
  SERVICES,
} from './policy-workload.js';

// The public surface plus the two internal entry points this bench also measures.
type PolicyModule = typeof import('../src/policy/index.js') &
  Pick<typeof import('../src/policy/evaluate.js'), 'decideNormalized'> &
  Pick<typeof import('../src/policy/request.js'), 'normalizeRequest'>;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

interface Engine {
  name: string;
  run: () => unknown;
  /** Calls per timed batch and warm-up calls: casbin scans its rules and is far slower per call. */
  batch: number;
  warmup: number;
  rounds: LatencyStats[];
}

const t0 = Date.now();
function progress(what: string): void {
  process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}\n`);
}

/** The engine whose `index.js` is at `path`, with its sibling modules' internal entry points. */
async function load(path: string): Promise<PolicyModule> {
  const sibling = (name: string) => path.replace(/index\.(js|ts)$/, `${name}.$1`);
  const [index, evaluate, request] = await Promise.all([
    import(path),
    import(sibling('evaluate')),
    import(sibling('request')),
  ]);
  return { ...index, ...evaluate, ...request } as PolicyModule;
}

async function main(): Promise<void> {
  const rounds = Number(process.env.ROUNDS ?? 7);
  const seconds = Number(process.env.SECONDS ?? 1.5);
  const implPath = process.env.IMPL === 'dist' ? '../dist/policy/index.js' : '../src/policy/index.js';
  const ours = await load(implPath);
  const yamlText = nativeYaml(edges(SERVICES, RULES_PER_SERVICE));
  const reqs = requests(2000);
  const fullReqs = reqs.map((r) => ({
    source: { spiffe_id: id(r.source) },
    target: { spiffe_id: id(r.target) },
    request: { method: r.method, path: r.path },
  }));
  const engines: Engine[] = [];

  progress('parsing and compiling 10,000 rules');
  const mode = (process.env.PATH_NORMALIZATION ?? 'strict') as 'strict' | 'lenient' | 'decode_and_merge_slashes';
  const snap = ours.compile(ours.parsePolicyText(yamlText, 'bench.yaml'), { path: ours.pathOptionsFor(mode) });
  let i = 0;
  engines.push({
    name: `ours (${process.env.IMPL === 'dist' ? 'dist' : 'src via tsx'}, ${mode})`,
    run: () => ours.decide(snap, fullReqs[i++ % fullReqs.length] as (typeof fullReqs)[number]),
    batch: 20,
    warmup: 20_000,
    rounds: [],
  });

  if (process.env.NORMALIZED === '1') {
    const normalized = fullReqs.map((r) => {
      const n = ours.normalizeRequest(r, snap.options.path);
      if (!n.ok) throw new Error(n.reason);
      return n.req;
    });
    let k = 0;
    engines.push({
      name: 'ours decideNormalized',
      run: () => ours.decideNormalized(snap, normalized[k++ % normalized.length] as (typeof normalized)[number]),
      batch: 20,
      warmup: 20_000,
      rounds: [],
    });
  }

  const before = process.env.BEFORE;
  if (before) {
    const prev = await load(before);
    progress('parsing and compiling with the previous build');
    const prevSnap = prev.compile(prev.parsePolicyText(yamlText, 'bench.yaml'));
    for (let j = 0; j < fullReqs.length; j++) {
      const r = fullReqs[j] as (typeof fullReqs)[number];
      const a = ours.decide(snap, r);
      const b = prev.decide(prevSnap, r);
      if (a.decision !== b.decision || a.policy !== b.policy || a.rule !== b.rule || a.reason !== b.reason)
        throw new Error(`before/after disagree on ${JSON.stringify(r)}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }
    let k = 0;
    engines.push({
      name: 'previous build',
      run: () => prev.decide(prevSnap, fullReqs[k++ % fullReqs.length] as (typeof fullReqs)[number]),
      batch: 20,
      warmup: 20_000,
      rounds: [],
    });
  }

  if (process.env.CASBIN !== '0') {
    progress('loading casbin');
    const enforcer = await newEnforcer(newModelFromString(CASBIN_MODEL));
    const rows: string[][] = [];
    for (let t = 0; t < SERVICES; t++)
      for (let k = 0; k < RULES_PER_SERVICE; k++) rows.push([id(caller(t, k)), id(t), method(k), `${pathPrefix(k)}*`]);
    await enforcer.addPolicies(rows);
    const casReqs = reqs.map((r) => [id(r.source), id(r.target), r.method, r.path.replace(/\/[^/]+\/\.\.\//, '/')]);
    for (let j = 0; j < 300; j++) {
      const a = ours.decide(snap, fullReqs[j] as (typeof fullReqs)[number]).decision === 'allow';
      if (a !== enforcer.enforceSync(...(casReqs[j] as string[])))
        throw new Error(`casbin disagrees on ${JSON.stringify(reqs[j])}`);
    }
    let k = 0;
    engines.push({
      name: 'casbin enforceSync',
      run: () => enforcer.enforceSync(...(casReqs[k++ % casReqs.length] as string[])),
      batch: 1,
      warmup: 20,
      rounds: [],
    });
  }

  progress('measuring');
  // Warm every engine up once, then alternate so that machine noise hits all of them alike.
  for (const e of engines) measureSync(e.run, { seconds: 0.5, batch: e.batch, warmup: e.warmup });
  for (let r = 0; r < rounds; r++) {
    for (const e of engines) {
      (globalThis as { gc?: () => void }).gc?.();
      // Batches of 20 calls for ours: one timer read per call would dominate a sub-µs decision.
      e.rounds.push(measureSync(e.run, { seconds, batch: e.batch, warmup: Math.ceil(e.warmup / 10) }));
    }
  }

  const head = `${rounds} alternating rounds × ${seconds} s, batches of 20 (casbin: 1); medians over rounds`;
  process.stdout.write(`${head}\n`);
  for (const e of engines) {
    const p50 = median(e.rounds.map((s) => s.p50us));
    const p99 = median(e.rounds.map((s) => s.p99us));
    const ops = median(e.rounds.map((s) => s.opsPerSec));
    const spread = e.rounds.map((s) => s.p50us.toFixed(3)).join(' ');
    process.stdout.write(
      `${e.name.padEnd(26)} p50 ${p50.toFixed(3)} µs  p99 ${p99.toFixed(3)} µs  ${Math.round(ops).toLocaleString('en-US')} decisions/s  (p50 per round: ${spread})\n`,
    );
    process.stdout.write(
      `BENCH ${JSON.stringify({ bench: 'policy-hot-path', engine: e.name, p50us: p50, p99us: p99, opsPerSec: ops })}\n`,
    );
  }
  const first = engines[0] as Engine;
  const f50 = median(first.rounds.map((s) => s.p50us));
  for (const e of engines.slice(1)) {
    const ratio = median(e.rounds.map((s) => s.p50us)) / f50;
    process.stdout.write(`p50 ${e.name} / ${first.name}: ${ratio.toFixed(2)}×\n`);
  }
}

await main();
