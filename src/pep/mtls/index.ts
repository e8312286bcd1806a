/**
 * `nevertrust/mtls`: mutual TLS with SPIFFE identities, in the spirit of go-spiffe's `spiffetls`.
 * Servers and clients take an X.509 source (the Workload API `X509Source`, or anything shaped like
 * it), rotate their certificate on every update without a restart (a new secure context for new
 * handshakes; established connections finish on the old one), and authorize the peer's SPIFFE ID
 * after verifying its chain with `verifyX509Svid` against the source's bundles. A peer without a
 * valid SPIFFE ID never passes: OpenSSL refuses unknown authorities during the handshake, and the
 * SPIFFE rules and the authorizer run on the verified connection before any byte is read.
 */
import { EventEmitter } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { type ConnectionOptions, type SecureContextOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import {
  type BundleSource,
  parseSpiffeId,
  parseTrustDomain,
  type SpiffeId,
  type TrustBundle,
  type TrustDomain,
  verifyX509Svid,
  X509SvidError,
} from '../../spiffe/index.js';
import { NevertrustError } from '../../errors.js';

/** The SVID material a source serves (the Workload API's `X509Svid` has these fields). */
export interface SvidMaterial {
  spiffeId: SpiffeId | string;
  /** Leaf first. */
  certChainPem: string;
  privateKeyPem: string;
}

/**
 * What the helpers need from an X.509 source. `X509Source` from `nevertrust/workload` satisfies it;
 * {@link MemorySvidSource} is a settable one (files, tests).
 */
export interface X509SvidSource extends BundleSource {
  readonly svid: SvidMaterial;
  readonly bundles: ReadonlyMap<string, TrustBundle>;
  on(event: 'update', listener: () => void): unknown;
  off(event: 'update', listener: () => void): unknown;
}

/**
 * An X.509 source held in memory: `set()` swaps SVID and bundles and emits `update`.
 *
 * @example
 * ```ts
 * const source = new MemorySvidSource({ spiffeId, certChainPem, privateKeyPem }, [bundle]);
 * source.set(renewedSvid); // servers and clients pick it up for new connections
 * ```
 */
export class MemorySvidSource extends EventEmitter<{ update: [] }> implements X509SvidSource {
  #svid: SvidMaterial;
  #bundles: Map<string, TrustBundle>;
  constructor(svid: SvidMaterial, bundles: Iterable<TrustBundle>) {
    super();
    this.#svid = svid;
    this.#bundles = new Map([...bundles].map((b) => [b.trustDomain.name, b]));
  }
  get svid(): SvidMaterial {
    return this.#svid;
  }
  get bundles(): ReadonlyMap<string, TrustBundle> {
    return this.#bundles;
  }
  getBundleForTrustDomain(td: TrustDomain): TrustBundle | undefined {
    return this.#bundles.get(td.name);
  }
  /** Replaces the SVID (and optionally the bundles) and tells every listener. */
  set(svid: SvidMaterial, bundles?: Iterable<TrustBundle>): void {
    this.#svid = svid;
    if (bundles) this.#bundles = new Map([...bundles].map((b) => [b.trustDomain.name, b]));
    this.emit('update');
  }
}

/** Decides whether a verified peer ID may talk to us. */
export interface Authorizer {
  (id: SpiffeId): boolean;
  /** For error messages: what was expected. */
  readonly expected: string;
}

function authorizer(expected: string, fn: (id: SpiffeId) => boolean): Authorizer {
  return Object.assign(fn, { expected });
}

/**
 * Exactly this SPIFFE ID.
 *
 * @example
 * ```ts
 * authorizeId('spiffe://example.org/ns/payments/sa/payment-service')
 * ```
 */
export function authorizeId(id: string | SpiffeId): Authorizer {
  const want = typeof id === 'string' ? parseSpiffeId(id) : id;
  return authorizer(want.toString(), (got) => got.equals(want));
}

/** One of these SPIFFE IDs. @example authorizeOneOf([gateway, auditor]) */
export function authorizeOneOf(ids: readonly (string | SpiffeId)[]): Authorizer {
  const set = new Set(ids.map((i) => (typeof i === 'string' ? parseSpiffeId(i) : i).toString()));
  return authorizer(`one of ${[...set].join(', ')}`, (got) => set.has(got.toString()));
}

/** Any workload of this trust domain. @example authorizeMemberOf('example.org') */
export function authorizeMemberOf(trustDomain: string | TrustDomain): Authorizer {
  const td = typeof trustDomain === 'string' ? parseTrustDomain(trustDomain) : trustDomain;
  return authorizer(`a member of ${td.name}`, (got) => got.memberOf(td));
}

/** Any peer with a valid SVID from a trusted bundle (authorization happens elsewhere, e.g. policy). */
export function authorizeAny(): Authorizer {
  return authorizer('any SPIFFE ID', () => true);
}

/** Why a peer was refused. */
export class PeerAuthorizationError extends NevertrustError<
  'ERR_PEER_NO_CERTIFICATE' | 'ERR_PEER_INVALID_SVID' | 'ERR_PEER_UNAUTHORIZED'
> {
  override readonly name = 'PeerAuthorizationError';
  constructor(
    readonly code: 'ERR_PEER_NO_CERTIFICATE' | 'ERR_PEER_INVALID_SVID' | 'ERR_PEER_UNAUTHORIZED',
    message: string,
    readonly spiffeId?: string,
  ) {
    super(message, { status: code === 'ERR_PEER_UNAUTHORIZED' ? 403 : 401 });
  }
}

/** The peer identity established on a connection. */
export interface VerifiedPeer {
  spiffeId: SpiffeId;
  expiresAt: Date;
}

// Kept on the socket under a private symbol rather than in a WeakMap: HTTP/2 hands handlers a
// proxy of the TLS socket (`req.socket`), and a property read passes through the proxy.
const PEER = Symbol('nevertrust.verifiedPeer');
type WithPeer = { [PEER]?: VerifiedPeer };

/**
 * The verified peer of a connection made or accepted by these helpers (or `undefined`).
 *
 * @example
 * ```ts
 * const peer = peerIdentity(req.socket); // in a request handler of createMtlsServer
 * ```
 */
export function peerIdentity(socket: Socket): VerifiedPeer | undefined {
  return (socket as Socket & WithPeer)[PEER];
}

/** The peer's certificate chain (leaf first, DER) as the TLS stack received it. */
export function peerChain(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c = socket.getPeerCertificate(true) as { raw?: Buffer; issuerCertificate?: unknown; fingerprint256?: string };
  const seen = new Set<string>();
  while (c?.raw && out.length < 16) {
    const fp = c.fingerprint256 ?? String(out.length);
    if (seen.has(fp)) break;
    seen.add(fp);
    out.push(c.raw);
    c = c.issuerCertificate as typeof c;
  }
  return out;
}

/**
 * Verifies a TLS peer as an X.509-SVID against `bundles` and applies `authorize`.
 *
 * @example
 * ```ts
 * const peer = verifyPeer(socket, source, authorizeId(paymentService));
 * ```
 * @throws {PeerAuthorizationError} without a certificate, with an invalid SVID, or an unauthorized ID
 */
export function verifyPeer(socket: TLSSocket, bundles: BundleSource, authorize: Authorizer): VerifiedPeer {
  const known = (socket as TLSSocket & WithPeer)[PEER];
  if (known) {
    if (!authorize(known.spiffeId)) throw unauthorized(known.spiffeId, authorize);
    return known;
  }
  const chain = peerChain(socket);
  if (chain.length === 0) throw new PeerAuthorizationError('ERR_PEER_NO_CERTIFICATE', 'the peer sent no certificate');
  let v: VerifiedPeer;
  try {
    const r = verifyX509Svid(chain, bundles);
    v = { spiffeId: r.spiffeId, expiresAt: r.expiresAt };
  } catch (e) {
    const code = e instanceof X509SvidError ? e.code : 'ERR_X509SVID_MALFORMED';
    throw new PeerAuthorizationError(
      'ERR_PEER_INVALID_SVID',
      `the peer certificate is not a valid X.509-SVID (${code})`,
    );
  }
  if (!authorize(v.spiffeId)) throw unauthorized(v.spiffeId, authorize);
  (socket as TLSSocket & WithPeer)[PEER] = v;
  return v;
}

function unauthorized(id: SpiffeId, a: Authorizer): PeerAuthorizationError {
  return new PeerAuthorizationError(
    'ERR_PEER_UNAUTHORIZED',
    `peer ${id.toString()} is not authorized (expected ${a.expected})`,
    id.toString(),
  );
}

/** All bundle authorities of a source as PEM (own and federated domains), for OpenSSL's trust store. */
function caPem(source: X509SvidSource): string[] {
  const out: string[] = [];
  for (const b of source.bundles.values()) if (b.x509Authorities.length > 0) out.push(b.toPem());
  return out;
}

/** TLS key material from the source's current SVID. */
export function tlsOptionsFrom(source: X509SvidSource): SecureContextOptions {
  const s = source.svid;
  return { cert: s.certChainPem, key: s.privateKeyPem, ca: caPem(source) };
}

/** Options of {@link createMtlsServer}. */
export interface MtlsServerOptions {
  /** Which clients may connect (checked on every connection). */
  authorize: Authorizer;
  /** Extra `https.createServer` options (ALPN, timeouts…); key material comes from the source. */
  server?: Omit<ServerOptions, 'cert' | 'key' | 'ca' | 'requestCert' | 'rejectUnauthorized'>;
  /** Called when a client is refused after the handshake (for recording). */
  onRefused?: (err: PeerAuthorizationError, socket: TLSSocket) => void;
}

/**
 * An HTTPS server that requires a client SVID, authorizes it, and rotates its own SVID on every
 * source update. Handlers read the caller with {@link peerIdentity}.
 *
 * @example
 * ```ts
 * const server = createMtlsServer(source, { authorize: authorizeId(gateway) }, (req, res) => {
 *   res.end(`hello ${peerIdentity(req.socket)?.spiffeId}`);
 * });
 * server.listen(8443);
 * ```
 */
export function createMtlsServer(
  source: X509SvidSource,
  opts: MtlsServerOptions,
  handler?: (req: IncomingMessage, res: ServerResponse) => void,
): HttpsServer {
  const server = createHttpsServer(
    { ...opts.server, ...tlsOptionsFrom(source), requestCert: true, rejectUnauthorized: true },
    handler,
  );
  attachMtls(server, source, opts);
  return server;
}

/**
 * Adds SPIFFE peer checks and rotation to an existing TLS/HTTPS server created with
 * `requestCert: true, rejectUnauthorized: true` and the source's material.
 */
export function attachMtls(
  server: HttpsServer | import('node:tls').Server,
  source: X509SvidSource,
  opts: Pick<MtlsServerOptions, 'authorize' | 'onRefused'>,
): void {
  const onUpdate = () => {
    try {
      server.setSecureContext(tlsOptionsFrom(source));
    } catch {
      // A bad update (no valid SVID right now) keeps the previous context: clients keep working.
    }
  };
  source.on('update', onUpdate);
  server.once('close', () => source.off('update', onUpdate));
  server.on('secureConnection', (socket: TLSSocket) => {
    // Runs synchronously after the handshake, before the socket is read: a refused peer sends nothing we process.
    try {
      verifyPeer(socket, source, opts.authorize);
    } catch (e) {
      if (e instanceof PeerAuthorizationError) opts.onRefused?.(e, socket);
      socket.destroy();
    }
  });
}

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
