/**
 * The local mesh's child processes: each from its own binary path (so the in-process agent tells
 * them apart by `unix:path`), and the error for one that did not start.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, linkSync } from 'node:fs';
import { join } from 'node:path';
import { NevertrustError } from '../errors.js';
import { packageRoot } from '../util/package-root.js';

/** A distinct path for each service's binary: a hard link to node where possible, else a copy. */
export function serviceBinary(dir: string, name: string): string {
  const target = join(dir, name);
  if (!existsSync(target)) {
    try {
      linkSync(process.execPath, target);
    } catch {
      copyFileSync(process.execPath, target);
      chmodSync(target, 0o755);
    }
  }
  return target;
}

/** A service process that exited before it was ready; `addressInUse` when its port was taken. */
export class ServiceStartError extends NevertrustError<'ERR_MESH_SERVICE_START'> {
  override readonly name = 'ServiceStartError';
  readonly code = 'ERR_MESH_SERVICE_START';
  readonly addressInUse: boolean;
  constructor(
    readonly service: string,
    /** What happened, e.g. `exited with 1` or `did not start within 30 s`. */
    what: string,
    stderr: string,
  ) {
    // The last lines of its stderr, on one line: the cause without a page of stack.
    const tail = stderr.trim().split('\n').slice(-3).join(' ');
    super(`${service} ${what}${tail ? `: ${tail}` : ''}`);
    this.addressInUse = stderr.includes('EADDRINUSE');
  }
}

/**
 * Whether a ready child's exit was a clean stop: Ctrl-C in a terminal reaches every child too (one
 * process group), often before the mesh starts stopping them, and that is not an error.
 */
export function cleanExit(code: number | null, signal: NodeJS.Signals | null): boolean {
  return code === 0 || signal === 'SIGINT' || signal === 'SIGTERM';
}

export interface ChildStart {
  /** Names the process in errors and logs. */
  name: string;
  script: string;
  args?: string[];
  /** The binary it runs from (its own path, for attestation). */
  execPath: string;
  env: NodeJS.ProcessEnv;
  /** Ready when it sends `{type: 'ready'}` over IPC, or when its stderr matches this. */
  readyOn: 'ipc' | RegExp;
  /** Told when it exits after it was ready (not when `expected()` says the exit is ours). */
  onExit(code: number | null, signal: NodeJS.Signals | null, stderr: string): void;
  expected(): boolean;
  timeoutMs?: number;
}

/** Forks a child process and resolves once it is ready; rejects with ServiceStartError if it exits or stalls first. */
export function startChild(o: ChildStart): Promise<ChildProcess> {
  return new Promise((resolveReady, reject) => {
    const child = fork(o.script, o.args ?? [], {
      execPath: o.execPath,
      cwd: packageRoot(),
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: o.env,
    });
    let ready = false;
    let stderr = '';
    const timeoutMs = o.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new ServiceStartError(o.name, `did not start within ${timeoutMs / 1000} s`, stderr));
    }, timeoutMs);
    const becomeReady = () => {
      if (ready) return;
      ready = true;
      clearTimeout(timer);
      resolveReady(child);
    };
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
      if (o.readyOn instanceof RegExp && o.readyOn.test(stderr)) becomeReady();
    });
    child.on('message', (m: { type?: string }) => {
      if (o.readyOn === 'ipc' && m.type === 'ready') becomeReady();
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new ServiceStartError(o.name, `exited with ${code ?? signal}`, stderr));
      else if (!o.expected()) o.onExit(code, signal, stderr);
    });
  });
}

/** Stops a child: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess | undefined, graceMs = 3000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
