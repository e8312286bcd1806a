/**
 * The recorder: what enforcement points and the server call on every decision. `record()` is
 * synchronous and O(1) (a push onto a bounded in-memory queue); a pump drains the queue in batches to
 * a sink (the log in the server, the HTTP shipper in a remote enforcement point). When the queue is
 * full, or the sink fails, events spill to an fsync'd NDJSON buffer in `spillDir` and are shipped
 * later, also after a restart. Nothing is dropped silently: malformed events are counted as rejected
 * and reported; oversized ones are clipped to fit (counted as clipped); `lost` counts events that
 * could neither be shipped nor written to disk, or could not be clipped to fit.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Dispatcher } from 'undici';
import { postJsonRaw } from '../util/post-json.js';
import { acquireCoarseClock, coarseNow, releaseCoarseClock } from './coarse-clock.js';
import { AuditEventError, AuditRecorderClosedError } from './errors.js';
import { normalizeClipped } from './clip.js';
import {
  type DecisionAnswer,
  type DecisionOutcome,
  type DecisionRequest,
  type DecisionSite,
  decisionEvent,
} from './decision-event.js';
import { type AuditEvent, type AuditEventInput, DEFAULT_MAX_EVENT_BYTES } from './event.js';
import { EventQueue } from './event-queue.js';
import type { AuditLogger } from './log.js';
import { NevertrustError } from '../errors.js';

/** Where batches go. `append` resolves only once the events are durable (committed or acknowledged). */
export interface AuditSink {
  append(events: AuditEvent[]): Promise<unknown>;
  /** Releases what the sink holds (connections); called once by the recorder's `close()`, last. */
  close?(): Promise<void>;
}

/** A sink's permanent refusal (e.g. 400 from the server): retrying cannot help. */
export class AuditSinkRejectedError extends NevertrustError<'ERR_AUDIT_SINK_REJECTED'> {
  override readonly name = 'AuditSinkRejectedError';
  readonly code = 'ERR_AUDIT_SINK_REJECTED';
  constructor(message: string) {
    super(message, { status: 502 });
  }
}

export interface RecorderOptions {
  sink: AuditSink;
  /** Directory for the on-disk overflow buffer (created 0700). */
  spillDir: string;
  /** In-memory queue bound (default 10,000 events). */
  maxQueue?: number;
  /** Events per sink call (default 1,000). */
  batchSize?: number;
  /** How long a partial batch may wait (ms, default 20). */
  flushIntervalMs?: number;
  /** Backoff after a sink failure: first and longest wait (ms, defaults 100 and 5,000). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Overflow kept in memory before it is written to disk synchronously (default 1,000). */
  maxSpillBuffer?: number;
  /** Largest event (canonical bytes, default 16 KiB). */
  maxEventBytes?: number;
  /** Prometheus registry for the recorder's metrics (label `recorder` = `name`). */
  registry?: Registry;
  name?: string;
  logger?: AuditLogger;
  /** Told of every event that was refused as malformed or oversized. */
  onRejected?: (input: unknown, error: Error) => void;
}

export interface RecorderStats {
  recorded: number;
  queued: number;
  spilled: number;
  /** Events on disk waiting to be shipped. */
  spillPending: number;
  shipped: number;
  rejected: number;
  /** Oversized events stored with their longest strings clipped to fit. */
  clipped: number;
  lost: number;
  /** Recorded but not yet stored or fsynced (what a kill -9 now would lose). */
  notDurable: number;
  /** Events found in the spill buffer at start, left by an earlier process. */
  recovered: number;
}

interface SpillFile {
  path: string;
  /** Lowest record seq in the file (0 for files left by an earlier process). */
  minSeq: number;
  count: number;
  fd?: number;
}

const metricCache = new WeakMap<Registry, RecorderMetrics>();

