/**
 * EDR signal: whether a configured agent process runs, from `/proc/<pid>/comm` (no `ps`). The kernel
 * keeps only the first 15 bytes of a process name, so longer configured names match on those.
 */
import { readdir, readFile } from 'node:fs/promises';
import { POSTURE_EDR_NAMES_MAX, type PostureEdr } from '../../../api/index.js';
import { clip } from './exec.js';

/** Examples of agents' process names; a deployment configures its own. */
export const EXAMPLE_EDR_PROCESS_NAMES = ['falcon-sensor', 'wdavdaemon', 'osqueryd'] as const;

/** TASK_COMM_LEN - 1 */
const COMM_MAX = 15;

/**
 * Which configured names are among the running process names.
 *
 * @example
 * ```ts
 * matchEdr(['systemd', 'falcon-sensor'], ['falcon-sensor', 'wdavdaemon']); // { active: true, running: ['falcon-sensor'] }
 * ```
 */
export function matchEdr(comms: Iterable<string>, names: readonly string[]): PostureEdr {
  if (names.length === 0) return { active: false, running: [], reason: 'no EDR process names configured' };
  const seen = new Set<string>();
  for (const c of comms) seen.add(c.trim());
  const running = names.filter((n) => seen.has(Buffer.from(n).subarray(0, COMM_MAX).toString())).map((n) => clip(n));
  return running.length > 0
    ? { active: true, running }
    : { active: false, running: [], reason: clip(`none of ${names.join(', ')} is running`) };
}

/** Reads every process's `comm` under `procDir` (processes that exit meanwhile are skipped). */
export async function readProcessNames(procDir = '/proc'): Promise<string[]> {
  const pids = (await readdir(procDir)).filter((e) => /^\d+$/.test(e));
  const names = await Promise.all(pids.map((p) => readFile(`${procDir}/${p}/comm`, 'utf8').catch(() => undefined)));
  return names.filter((n): n is string => n !== undefined);
}

export async function collectEdr(names: readonly string[], procDir = '/proc'): Promise<PostureEdr> {
  let comms: string[];
  try {
    comms = await readProcessNames(procDir);
  } catch (e) {
    return {
      active: false,
      running: [],
      reason: clip(`cannot list ${procDir}: ${(e as NodeJS.ErrnoException).code ?? e}`),
    };
  }
  return matchEdr(comms, names.slice(0, POSTURE_EDR_NAMES_MAX));
}
