/**
 * Pending-updates signal on Debian-family systems: Ubuntu's `apt-check` when present (it knows the
 * security pocket), else a simulated `apt-get dist-upgrade`. Anything else is unknown.
 */
import { access, constants } from 'node:fs/promises';
import type { PostureUpdates } from '../../../api/index.js';
import { clip, firstLine, type ProbeOptions, runProbe } from './exec.js';

export const APT_CHECK = '/usr/lib/update-notifier/apt-check';

/**
 * The simulated upgrade: `dist-upgrade`, not `upgrade`, which keeps back an update that needs a new
 * package (a Debian kernel security update with a new ABI package) and lists no `Inst` line for it,
 * so a pending security update would not count.
 */
export const APT_GET_ARGS = ['-s', '-o', 'Debug::NoLocking=1', 'dist-upgrade'] as const;

type Counts = Pick<PostureUpdates, 'pending_security' | 'pending_total' | 'reason'>;
const unknown = (reason: string): Counts => ({ pending_security: null, pending_total: null, reason: clip(reason) });

/**
 * Counts the `Inst` lines of `apt-get -s dist-upgrade` (or `upgrade`); an update is a security one when its origin (the
 * parenthesised part) names a `-security` suite. The summary line must agree with the count, so a
 * truncated output is unknown rather than "fewer updates".
 *
 * @example
 * ```ts
 * parseAptGetSimulation('Inst bash [5.2-2] (5.2-3 Debian-Security:12/stable-security [amd64])\n1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n');
 * // { pending_security: 1, pending_total: 1 }
 * ```
 */
export function parseAptGetSimulation(text: string): Counts {
  let total = 0;
  let security = 0;
  let summary: { upgraded: number; installed: number } | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('Inst ')) {
      total++;
      // "Inst pkg [old] (new Origin:ver/suite, Origin2:ver/suite [arch])": only the origin part counts.
      const origin = /\(([^()]*)\)/.exec(line)?.[1];
      if (origin === undefined) return unknown(`unrecognised apt-get line: ${line.slice(0, 80)}`);
      if (/\/[^\s,/]*-security\b/.test(origin)) security++;
      continue;
    }
    const m = /^(\d+) upgraded, (\d+) newly installed, \d+ to remove and \d+ not upgraded\.$/.exec(line.trim());
    if (m) summary = { upgraded: Number(m[1]), installed: Number(m[2]) };
  }
  if (!summary) return unknown('apt-get printed no summary line (output empty, truncated or not apt)');
  if (summary.upgraded + summary.installed !== total)
    return unknown(`apt-get summary says ${summary.upgraded + summary.installed} packages, output lists ${total}`);
  return { pending_security: security, pending_total: total };
}

/**
 * `apt-check` prints `<total>;<security>` on stderr.
 *
 * @example
 * ```ts
 * parseAptCheck('12;3'); // { pending_security: 3, pending_total: 12 }
 * ```
 */
export function parseAptCheck(stderr: string): Counts {
  const m = /^(\d{1,7});(\d{1,7})$/.exec(stderr.trim());
  if (!m) return unknown(`apt-check printed ${JSON.stringify(stderr.trim().slice(0, 60))}, not "<total>;<security>"`);
  const total = Number(m[1]);
  const security = Number(m[2]);
  if (security > total) return unknown(`apt-check says ${security} security updates of ${total}`);
  return { pending_security: security, pending_total: total };
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs the check. apt-get reads the package lists the last `apt-get update` left: `checked_at` is the
 * time of this count, not of that update.
 */
export async function collectUpdates(opts: ProbeOptions & { now?: () => number } = {}): Promise<PostureUpdates> {
  const checkedAt = new Date((opts.now ?? Date.now)()).toISOString();
  const probe = { timeoutMs: 60_000, ...opts };
  if (await exists(APT_CHECK)) {
    const r = await runProbe(APT_CHECK, [], probe);
    if (r.kind === 'exited' && r.code === 0) {
      const c = parseAptCheck(r.stderr);
      if (c.pending_security !== null) return { ...c, checked_at: checkedAt, source: 'apt' };
    }
  }
  const r = await runProbe('apt-get', APT_GET_ARGS, probe);
  if (r.kind === 'absent') return { ...unknown(`not a Debian-family system (${r.reason})`), source: 'unknown' };
  if (r.kind === 'failed') return { ...unknown(r.reason), source: 'unknown' };
  if (r.code !== 0) return { ...unknown(`apt-get exited ${r.code}: ${firstLine(r.stderr)}`), source: 'unknown' };
  const c = parseAptGetSimulation(r.stdout);
  return c.pending_security === null ? { ...c, source: 'unknown' } : { ...c, checked_at: checkedAt, source: 'apt' };
}