class RecorderMetrics {
  readonly depth: Gauge<'recorder'>;
  readonly spilled: Counter<'recorder'>;
  readonly spillPending: Gauge<'recorder'>;
  readonly shipped: Counter<'recorder'>;
  readonly rejected: Counter<'recorder'>;
  readonly clipped: Counter<'recorder'>;
  readonly lost: Counter<'recorder'>;
  readonly recovered: Counter<'recorder'>;
  readonly notDurable: Gauge<'recorder'>;
  /** Recorders reporting into this registry, read when it is scraped. */
  readonly recorders = new Set<AuditRecorder>();
  constructor(registry: Registry) {
    const recorders = this.recorders;
    const registers = [registry];
    const labelNames = ['recorder'] as const;
    this.depth = new Gauge({
      name: 'nevertrust_audit_queue_depth',
      help: 'Audit events in memory',
      labelNames,
      registers,
    });
    this.spilled = new Counter({
      name: 'nevertrust_audit_spilled_total',
      help: 'Audit events written to the on-disk buffer',
      labelNames,
      registers,
    });
    this.spillPending = new Gauge({
      name: 'nevertrust_audit_spill_pending',
      help: 'Audit events on disk waiting to ship',
      labelNames,
      registers,
    });
    this.shipped = new Counter({
      name: 'nevertrust_audit_shipped_total',
      help: 'Audit events acknowledged by the sink (stored)',
      labelNames,
      registers,
    });
    this.rejected = new Counter({
      name: 'nevertrust_audit_rejected_total',
      help: 'Malformed audit events refused (with an error)',
      labelNames,
      registers,
    });
    this.clipped = new Counter({
      name: 'nevertrust_audit_clipped_total',
      help: 'Oversized audit events stored with their longest strings clipped to fit',
      labelNames,
      registers,
    });
    this.recovered = new Counter({
      name: 'nevertrust_audit_recovered_total',
      help: 'Audit events found in the spill buffer at start (left by an earlier process) and queued to ship',
      labelNames,
      registers,
    });
    this.notDurable = new Gauge({
      name: 'nevertrust_audit_not_durable',
      help: 'Audit events recorded but neither stored by the sink nor fsynced to the spill buffer (lost on kill -9)',
      labelNames,
      registers,
      collect() {
        for (const r of recorders) this.set(r.metricLabel(), r.notDurable());
      },
    });
    this.lost = new Counter({
      name: 'nevertrust_audit_lost_total',
      help: 'Audit events recorded but neither stored nor written to disk, nor refused as malformed (must stay 0)',
      labelNames,
      registers,
    });
  }
}

const silent: AuditLogger = { info() {}, warn() {}, error() {} };

/**
 * Non-blocking, bounded, spilling audit recorder.
 *
 * @example
 * const recorder = new AuditRecorder({ sink: log, spillDir: './.nevertrust/audit-spill' });
 * recorder.record({ kind: 'access.decision', outcome: 'deny', source: { spiffe_id }, target: { service: 'payments' } });
 * await recorder.flush(); // everything recorded so far is stored
 */
export class AuditRecorder {
  private readonly q: EventQueue;
  private overflow: { s: number; e: AuditEvent }[] = [];
  private spillFiles: SpillFile[] = [];
  private inflightMin = Number.POSITIVE_INFINITY;
  /** Events of the batch the sink holds now (not durable until it resolves). */
  private inflightCount = 0;
  private recordedSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private spillScheduled = false;
  private pumping = false;
  private backoffUntil = 0;
  private backoffMs: number;
  private closed = false;
  private waiters: { target: number; resolve: () => void }[] = [];
  private readonly batchSize: number;
  private readonly interval: number;
  private readonly maxSpillBuffer: number;
  private readonly logger: AuditLogger;
  private readonly metrics: RecorderMetrics | undefined;
  private readonly label: { recorder: string };
  private fileCounter = 0;
  private readonly s = { spilled: 0, shipped: 0, rejected: 0, clipped: 0, lost: 0, spillPending: 0, recovered: 0 };

