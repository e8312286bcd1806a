/**
 * `nevertrust sidecar` as a real process for tests (run from source through `sidecar-main.ts`): its
 * output as text and as parsed JSON log lines, readiness and exit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('./sidecar-main.ts', import.meta.url));

export interface SidecarProcess {
  child: ChildProcess;
  /** Everything it wrote so far (stdout and stderr). */
  text(): string;
  /** Its JSON log lines so far. */
  lines: Record<string, unknown>[];
  /** Resolves once it logs `sidecar ready`; rejects if it exits first or takes over 40 s. */
  ready: Promise<void>;
  exited: Promise<number>;
}

/** Starts `nevertrust sidecar --config <config>`. */
export function spawnSidecar(config: string): SidecarProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'sidecar', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let text = '';
  let partial = '';
  const exited = new Promise<number>((r) => child.on('exit', (c) => r(c ?? -1)));
  const ready = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`sidecar not ready: ${text}`)), 40_000);
    const on = (d: Buffer) => {
      text += d.toString();
      partial += d.toString();
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const l of parts) {
        try {
          lines.push(JSON.parse(l) as Record<string, unknown>);
        } catch {}
      }
      if (lines.some((l) => l.msg === 'sidecar ready')) {
        clearTimeout(t);
        resolve();
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    void exited.then((c) => reject(new Error(`sidecar exited ${c}: ${text}`)));
  });
  ready.catch(() => {}); // callers that expect a failed start await `exited` instead
  return { child, text: () => text, lines, ready, exited };
}
