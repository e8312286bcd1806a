/**
 * The proxy's live connections (issue #23): which keep-alive sockets and tunnelled WebSockets belong
 * to which session, person, device, route, method and path, so that on a policy change or a signal
 * each can be decided again and what is no longer allowed ends: a WebSocket gets a close frame 1008
 * with the reason toward the browser and its app socket is closed; an idle keep-alive connection is
 * closed; a busy one finishes its answer with `Connection: close`. Each cut is an `access.cut` audit
 * event naming its cause (the signal, or the policy version).
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuditEventInput } from '../../audit/event.js';
import type { AccessRequest } from '../../policy/request.js';
import type { PersonIdentity } from '../identity.js';
import { sourceUser } from './access-request.js';
import type { RouteConfig } from './config.js';
import { closeFrame, FrameBoundary, WS_POLICY_VIOLATION } from './ws-frames.js';

/** What a live connection was allowed as: its last forwarded request. */
export interface LiveSubject {
  route: RouteConfig;
  host: string;
  method: string;
  /** The normalized path that was decided. */
  path: string;
  ip: string;
  /** The access request as decided (re-decided as is against a new snapshot). */
  request: AccessRequest;
  person: PersonIdentity;
  /** Present for a session (not a bearer caller). */
  session?: { id: string; startedAt?: number };
  deviceId?: string;
}

/** Why connections are decided again: a signal (kind, subject, seq) or a new policy version. */
export type RecheckCause =
  | { signal: { seq: number; kind: string; subject: string } }
  | { policyVersion: string }
  | { signalsLost: true };

/** The verdict on one connection: undefined keeps it, a reason ends it. */
export type Verdict = (s: LiveSubject) => string | undefined | Promise<string | undefined>;

/** How long a cut WebSocket waits for the app's frame in flight to end, and for the browser's close. */
const CUT_GRACE_MS = 1000;

/** A tunnelled WebSocket whose app→browser direction is followed frame by frame. */
export interface WebSocketJoin {
  /** Ends it: the app socket closed, a close frame 1008 with `reason` to the browser, then the socket closed. */
  cut(reason: string): void;
  readonly closed: boolean;
}

/**
 * Joins a browser's upgraded socket and the app's, as `splice` does, but relaying app→browser bytes
 * itself so it knows where the app's frames end (the proxy's close frame goes between frames, as
 * RFC 6455 §5.4 allows control frames amid a fragmented message). `upHead`: bytes the app sent
 * with its 101, already written to the browser.
 */
export function joinWebSocket(client: Duplex, up: Duplex, upHead: Uint8Array = new Uint8Array()): WebSocketJoin {
  const toClient = new FrameBoundary();
  toClient.push(upHead);
  let closed = false;
  let cutReason: string | undefined;
  const closeBoth = () => {
    closed = true;
    client.destroy();
    up.destroy();
  };
  const finishCut = () => {
    if (closed) return;
    closed = true;
    up.removeListener('data', onUpData);
    up.destroy();
    client.unpipe(up);
    // The browser answers with its own close frame; read and drop it, then the socket closes.
    client.on('data', () => {});
    client.resume();
    client.end(closeFrame(WS_POLICY_VIOLATION, cutReason ?? 'access revoked'));
    setTimeout(() => client.destroy(), CUT_GRACE_MS).unref();
  };
  const onUpData = (chunk: Buffer) => {
    toClient.push(chunk);
    if (!client.write(chunk)) up.pause();
    if (cutReason !== undefined && toClient.atBoundary) finishCut();
  };
  client.on('drain', () => up.resume());
  up.on('data', onUpData);
  up.on('end', () => client.end());
  client.on('error', closeBoth);
  up.on('error', () => (cutReason === undefined ? closeBoth() : undefined));
  client.on('close', closeBoth);
  up.on('close', () => (cutReason === undefined ? closeBoth() : undefined));
  client.pipe(up);
  return {
    get closed() {
      return closed;
    },
    cut(reason) {
      if (closed || cutReason !== undefined) return;
      cutReason = reason;
      // No more from the browser reaches the app.
      client.unpipe(up);
      if (toClient.atBoundary) finishCut();
      else
        setTimeout(() => {
          // The app's frame did not end in time: close without a close frame rather than corrupt it.
          if (!closed) closeBoth();
        }, CUT_GRACE_MS).unref();
    },
  };
}

interface HttpConn {
  kind: 'keep-alive';
  socket: Duplex;
  subject: LiveSubject;
  /** The answer in flight, if any. */
  busy: ServerResponse | undefined;
}

interface WsConn {
  kind: 'websocket';
  socket: Duplex;
  subject: LiveSubject;
  join: WebSocketJoin;
}

type Conn = HttpConn | WsConn;

export interface LiveConnectionsOptions {
  /** Where `access.cut` events go. */
  record?: (e: AuditEventInput) => void;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** The enforcer's name in the events. */
  enforcer: string;
}