  constructor(private readonly opts: RecorderOptions) {
    this.q = new EventQueue(opts.maxQueue ?? 10_000);
    this.batchSize = Math.max(1, opts.batchSize ?? 1000);
    this.interval = opts.flushIntervalMs ?? 20;
    this.maxSpillBuffer = Math.max(1, opts.maxSpillBuffer ?? 1000);
    this.backoffMs = opts.retryMinMs ?? 100;
    this.logger = opts.logger ?? silent;
    this.label = { recorder: opts.name ?? 'default' };
    if (opts.registry) {
      let m = metricCache.get(opts.registry);
      if (!m) {
        m = new RecorderMetrics(opts.registry);
        metricCache.set(opts.registry, m);
      }
      this.metrics = m;
      m.lost.inc(this.label, 0);
      m.recorders.add(this);
    }
    mkdirSync(opts.spillDir, { recursive: true, mode: 0o700 });
    // Spill files left by an earlier process ship first.
    for (const f of readdirSync(opts.spillDir)
      .filter((n) => /^spill-.*\.ndjson$/.test(n))
      .sort()) {
      const path = join(opts.spillDir, f);
      const count = readFileSync(path, 'utf8').split('\n').filter(Boolean).length;
      this.spillFiles.push({ path, minSeq: 0, count });
      this.s.spillPending += count;
    }
    this.metrics?.spillPending.set(this.label, this.s.spillPending);
    if (this.spillFiles.length > 0) {
      this.s.recovered = this.s.spillPending;
      this.metrics?.recovered.inc(this.label, this.s.recovered);
      this.logger.info({ count: this.s.recovered }, 'audit events recovered from the spill buffer; shipping them');
      this.schedule(0);
    }
    acquireCoarseClock();
  }

  /**
   * Records one event. Synchronous and O(1); never blocks on I/O except when the in-memory overflow
   * is full, when it writes that overflow to disk. Do not mutate `event` afterwards.
   */
  record(event: AuditEventInput): void {
    if (this.closed) throw new AuditRecorderClosedError();
    const seq = ++this.recordedSeq;
    const now = coarseNow();
    if (this.q.push(event, now, seq)) {
      this.queued();
      return;
    }
    this.overflowOne(event, seq, now);
  }

  /**
   * Records access decision `d` of request `r` at `site`: the same event as
   * `record(decisionEvent(d, r, site, outcome))`, but its fields are copied into the queue's columns
   * and the event is built when the writer drains the queue, so the decision path keeps no object
   * of its own alive (see event-queue.ts for why that matters). Do not mutate `site.details` afterwards.
   *
   * @example
   * recorder.recordDecision(answer, request, { pep: 'sidecar', ip: '10.0.0.7' }, 'allow');
   */
  recordDecision(d: DecisionAnswer, r: DecisionRequest, site: DecisionSite, outcome: DecisionOutcome): void {
    if (this.closed) throw new AuditRecorderClosedError();
    const seq = ++this.recordedSeq;
    const now = coarseNow();
    if (this.q.pushDecision(d, r, site, outcome, now, seq)) {
      this.queued();
      return;
    }
    this.overflowOne(decisionEvent(d, r, site, outcome), seq, now);
  }

  /** Starts the drain of what was just queued: at once for a full batch, else within the interval. */
  private queued(): void {
    if (this.q.length >= this.batchSize) {
      if (this.immediate === undefined && !this.pumping) this.immediate = setImmediate(() => this.pump());
    } else if (this.timer === undefined && this.immediate === undefined) this.schedule(this.interval);
  }

  private overflowOne(input: unknown, seq: number, now: number): void {
    const e = this.normalize(input, now);
    if (!e) return;
    this.overflow.push({ s: seq, e });
    if (this.overflow.length >= this.maxSpillBuffer) this.spillNow();
    else if (!this.spillScheduled) {
      this.spillScheduled = true;
      setImmediate(() => this.spillNow());
    }
  }

  private normalize(input: unknown, now: number): AuditEvent | undefined {
    try {
      // Events recorded here are our own (a decision, a refusal): an oversized one is clipped to
      // fit rather than refused, and one that cannot be made to fit is lost, and counted as such.
      const r = normalizeClipped(input, { now, maxBytes: this.opts.maxEventBytes });
      if (r === undefined) {
        this.loseOne(input);
        return undefined;
      }
      if (r.clipped) {
        this.s.clipped++;
        this.metrics?.clipped.inc(this.label);
      }
      return r.event;
    } catch (err) {
      this.s.rejected++;
      this.metrics?.rejected.inc(this.label);
      this.logger.error({ err, kind: (input as { kind?: unknown } | null)?.kind }, 'audit event rejected');
      this.opts.onRejected?.(input, err as Error);
      return undefined;
    }
  }

