/**
 * The receiver's calls to a transmitter: stream creation (SSF 1.0 §8.1.1) and status (§8.1.2), and
 * the RFC 8936 poll loop, each with the bearer token the transmitter gave us. Answers are checked
 * with zod; anything unexpected is an `ERR_SSF_TRANSMITTER` (502) naming the URL.
 *
 * @example
 * ```ts
 * const stream = await ensureStream(meta, { token, method: 'poll', audience });
 * const stop = pollSets({ url: stream.delivery.endpoint_url!, token, receiver, intervalMs: 5000, log });
 * ```
 */
import { request } from 'undici';
import { z } from 'zod';
import { SsfError } from './errors.js';
import { CAEP, RISC } from './events.js';
import type { TransmitterMetadata } from './discovery.js';
import type { SetReceiver } from './receiver.js';
import { SSF_DELIVERY_POLL, SSF_DELIVERY_PUSH } from './transmit.js';

/** Every event type we map (what a stream we create asks for). */
export const EVENTS_WE_MAP: readonly string[] = [...Object.values(CAEP), ...Object.values(RISC)];

const TIMEOUT_MS = 10_000;

async function call(
  method: 'GET' | 'POST',
  url: string,
  token: string | undefined,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  let status: number;
  let text: string;
  try {
    const res = await request(url, {
      method,
      headers: {
        accept: 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      headersTimeout: TIMEOUT_MS,
      bodyTimeout: TIMEOUT_MS,
    });
    status = res.statusCode;
    text = await res.body.text();
  } catch (e) {
    throw new SsfError('ERR_SSF_TRANSMITTER', `${method} ${url}: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = text.length === 0 ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status, json };
}

function expectAnswer<T>(schema: z.ZodType<T>, what: string, url: string, json: unknown): T {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new SsfError('ERR_SSF_TRANSMITTER', `${url}: ${what}: ${i?.path.join('.')}: ${i?.message}`);
  }
  return parsed.data;
}

/** A stream configuration as a transmitter answers it (the members we read). */
export const streamConfigSchema = z.looseObject({
  stream_id: z.string().min(1),
  iss: z.string().optional(),
  aud: z.union([z.string(), z.array(z.string())]).optional(),
  delivery: z.looseObject({ method: z.string(), endpoint_url: z.string().optional() }),
  events_delivered: z.array(z.string()).optional(),
});
export type StreamConfig = z.infer<typeof streamConfigSchema>;

export interface EnsureStreamOptions {
  token: string | undefined;
  method: 'push' | 'poll';
  /** Our push endpoint's URL (push). */
  pushUrl?: string;
  /** The Authorization header value the transmitter sends with pushes (push). */
  pushAuthorization?: string;
}

/**
 * Creates our stream at the transmitter's `configuration_endpoint`, or reads the one that exists
 * (409: a transmitter keeps one stream per receiver).
 */
export async function ensureStream(meta: TransmitterMetadata, opts: EnsureStreamOptions): Promise<StreamConfig> {
  const url = meta.configuration_endpoint;
  if (!url) throw new SsfError('ERR_SSF_TRANSMITTER', `${meta.issuer} publishes no configuration_endpoint`);
  const delivery =
    opts.method === 'push'
      ? {
          method: SSF_DELIVERY_PUSH,
          endpoint_url: opts.pushUrl,
          ...(opts.pushAuthorization ? { authorization_header: opts.pushAuthorization } : {}),
        }
      : { method: SSF_DELIVERY_POLL };
  if (opts.method === 'push' && !opts.pushUrl)
    throw new SsfError(
      'ERR_SSF_BAD_CONFIG',
      'push delivery needs push_url (our push endpoint as the transmitter reaches it)',
    );
  const created = await call('POST', url, opts.token, { delivery, events_requested: EVENTS_WE_MAP });
  if (created.status === 200 || created.status === 201)
    return expectAnswer(streamConfigSchema, 'stream configuration', url, created.json);
  if (created.status !== 409) throw new SsfError('ERR_SSF_TRANSMITTER', `POST ${url} answered ${created.status}`);
  const read = await call('GET', url, opts.token);
  if (read.status !== 200) throw new SsfError('ERR_SSF_TRANSMITTER', `GET ${url} answered ${read.status}`);
  // SSF 1.0: without stream_id, an array of the receiver's streams (older drafts: one object).
  const list = Array.isArray(read.json) ? read.json : [read.json];
  const first = list[0];
  if (first === undefined) throw new SsfError('ERR_SSF_TRANSMITTER', `GET ${url}: no stream although POST said 409`);
  return expectAnswer(streamConfigSchema, 'stream configuration', url, first);
}

/** The stream's status at the transmitter (`enabled`, `paused`, `disabled`). */
export async function streamStatus(
  meta: TransmitterMetadata,
  token: string | undefined,
  streamId: string,
): Promise<string> {
  if (!meta.status_endpoint) throw new SsfError('ERR_SSF_TRANSMITTER', `${meta.issuer} publishes no status_endpoint`);
  const url = `${meta.status_endpoint}?stream_id=${encodeURIComponent(streamId)}`;
  const r = await call('GET', url, token);
  if (r.status !== 200) throw new SsfError('ERR_SSF_TRANSMITTER', `GET ${url} answered ${r.status}`);
  return expectAnswer(z.looseObject({ status: z.string() }), 'stream status', url, r.json).status;
}

/** An RFC 8936 poll answer. */
const pollAnswerSchema = z.looseObject({
  sets: z.record(z.string(), z.string()),
  moreAvailable: z.boolean().optional(),
});

export interface PollSetsOptions {
  url: string;
  token: string | undefined;
  receiver: SetReceiver;
  /** Pause after a poll that returned nothing, and after a failure. */
  intervalMs: number;
  maxEvents?: number;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
  };
}

/**
 * One RFC 8936 poll: sends the acks and `setErrs` of the previous one, receives each SET. A SET that
 * is accepted is acknowledged; one refused for its content gets a `setErrs` entry (RFC 8935 `err`);
 * one that could not be handled on our side (keys unavailable, store down: status ≥ 500) gets
 * neither, so the transmitter sends it again.
 */
export async function pollOnce(
  opts: Omit<PollSetsOptions, 'intervalMs'>,
  pending: { ack: string[]; setErrs: Record<string, { err: string; description: string }> },
): Promise<{ received: number; moreAvailable: boolean }> {
  const body = {
    maxEvents: opts.maxEvents ?? 100,
    returnImmediately: true,
    ack: pending.ack,
    ...(Object.keys(pending.setErrs).length > 0 ? { setErrs: pending.setErrs } : {}),
  };
  const r = await call('POST', opts.url, opts.token, body);
  if (r.status !== 200) throw new SsfError('ERR_SSF_TRANSMITTER', `POST ${opts.url} answered ${r.status}`);
  // The acks went through: they are not sent again.
  pending.ack = [];
  pending.setErrs = {};
  const answer = expectAnswer(pollAnswerSchema, 'poll answer', opts.url, r.json);
  for (const [jti, jwt] of Object.entries(answer.sets)) {
    try {
      const got = await opts.receiver.receive(jwt);
      pending.ack.push(jti);
      opts.log.info({ jti, seqs: got.seqs, ignored: got.ignored }, 'SSF SET received (poll)');
    } catch (e) {
      if (e instanceof SsfError && e.status < 500) {
        pending.setErrs[jti] = e.toPushError();
        opts.log.warn({ jti, err: e.code, reason: e.message }, 'SSF SET refused (poll)');
      } else {
        opts.log.warn({ jti, err: (e as Error).message }, 'SSF SET not handled now; the transmitter sends it again');
      }
    }
  }
  return { received: Object.keys(answer.sets).length, moreAvailable: answer.moreAvailable === true };
}

/** Polls until stopped; returns the stop function (which sends the last acks). */
export function pollSets(opts: PollSetsOptions): () => Promise<void> {
  const pending = { ack: [] as string[], setErrs: {} as Record<string, { err: string; description: string }> };
  let stopped = false;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      wake = () => {
        clearTimeout(t);
        r();
      };
    });
  const loop = (async () => {
    while (!stopped) {
      try {
        const { received, moreAvailable } = await pollOnce(opts, pending);
        if (received === 0 && !moreAvailable) await sleep(opts.intervalMs);
      } catch (e) {
        opts.log.warn({ url: opts.url, err: (e as Error).message }, 'SSF poll failed; trying again');
        await sleep(opts.intervalMs);
      }
    }
  })();
  return async () => {
    stopped = true;
    wake?.();
    await loop;
    if (pending.ack.length > 0 || Object.keys(pending.setErrs).length > 0) {
      await call('POST', opts.url, opts.token, {
        maxEvents: 0,
        returnImmediately: true,
        ack: pending.ack,
        ...(Object.keys(pending.setErrs).length > 0 ? { setErrs: pending.setErrs } : {}),
      }).catch(() => {});
    }
  };
}
