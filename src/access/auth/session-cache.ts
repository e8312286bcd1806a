/**
 * The in-process session cache and the change-feed follower that keeps it honest: every proxy
 * polls the store's change table and drops the sessions that ended or changed elsewhere, so a
 * request reads no database and a logout anywhere takes effect everywhere within one interval.
 */
import type { AccessSessionRepository } from '../../store/access-sessions.js';

/** A bounded least-recently-used map (Map keeps insertion order; a hit re-inserts). */
export class Lru<K, V> {
  readonly #map = new Map<K, V>();
  /** `onDrop` hears of entries pushed out by the bound (not of explicit deletes). */
  constructor(
    private readonly max: number,
    private readonly onDrop: (key: K, value: V) => void = () => {},
  ) {}

  get(key: K): V | undefined {
    const v = this.#map.get(key);
    if (v === undefined) return undefined;
    this.#map.delete(key);
    this.#map.set(key, v);
    return v;
  }

  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.max) {
      const oldest = this.#map.entries().next();
      if (!oldest.done) {
        this.#map.delete(oldest.value[0]);
        this.onDrop(oldest.value[0], oldest.value[1]);
      }
    }
  }

  delete(key: K): void {
    this.#map.delete(key);
  }

  get size(): number {
    return this.#map.size;
  }
}

/** How long a hole in the seq numbers is waited for (a PostgreSQL transaction that commits late). */
const GAP_WAIT_MS = 5000;

/**
 * Polls `access_session_changes` for `seq > cursor` and calls `evict(sessionId)` for each change.
 * On PostgreSQL a sequence value can commit after a larger one, so the cursor stays below a hole
 * until it fills or {@link GAP_WAIT_MS} passes; rows above it already handled are not evicted twice.
 */
export class ChangeFollower {
  #cursor = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #gapSince: number | undefined;
  readonly #handled = new Set<number>();

  constructor(
    private readonly repo: AccessSessionRepository,
    private readonly evict: (sessionId: string) => void,
    private readonly onError: (e: unknown) => void,
  ) {}

  /** Starts at the newest change: older ones concern sessions this process has not cached. */
  async start(intervalMs: number): Promise<void> {
    this.#cursor = await this.repo.maxChangeSeq();
    this.#timer = setInterval(() => {
      if (!this.#running) this.#running = this.poll().finally(() => (this.#running = undefined));
    }, intervalMs);
    this.#timer.unref();
  }

  async poll(): Promise<void> {
    let rows: Awaited<ReturnType<AccessSessionRepository['changesSince']>>;
    try {
      rows = await this.repo.changesSince(this.#cursor);
    } catch (e) {
      this.onError(e);
      return;
    }
    for (const r of rows) {
      if (!this.#handled.has(r.seq)) {
        this.#handled.add(r.seq);
        this.evict(r.sessionId);
      }
    }
    let next = this.#cursor;
    for (const r of rows) {
      if (r.seq !== next + 1) break;
      next = r.seq;
    }
    const newest = rows.at(-1)?.seq ?? next;
    if (next === newest) this.#gapSince = undefined;
    else if (this.#gapSince === undefined) this.#gapSince = Date.now();
    else if (Date.now() - this.#gapSince > GAP_WAIT_MS) {
      next = newest;
      this.#gapSince = undefined;
    }
    this.#cursor = next;
    for (const seq of this.#handled) if (seq <= next) this.#handled.delete(seq);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}