  /** Writes the in-memory overflow to the current spill file and fsyncs it. */
  private spillNow(): void {
    this.spillScheduled = false;
    if (this.overflow.length === 0) return;
    const items = this.overflow;
    this.overflow = [];
    this.writeSpill(items);
  }

  private writeSpill(items: { s: number; e: AuditEvent }[]): void {
    if (items.length === 0) return;
    let file = this.spillFiles[this.spillFiles.length - 1];
    if (!file || file.fd === undefined) {
      const path = join(
        this.opts.spillDir,
        `spill-${Date.now().toString().padStart(15, '0')}-${process.pid}-${(this.fileCounter++).toString().padStart(6, '0')}.ndjson`,
      );
      try {
        file = { path, minSeq: items[0]?.s ?? 0, count: 0, fd: openSync(path, 'a', 0o600) };
      } catch (err) {
        this.loseAll(items, err);
        return;
      }
      this.spillFiles.push(file);
    }
    let text = '';
    for (const it of items) text += `${JSON.stringify(it)}\n`;
    try {
      writeSync(file.fd as number, text);
      fsyncSync(file.fd as number);
    } catch (err) {
      this.loseAll(items, err);
      return;
    }
    file.minSeq = Math.min(file.minSeq, items[0]?.s ?? file.minSeq);
    file.count += items.length;
    this.s.spilled += items.length;
    this.s.spillPending += items.length;
    this.metrics?.spilled.inc(this.label, items.length);
    this.metrics?.spillPending.set(this.label, this.s.spillPending);
    // Rotate large files so a shipped file can be removed.
    if (file.count >= 10 * this.batchSize) this.closeSpillFile(file);
    this.schedule(0);
  }

  private closeSpillFile(file: SpillFile): void {
    if (file.fd !== undefined) {
      closeSync(file.fd);
      file.fd = undefined;
    }
  }

  private loseOne(input: unknown): void {
    this.s.lost++;
    this.metrics?.lost.inc(this.label);
    this.logger.error(
      { kind: (input as { kind?: unknown } | null)?.kind, limit: this.opts.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES },
      'AUDIT EVENT LOST: over the size limit even with its strings clipped',
    );
  }

  private loseAll(items: { s: number; e: AuditEvent }[], err: unknown): void {
    // The sink is unavailable and the disk refused the write: the one case where events are lost.
    this.s.lost += items.length;
    this.metrics?.lost.inc(this.label, items.length);
    this.logger.error({ err, count: items.length }, 'AUDIT EVENTS LOST: cannot write the spill buffer');
    this.wake();
  }

  private schedule(delay: number): void {
    if (this.closed && delay > 0) return;
    if (this.timer !== undefined) {
      if (delay > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.pump();
      },
      Math.max(delay, this.backoffUntil - Date.now(), 0),
    );
    // A recorder with work pending keeps the process alive only while something else does.
    if (this.q.length === 0) this.timer.unref();
  }

