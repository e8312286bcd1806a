/**
 * The client side of mTLS: a TLS connection, an undici agent and a `fetch` that present the source's
 * newest SVID and verify and authorize the server's SPIFFE ID before any byte is written.
 */
import { type ConnectionOptions, type SecureContextOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { Agent, type Dispatcher, fetch as undiciFetch } from 'undici';
import type { Authorizer } from './authorizer.js';
import { verifyPeer } from './peer.js';
import { tlsOptionsFrom, type X509SvidSource } from './source.js';

/** Options of {@link createMtlsAgent} and {@link createMtlsFetch}. */
export interface MtlsClientOptions {
  /** Which servers we accept (checked on every new connection). */
  authorize: Authorizer;
  /** Extra undici Agent options (pool sizes, timeouts). */
  agent?: Omit<Agent.Options, 'connect'>;
}

/**
 * An undici dispatcher that presents the source's SVID, verifies the server as an X.509-SVID and
 * authorizes its SPIFFE ID before any request is written. New connections use the newest SVID.
 *
 * @example
 * ```ts
 * const agent = createMtlsAgent(source, { authorize: authorizeId(paymentService) });
 * const res = await request('https://127.0.0.1:8443/v1/charges', { method: 'POST', dispatcher: agent });
 * ```
 */
export function createMtlsAgent(source: X509SvidSource, opts: MtlsClientOptions): Agent {
  return new Agent({
    ...opts.agent,
    connect: (options, callback) => {
      connectMtls(source, {
        host: options.hostname,
        port: Number(options.port) || 443,
        servername: options.servername ?? undefined,
        authorize: opts.authorize,
      }).then(
        (socket) => callback(null, socket),
        (e: Error) => callback(e, null),
      );
    },
  });
}

/** Where {@link connectMtls} connects, and whom it accepts. */
export interface MtlsConnectOptions {
  host: string;
  port: number;
  /** SNI; servers are named by SPIFFE ID, so this only matters to servers that route on it. */
  servername?: string;
  authorize: Authorizer;
  /** ALPN offer (default HTTP/1.1 only). */
  alpn?: string[];
  /** Give up on a handshake that takes longer (default: no limit beyond the OS's). */
  timeoutMs?: number;
}

/**
 * Opens a TLS connection presenting the source's SVID, verifies the server as an X.509-SVID and
 * authorizes its SPIFFE ID before resolving: no byte is written to an unverified server.
 *
 * @example
 * ```ts
 * const socket = await connectMtls(source, { host: '127.0.0.1', port: 8443, authorize: authorizeId(paymentService) });
 * ```
 * @throws {PeerAuthorizationError} when the server's SVID is invalid or not the one expected
 */
export function connectMtls(source: X509SvidSource, opts: MtlsConnectOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    let material: SecureContextOptions;
    try {
      material = tlsOptionsFrom(source);
    } catch (e) {
      reject(e as Error);
      return;
    }
    const conn: ConnectionOptions = {
      host: opts.host,
      port: opts.port,
      servername: opts.servername,
      ...material,
      // The server is named by its SPIFFE ID, not by a DNS name: checked below instead.
      checkServerIdentity: () => undefined,
      rejectUnauthorized: true,
      ALPNProtocols: opts.alpn ?? ['http/1.1'],
    };
    const socket = tlsConnect(conn);
    socket.setNoDelay(true);
    let done = false;
    const timer = opts.timeoutMs
      ? setTimeout(() => fail(new Error(`TLS handshake with ${opts.host}:${opts.port} timed out`)), opts.timeoutMs)
      : undefined;
    const fail = (e: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    socket.once('secureConnect', () => {
      try {
        verifyPeer(socket, source, opts.authorize);
      } catch (e) {
        return fail(e as Error);
      }
      done = true;
      clearTimeout(timer);
      socket.off('error', fail);
      resolve(socket);
    });
    socket.once('error', fail);
  });
}

/** A `fetch` bound to an mTLS agent; `close()` ends its connections. */
export interface MtlsFetch {
  (input: string | URL, init?: Parameters<typeof undiciFetch>[1]): ReturnType<typeof undiciFetch>;
  readonly dispatcher: Dispatcher;
  close(): Promise<void>;
}

/**
 * A `fetch`-like client that presents the SVID and checks the server's SPIFFE ID.
 *
 * @example
 * ```ts
 * const fetch = createMtlsFetch(source, { authorize: authorizeId('spiffe://example.org/ns/payments/sa/payment-service') });
 * const res = await fetch('https://127.0.0.1:8443/v1/charges', { method: 'POST', body: '{}' });
 * await fetch.close();
 * ```
 */
export function createMtlsFetch(source: X509SvidSource, opts: MtlsClientOptions): MtlsFetch {
  const agent = createMtlsAgent(source, opts);
  const f = (input: string | URL, init?: Parameters<typeof undiciFetch>[1]) =>
    undiciFetch(input, { ...init, dispatcher: agent });
  return Object.assign(f, { dispatcher: agent, close: () => agent.close() });
}
