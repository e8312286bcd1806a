/**
 * Repeated refusals as few events, with nothing lost: a caller hammering a route with a bad
 * credential must not turn each refusal into an audit event and a log line (1,000 requests made
 * 1,000 of each in 0.6 s), yet the record must say how many there were. The first refusal of a
 * caller and reason is recorded at once; the ones that follow within the window are counted and
 * recorded as one event with their exact count when the window ends (and on `flush()`, e.g. at
 * shutdown). A caller still refused when the window ends starts a new window, so a steady flood
 * costs one event per window.
 */

export interface RefusalAggregatorOptions<E> {
  /** Records one refusal: `repeated` = 0 for the first of a run, else how many it stands for. */
  record(event: E, repeated: number): void;
  /** Window in ms (default 10,000). */
  windowMs?: number;
  /**
   * Most callers tracked at once (default 10,000); refusals of further callers are counted
   * together under one entry instead of each being recorded, so a spray of addresses is bounded too.
   */
  maxKeys?: number;
}

interface Run<E> {
  event: E;
  until: number;
  count: number;
}

/** The key under which callers beyond `maxKeys` are counted together. */
export const OTHER_CALLERS = '\u0000other callers';

/**
 * @example
 * const refusals = new RefusalAggregator<ServerEvent>({ record: (e, n) => events.record(withCount(e, n)) });
 * refusals.refused(`${ip}\n${reason}`, event); // recorded now, or counted for the window's record
 */
export class RefusalAggregator<E> {
  private readonly runs = new Map<string, Run<E>>();
  private readonly windowMs: number;
  private readonly maxKeys: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: RefusalAggregatorOptions<E>) {
    this.windowMs = Math.max(1, opts.windowMs ?? 10_000);
    this.maxKeys = Math.max(1, opts.maxKeys ?? 10_000);
  }

  /**
   * One refusal of `key` (caller and reason); `event` is what to record if this one starts a run.
   * True when it was recorded now (the first of its run), false when it was counted for later.
   */
  refused(key: string, event: E): boolean {
    let k = key;
    if (!this.runs.has(k) && this.runs.size >= this.maxKeys) k = OTHER_CALLERS;
    const now = Date.now();
    const run = this.runs.get(k);
    if (run && run.until <= now && run.count > 0) {
      // The window ended before its sweep ran: its count is recorded now, and this refusal opens
      // the next window of the same run.
      const n = run.count;
      run.count = 1;
      run.until = now + this.windowMs;
      this.opts.record(run.event, n);
      return false;
    }
    if (run && run.until > now) {
      run.count++;
      return false;
    }
    this.runs.set(k, { event, until: now + this.windowMs, count: 0 });
    this.opts.record(event, 0);
    this.arm();
    return true;
  }

  /** Refusals counted and not yet recorded (for tests and status). */
  pending(): number {
    let n = 0;
    for (const r of this.runs.values()) n += r.count;
    return n;
  }

  /** Records every counted refusal now and forgets all runs (shutdown). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const runs = [...this.runs.values()];
    this.runs.clear();
    for (const r of runs) if (r.count > 0) this.opts.record(r.event, r.count);
  }

  private arm(): void {
    if (this.timer || this.runs.size === 0) return;
    let next = Number.POSITIVE_INFINITY;
    for (const r of this.runs.values()) if (r.until < next) next = r.until;
    // Not sooner than a tenth of the window: callers' windows end at scattered times, and one
    // sweep per ending would make a spray of callers cost a scan each.
    this.timer = setTimeout(() => this.sweep(), Math.max(this.windowMs / 10, next - Date.now()));
    // Counting refusals must not keep a process alive; `flush()` at shutdown records the rest.
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = undefined;
    const now = Date.now();
    for (const [k, r] of this.runs) {
      if (r.until > now) continue;
      if (r.count === 0) {
        this.runs.delete(k);
        continue;
      }
      const n = r.count;
      r.count = 0;
      r.until = now + this.windowMs;
      this.opts.record(r.event, n);
    }
    this.arm();
  }
}
