/**
 * Our SSF transmitter's streams: one per configured receiver (SSF 1.0 §8.1), each with its delivery
 * (RFC 8935 push, or RFC 8936 poll), the events it asked for, and a status. Signals handed to
 * {@link SsfTransmitter.publish} (in seq order) become SETs signed for each stream's audience:
 * pushed one at a time in order, retried with backoff until the receiver answers (a 4xx refusal
 * is logged and dropped: sending it again would not change the answer), or kept until a poll
 * acknowledges them. Queues are bounded ({@link MAX_QUEUED}) and in memory: a restart loses SETs
 * not yet delivered (the signals themselves are in the store).
 *
 * @example
 * ```ts
 * const tx = new SsfTransmitter({ signer, streams: [{ name: 'rp', audience: 'https://rp', delivery: 'push',
 *   endpointUrl: 'https://rp/push' }], log });
 * tx.publish(signal);
 * ```
 */
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { z } from 'zod';
import type { Signal } from '../../api/signals.js';
import { isSafeUrl } from './discovery.js';
import { NevertrustError } from '../../errors.js';
import { CAEP, RISC } from './events.js';
import {
  type SetContent,
  type SetSigner,
  SSF_DELIVERY_POLL,
  SSF_DELIVERY_PUSH,
  setForSignal,
  signSet,
} from './transmit.js';

/** SSF 1.0 verification event (§8.1.4). */
export const SSF_VERIFICATION_EVENT = 'https://schemas.openid.net/secevent/ssf/event-type/verification';
/** The event types our SETs carry (see `setForSignal`). */
export const EVENTS_SUPPORTED: readonly string[] = [
  CAEP.sessionRevoked,
  CAEP.deviceComplianceChange,
  CAEP.riskLevelChange,
  RISC.accountDisabled,
];
/** Most SETs queued per stream; past it the oldest is dropped (and logged). */
export const MAX_QUEUED = 10_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 30_000;

export type StreamStatus = 'enabled' | 'paused' | 'disabled';

/** How a configured receiver's stream starts. */
export interface StreamSetup {
  name: string;
  audience: string;
  delivery: 'push' | 'poll';
  endpointUrl?: string;
  /** Authorization header value sent with pushes. */
  authorization?: string;
}

interface Stream {
  setup: StreamSetup;
  /** Undefined: no stream (deleted, or a push stream without an endpoint yet). */
  id: string | undefined;
  method: 'push' | 'poll';
  endpointUrl: string | undefined;
  authorization: string | undefined;
  eventsRequested: string[];
  status: StreamStatus;
  description: string | undefined;
  /** Push: SETs to send, in order. Poll: SETs not acknowledged yet, by jti. */
  queue: Map<string, string>;
  pushing: boolean;
}

/** A stream management request's body (SSF 1.0 §8.1.1). */
export const streamRequestSchema = z.looseObject({
  stream_id: z.string().optional(),
  delivery: z
    .looseObject({
      method: z.enum([SSF_DELIVERY_PUSH, SSF_DELIVERY_POLL]),
      endpoint_url: z.string().refine(isSafeUrl, 'endpoint_url must be https (http only for localhost)').optional(),
      authorization_header: z.string().max(4096).optional(),
    })
    .optional(),
  events_requested: z.array(z.string().max(512)).max(100).optional(),
  description: z.string().max(1024).optional(),
});
export type StreamRequest = z.infer<typeof streamRequestSchema>;

/** An RFC 8936 poll request. */
export const pollRequestSchema = z.looseObject({
  maxEvents: z.number().int().min(0).max(1000).optional(),
  returnImmediately: z.boolean().optional(),
  ack: z.array(z.string().max(256)).max(10_000).optional(),
  setErrs: z
    .record(z.string().max(256), z.looseObject({ err: z.string(), description: z.string().optional() }))
    .optional(),
});
export type PollRequest = z.infer<typeof pollRequestSchema>;

