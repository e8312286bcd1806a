/**
 * The daemon's timing: reports every interval and at once on a change, renews when due, backs off
 * on errors, keeps reporting when a renewal fails, and stops on abort. (Its real calls to a server
 * are tested end to end in client.test.ts; here the steps are counted.)
 */
import { describe, expect, it } from 'vitest';
import { DeviceState, reportFacts, runDeviceDaemon } from '../../../src/access/device/index.js';
import type { PostureReport } from '../../../src/api/index.js';

const report = (encrypted: boolean, at = new Date().toISOString()): PostureReport => ({
  device_id: 'd1',
  collected_at: at,
  os: { name: 'Debian', version: '12', id: 'debian' },
  kernel: '6.1',
  updates: { pending_security: 0, pending_total: 0, source: 'apt', checked_at: at },
  disk: { root_encrypted: encrypted, detail: 'x' },
  firewall: { active: true, tool: 'nftables' },
  edr: { active: false, running: [] },
  collector_version: 'nevertrust-linux/1',
});

/** A clock the test moves: each sleep of the daemon is real but short (checkMs of a few ms). */
function run(opts: {
  steps: number;
  collect: (i: number) => PostureReport;
  /** Whether the n-th send attempt fails. */
  sendFails?: (attempt: number) => boolean;
  renewFails?: boolean;
  intervalMs?: number;
  renewAt?: number;
}) {
  const ctl = new AbortController();
  const sent: PostureReport[] = [];
  const lines: string[] = [];
  let renewals = 0;
  let i = 0;
  let attempts = 0;
  const done = runDeviceDaemon({
    state: new DeviceState('/nonexistent'),
    signal: ctl.signal,
    checkMs: 1,
    intervalMs: opts.intervalMs ?? 3_600_000,
    maxBackoffMs: 1,
    log: (l) => lines.push(l),
    ops: {
      collect: async () => {
        const r = opts.collect(i++);
        if (i >= opts.steps) ctl.abort();
        return r;
      },
      send: async (r) => {
        if (opts.sendFails?.(attempts++)) throw new Error('server down');
        sent.push(r);
      },
      renew: async () => {
        renewals++;
        if (opts.renewFails) throw new Error('renewal refused');
        return Date.now() + 3_600_000;
      },
      renewAt: async () => opts.renewAt ?? Date.now() + 3_600_000,
    },
  });
  return done.then(() => ({ sent, lines, renewals: () => renewals }));
}

describe('runDeviceDaemon', () => {
  it('sends the first report, then only when the facts change (not for new times)', async () => {
    const { sent } = await run({
      steps: 6,
      collect: (i) => report(i >= 3, new Date(Date.now() + i * 1000).toISOString()),
    });
    expect(sent.map((r) => r.disk.root_encrypted)).toEqual([false, true]);
  });

  it('sends again once the interval has passed, facts unchanged', async () => {
    // The 4th collection aborts the daemon, so it is not sent: stopping wins over sending.
    const { sent } = await run({ steps: 4, intervalMs: 0, collect: () => report(true) });
    expect(sent.length).toBe(3);
  });

  it('renews when due, and keeps reporting when the renewal fails', async () => {
    const ok = await run({ steps: 3, renewAt: 0, collect: () => report(true) });
    expect(ok.renewals()).toBe(1);
    const failing = await run({ steps: 3, renewAt: 0, renewFails: true, collect: () => report(true) });
    expect(failing.renewals()).toBe(3);
    expect(failing.sent.length).toBe(1);
    expect(failing.lines.some((l) => l.startsWith('renewal failed: renewal refused'))).toBe(true);
  });

  it('retries a failed send (backing off) and sends the unchanged report after', async () => {
    const { sent, lines } = await run({ steps: 3, sendFails: (n) => n === 0, collect: () => report(true) });
    expect(sent.length).toBe(1);
    expect(lines.some((l) => /report failed: server down; retrying in/.test(l))).toBe(true);
  });

  it('ignores collected_at and the update check time when comparing facts', () => {
    expect(reportFacts(report(true, '2026-01-01T00:00:00Z'))).toBe(reportFacts(report(true, '2026-01-02T00:00:00Z')));
    expect(reportFacts(report(true))).not.toBe(reportFacts(report(false)));
  });
});