  private minPending(): number {
    let m = this.inflightMin;
    const q0 = this.q.firstSeq();
    if (q0 !== undefined && q0 < m) m = q0;
    const o0 = this.overflow[0];
    if (o0 && o0.s < m) m = o0.s;
    for (const f of this.spillFiles) if (f.count > 0 && f.minSeq < m) m = f.minSeq;
    return m;
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const m = this.minPending();
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (m > w.target) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private async pump(): Promise<void> {
    this.immediate = undefined;
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        if (Date.now() < this.backoffUntil) {
          this.schedule(this.backoffUntil - Date.now());
          break;
        }
        // Oldest first: under sustained overload the spill must still drain, or flush() never resolves.
        const spill = this.spillFiles.find((f) => f.count > 0);
        const q0 = this.q.firstSeq();
        if (spill && (q0 === undefined || spill.minSeq < q0)) {
          if (!(await this.shipSpill())) continue;
        } else if (this.q.length > 0) {
          if (!(await this.shipQueue())) continue;
        } else if (this.overflow.length > 0) {
          this.spillNow();
        } else break;
      }
    } finally {
      this.pumping = false;
      this.metrics?.depth.set(this.label, this.q.length);
      this.wake();
    }
  }

  /** Ships one batch from the queue; false after a sink failure (the batch was spilled). */
  private async shipQueue(): Promise<boolean> {
    const { inputs, times, seqs } = this.q.take(this.batchSize);
    const n = inputs.length;
    this.inflightMin = seqs[0] ?? Number.POSITIVE_INFINITY;
    this.inflightCount = n;
    this.metrics?.depth.set(this.label, this.q.length);
    const batch: { s: number; e: AuditEvent }[] = [];
    for (let i = 0; i < n; i++) {
      const e = this.normalize(inputs[i], times[i] as number);
      if (e) batch.push({ s: seqs[i] as number, e });
    }
    try {
      if (batch.length > 0) await this.opts.sink.append(batch.map((b) => b.e));
      this.shipped(batch.length);
      return true;
    } catch (err) {
      if (err instanceof AuditSinkRejectedError || err instanceof AuditEventError) {
        this.rejectBatch(batch.length, err);
        return true;
      }
      this.failed(err);
      this.writeSpill(batch);
      return false;
    } finally {
      this.inflightMin = Number.POSITIVE_INFINITY;
      this.inflightCount = 0;
      this.wake();
    }
  }

  /** Ships the oldest spill file; false after a sink failure. */
  private async shipSpill(): Promise<boolean> {
    const file = this.spillFiles.find((f) => f.count > 0) as SpillFile;
    this.closeSpillFile(file);
    const items = readFileSync(file.path, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { s: number; e: AuditEvent });
    for (let i = 0; i < items.length; i += this.batchSize) {
      const batch = items.slice(i, i + this.batchSize);
      try {
        await this.opts.sink.append(batch.map((b) => b.e));
      } catch (err) {
        if (err instanceof AuditSinkRejectedError || err instanceof AuditEventError) {
          this.rejectBatch(batch.length, err);
          continue;
        }
        this.failed(err);
        // Shipped prefixes may ship again after a failure: the log skips ids it already has.
        return false;
      }
      this.shipped(batch.length);
    }
    this.s.spillPending -= file.count;
    this.metrics?.spillPending.set(this.label, this.s.spillPending);
    file.count = 0;
    this.spillFiles = this.spillFiles.filter((f) => f !== file);
    try {
      unlinkSync(file.path);
    } catch {}
    return true;
  }

  private shipped(n: number): void {
    this.s.shipped += n;
    this.metrics?.shipped.inc(this.label, n);
    this.backoffMs = this.opts.retryMinMs ?? 100;
  }

  private rejectBatch(n: number, err: unknown): void {
    this.s.rejected += n;
    this.metrics?.rejected.inc(this.label, n);
    this.logger.error({ err, count: n }, 'audit sink refused a batch permanently');
  }

  private failed(err: unknown): void {
    this.logger.warn({ err, retryInMs: this.backoffMs }, 'audit sink failed; spilling and retrying');
    this.backoffUntil = Date.now() + this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.retryMaxMs ?? 5000);
  }

  /**
   * Resolves when every event recorded before the call has been acknowledged by the sink (stored),
   * or was rejected as malformed.
   */
  flush(): Promise<void> {
    const target = this.recordedSeq;
    return new Promise((resolve) => {
      this.waiters.push({ target, resolve });
      this.backoffUntil = 0;
      this.schedule(0);
      this.wake();
    });
  }

  /**
   * Events recorded but not yet durable: queued, in the in-memory overflow, or in the batch the sink
   * holds. These are what a kill -9 now would lose.
   */
  notDurable(): number {
    return this.q.length + this.overflow.length + this.inflightCount;
  }

  /** @internal The metric label of this recorder. */
  metricLabel(): { recorder: string } {
    return this.label;
  }

  /** Counters for tests and status output. */
  stats(): RecorderStats {
    return {
      recorded: this.recordedSeq,
      queued: this.q.length,
      spilled: this.s.spilled,
      spillPending: this.s.spillPending,
      shipped: this.s.shipped,
      rejected: this.s.rejected,
      clipped: this.s.clipped,
      lost: this.s.lost,
      notDurable: this.notDurable(),
      recovered: this.s.recovered,
    };
  }

  /**
   * Stops accepting events; tries to ship what is queued for up to `timeoutMs`, then writes whatever
   * is left to the spill buffer, so that everything recorded is durable when this resolves.
   */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.closed) return;
    const done = this.flush();
    this.closed = true;
    await Promise.race([done, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    if (this.timer) clearTimeout(this.timer);
    while (this.pumping) await new Promise((r) => setTimeout(r, 5));
    const rest: { s: number; e: AuditEvent }[] = [];
    const left = this.q.take(this.q.length);
    for (let i = 0; i < left.inputs.length; i++) {
      const e = this.normalize(left.inputs[i], left.times[i] as number);
      if (e) rest.push({ s: left.seqs[i] as number, e });
    }
    releaseCoarseClock();
    this.spillNow();
    this.writeSpill(rest);
    for (const f of this.spillFiles) this.closeSpillFile(f);
    if (this.timer) clearTimeout(this.timer);
    this.metrics?.recorders.delete(this);
    this.metrics?.notDurable.set(this.label, this.notDurable());
    await this.opts.sink.close?.().catch(() => {});
  }
}

