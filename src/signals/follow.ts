/**
 * Follows the server's signal stream (`GET /v1/signals/stream?after=<seq>`, NDJSON of
 * `signalStreamMessageSchema`) for an enforcement point: over HTTPS with mTLS (the caller supplies
 * its SVID and bundle, read again on every connect so rotation needs nothing), resuming after the last
 * seq it handed to `onSignal` on every reconnect (backoff 100 ms doubling to 5 s), so a reconnect
 * loses nothing still kept. Every line is parsed; a line that does not parse ends the connection
 * (never skipped: skipping could lose a revocation) and the follower reconnects from its last seq.
 *
 * The caller decides what silence means: `lastContactAt()` is the time of the last hello, signal or
 * ping, so a proxy can fail closed for people when it is older than its bound.
 *
 * @example
 * ```ts
 * const state = new RevocationState();
 * const follower = followSignals({
 *   url: 'https://127.0.0.1:8081', serverId: 'spiffe://example.org/nevertrust/server',
 *   tls: () => ({ cert: svid.certChainPem, key: svid.privateKeyPem, ca: bundlePem }),
 *   after: state.lastSeq,
 *   onSignal: (m) => { state.apply(m.seq, m.signal, m.received_at); },
 *   onGap: (g) => log.warn(g, 'signals lost: re-reading state'),
 *   log,
 * });
 * // … Date.now() - follower.lastContactAt() > 30_000 → fail closed
 * await follower.stop();
 * ```
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { serverIdentityCheck } from '../api/server-client.js';
import { type SequencedSignal, signalStreamMessageSchema } from '../api/signals.js';

/** The stream's path on the agent port (mTLS) and on the API port (admin token). */
export const SIGNAL_STREAM_PATH = '/v1/signals/stream';

/** Longest line accepted from the stream; a signal is a few hundred bytes. */
const MAX_LINE_BYTES = 1 << 20;

/** What `onGap` is told: the server no longer keeps signals this follower has not seen. */
export interface SignalGap {
  /** The follower's last seq. */
  after: number;
  /** The oldest seq the server still keeps (signals `after+1 … oldest-1` are gone). */
  oldest: number;
  head: number;
  /** `pruned`: older than retention; `reset`: the server's numbers are behind ours (another store). */
  why: 'pruned' | 'reset';
}

