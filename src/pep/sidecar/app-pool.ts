/**
 * The sidecar's keep-alive connections to an HTTP/1.1 app, shared by every exchange of a listener,
 * whether the client spoke HTTP/1.1 (./http1.ts) or HTTP/2 (./h2-forward.ts): one connection per
 * exchange at a time, its response parsed by llhttp and handed, piece by piece, to the exchange
 * that holds it.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { createParser, type NativeParser } from './llhttp.js';

/** An upstream connection idle longer than this is not reused (the app may be closing it). */
const UPSTREAM_IDLE_MS = 2000;
/** Idle keep-alive connections to the app kept at most. */
const MAX_IDLE_UPSTREAM = 256;

/** What an exchange holding an app connection is told of the response. */
export interface AppExchange {
  /** The response head; returns llhttp's answer: 0 a body follows, 1 no body, 2 an upgrade. */
  onResponseHead(up: AppConnection, raw: string[], status: number, message: string, appKeepAlive: boolean): number;
  onResponseBody(up: AppConnection, b: Buffer): void;
  onResponseEnd(up: AppConnection): void;
  /** The connection failed or closed while the exchange held it. */
  onUpstreamFailed(up: AppConnection, e: Error): void;
  /** Bytes the app sent after its 101 in the same read. */
  onTunnelBytes(b: Buffer): void;
}

export const LAST_CHUNK = '0\r\n\r\n';

/** One chunk of a chunked body in one write. */
export function writeChunk(s: Socket, b: Buffer): boolean {
  s.cork();
  s.write(`${b.length.toString(16)}\r\n`);
  s.write(b);
  const ok = s.write('\r\n');
  s.uncork();
  return ok;
}

/**
 * Keep-alive connections to the app shared by all client connections, as nginx's upstream
 * `keepalive`: one is taken for an exchange and given back once its response is complete; the
 * most recently used is taken first, and one idle longer than {@link UPSTREAM_IDLE_MS} is closed
 * rather than reused (the app may be closing it at that very moment).
 */
export class AppPool {
  readonly #idle: AppConnection[] = [];

  constructor(readonly app: { host: string; port: number }) {}

  acquire(owner: AppExchange): AppConnection {
    const now = Date.now();
    for (let c = this.#idle.pop(); c; c = this.#idle.pop()) {
      if (now - c.idleSince <= UPSTREAM_IDLE_MS && !c.socket.destroyed) {
        c.owner = owner;
        return c;
      }
      c.destroy();
    }
    return new AppConnection(this, owner);
  }

  release(c: AppConnection): void {
    c.owner = undefined;
    c.idleSince = Date.now();
    if (this.#idle.length >= MAX_IDLE_UPSTREAM) c.destroy();
    else this.#idle.push(c);
  }

  /** An idle connection closed by the app leaves the pool. */
  forget(c: AppConnection): void {
    const i = this.#idle.indexOf(c);
    if (i >= 0) this.#idle.splice(i, 1);
  }

  close(): void {
    for (const c of this.#idle.splice(0)) c.destroy();
  }
}

/** One connection to the app with its response parser; events go to the exchange that holds it. */
export class AppConnection {
  readonly socket: Socket;
  owner: AppExchange | undefined;
  idleSince = 0;
  readonly #parser: NativeParser;

  constructor(
    readonly pool: AppPool,
    owner: AppExchange,
  ) {
    this.owner = owner;
    const up = netConnect(pool.app.port, pool.app.host);
    up.setNoDelay(true);
    this.socket = up;
    const p = createParser('response', {
      onHead: (head) =>
        this.owner ? this.owner.onResponseHead(this, head.raw, head.status, head.message, head.keepAlive) : 1,
      onBody: (b) => this.owner?.onResponseBody(this, b),
      onEnd: () => this.owner?.onResponseEnd(this),
    });
    this.#parser = p;
    up.on('data', (d: Buffer) => {
      // Bytes from an idle connection answer nothing: the connection is not to be trusted again.
      if (!this.owner) return this.destroy();
      const owner = this.owner;
      const r = p.execute(d);
      if (r instanceof Error) return this.#failed(r);
      if (r < d.length && this.detached) owner.onTunnelBytes(d.subarray(r));
    });
    up.on('end', () => {
      // A response framed by the end of the connection ends here.
      if (this.owner) {
        const r = p.finish();
        if (r instanceof Error) this.#failed(r);
      }
      up.destroy();
    });
    up.on('error', (e) => this.#failed(e));
    up.on('close', () => {
      this.#failed(new Error('the app closed the connection'));
      this.pool.forget(this);
      p.close(); // never inside p.execute(): 'close' is emitted on a later tick
    });
  }

  detached = false;

  /** Hands the socket over to a tunnel: no more parsing, no pool. */
  detach(): Socket {
    this.detached = true;
    const up = this.socket;
    const p = this.#parser;
    setImmediate(() => p.close()); // called from inside p.execute()
    up.removeAllListeners('data');
    up.removeAllListeners('end');
    up.removeAllListeners('close');
    up.removeAllListeners('error');
    return up;
  }

  #failed(e: Error): void {
    const owner = this.owner;
    this.owner = undefined;
    this.socket.destroy();
    owner?.onUpstreamFailed(this, e);
  }

  destroy(): void {
    this.owner = undefined;
    this.socket.destroy();
  }
}
