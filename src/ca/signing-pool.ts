/**
 * A small pool of worker threads that verify CSRs and sign X.509-SVIDs.
 *
 * Why: every CSR brings a fresh public key, and with OpenSSL 3 importing it plus checking the
 * proof of possession costs about six times a CA signature. One thread tops out near 2,500 SVIDs/s
 * on a current core; the pool spreads that work over every core and leaves the main thread free.
 *
 * Correctness rules kept here:
 * - Each request names the CA generation that the main thread chose (a token). A worker signs only
 *   with that generation's key and refuses a token it does not hold; the key and certificate are
 *   sent to a worker once, in the same ordered message stream, before the first request that needs
 *   them — so a rotation reaches a worker before any later request is signed there.
 * - A worker that dies rejects everything it held with ERR_CA_SIGNER_FAILED and is replaced on the
 *   next request (lazily: a worker that cannot start does not spin).
 * - Workers are unref'd while idle, so the pool never keeps a process alive, but ref'd while they
 *   hold requests, so an awaited signature is not lost to an early exit.
 */
import type { KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import type { IssuedLeaf } from './certificate.js';
import { CaError } from './errors.js';
import { decodeError, type FromWorker, packBytes, type ToWorker, type WorkerOp } from './signing-protocol.js';
import { spawnSigningWorker } from './signing-worker-spawn.js';

/** One CA generation as the pool sees it: a process-unique token, its certificate and key. */
export interface PoolIssuer {
  readonly token: number;
  readonly caCert: Buffer;
  readonly caKey: KeyObject;
}

let nextToken = 1;

/** Wraps a CA generation for the pool; each call gets a new token (a reloaded CA gets new ones). */
export function poolIssuer(caCert: Buffer, caKey: KeyObject): PoolIssuer {
  return { token: nextToken++, caCert, caKey };
}

/** What the main thread decided for one SVID; the worker adds nothing but the CSR's public key. */
export interface PoolSignJob {
  /** PKCS#10 request, PEM or DER. */
  csr: string | Buffer;
  spiffeId: string;
  dnsNames: readonly string[];
  notBefore: Date;
  notAfter: Date;
}

export interface SigningPoolOptions {
  /** Number of worker threads; default `os.availableParallelism()`. */
  size?: number;
  /**
   * A worker holding requests that answers nothing for this long is taken as hung: it is stopped,
   * its requests are rejected and it is replaced. Default 30 s (a batch of 1,000 CSRs takes < 1 s).
   */
  stallMs?: number;
  /** Worker script; for tests that need a worker which misbehaves. */
  workerScript?: URL;
}

/** Generations a worker keeps at most; older ones (e.g. of a CA that was reloaded) are evicted. */
const MAX_ISSUERS_PER_WORKER = 8;

interface Pending {
  resolve: (leaf: IssuedLeaf) => void;
  reject: (e: Error) => void;
}

interface QueuedSign {
  op: WorkerOp & { op: 'sign' };
  der: Buffer | null;
}

class Slot {
  readonly worker: Worker;
  /** Tokens installed in this worker, least recently used first. */
  readonly installed = new Map<number, true>();
  readonly pending = new Map<number, Pending>();
  /** Ops not yet posted, in order; DER CSRs kept aside until packing. */
  queue: (WorkerOp | QueuedSign)[] = [];
  flushScheduled = false;
  dead = false;
  /** When this worker last answered, or was handed work while idle (ms, monotonic). */
  lastProgress = 0;

  constructor(worker: Worker) {
    this.worker = worker;
  }
}

/**
 * @example
 * ```ts
 * const pool = new SigningPool({ size: 2 });
 * const issuer = poolIssuer(caCertDer, caKey);
 * const leaf = await pool.sign(issuer, { csr, spiffeId, dnsNames: [], notBefore, notAfter });
 * await pool.close();
 * ```
 */
export class SigningPool {
  readonly size: number;
  readonly #script: URL | undefined;
  readonly #slots: (Slot | undefined)[];
  readonly #stallMs: number;
  #watchdog: NodeJS.Timeout | undefined;
  #nextId = 1;
  #closed = false;

  constructor(opts: SigningPoolOptions = {}) {
    const size = opts.size ?? availableParallelism();
    if (!Number.isInteger(size) || size < 1) throw new RangeError('the signing pool size must be a positive integer');
    this.size = size;
    this.#script = opts.workerScript;
    this.#stallMs = opts.stallMs ?? 30_000;
    this.#slots = new Array<Slot | undefined>(size).fill(undefined);
  }

  /** Requests queued or running in the workers. */
  get pending(): number {
    let n = 0;
    for (const s of this.#slots) n += s ? s.pending.size : 0;
    return n;
  }

  /** Live worker threads (started lazily, on the first requests). */
  get threads(): number {
    return this.#slots.filter((s) => s !== undefined && !s.dead).length;
  }

  /**
   * Verifies the CSR's signature and signs the leaf with `issuer`, on a worker thread.
   * @throws {CsrError} bad request / no proof of possession; {@link CaError} ERR_CA_SIGNER_FAILED, ERR_CA_SIGNER_CLOSED
   */
  sign(issuer: PoolIssuer, job: PoolSignJob): Promise<IssuedLeaf> {
    if (this.#closed) return Promise.reject(new CaError('ERR_CA_SIGNER_CLOSED', 'the CA signing pool is closed'));
    let slot: Slot;
    try {
      slot = this.#pick();
    } catch (e) {
      return Promise.reject(e);
    }
    const id = this.#nextId++;
    const isPem = typeof job.csr === 'string';
    const op: QueuedSign = {
      op: {
        op: 'sign',
        id,
        token: issuer.token,
        pem: isPem ? (job.csr as string) : null,
        off: 0,
        len: 0,
        spiffeId: job.spiffeId,
        dnsNames: job.dnsNames,
        notBefore: job.notBefore.getTime(),
        notAfter: job.notAfter.getTime(),
      },
      der: isPem ? null : (job.csr as Buffer),
    };
    this.#ensureInstalled(slot, issuer);
    slot.queue.push(op);
    const done = new Promise<IssuedLeaf>((resolve, reject) => slot.pending.set(id, { resolve, reject }));
    if (slot.pending.size === 1) {
      slot.worker.ref();
      slot.lastProgress = performance.now();
      this.#watch();
    }
    this.#schedule(slot);
    return done;
  }

  /** Drops a generation from every worker (after its rotation), behind requests already queued for it. */
  forget(issuer: PoolIssuer): void {
    for (const slot of this.#slots) {
      if (!slot || slot.dead || !slot.installed.delete(issuer.token)) continue;
      slot.queue.push({ op: 'forget', token: issuer.token });
      this.#schedule(slot);
    }
  }

  /** Stops every worker; requests still held are rejected with ERR_CA_SIGNER_CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    const stopping: Promise<number>[] = [];
    for (const [i, slot] of this.#slots.entries()) {
      if (!slot) continue;
      this.#slots[i] = undefined;
      this.#fail(
        slot,
        new CaError('ERR_CA_SIGNER_CLOSED', 'the CA signing pool was closed before the request was signed'),
      );
      stopping.push(slot.worker.terminate());
    }
    await Promise.all(stopping);
  }

  // Least-loaded worker; a dead or missing one is (re)started here, so a crash costs no request but its own.
  #pick(): Slot {
    let best: Slot | undefined;
    for (let i = 0; i < this.#slots.length; i++) {
      let slot = this.#slots[i];
      if (!slot || slot.dead) {
        slot = this.#start();
        this.#slots[i] = slot;
      }
      if (!best || slot.pending.size < best.pending.size) best = slot;
      if (best.pending.size === 0) break;
    }
    return best as Slot;
  }

  #start(): Slot {
    const worker = spawnSigningWorker(this.#script);
    const slot = new Slot(worker);
    worker.unref();
    worker.on('message', (msg: FromWorker) => this.#onResults(slot, msg));
    // The error text is the worker's own (an uncaught exception there); it never holds key material,
    // which travels only as a KeyObject and is never formatted.
    worker.on('error', (e) => this.#crash(slot, `the CA signing worker failed (${e.message})`));
    worker.on('exit', (code) => this.#crash(slot, `the CA signing worker exited (code ${code})`));
    return slot;
  }

  // Runs only while requests are held, and never keeps the process alive by itself.
  #watch(): void {
    if (this.#watchdog) return;
    const every = Math.max(10, Math.min(1000, this.#stallMs / 4));
    this.#watchdog = setInterval(() => {
      const now = performance.now();
      let held = false;
      for (const slot of this.#slots) {
        if (!slot || slot.dead || slot.pending.size === 0) continue;
        if (now - slot.lastProgress > this.#stallMs) {
          this.#crash(slot, `the CA signing worker did not answer for ${Math.round(this.#stallMs / 1000)} s`);
        } else held = true;
      }
      if (!held) {
        clearInterval(this.#watchdog);
        this.#watchdog = undefined;
      }
    }, every);
    this.#watchdog.unref();
  }

  #crash(slot: Slot, why: string): void {
    if (slot.dead) return;
    this.#fail(slot, new CaError('ERR_CA_SIGNER_FAILED', `${why}; the request was not signed`));
    if (!this.#closed) void slot.worker.terminate();
  }

  #fail(slot: Slot, e: Error): void {
    slot.dead = true;
    slot.queue = [];
    slot.installed.clear();
    for (const p of slot.pending.values()) p.reject(e);
    slot.pending.clear();
    slot.worker.unref();
  }

  #ensureInstalled(slot: Slot, issuer: PoolIssuer): void {
    if (slot.installed.delete(issuer.token)) {
      slot.installed.set(issuer.token, true); // most recently used
      return;
    }
    if (slot.installed.size >= MAX_ISSUERS_PER_WORKER) {
      const oldest = slot.installed.keys().next().value as number;
      slot.installed.delete(oldest);
      slot.queue.push({ op: 'forget', token: oldest });
    }
    slot.installed.set(issuer.token, true);
    slot.queue.push({ op: 'install', token: issuer.token, caCert: issuer.caCert, caKey: issuer.caKey });
  }

  // One message per slot per microtask turn: a burst of requests (a batch from an agent, many
  // callers resumed by one result message) goes out together.
  #schedule(slot: Slot): void {
    if (slot.flushScheduled) return;
    slot.flushScheduled = true;
    queueMicrotask(() => {
      slot.flushScheduled = false;
      if (!slot.dead && slot.queue.length > 0) this.#flush(slot);
    });
  }

  #flush(slot: Slot): void {
    const queued = slot.queue;
    slot.queue = [];
    const ders: Buffer[] = [];
    for (const q of queued) if ('der' in q && q.der) ders.push(q.der);
    const packed = packBytes(ders);
    let d = 0;
    const ops: WorkerOp[] = queued.map((q) => {
      if (!('der' in q)) return q;
      if (q.der) {
        q.op.off = packed.offsets[d] as number;
        q.op.len = q.der.length;
        d++;
      }
      return q.op;
    });
    const msg: ToWorker = { ops, bytes: packed.bytes };
    slot.worker.postMessage(msg, [packed.bytes]);
  }

  #onResults(slot: Slot, msg: FromWorker): void {
    slot.lastProgress = performance.now();
    const bytes = Buffer.from(msg.bytes);
    for (const r of msg.results) {
      const p = slot.pending.get(r.id);
      if (!p) continue;
      slot.pending.delete(r.id);
      if ('error' in r) p.reject(decodeError(r.error));
      else p.resolve({ der: bytes.subarray(r.off, r.off + r.len), serialHex: r.serialHex });
    }
    if (slot.pending.size === 0) slot.worker.unref();
  }
}

let shared: SigningPool | undefined;

/**
 * The process-wide pool of `os.availableParallelism()` workers (one pool is enough: it spans every
 * core), created on first use. For another size, give a CA its own pool (`signingPool` option).
 */
export function sharedSigningPool(): SigningPool {
  shared ??= new SigningPool();
  return shared;
}

/** Closes the process-wide pool (a later request starts a new one). */
export async function closeSharedSigningPool(): Promise<void> {
  const p = shared;
  shared = undefined;
  await p?.close();
}
