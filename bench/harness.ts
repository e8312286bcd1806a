/**
 * Shared benchmark harness. Every benchmark measures a peer and ours in the same run
 * and reports both with their ratio: absolute numbers drift on shared machines, ratios hold.
 *
 * Output: a human table on stdout, plus one JSON line per figure prefixed with `BENCH `
 * so that `bench/run.ts` (and docs/benchmarks.md updates) can collect them.
 */
import { performance } from 'node:perf_hooks';

export interface Figure {
  /** Benchmark group, e.g. `svid-signing`. */
  bench: string;
  /** What was measured, e.g. `X.509-SVIDs signed per second`. */
  metric: string;
  unit: string;
  peerName: string;
  peer: number;
  ours: number;
  /** True when a larger number is better (throughput); false for latencies. */
  higherIsBetter: boolean;
  /** Optional target, expressed as the ratio ours/peer (higherIsBetter) or peer/ours (lower). */
  targetRatio?: number;
}

/** ratio > 1 always means "ours is better" so tables read the same way for every metric. */
export function advantage(f: Pick<Figure, 'peer' | 'ours' | 'higherIsBetter'>): number {
  if (f.higherIsBetter) return f.peer === 0 ? Number.POSITIVE_INFINITY : f.ours / f.peer;
  return f.ours === 0 ? Number.POSITIVE_INFINITY : f.peer / f.ours;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

export function report(figures: Figure[]): void {
  const rows = figures.map((f) => {
    const adv = advantage(f);
    // Rounded for the table only (a target of 1/1.5 reads 0.67).
    const t = f.targetRatio === undefined ? undefined : Number(f.targetRatio.toFixed(2));
    const target =
      t === undefined || f.targetRatio === undefined ? '' : adv >= f.targetRatio ? `ok (≥${t}×)` : `MISS (<${t}×)`;
    return [
      f.bench,
      f.metric,
      `${f.peerName}: ${fmt(f.peer)}`,
      `ours: ${fmt(f.ours)}`,
      f.unit,
      `${adv.toFixed(2)}×`,
      target,
    ];
  });
  const header = ['bench', 'metric', 'peer', 'ours', 'unit', 'ours vs peer', 'target'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ');
  process.stdout.write(`${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('-|-')}\n`);
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
  for (const f of figures) {
    process.stdout.write(`BENCH ${JSON.stringify({ ...f, advantage: Number(advantage(f).toFixed(3)) })}\n`);
  }
}

export interface LatencyStats {
  count: number;
  opsPerSec: number;
  p50us: number;
  p90us: number;
  p99us: number;
}

/** Percentile from an ascending-sorted array of samples. */
export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] ?? Number.NaN;
}

/**
 * Medians of two measurements taken alternately, `rounds` times each after `warmup` rounds that
 * do not count: both sides see the same machine, JIT state and garbage.
 *
 * @example
 * const [ours, peer] = interleavedMedians(() => timeOurs(), () => timePeer(), 50, 10);
 */
export function interleavedMedians(a: () => number, b: () => number, rounds: number, warmup: number): [number, number] {
  const as: number[] = [];
  const bs: number[] = [];
  for (let i = 0; i < warmup + rounds; i++) {
    const x = a();
    const y = b();
    if (i < warmup) continue;
    as.push(x);
    bs.push(y);
  }
  return [
    percentile(
      as.sort((p, q) => p - q),
      50,
    ),
    percentile(
      bs.sort((p, q) => p - q),
      50,
    ),
  ];
}

/**
 * Runs `fn` repeatedly for about `seconds`, timing batches of `batch` calls
 * (timer resolution makes single sub-microsecond calls unmeasurable).
 * Per-call latency = batch time / batch.
 */
export function measureSync(
  fn: () => unknown,
  opts: { seconds?: number; batch?: number; warmup?: number } = {},
): LatencyStats {
  const seconds = opts.seconds ?? 2;
  const batch = opts.batch ?? 1;
  for (let i = 0; i < (opts.warmup ?? 1000); i++) fn();
  const samples: number[] = [];
  const end = performance.now() + seconds * 1000;
  let calls = 0;
  const start = performance.now();
  while (performance.now() < end) {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) fn();
    samples.push(((performance.now() - t0) * 1000) / batch);
    calls += batch;
  }
  const elapsed = (performance.now() - start) / 1000;
  samples.sort((a, b) => a - b);
  return {
    count: calls,
    opsPerSec: calls / elapsed,
    p50us: percentile(samples, 50),
    p90us: percentile(samples, 90),
    p99us: percentile(samples, 99),
  };
}

/** Async variant: `fn` is awaited, `concurrency` calls in flight. */
export async function measureAsync(
  fn: () => Promise<unknown>,
  opts: { seconds?: number; concurrency?: number; warmup?: number } = {},
): Promise<LatencyStats> {
  const seconds = opts.seconds ?? 2;
  const concurrency = opts.concurrency ?? 1;
  for (let i = 0; i < (opts.warmup ?? 50); i++) await fn();
  const samples: number[] = [];
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await fn();
      samples.push((performance.now() - t0) * 1000);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  samples.sort((a, b) => a - b);
  return {
    count: samples.length,
    opsPerSec: samples.length / elapsed,
    p50us: percentile(samples, 50),
    p90us: percentile(samples, 90),
    p99us: percentile(samples, 99),
  };
}
