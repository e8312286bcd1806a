/**
 * One posture report: every signal collected in parallel under one deadline. A signal not done by
 * then is unknown ("timed out"), never left out or guessed.
 */
import {
  type PostureDisk,
  type PostureEdr,
  type PostureFirewall,
  type PostureOs,
  type PostureReport,
  type PostureUpdates,
  postureReportSchema,
} from '../../../api/index.js';
import { collectDisk } from './disk.js';
import { collectEdr } from './edr.js';
import { collectFirewall } from './firewall.js';
import { collectKernel, collectOs } from './os.js';
import { collectUpdates } from './updates.js';

/** Written into every report, so the server can tell collectors apart. */
export const POSTURE_COLLECTOR_VERSION = 'nevertrust-linux/1';

export interface CollectPostureOptions {
  /** The device's id (its SPIFFE ID's last segment). */
  deviceId: string;
  /** EDR agents' process names to look for (e.g. `falcon-sensor`). */
  edrProcessNames?: readonly string[];
  /** Deadline for the whole collection. Default 90 s (a cold `apt-get -s dist-upgrade` takes seconds). */
  timeoutMs?: number;
  now?: () => number;
}

/** Resolves with `fallback` when the signal aborts before `p` settles; a rejection also becomes `fallback`. */
function byDeadline<T>(p: Promise<T>, signal: AbortSignal, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const onAbort = () => resolve(fallback);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve(fallback);
      },
    );
  });
}

/**
 * Collects this Linux machine's posture. Never throws for a signal it cannot read: that signal is
 * unknown with a reason. Throws only for a bad `deviceId` (zod error from the report's schema).
 *
 * @example
 * ```ts
 * const report = await collectPosture({ deviceId: 'laptop-alice', edrProcessNames: ['falcon-sensor'] });
 * report.disk.root_encrypted; // true | false | null (unknown)
 * ```
 */
export async function collectPosture(opts: CollectPostureOptions): Promise<PostureReport> {
  const now = opts.now ?? Date.now;
  const ctl = new AbortController();
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  const late = `not collected within the ${timeoutMs} ms deadline`;
  const { signal } = ctl;
  try {
    const [os, updates, disk, firewall, edr] = await Promise.all([
      byDeadline<PostureOs>(collectOs(), signal, { name: null, version: null, id: null, reason: late }),
      byDeadline<PostureUpdates>(collectUpdates({ signal, now }), signal, {
        pending_security: null,
        pending_total: null,
        source: 'unknown',
        reason: late,
      }),
      byDeadline<PostureDisk>(collectDisk({ signal }), signal, { root_encrypted: null, detail: late }),
      byDeadline<PostureFirewall>(collectFirewall({ signal }), signal, { active: null, tool: null, reason: late }),
      byDeadline<PostureEdr>(collectEdr(opts.edrProcessNames ?? []), signal, {
        active: false,
        running: [],
        reason: late,
      }),
    ]);
    return postureReportSchema.parse({
      device_id: opts.deviceId,
      collected_at: new Date(now()).toISOString(),
      os,
      kernel: collectKernel(),
      updates,
      disk,
      firewall,
      edr,
      collector_version: POSTURE_COLLECTOR_VERSION,
    });
  } finally {
    clearTimeout(timer);
    // Kill any probe still running: its answer can no longer be used.
    ctl.abort();
  }
}
