/**
 * The device daemon (issue #22): keeps the device certificate fresh (renewal at `renew_after`, half
 * its life) and the server's view of the posture current: a report every `interval`, and at once
 * when a check (every `check`) finds the facts changed since the last report sent. Errors back off
 * (doubling, capped) instead of hammering the server; an abort signal stops it between steps.
 */
import { X509Certificate } from 'node:crypto';
import type { PostureReport } from '../../api/index.js';
import { collectDeviceReport, renewDevice, sendDeviceReport } from './client.js';
import type { DeviceState } from './state.js';

export interface DeviceDaemonOptions {
  state: DeviceState;
  /** Longest time between two reports, ms (default 5 min). */
  intervalMs?: number;
  /** How often the posture is collected to spot a change, ms (default 60 s). */
  checkMs?: number;
  edrProcessNames?: readonly string[];
  /** One line per event (sent, renewed, failed, backing off). */
  log?: (line: string) => void;
  /** Stops the daemon: it returns after the step under way. */
  signal: AbortSignal;
  /** Longest back-off after errors, ms (default 5 min). */
  maxBackoffMs?: number;
  now?: () => number;
  /** What each step does; the real client by default (tests of the timing may pass their own). */
  ops?: Partial<DaemonOps>;
}

export interface DaemonOps {
  collect(): Promise<PostureReport>;
  send(report: PostureReport): Promise<unknown>;
  /** Renews; returns the next renewal time (ms). */
  renew(): Promise<number>;
  /** When the current certificate is due for renewal (ms). */
  renewAt(): Promise<number>;
}

export const DEFAULT_REPORT_INTERVAL_MS = 5 * 60_000;
export const DEFAULT_CHECK_MS = 60_000;
const FIRST_BACKOFF_MS = 5_000;

/** A report's facts without its times: two reports with the same facts need not both be sent. */
export function reportFacts(r: PostureReport): string {
  const { collected_at: _t, updates, ...rest } = r;
  const { checked_at: _c, ...u } = updates;
  return JSON.stringify({ ...rest, updates: u });
}

/** The renewal time of a certificate chain: half-way through the leaf's life. */
export function halfLife(chainPem: string): number {
  const c = new X509Certificate(chainPem);
  const from = new Date(c.validFrom).getTime();
  const to = new Date(c.validTo).getTime();
  return from + (to - from) / 2;
}

/** Resolves after `ms` or when `signal` aborts, whichever comes first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Runs until `signal` aborts. Never throws for a failed step: it logs, backs off and tries again
 * (a device that cannot reach its server must keep trying once the network is back).
 *
 * @example
 * ```ts
 * const ctl = new AbortController();
 * process.once('SIGTERM', () => ctl.abort());
 * await runDeviceDaemon({ state, signal: ctl.signal, log: (l) => console.error(l) });
 * ```
 */
export async function runDeviceDaemon(opts: DeviceDaemonOptions): Promise<void> {
  const { state, signal } = opts;
  const now = opts.now ?? Date.now;
  const log = opts.log ?? (() => {});
  const intervalMs = opts.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS;
  const checkMs = opts.checkMs ?? DEFAULT_CHECK_MS;
  const maxBackoffMs = opts.maxBackoffMs ?? 5 * 60_000;
  const ops: DaemonOps = {
    collect: () => collectDeviceReport(state, { edrProcessNames: opts.edrProcessNames }),
    send: (r) => sendDeviceReport(state, r),
    renew: async () => new Date((await renewDevice(state)).renew_after).getTime(),
    renewAt: async () => halfLife(await state.readCertChain()),
    ...opts.ops,
  };

  let renewAt = await ops.renewAt();
  let lastSentFacts: string | undefined;
  let lastSentAt = Number.NEGATIVE_INFINITY;
  let backoff = 0;
  const failed = (what: string, e: unknown) => {
    backoff = Math.min(backoff === 0 ? FIRST_BACKOFF_MS : backoff * 2, maxBackoffMs);
    log(`${what} failed: ${(e as Error).message}; retrying in ${Math.round(backoff / 1000)} s`);
  };
  while (!signal.aborted) {
    let ok = true;
    // Renewal and reporting fail apart: a renewal refused must not stop reports while the
    // certificate is still valid, and a collector error must not delay the renewal.
    if (now() >= renewAt) {
      try {
        renewAt = await ops.renew();
        log(`renewed the device certificate; next renewal ${new Date(renewAt).toISOString()}`);
      } catch (e) {
        ok = false;
        failed('renewal', e);
      }
    }
    if (signal.aborted) break;
    try {
      const report = await ops.collect();
      const facts = reportFacts(report);
      const changed = lastSentFacts !== undefined && facts !== lastSentFacts;
      if (!signal.aborted && (changed || now() - lastSentAt >= intervalMs)) {
        await ops.send(report);
        log(`sent a posture report${changed ? ' (the posture changed)' : ''}`);
        lastSentFacts = facts;
        lastSentAt = now();
      }
    } catch (e) {
      ok = false;
      failed('report', e);
    }
    if (ok) backoff = 0;
    // Wake for the next check (or the back-off), earlier when the renewal falls due.
    await sleep(ok ? Math.min(checkMs, Math.max(0, renewAt - now())) : backoff, signal);
  }
  log('stopped');
}
