/**
 * Anomaly signals over the decision stream. Each signal becomes an `anomaly` audit event that says
 * why it fired. State is in memory (bounded) and can be saved and restored as JSON.
 *
 * - lateral movement: a source→target edge never seen during the baseline window;
 * - deny spike: a source's denies over a sliding window pass a count and a share of its requests;
 * - unusual hours: a service is called in an hour of day that had (almost) no calls in the baseline;
 * - sensitive path: a principal uses a configured sensitive path for the first time.
 */
import { z } from 'zod';
import type { AuditEvent, AuditEventInput } from './event.js';
import { sourceKey, targetKey } from './event.js';

export const anomalyConfigSchema = z.strictObject({
  /** Learning period from the first observed decision (ms, default 7 days). */
  baseline_ms: z
    .number()
    .int()
    .min(0)
    .default(7 * 86_400_000),
  lateral_movement: z.boolean().default(true),
  deny_spike: z
    .union([
      z.literal(false),
      z.strictObject({
        window_ms: z.number().int().min(1000).default(60_000),
        min_denies: z.number().int().min(1).default(20),
        /** Share of the source's requests in the window that were denied. */
        min_ratio: z.number().min(0).max(1).default(0.5),
        cooldown_ms: z.number().int().min(0).default(300_000),
      }),
    ])
    .default({ window_ms: 60_000, min_denies: 20, min_ratio: 0.5, cooldown_ms: 300_000 }),
  unusual_hours: z
    .union([
      z.literal(false),
      z.strictObject({
        /** A service needs this many baseline calls before hours are judged. */
        min_baseline_events: z.number().int().min(1).default(100),
        /** An hour is unusual when it had at most this share of the baseline calls. */
        max_share: z.number().min(0).max(1).default(0.005),
        /** Offset of the local day from UTC, minutes (e.g. 60 for CET). */
        utc_offset_minutes: z.number().int().min(-840).max(840).default(0),
        cooldown_ms: z.number().int().min(0).default(3_600_000),
      }),
    ])
    .default({ min_baseline_events: 100, max_share: 0.005, utc_offset_minutes: 0, cooldown_ms: 3_600_000 }),
  /** Paths (exact, or prefix ending in `*`) whose first use by a principal is signalled. */
  sensitive_paths: z.array(z.string().min(1)).default([]),
  /** Bound on remembered edges / principal-path pairs. */
  max_entries: z.number().int().min(1000).default(1_000_000),
});

export type AnomalyConfig = z.input<typeof anomalyConfigSchema>;
type Cfg = z.output<typeof anomalyConfigSchema>;

export type AnomalySignalName = 'lateral_movement' | 'deny_spike' | 'unusual_hours' | 'sensitive_path_first_use';

export interface AnomalySignal {
  signal: AnomalySignalName;
  /** Event time of the decision that triggered it. */
  time: number;
  source: string;
  target: string;
  /** One sentence a person can act on. */
  why: string;
  /** The decision event that triggered it. */
  event_id: string;
  details: Record<string, unknown>;
}

interface SourceWindow {
  times: number[];
  denies: boolean[];
  head: number;
  denyCount: number;
  lastFired: number;
}

/**
 * Observes decisions and returns the signals each one raises.
 *
 * @example
 * const d = new AnomalyDetector({ baseline_ms: 86_400_000, sensitive_paths: ['/admin/*'] });
 * for (const s of d.observe(event)) recorder.record(anomalyEvent(s));
 */
export class AnomalyDetector {
  readonly config: Cfg;
  private baselineStart: number | undefined;
  private readonly edges = new Set<string>();
  private readonly hours = new Map<string, number[]>();
  private readonly hourFired = new Map<string, number>();
  private readonly sensitiveSeen = new Set<string>();
  private readonly windows = new Map<string, SourceWindow>();
  private readonly sensitive: { pattern: string; prefix: boolean; value: string }[];

  constructor(config: AnomalyConfig = {}) {
    this.config = anomalyConfigSchema.parse(config);
    this.sensitive = this.config.sensitive_paths.map((p) =>
      p.endsWith('*') ? { pattern: p, prefix: true, value: p.slice(0, -1) } : { pattern: p, prefix: false, value: p },
    );
  }

  /** True while the detector is still learning what is normal. */
  inBaseline(time: number): boolean {
    return this.baselineStart === undefined || time < this.baselineStart + this.config.baseline_ms;
  }

