/**
 * The recorder's bounded FIFO of raw events, as a ring: `push` on the decision path writes three
 * slots and moves one index — no array growth copies, no `splice` of the head when a batch leaves.
 * Capacity starts small and doubles up to the bound, so a large bound costs memory only once used.
 * @internal
 */
export interface QueuedBatch {
  inputs: unknown[];
  times: number[];
  seqs: number[];
}

export class EventQueue {
  readonly #max: number;
  #events: unknown[];
  #times: Float64Array;
  #seqs: Float64Array;
  #head = 0;
  #size = 0;

  constructor(maxEvents: number) {
    this.#max = Math.max(1, maxEvents);
    const cap = Math.min(this.#max, 1024);
    this.#events = new Array<unknown>(cap).fill(undefined);
    this.#times = new Float64Array(cap);
    this.#seqs = new Float64Array(cap);
  }

  get length(): number {
    return this.#size;
  }

  /** Appends one event; false when the queue holds its bound already (nothing is written). */
  push(event: unknown, time: number, seq: number): boolean {
    let cap = this.#events.length;
    if (this.#size === cap) {
      if (cap === this.#max) return false;
      this.#grow();
      cap = this.#events.length;
    }
    let i = this.#head + this.#size;
    if (i >= cap) i -= cap;
    this.#events[i] = event;
    this.#times[i] = time;
    this.#seqs[i] = seq;
    this.#size++;
    return true;
  }

  /** Sequence number of the oldest event, or undefined when empty. */
  firstSeq(): number | undefined {
    return this.#size === 0 ? undefined : this.#seqs[this.#head];
  }

  /** Removes and returns up to `n` of the oldest events, oldest first. */
  take(n: number): QueuedBatch {
    const k = Math.min(n, this.#size);
    const cap = this.#events.length;
    const out: QueuedBatch = { inputs: new Array(k), times: new Array(k), seqs: new Array(k) };
    let i = this.#head;
    for (let j = 0; j < k; j++) {
      out.inputs[j] = this.#events[i];
      out.times[j] = this.#times[i] as number;
      out.seqs[j] = this.#seqs[i] as number;
      this.#events[i] = undefined; // the ring must not keep shipped events alive
      if (++i === cap) i = 0;
    }
    this.#head = i;
    this.#size -= k;
    return out;
  }

  #grow(): void {
    const cap = this.#events.length;
    const next = Math.min(this.#max, cap * 2);
    const events = new Array<unknown>(next).fill(undefined);
    const times = new Float64Array(next);
    const seqs = new Float64Array(next);
    for (let j = 0, i = this.#head; j < this.#size; j++) {
      events[j] = this.#events[i];
      times[j] = this.#times[i] as number;
      seqs[j] = this.#seqs[i] as number;
      if (++i === cap) i = 0;
    }
    this.#events = events;
    this.#times = times;
    this.#seqs = seqs;
    this.#head = 0;
  }
}
