/**
 * Runs one probe command for a posture collector: no shell, a fixed PATH of system directories
 * (a user's PATH must not choose which `nft` reports the firewall), the C locale (the parsers read
 * English), a timeout and an output cap. Never throws: every failure is a value the collector turns
 * into "unknown" with a reason.
 */
import { execFile } from 'node:child_process';
import { POSTURE_TEXT_MAX } from '../../../api/index.js';

/** Where probe tools are looked up; nothing from the caller's environment. */
export const PROBE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ProbeOptions {
  /** Kill the command after this long. Default 10 s. */
  timeoutMs?: number;
  /** Most bytes of stdout (and of stderr) kept; more kills the command. Default 4 MiB. */
  maxBytes?: number;
  /** Aborts the command (the overall deadline of `collectPosture`). */
  signal?: AbortSignal;
}

export type ProbeResult =
  /** The command ran; `code` is its exit status (non-zero is not always an error: parsers decide). */
  | { kind: 'exited'; code: number; stdout: string; stderr: string }
  /** Not installed (ENOENT), or not executable by us. */
  | { kind: 'absent'; reason: string }
  /** Timed out, aborted, killed, too much output, or could not start. */
  | { kind: 'failed'; reason: string };

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BYTES = 4 * 1024 * 1024;

/**
 * @example
 * ```ts
 * const r = await runProbe('nft', ['list', 'ruleset'], { timeoutMs: 5000 });
 * if (r.kind === 'exited' && r.code === 0) parseNftRuleset(r.stdout);
 * ```
 */
export function runProbe(file: string, args: readonly string[], opts: ProbeOptions = {}): Promise<ProbeResult> {
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxBuffer = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const label = [file, ...args].join(' ');
  return new Promise((resolve) => {
    if (opts.signal?.aborted) {
      resolve({ kind: 'failed', reason: `${label}: not run, the collection deadline passed` });
      return;
    }
    execFile(
      file,
      args,
      {
        timeout,
        maxBuffer,
        killSignal: 'SIGKILL',
        signal: opts.signal,
        encoding: 'utf8',
        windowsHide: true,
        env: { PATH: PROBE_PATH, LC_ALL: 'C', LANG: 'C' },
      },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ kind: 'exited', code: 0, stdout, stderr });
          return;
        }
        const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean; signal?: string };
        if (e.code === 'ENOENT') resolve({ kind: 'absent', reason: `${file} is not installed` });
        else if (e.code === 'EACCES') resolve({ kind: 'absent', reason: `${file} is not executable by this user` });
        else if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER')
          resolve({ kind: 'failed', reason: `${label}: output over ${maxBuffer} bytes` });
        else if (e.name === 'AbortError' || e.code === 'ABORT_ERR')
          resolve({ kind: 'failed', reason: `${label}: stopped at the collection deadline` });
        else if (typeof e.code === 'number') resolve({ kind: 'exited', code: e.code, stdout, stderr });
        else if (e.killed || e.signal)
          resolve({
            kind: 'failed',
            reason: `${label}: killed (${e.signal ?? 'timeout'}) after at most ${timeout} ms`,
          });
        else resolve({ kind: 'failed', reason: `${label}: ${e.message.split('\n')[0]}` });
      },
    );
  });
}

/** The first line of a command's complaint, for a reason. */
export function firstLine(s: string, max = 160): string {
  const line = s.split('\n').find((l) => l.trim() !== '') ?? '';
  return line.trim().slice(0, max);
}

/** Shortens text to the wire's bound (POSTURE_TEXT_MAX) and strips control characters. */
export function clip(s: string, max = POSTURE_TEXT_MAX): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  return clean.length <= max ? clean : `${clean.slice(0, max - 1)}…`;
}