/**
 * The registry. The proxy tells it of every forwarded request ({@link request}) and every tunnelled
 * WebSocket ({@link websocket}); {@link recheck} decides each again.
 *
 * @example
 * ```ts
 * const live = new LiveConnections({ enforcer: 'access-proxy', record, log });
 * watcher.on('reload', (s) => live.recheck({ policyVersion: s.version }, (c) => deniedReason(s, c.request)));
 * ```
 */
export class LiveConnections {
  readonly #byHttpSocket = new Map<Duplex, HttpConn>();
  readonly #ws = new Set<WsConn>();

  constructor(private readonly opts: LiveConnectionsOptions) {}

  /** Live connections now (keep-alive sockets that carried an allowed request, and WebSockets). */
  get size(): number {
    return this.#byHttpSocket.size + this.#ws.size;
  }

  /** A request on `socket` was allowed and is being forwarded; `res` is its answer. */
  request(socket: Duplex, res: ServerResponse, subject: LiveSubject): void {
    let c = this.#byHttpSocket.get(socket);
    if (!c) {
      const conn: HttpConn = { kind: 'keep-alive', socket, subject, busy: res };
      this.#byHttpSocket.set(socket, conn);
      socket.once('close', () => this.#byHttpSocket.delete(socket));
      c = conn;
    }
    c.subject = subject;
    c.busy = res;
    const conn = c;
    const done = () => {
      if (conn.busy === res) conn.busy = undefined;
    };
    res.once('finish', done);
    res.once('close', done);
  }

  /** A WebSocket was tunnelled for `subject`. */
  websocket(socket: Duplex, join: WebSocketJoin, subject: LiveSubject): void {
    const c: WsConn = { kind: 'websocket', socket, subject, join };
    this.#ws.add(c);
    socket.once('close', () => this.#ws.delete(c));
  }

  /**
   * Decides every live connection again with `verdict` and ends those it refuses; resolves to how
   * many were cut. A verdict that throws ends its connection (fail closed).
   */
  async recheck(cause: RecheckCause, verdict: Verdict): Promise<number> {
    const all: Conn[] = [...this.#byHttpSocket.values(), ...this.#ws];
    let cut = 0;
    await Promise.all(
      all.map(async (c) => {
        let reason: string | undefined;
        try {
          reason = await verdict(c.subject);
        } catch (e) {
          reason = `the connection could not be decided again: ${(e as Error).message}`;
        }
        if (reason === undefined) return;
        this.#cut(c, reason, cause);
        cut++;
      }),
    );
    return cut;
  }

  #cut(c: Conn, reason: string, cause: RecheckCause): void {
    if (c.kind === 'websocket') {
      this.#ws.delete(c);
      c.join.cut(wsReason(reason, cause));
    } else {
      this.#byHttpSocket.delete(c.socket);
      const res = c.busy;
      if (res && !res.writableFinished) {
        // Busy: the answer finishes, then the connection closes (Connection: close when not yet sent).
        if (!res.headersSent) res.setHeader('connection', 'close');
        res.once('finish', () => endSocket(c.socket));
      } else endSocket(c.socket);
    }
    this.#audit(c, reason, cause);
  }

  #audit(c: Conn, reason: string, cause: RecheckCause): void {
    const s = c.subject;
    const user = sourceUser(s.person);
    try {
      this.opts.record?.({
        kind: 'access.cut',
        enforcer: this.opts.enforcer,
        outcome: 'deny',
        reason,
        source: { user, ip: s.ip, ...(s.deviceId ? { device_id: s.deviceId } : {}) },
        target: {
          host: s.host,
          method: s.method,
          path: s.path,
          ...('service' in (s.request.target ?? {}) ? { service: String(s.request.target?.service) } : {}),
        },
        details: {
          connection: c.kind,
          route: s.route.name,
          ...(s.session ? { session: s.session.id } : {}),
          ...('signal' in cause ? { signal: cause.signal } : {}),
          ...('policyVersion' in cause ? { policy_version: cause.policyVersion } : {}),
          ...('signalsLost' in cause ? { signals_unavailable: true } : {}),
        },
      });
    } catch (e) {
      this.opts.log('access.cut audit record failed', { error: (e as Error).message });
    }
    this.opts.log('connection cut', { connection: c.kind, route: s.route.name, reason });
  }
}

/** The close frame's reason: what ended it, short (a close reason is at most 123 bytes). */
function wsReason(reason: string, cause: RecheckCause): string {
  const head =
    'signal' in cause
      ? `access revoked (${cause.signal.kind})`
      : 'policyVersion' in cause
        ? 'access revoked (policy changed)'
        : 'access revoked (signals_unavailable)';
  return `${head}: ${reason}`;
}

function endSocket(socket: Duplex): void {
  socket.end();
  setTimeout(() => socket.destroy(), CUT_GRACE_MS).unref();
}
