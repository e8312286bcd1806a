/**
 * One live session in the local mesh (`nevertrust up`): a person's client that signed in and holds
 * one HTTP/1.1 keep-alive connection through the access proxy to the back-office, with a request
 * every couple of seconds (the back-office serves no WebSocket). It is there to be revoked: when the
 * session is (`nevertrust revoke session ID`), the proxy closes the connection, and this notes when
 * it saw the close, beside when the server kept the signal, so the summary shows how long it took.
 */
import { Agent, request } from 'node:https';
import type { Socket } from 'node:net';
import type { SequencedSignal } from '../api/signals.js';
import type { Store } from '../store/index.js';
import { localhostLookup } from '../util/localhost-lookup.js';

/** The access proxy's default session cookie (auth `session.cookie`, which the mesh leaves as is). */
const SESSION_COOKIE = '__Host-nevertrust_session';
/** Between two requests on the live connection: under Node's 5 s keep-alive timeout at the proxy. */
const EVERY_MS = 2000;

/** How the live session ended: the revocation the server kept, and when the client saw its connection close. */
export interface LiveEnd {
  seq: number;
  reason: string | undefined;
  /** When the server kept the `session.revoked` signal (ms). */
  revokedAt: number;
  /** When the client saw its connection close (ms). */
  closedAt: number;
}

export interface LiveSessionOptions {
  /** `https://backoffice.localhost:<port>` */
  origin: string;
  /** The session cookie's value, from a client that signed in. */
  cookie: string;
  /** The trust domain's bundle (the proxy's serving certificate). */
  ca: string;
  store: Store;
}

export class LiveSession {
  /** Requests answered on the live connection(s). */
  requests = 0;
  /** Connections opened (a new one only when the proxy closed one without a revocation, e.g. on restart). */
  connections = 0;
  lastStatus: number | undefined;
  /** Once ended: the status of one more request with the revoked session's cookie (the proxy refuses it). */
  afterStatus: number | undefined;
  ended: LiveEnd | undefined;
  /** The client's own observations: the latest close of its connection (ms). */
  private lastClose: number | undefined;
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | undefined;
  private readonly sockets = new WeakSet<Socket>();

  private constructor(
    private readonly o: LiveSessionOptions,
    readonly id: string,
    readonly user: string,
    readonly deviceId: string | null,
    readonly since: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 1, ca: o.ca, lookup: localhostLookup as never });
  }

  /** Finds the session of `cookie` in the store and starts its connection. */
  static async open(o: LiveSessionOptions): Promise<LiveSession> {
    const s = await o.store.accessSessions.findByToken(o.cookie);
    if (!s || s.endedAt !== null) throw new Error('the live session is not in the store');
    const live = new LiveSession(o, s.id, s.userName ?? s.sub, s.deviceId, s.createdAt);
    await live.ping();
    live.timer = setInterval(() => void live.ping(), EVERY_MS);
    live.timer.unref();
    return live;
  }

  /** The session cookie a signed-in client holds for `host`. */
  static cookieOf(cookies: ReadonlyMap<string, string>): string | undefined {
    return cookies.get(SESSION_COOKIE);
  }

  private ping(after = false): Promise<void> {
    if (this.ended && !after) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const req = request(`${this.o.origin}/`, {
        agent: this.agent,
        headers: { cookie: `${SESSION_COOKIE}=${this.o.cookie}`, accept: 'application/json' },
        timeout: 10_000,
      });
      req.on('socket', (socket: Socket) => {
        if (this.sockets.has(socket)) return;
        this.sockets.add(socket);
        this.connections++;
        socket.once('close', () => {
          this.lastClose = Date.now();
          void this.checkEnded();
        });
      });
      req.on('response', (res) => {
        if (after) this.afterStatus = res.statusCode;
        else this.lastStatus = res.statusCode;
        if (res.statusCode === 200 && !after) this.requests++;
        res.resume();
        res.on('end', resolve);
        res.on('error', () => resolve());
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve());
      req.end();
    });
  }

  /** After a close: was the session revoked? (the server keeps the signal before any proxy hears it) */
  private async checkEnded(): Promise<void> {
    if (this.ended || this.lastClose === undefined) return;
    const found = await this.revocation().catch(() => undefined);
    if (!found || this.ended) return;
    const s = found.signal;
    this.ended = {
      seq: found.seq,
      reason: s.reason,
      revokedAt: Date.parse(found.received_at),
      closedAt: this.lastClose,
    };
    this.stopTimer();
    await this.ping(true);
  }

  /** The `session.revoked` signal naming this session, if the server kept one. */
  private async revocation(): Promise<SequencedSignal | undefined> {
    for (let after = 0; ; ) {
      const page = await this.o.store.signals.after(after, 1000);
      const hit = page.find((x) => x.signal.kind === 'session.revoked' && x.signal.sessionId === this.id);
      if (hit) return hit;
      const last = page.at(-1);
      if (!last) return undefined;
      after = last.seq;
    }
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  stop(): void {
    this.stopTimer();
    this.agent.destroy();
  }
}