/**
 * Where enforcement points ship decisions on the server's agent port, authenticated by their
 * X.509-SVID (mTLS) instead of a bearer token.
 */
export const AGENT_PORT_INGEST_PATH = '/agent/v1/audit/events';

export interface HttpSinkOptions {
  /** Server base URL, e.g. `http://127.0.0.1:8181`, or the agent port `https://127.0.0.1:8081` with `dispatcher`. */
  url: string;
  /** Bearer token for the ingestion endpoint. */
  token?: string;
  /**
   * The connection pool to use, e.g. an mTLS one presenting the enforcement point's SVID
   * (`createMtlsAgent`) for `/agent/v1/audit/events`: then no token is needed.
   */
  dispatcher?: Dispatcher;
  /** The ingestion path (default `/v1/audit/events`). */
  path?: string;
  timeoutMs?: number;
}

/**
 * What a sink throws for an ingestion endpoint's refusal: 400/413/422 are permanent (the recorder
 * counts the batch as rejected), anything else (401, 429, 5xx) is retried.
 */
export function ingestionError(status: number, text: string): Error {
  if (status === 400 || status === 413 || status === 422) {
    return new AuditSinkRejectedError(`server refused the batch (${status}): ${text.slice(0, 300)}`);
  }
  return new Error(`audit ingestion answered ${status}: ${text.slice(0, 300)}`);
}

/**
 * A sink that POSTs batches to the server's ingestion endpoint (`POST /v1/audit/events`).
 * 400/413/422 are permanent refusals; anything else (network, 5xx, 401) is retried by the recorder.
 *
 * @example
 * const shipper = new AuditRecorder({ sink: httpSink({ url: 'http://127.0.0.1:8181', token }), spillDir });
 */
export function httpSink(opts: HttpSinkOptions): AuditSink {
  const url = `${opts.url.replace(/\/+$/, '')}${opts.path ?? '/v1/audit/events'}`;
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  return {
    async append(events) {
      const res = await postJsonRaw(
        url,
        { events },
        { headers, timeoutMs: opts.timeoutMs ?? 10_000, ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) },
      );
      if (res.status === 200) return JSON.parse(res.text) as unknown;
      throw ingestionError(res.status, res.text);
    },
  };
}

/**
 * A recorder for a remote enforcement point: batches POSTed to the server, with retry and spill.
 *
 * @example
 * const shipper = createHttpShipper({ url: 'http://127.0.0.1:8181', token, spillDir: '/var/lib/pep/audit' });
 * shipper.record({ kind: 'access.decision', outcome: 'allow' });
 */
export function createHttpShipper(opts: HttpSinkOptions & Omit<RecorderOptions, 'sink'>): AuditRecorder {
  return new AuditRecorder({ ...opts, sink: httpSink(opts), name: opts.name ?? 'http' });
}
