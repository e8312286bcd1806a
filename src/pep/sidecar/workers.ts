/**
 * Several sidecar processes on the same ports (`workers: N`), as nginx runs worker processes: the
 * primary forks N copies of this command through node:cluster, which shares the listening sockets
 * and hands each new connection to one worker. Each worker is a whole sidecar (its own SVID stream,
 * policy snapshot, assertion key and audit queue), so the primary holds no state and decides
 * nothing: it waits for every worker to be ready, restarts a worker that dies afterwards, and stops
 * them all on SIGINT/SIGTERM. A worker that dies before the group is ready stops the group: a bad
 * config or a missing SVID fails the start instead of looping.
 */
import cluster, { type Worker } from 'node:cluster';

/** Environment variable that tells a forked worker its index. */
export const WORKER_ENV = 'NEVERTRUST_SIDECAR_WORKER';

/** What a worker sends the primary once its ports are open. */
export interface WorkerReady {
  type: 'nevertrust-sidecar-ready';
  inbound?: number;
  outbound?: number;
}

/** This process's worker index, or undefined when it is not a sidecar worker. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const i = Number(process.env[WORKER_ENV]);
  return Number.isInteger(i) && i >= 0 ? i : undefined;
}

/** Tells the primary (if any) that this worker serves. */
export function announceReady(ports: { inbound?: number; outbound?: number }): void {
  if (cluster.isWorker) process.send?.({ type: 'nevertrust-sidecar-ready', ...ports } satisfies WorkerReady);
}

export interface PrimaryOptions {
  workers: number;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Delay before a dead worker is replaced (default 1 s). */
  restartDelayMs?: number;
}

/**
 * Runs the primary: forks the workers and supervises them until a signal stops the group.
 * Resolves with the exit code the process should end with.
 *
 * @example
 * ```ts
 * if (config.workers > 1 && cluster.isPrimary) process.exitCode = await runPrimary({ workers: config.workers, log });
 * ```
 */
export function runPrimary(opts: PrimaryOptions): Promise<number> {
  const { workers: n, log } = opts;
  const restartDelay = opts.restartDelayMs ?? 1000;
  const live = new Map<number, Worker>();
  const ready = new Set<number>();
  let groupReady = false;
  let stopping = false;
  let exitCode = 0;
  let force: NodeJS.Timeout | undefined;
  return new Promise((resolve) => {
    const settleIfDone = () => {
      if (!stopping || live.size > 0) return;
      clearTimeout(force);
      resolve(exitCode);
    };
    const stop = (code: number) => {
      if (stopping) return;
      stopping = true;
      exitCode = code;
      for (const w of live.values()) w.process.kill('SIGTERM');
      // A worker that does not finish its graceful close is killed; the group still ends.
      force = setTimeout(() => {
        for (const w of live.values()) w.process.kill('SIGKILL');
      }, 10_000);
      settleIfDone();
    };
    const fork = (i: number) => {
      const w = cluster.fork({ [WORKER_ENV]: String(i) });
      live.set(i, w);
      w.on('message', (m: Partial<WorkerReady> | null) => {
        if (m?.type !== 'nevertrust-sidecar-ready') return;
        ready.add(i);
        if (!groupReady && ready.size === n) {
          groupReady = true;
          log('sidecar ready', { workers: n, inbound: m.inbound, outbound: m.outbound });
        }
      });
      w.on('exit', (code, signal) => {
        if (live.get(i) === w) live.delete(i);
        if (stopping) return settleIfDone();
        if (!groupReady) {
          log('sidecar worker failed to start; stopping', { worker: i, code, signal });
          return stop(code || 1);
        }
        log('sidecar worker exited; starting another', { worker: i, code, signal });
        ready.delete(i);
        setTimeout(() => {
          if (!stopping) fork(i);
        }, restartDelay);
      });
    };
    for (let i = 0; i < n; i++) fork(i);
    process.once('SIGINT', () => stop(0));
    process.once('SIGTERM', () => stop(0));
  });
}
