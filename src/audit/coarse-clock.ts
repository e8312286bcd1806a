/**
 * A wall clock that costs a memory read: one small thread stores the time into shared memory every
 * millisecond, and readers load it. Why: every audit event needs a time, and on some virtual
 * machines `Date.now()` is a ~110 ns system call — as much as the rest of recording a decision.
 * nginx caches its time per event-loop turn for the same reason; a thread keeps this one fresh
 * even while the main thread is busy, so a reading is at most about a millisecond old (more only if
 * the OS does not run the thread for longer than that).
 *
 * The cell is one Int32 — ms since a base chosen when the thread starts — because JavaScript
 * guarantees tear-free plain reads only for integer elements of at most 32 bits (Atomics calls
 * cost ~20 ns here, a plain read ~2). Before the thread's first store, after the wall clock stepped
 * back past the base, or once the offset nears 2^31 ms (then a fresh thread takes a new base),
 * readers use `Date.now()`. The thread runs while at least one user holds the clock, never keeps
 * the process alive, and stops on the last release.
 */
import { Worker } from 'node:worker_threads';

const TICK_MS = 1;
/** Offsets from here on (about 12 days) start a new thread with a new base. */
const REBASE_MS = 2 ** 30;

// [0] ms since the base (0 = not yet written), [1] stop flag.
const TICKER = `
const { workerData } = require('node:worker_threads');
const cell = new Int32Array(workerData.sab);
const base = workerData.base;
do {
  const off = Date.now() - base;
  cell[0] = off > 0 && off < 0x7fffffff ? off : 0;
} while (Atomics.wait(cell, 1, 0, ${TICK_MS}) === 'timed-out');
`;

let users = 0;
let cell: Int32Array | undefined;
let base = 0;
let worker: Worker | undefined;

/** The current time in ms since the epoch: the shared cell when it holds a usable offset, else `Date.now()`. */
export function coarseNow(): number {
  if (cell !== undefined) {
    const off = cell[0] as number;
    if (off > 0 && off < REBASE_MS) return base + off;
    if (off >= REBASE_MS) restart();
  }
  return Date.now();
}

/**
 * Whether readings come from the clock thread: `off` (nobody holds it, or the thread failed),
 * `starting` (held, no store yet) or `running`.
 */
export function coarseClockState(): 'off' | 'starting' | 'running' {
  if (cell === undefined) return 'off';
  return (cell[0] as number) > 0 ? 'running' : 'starting';
}

/** Starts the clock thread for one more user; call {@link releaseCoarseClock} when done. */
export function acquireCoarseClock(): void {
  if (users++ === 0) start();
}

/** Releases one use; the thread stops with the last. */
export function releaseCoarseClock(): void {
  if (users === 0) return;
  if (--users === 0) stop();
}

function start(): void {
  const sab = new SharedArrayBuffer(8);
  const b = Date.now() - 1;
  let w: Worker;
  try {
    w = new Worker(TICKER, {
      eval: true,
      workerData: { sab, base: b },
      resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 },
    });
  } catch {
    return; // no threads here (e.g. a permission model): readers stay on Date.now()
  }
  w.unref();
  // A clock thread that cannot run leaves readers on Date.now(): correct, only slower.
  w.on('error', () => {
    if (worker === w) stop();
  });
  w.on('exit', () => {
    if (worker === w) stop();
  });
  worker = w;
  cell = new Int32Array(sab);
  base = b;
}

function stop(): void {
  const c = cell;
  worker = undefined;
  cell = undefined;
  if (c) {
    Atomics.store(c, 1, 1);
    Atomics.notify(c, 1);
  }
}

function restart(): void {
  stop();
  if (users > 0) start();
}