export interface TransmitterLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export class SsfTransmitter {
  private readonly streams = new Map<string, Stream>();
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly opts: {
      signer: SetSigner;
      streams: readonly StreamSetup[];
      log: TransmitterLog;
      /** Where receivers poll (our poll endpoint's URL). */
      pollUrl: string;
    },
  ) {
    for (const s of opts.streams) {
      const ready = s.delivery === 'poll' || s.endpointUrl !== undefined;
      this.streams.set(s.name, {
        setup: s,
        id: ready ? randomUUID() : undefined,
        method: s.delivery,
        endpointUrl: s.endpointUrl,
        authorization: s.authorization,
        eventsRequested: [...EVENTS_SUPPORTED],
        status: 'enabled',
        description: undefined,
        queue: new Map(),
        pushing: false,
      });
    }
  }

  private stream(name: string): Stream {
    const s = this.streams.get(name);
    if (!s) throw new Error(`no stream ${name}`);
    return s;
  }

  /** The stream of `name` when it exists and `streamId` (when given) names it; else 404. */
  private existing(name: string, streamId: string | undefined): Stream & { id: string } {
    const s = this.stream(name);
    if (s.id === undefined || (streamId !== undefined && streamId !== s.id))
      throw new SsfStreamError(404, 'not_found', 'no such stream');
    return s as Stream & { id: string };
  }

  /** The stream configuration as SSF 1.0 §8.1.1 shows it. */
  private view(s: Stream & { id: string }): Record<string, unknown> {
    return {
      stream_id: s.id,
      iss: this.opts.signer.issuer,
      aud: s.setup.audience,
      delivery:
        s.method === 'push'
          ? { method: SSF_DELIVERY_PUSH, endpoint_url: s.endpointUrl }
          : { method: SSF_DELIVERY_POLL, endpoint_url: this.opts.pollUrl },
      events_supported: EVENTS_SUPPORTED,
      events_requested: s.eventsRequested,
      events_delivered: this.delivered(s),
      ...(s.description === undefined ? {} : { description: s.description }),
    };
  }

  private delivered(s: Stream): string[] {
    return EVENTS_SUPPORTED.filter((e) => s.eventsRequested.includes(e));
  }

  private apply(s: Stream, req: StreamRequest): void {
    if (req.delivery) {
      const method = req.delivery.method === SSF_DELIVERY_PUSH ? 'push' : 'poll';
      const endpoint = method === 'push' ? (req.delivery.endpoint_url ?? s.setup.endpointUrl) : undefined;
      if (method === 'push' && !endpoint)
        throw new SsfStreamError(400, 'invalid_request', 'push delivery needs delivery.endpoint_url');
      s.method = method;
      s.endpointUrl = endpoint;
      if (req.delivery.authorization_header !== undefined) s.authorization = req.delivery.authorization_header;
    }
    if (req.events_requested) s.eventsRequested = [...req.events_requested];
    if (req.description !== undefined) s.description = req.description;
  }

  /** Creates the stream (SSF 1.0 §8.1.1.1): 409 when it exists. */
  create(name: string, req: StreamRequest): Record<string, unknown> {
    const s = this.stream(name);
    if (s.id !== undefined) throw new SsfStreamError(409, 'conflict', 'the stream exists: read, update or delete it');
    this.apply(s, {
      delivery: { method: s.setup.delivery === 'push' ? SSF_DELIVERY_PUSH : SSF_DELIVERY_POLL },
      ...req,
    });
    s.id = randomUUID();
    s.status = 'enabled';
    s.queue.clear();
    return this.view(s as Stream & { id: string });
  }

  /** Reads it: one object with `streamId`, else the list of this receiver's streams (zero or one). */
  read(name: string, streamId: string | undefined): unknown {
    const s = this.stream(name);
    if (streamId === undefined) return s.id === undefined ? [] : [this.view(s as Stream & { id: string })];
    return this.view(this.existing(name, streamId));
  }

  /** Updates (PATCH) or replaces (PUT) delivery, events and description. */
  update(name: string, req: StreamRequest): Record<string, unknown> {
    if (req.stream_id === undefined) throw new SsfStreamError(400, 'invalid_request', 'stream_id is required');
    const s = this.existing(name, req.stream_id);
    this.apply(s, req);
    this.kick(s);
    return this.view(s);
  }

  delete(name: string, streamId: string | undefined): void {
    if (streamId === undefined) throw new SsfStreamError(400, 'invalid_request', 'stream_id is required');
    const s = this.existing(name, streamId);
    s.queue.clear();
    (s as Stream).id = undefined;
  }

  status(name: string, streamId: string | undefined): { stream_id: string; status: StreamStatus } {
    if (streamId === undefined) throw new SsfStreamError(400, 'invalid_request', 'stream_id is required');
    const s = this.existing(name, streamId);
    return { stream_id: s.id, status: s.status };
  }

  setStatus(
    name: string,
    streamId: string | undefined,
    status: StreamStatus,
  ): { stream_id: string; status: StreamStatus } {
    if (streamId === undefined) throw new SsfStreamError(400, 'invalid_request', 'stream_id is required');
    const s = this.existing(name, streamId);
    s.status = status;
    // Disabled: nothing is kept for it (SSF 1.0 §8.1.2); paused: kept, sent when enabled again.
    if (status === 'disabled') s.queue.clear();
    this.kick(s);
    return { stream_id: s.id, status: s.status };
  }

  /** Sends a verification event (SSF 1.0 §8.1.4) with the receiver's `state`, whatever it asked for. */
  async verify(name: string, streamId: string | undefined, state: string | undefined): Promise<void> {
    if (streamId === undefined) throw new SsfStreamError(400, 'invalid_request', 'stream_id is required');
    const s = this.existing(name, streamId);
    if (s.status !== 'enabled') throw new SsfStreamError(409, 'conflict', `the stream is ${s.status}`);
    await this.enqueue(s, {
      subject: { format: 'opaque', id: s.id },
      events: { [SSF_VERIFICATION_EVENT]: state === undefined ? {} : { state } },
    });
  }

  /**
   * Hands one of our signals to every stream that asked for its event (call in seq order). The
   * `jti` is derived from the seq, so the same signal sent twice (two servers on one store) is
   * refused by the receiver as a replay rather than acted on twice.
   */
  async publish(signal: Signal, seq: number): Promise<void> {
    const content = setForSignal(signal);
    if (!content) return;
    const [type] = Object.keys(content.events);
    for (const s of this.streams.values()) {
      if (s.id === undefined || s.status === 'disabled') continue;
      if (type === undefined || !this.delivered(s).includes(type)) continue;
      await this.enqueue(s, content, `${s.setup.name}-${seq}`);
    }
  }

  private async enqueue(s: Stream, content: SetContent, jti: string = randomUUID()): Promise<void> {
    const set = await signSet(this.opts.signer, { audience: s.setup.audience, jti, ...content });
    if (s.queue.size >= MAX_QUEUED) {
      const oldest = s.queue.keys().next().value as string;
      s.queue.delete(oldest);
      this.opts.log.warn({ stream: s.setup.name, jti: oldest }, 'SSF queue full: the oldest SET was dropped');
    }
    s.queue.set(jti, set);
    this.kick(s);
  }

  /** RFC 8936: acknowledges, then returns up to `maxEvents` unacknowledged SETs, oldest first. */
  poll(name: string, req: PollRequest): { sets: Record<string, string>; moreAvailable: boolean } {
    const s = this.stream(name);
    if (s.id === undefined || s.method !== 'poll')
      throw new SsfStreamError(404, 'not_found', 'no poll stream for this receiver');
    for (const jti of req.ack ?? []) s.queue.delete(jti);
    for (const [jti, e] of Object.entries(req.setErrs ?? {})) {
      if (s.queue.delete(jti))
        this.opts.log.warn(
          { stream: s.setup.name, jti, err: e.err, description: e.description },
          'SSF receiver refused a SET',
        );
    }
    const sets: Record<string, string> = {};
    if (s.status !== 'enabled') return { sets, moreAvailable: false };
    const max = req.maxEvents ?? 100;
    let n = 0;
    for (const [jti, set] of s.queue) {
      if (n >= max) break;
      sets[jti] = set;
      n++;
    }
    return { sets, moreAvailable: s.queue.size > n };
  }

  /** Starts pushing a stream's queue when it is a push stream, enabled, and not already pushing. */
  private kick(s: Stream): void {
    if (this.closed || s.pushing || s.method !== 'push' || s.status !== 'enabled' || s.queue.size === 0) return;
    s.pushing = true;
    void this.drain(s).finally(() => {
      s.pushing = false;
      // Something may have arrived while the last push was answered.
      if (s.queue.size > 0 && s.status === 'enabled' && !this.closed) this.kick(s);
    });
  }

  private async drain(s: Stream): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.closed && s.method === 'push' && s.status === 'enabled' && s.endpointUrl) {
      const next = s.queue.entries().next();
      if (next.done) return;
      const [jti, set] = next.value;
      const result = await this.pushOne(s.endpointUrl, s.authorization, set);
      if (result.ok || result.refused) {
        if (result.refused)
          this.opts.log.warn({ stream: s.setup.name, jti, answer: result.detail }, 'SSF receiver refused a SET');
        s.queue.delete(jti);
        backoff = BACKOFF_MIN_MS;
        continue;
      }
      this.opts.log.warn(
        { stream: s.setup.name, jti, err: result.detail, retryInMs: backoff },
        'SSF push failed; retrying',
      );
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          this.timers.delete(t);
          r();
        }, backoff);
        this.timers.add(t);
      });
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  /** One RFC 8935 push: 2xx delivered; 400 refused (not retried); anything else retried. */
  private async pushOne(
    url: string,
    authorization: string | undefined,
    set: string,
  ): Promise<{ ok: boolean; refused: boolean; detail: string }> {
    try {
      const res = await request(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/secevent+jwt',
          accept: 'application/json',
          ...(authorization ? { authorization } : {}),
        },
        body: set,
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const text = (await res.body.text()).slice(0, 300);
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      return { ok, refused: res.statusCode === 400, detail: `${res.statusCode} ${text}` };
    } catch (e) {
      return { ok: false, refused: false, detail: (e as Error).message };
    }
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

/** A stream management request that cannot be done: its status and wire reason (`not_found`, `conflict`…). */
export class SsfStreamError extends NevertrustError<'ERR_SSF_STREAM_REQUEST'> {
  override readonly name = 'SsfStreamError';
  readonly code = 'ERR_SSF_STREAM_REQUEST';
  constructor(
    status: 400 | 404 | 409,
    private readonly wire: 'invalid_request' | 'not_found' | 'conflict',
    message: string,
  ) {
    super(message, { status });
  }

  override get reason(): string {
    return this.wire;
  }
}