  observe(e: AuditEvent): AnomalySignal[] {
    if (e.kind !== 'access.decision') return [];
    const out: AnomalySignal[] = [];
    const t = e.time;
    this.baselineStart ??= t;
    const learning = this.inBaseline(t);
    const source = sourceKey(e);
    const target = targetKey(e);
    const c = this.config;

    if (c.lateral_movement && source && target) {
      const key = `${source}\u0000${target}`;
      if (!this.edges.has(key)) {
        if (!learning) {
          out.push({
            signal: 'lateral_movement',
            time: t,
            source,
            target,
            event_id: e.id,
            why: `${source} called ${target} for the first time: this edge was never seen in the ${Math.round(c.baseline_ms / 3_600_000)} h baseline (outcome ${e.outcome ?? 'unknown'})`,
            details: { outcome: e.outcome, method: e.target?.method, path: e.target?.path },
          });
        }
        if (this.edges.size < c.max_entries) this.edges.add(key);
      }
    }

    if (c.deny_spike && source) {
      const cfg = c.deny_spike;
      let w = this.windows.get(source);
      if (!w) {
        w = { times: [], denies: [], head: 0, denyCount: 0, lastFired: Number.NEGATIVE_INFINITY };
        if (this.windows.size < c.max_entries) this.windows.set(source, w);
      }
      const deny = e.outcome === 'deny';
      w.times.push(t);
      w.denies.push(deny);
      if (deny) w.denyCount++;
      while (w.head < w.times.length && (w.times[w.head] as number) <= t - cfg.window_ms) {
        if (w.denies[w.head]) w.denyCount--;
        w.head++;
      }
      if (w.head > 1024 && w.head * 2 > w.times.length) {
        w.times = w.times.slice(w.head);
        w.denies = w.denies.slice(w.head);
        w.head = 0;
      }
      const total = w.times.length - w.head;
      const ratio = total === 0 ? 0 : w.denyCount / total;
      if (deny && w.denyCount >= cfg.min_denies && ratio >= cfg.min_ratio && t - w.lastFired >= cfg.cooldown_ms) {
        w.lastFired = t;
        out.push({
          signal: 'deny_spike',
          time: t,
          source,
          target,
          event_id: e.id,
          why: `${source} was denied ${w.denyCount} times out of ${total} requests in the last ${Math.round(cfg.window_ms / 1000)} s (${Math.round(ratio * 100)}% ≥ ${Math.round(cfg.min_ratio * 100)}%, at least ${cfg.min_denies} denies)`,
          details: { denies: w.denyCount, requests: total, ratio, window_ms: cfg.window_ms },
        });
      }
    }

    if (c.unusual_hours && target) {
      const cfg = c.unusual_hours;
      const hour = Math.floor((((t + cfg.utc_offset_minutes * 60_000) % 86_400_000) + 86_400_000) / 3_600_000) % 24;
      let h = this.hours.get(target);
      if (!h) {
        h = new Array<number>(25).fill(0); // 24 hours + total
        if (this.hours.size < c.max_entries) this.hours.set(target, h);
      }
      if (learning) {
        h[hour] = (h[hour] as number) + 1;
        h[24] = (h[24] as number) + 1;
      } else {
        const total = h[24] as number;
        const share = total === 0 ? 0 : (h[hour] as number) / total;
        const key = `${target}\u0000${hour}`;
        if (
          total >= cfg.min_baseline_events &&
          share <= cfg.max_share &&
          t - (this.hourFired.get(key) ?? -Infinity) >= cfg.cooldown_ms
        ) {
          this.hourFired.set(key, t);
          out.push({
            signal: 'unusual_hours',
            time: t,
            source,
            target,
            event_id: e.id,
            why: `${target} was called by ${source || 'an unknown caller'} at ${String(hour).padStart(2, '0')}:00–${String(hour).padStart(2, '0')}:59 (UTC${cfg.utc_offset_minutes >= 0 ? '+' : ''}${cfg.utc_offset_minutes / 60}), an hour with ${h[hour]} of its ${total} baseline calls (${(share * 100).toFixed(2)}% ≤ ${(cfg.max_share * 100).toFixed(2)}%)`,
            details: { hour, baseline_calls_in_hour: h[hour], baseline_calls: total },
          });
        }
      }
    }

    const path = e.target?.path;
    if (this.sensitive.length > 0 && path && source) {
      for (const s of this.sensitive) {
        if (s.prefix ? !path.startsWith(s.value) : path !== s.value) continue;
        const key = `${source}\u0000${s.pattern}`;
        if (this.sensitiveSeen.has(key)) continue;
        if (this.sensitiveSeen.size < c.max_entries) this.sensitiveSeen.add(key);
        if (learning) continue;
        out.push({
          signal: 'sensitive_path_first_use',
          time: t,
          source,
          target,
          event_id: e.id,
          why: `${source} used the sensitive path ${path} (matching ${s.pattern}) for the first time (outcome ${e.outcome ?? 'unknown'})`,
          details: { path, pattern: s.pattern, outcome: e.outcome },
        });
      }
    }
    return out;
  }

  /** State as JSON, to survive restarts (store it with `store.kv`). */
  snapshot(): string {
    return JSON.stringify({
      v: 1,
      baselineStart: this.baselineStart,
      edges: [...this.edges],
      hours: [...this.hours],
      sensitive: [...this.sensitiveSeen],
    });
  }

  /** Restores a {@link snapshot}. */
  restore(json: string): void {
    const s = JSON.parse(json) as {
      baselineStart?: number;
      edges?: string[];
      hours?: [string, number[]][];
      sensitive?: string[];
    };
    this.baselineStart = s.baselineStart;
    for (const e of s.edges ?? []) this.edges.add(e);
    for (const [k, v] of s.hours ?? []) this.hours.set(k, v);
    for (const k of s.sensitive ?? []) this.sensitiveSeen.add(k);
  }
}

/**
 * The audit event for a signal (kind `anomaly`; `reason` says why).
 *
 * @example
 * recorder.record(anomalyEvent(signal));
 */
export function anomalyEvent(s: AnomalySignal): AuditEventInput {
  const src = s.source.startsWith('spiffe://') ? { spiffe_id: s.source } : s.source ? { user: s.source } : undefined;
  return {
    kind: 'anomaly',
    time: s.time,
    source: src,
    target: s.target ? (s.target.startsWith('spiffe://') ? { spiffe_id: s.target } : { service: s.target }) : undefined,
    reason: s.why,
    details: { signal: s.signal, trigger_event_id: s.event_id, ...s.details },
  };
}