/** The little a follower logs through (pino's shape). */
export interface FollowLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface FollowSignalsOptions {
  /** The server's base URL: `https://host:agentPort` (mTLS), or `http(s)://host:port` with `headers` (admin token). */
  url: string;
  /** Client certificate chain, key and the CA bundle to verify the server, PEM; read on every connect. */
  tls?: () => { cert?: string; key?: string; ca: string };
  /** The SPIFFE ID the server must present (its URI SAN) instead of a host name check. */
  serverId?: string;
  /** Extra request headers, e.g. `{authorization: 'Bearer <admin token>'}` on the API port. */
  headers?: () => Record<string, string>;
  /** Resume after this seq (0: everything still kept). */
  after: number;
  /**
   * Called once per signal, in seq order; awaited before the next. If it throws, the connection is
   * dropped and the follower resumes from the last seq it handled, so the signal comes again.
   */
  onSignal: (m: SequencedSignal) => void | Promise<void>;
  /** Signals this follower had not seen are gone (pruned, or another store): re-read the state. */
  onGap?: (gap: SignalGap) => void | Promise<void>;
  /** Each hello/ping/signal: the connection is alive (e.g. to clear a "signals lost" state). */
  onContact?: (at: number) => void;
  log?: FollowLogger;
  /** A connection silent this long is dropped and reconnected (default 20 s; the server pings every 5 s). */
  idleTimeoutMs?: number;
  /** Backoff bounds between attempts (default 100 ms → 5 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface SignalFollower {
  /** The newest seq handed to `onSignal` (or the starting `after`). */
  lastSeq(): number;
  /** When the server was last heard from (hello, signal or ping), ms since the epoch; 0: never. */
  lastContactAt(): number;
  /** Whether a stream is open now. */
  connected(): boolean;
  /** Resolves when the first hello was received (for tests and start-up ordering). */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts following; it keeps reconnecting until `stop()`. */
export function followSignals(opts: FollowSignalsOptions): SignalFollower {
  const minBackoff = opts.minBackoffMs ?? 100;
  const maxBackoff = opts.maxBackoffMs ?? 5_000;
  const idleMs = opts.idleTimeoutMs ?? 20_000;
  let lastSeq = opts.after;
  let lastContact = 0;
  let stopped = false;
  let open = false;
  let backoff = minBackoff;
  let current: { destroy(): void } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let wake: () => void = () => {};
  let readyResolve: () => void = () => {};
  const readyPromise = new Promise<void>((r) => {
    readyResolve = r;
  });
  let loopDone: Promise<void> = Promise.resolve();

  const contact = () => {
    lastContact = Date.now();
    opts.onContact?.(lastContact);
  };

  /** One connection: resolves when it ends for any reason; `true` if it got at least a hello. */
  const connectOnce = (): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      let helloSeen = false;
      let settled = false;
      const finish = (why: string, err?: unknown) => {
        if (settled) return;
        settled = true;
        open = false;
        if (idle) clearTimeout(idle);
        current = undefined;
        if (!stopped) opts.log?.warn({ err, after: lastSeq }, `signal stream ended: ${why}`);
        resolve(helloSeen);
      };
      let idle: NodeJS.Timeout | undefined;
      const armIdle = () => {
        if (idle) clearTimeout(idle);
        idle = setTimeout(() => {
          finish(`silent for ${idleMs} ms`);
          req.destroy();
        }, idleMs);
        idle.unref();
      };
      const target = new URL(`${SIGNAL_STREAM_PATH}?after=${lastSeq}`, opts.url);
      const headers = { accept: 'application/x-ndjson', ...(opts.headers?.() ?? {}) };
      let req: ReturnType<typeof httpsRequest>;
      try {
        if (target.protocol === 'https:') {
          const material = opts.tls?.();
          const serverId = opts.serverId;
          req = httpsRequest(target, {
            method: 'GET',
            headers,
            cert: material?.cert,
            key: material?.key,
            ca: material?.ca,
            agent: false,
            ...(serverId !== undefined && { checkServerIdentity: serverIdentityCheck(serverId) }),
          });
        } else {
          req = httpRequest(target, { method: 'GET', headers, agent: false });
        }
      } catch (e) {
        finish('cannot connect', e);
        return;
      }
      current = req;
      armIdle();
      req.on('error', (e) => finish(e.message, e));
      req.on('response', (res: IncomingMessage) => {
        if (res.statusCode !== 200) {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            if (body.length < 2048) body += c;
          });
          res.on('end', () => finish(`HTTP ${res.statusCode} ${body.slice(0, 300)}`));
          res.on('error', (e) => finish(e.message, e));
          return;
        }
        open = true;
        let buf = '';
        // Lines are handled one at a time, in order, even when onSignal is async.
        let chain = Promise.resolve();
        const fail = (why: string, err?: unknown) => {
          finish(why, err);
          req.destroy();
        };
        const handleLine = async (line: string) => {
          if (settled) return;
          let raw: unknown;
          try {
            raw = JSON.parse(line);
          } catch {
            return fail('a line that is not JSON');
          }
          const parsed = signalStreamMessageSchema.safeParse(raw);
          if (!parsed.success)
            return fail(`a message that does not fit the contract: ${parsed.error.issues[0]?.message}`);
          const m = parsed.data;
          contact();
          armIdle();
          if (m.type === 'hello') {
            helloSeen = true;
            backoff = minBackoff;
            if (m.head < lastSeq) {
              const gap: SignalGap = { after: lastSeq, oldest: m.oldest, head: m.head, why: 'reset' };
              opts.log?.warn({ ...gap }, 'the server numbers signals below ours: resuming from its head');
              await opts.onGap?.(gap);
              lastSeq = m.head;
              return fail('resuming from the server head');
            }
            if (m.oldest > 0 && lastSeq < m.oldest - 1) {
              const gap: SignalGap = { after: lastSeq, oldest: m.oldest, head: m.head, why: 'pruned' };
              opts.log?.warn({ ...gap }, 'signals were pruned before this follower saw them');
              await opts.onGap?.(gap);
            }
            readyResolve();
            return;
          }
          if (m.type === 'ping') return;
          if (!helloSeen) return fail('a signal before hello');
          if (m.seq <= lastSeq) return; // overlap: handled already
          try {
            await opts.onSignal({ seq: m.seq, signal: m.signal, received_at: m.received_at });
          } catch (e) {
            return fail(`onSignal failed at seq ${m.seq}`, e);
          }
          lastSeq = m.seq;
        };
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl = buf.indexOf('\n');
          while (nl >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            // A callback that throws (onGap) ends the connection like a bad line: never a rejected
            // chain, which would leave the lines after it unread and the rejection unhandled.
            if (line) chain = chain.then(() => handleLine(line)).catch((e: unknown) => fail('a handler failed', e));
            nl = buf.indexOf('\n');
          }
          if (buf.length > MAX_LINE_BYTES) fail(`a line over ${MAX_LINE_BYTES} bytes`);
        });
        res.on('end', () => void chain.then(() => finish('closed by the server')));
        res.on('error', (e) => void chain.then(() => finish(e.message, e)));
        res.on('close', () => void chain.then(() => finish('connection closed')));
      });
      req.end();
    });

  const loop = async () => {
    while (!stopped) {
      const gotHello = await connectOnce();
      if (stopped) break;
      if (gotHello) backoff = minBackoff;
      await new Promise<void>((r) => {
        wake = r;
        timer = setTimeout(r, backoff);
      });
      backoff = Math.min(backoff * 2, maxBackoff);
    }
  };
  loopDone = loop();

  return {
    lastSeq: () => lastSeq,
    lastContactAt: () => lastContact,
    connected: () => open,
    ready: () => readyPromise,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      wake();
      current?.destroy();
      await loopDone;
    },
  };
}
