/**
 * Each anomaly signal fires on a crafted sequence, says why, and stays quiet on normal traffic.
 */
import { describe, expect, it } from 'vitest';
import {
  type AnomalyConfig,
  AnomalyDetector,
  type AnomalySignal,
  anomalyEvent,
  type AuditEvent,
  normalizeEvent,
} from '../../src/audit/index.js';

const H = 3_600_000;
const DAY = 24 * H;
const T0 = Date.parse('2026-11-02T00:00:00Z');

function decision(time: number, source: string, target: string, outcome: 'allow' | 'deny' = 'allow', path = '/v1/x') {
  return normalizeEvent({
    kind: 'access.decision',
    time,
    source: { spiffe_id: `spiffe://example.org/ns/prod/sa/${source}` },
    target: { service: target, method: 'GET', path },
    outcome,
  });
}

const EDGES: [string, string][] = [
  ['api-gateway', 'payments'],
  ['api-gateway', 'orders'],
  ['orders', 'inventory'],
  ['payments', 'ledger'],
];

/** Business-hours traffic (08:00–18:59 UTC) on the known edges, a few denies, for `days` days. */
function normalTraffic(fromDay: number, days: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (let d = fromDay; d < fromDay + days; d++) {
    for (let h = 8; h < 19; h++) {
      for (let m = 0; m < 60; m += 6) {
        EDGES.forEach(([s, t], i) => {
          const deny = (d + h + m + i) % 50 === 0;
          out.push(decision(T0 + d * DAY + h * H + m * 60_000 + i * 1000, s, t, deny ? 'deny' : 'allow', '/v1/orders'));
        });
      }
    }
  }
  return out;
}

const config: AnomalyConfig = { baseline_ms: 7 * DAY, sensitive_paths: ['/admin/*', '/v1/keys'] };

function run(d: AnomalyDetector, events: AuditEvent[]): AnomalySignal[] {
  return events.flatMap((e) => d.observe(e));
}

describe('anomaly signals', () => {
  it('stay quiet on normal traffic after the baseline', () => {
    const d = new AnomalyDetector(config);
    expect(run(d, normalTraffic(0, 7))).toEqual([]);
    expect(run(d, normalTraffic(7, 7))).toEqual([]);
  });

  it('lateral movement: a new source→target edge after the baseline', () => {
    const d = new AnomalyDetector(config);
    run(d, normalTraffic(0, 7));
    const s = run(d, [
      decision(T0 + 8 * DAY + 10 * H, 'api-gateway', 'ledger'),
      decision(T0 + 8 * DAY + 11 * H, 'api-gateway', 'ledger'),
    ]);
    expect(s).toHaveLength(1);
    expect(s[0]).toMatchObject({ signal: 'lateral_movement', target: 'ledger' });
    expect(s[0]?.why).toMatch(
      /spiffe:\/\/example.org\/ns\/prod\/sa\/api-gateway called ledger for the first time: this edge was never seen in the 168 h baseline/,
    );
    // Inside the baseline a new edge is learned, not signalled.
    const fresh = new AnomalyDetector(config);
    expect(run(fresh, [decision(T0, 'a', 'b'), decision(T0 + H, 'a', 'c')])).toEqual([]);
  });

  it('deny spike per source over a sliding window, with a cooldown', () => {
    const d = new AnomalyDetector({
      ...config,
      deny_spike: { window_ms: 60_000, min_denies: 10, min_ratio: 0.5, cooldown_ms: 600_000 },
    });
    run(d, normalTraffic(0, 8));
    const base = T0 + 8 * DAY + 9 * H + 30 * 60_000;
    const burst: AuditEvent[] = [];
    for (let i = 0; i < 30; i++)
      burst.push(decision(base + i * 1000, 'orders', 'inventory', i % 5 === 0 ? 'allow' : 'deny'));
    const s = run(d, burst).filter((x) => x.signal === 'deny_spike');
    expect(s).toHaveLength(1);
    expect(s[0]?.why).toMatch(/denied 10 times out of 1[0-3] requests in the last 60 s/);
    // Spread-out denies (below the count in any window) do not fire.
    const d2 = new AnomalyDetector({
      ...config,
      deny_spike: { window_ms: 60_000, min_denies: 10, min_ratio: 0.5, cooldown_ms: 0 },
    });
    const slow: AuditEvent[] = [];
    for (let i = 0; i < 100; i++) slow.push(decision(T0 + i * 10_000, 'orders', 'inventory', 'deny'));
    expect(run(d2, slow).filter((x) => x.signal === 'deny_spike')).toEqual([]);
  });

  it('access outside a service’s usual hours', () => {
    const d = new AnomalyDetector(config);
    run(d, normalTraffic(0, 7));
    const s = run(d, [decision(T0 + 9 * DAY + 3 * H + 120_000, 'api-gateway', 'payments')]);
    expect(s).toHaveLength(1);
    expect(s[0]).toMatchObject({ signal: 'unusual_hours', target: 'payments', details: { hour: 3 } });
    expect(s[0]?.why).toMatch(
      /payments was called by .* at 03:00–03:59 \(UTC\+0\), an hour with 0 of its \d+ baseline calls/,
    );
    // Within the cooldown the same hour does not fire again.
    expect(run(d, [decision(T0 + 9 * DAY + 3 * H + 180_000, 'api-gateway', 'payments')])).toEqual([]);
  });

  it('first use of a sensitive path by a principal', () => {
    const d = new AnomalyDetector(config);
    run(d, [...normalTraffic(0, 7), decision(T0 + 2 * DAY + 10 * H, 'api-gateway', 'payments', 'allow', '/v1/keys')]);
    const s = run(d, [
      decision(T0 + 8 * DAY + 10 * H, 'api-gateway', 'payments', 'allow', '/v1/keys'), // seen in baseline
      decision(T0 + 8 * DAY + 10 * H + 1000, 'api-gateway', 'payments', 'deny', '/admin/users'),
      decision(T0 + 8 * DAY + 10 * H + 2000, 'api-gateway', 'payments', 'deny', '/admin/roles'), // same pattern
    ]);
    expect(s.map((x) => x.signal)).toEqual(['sensitive_path_first_use']);
    expect(s[0]?.why).toMatch(
      /used the sensitive path \/admin\/users \(matching \/admin\/\*\) for the first time \(outcome deny\)/,
    );
  });

  it('signals become valid anomaly events, and state survives a snapshot', () => {
    const d = new AnomalyDetector(config);
    run(d, normalTraffic(0, 7));
    const [sig] = run(d, [decision(T0 + 8 * DAY + 10 * H, 'payments', 'orders')]);
    const e = normalizeEvent(anomalyEvent(sig as AnomalySignal));
    expect(e).toMatchObject({ kind: 'anomaly', details: { signal: 'lateral_movement' } });
    const copy = new AnomalyDetector(config);
    copy.restore(d.snapshot());
    expect(run(copy, normalTraffic(8, 1))).toEqual([]);
    expect(run(copy, [decision(T0 + 9 * DAY + 10 * H, 'payments', 'orders')])).toEqual([]);
  });
});
