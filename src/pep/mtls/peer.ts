/**
 * The peer of a TLS connection: its certificate chain as received, its verification as an X.509-SVID
 * against a bundle source followed by an authorizer, the verified identity kept on the socket, and
 * the error that says why a peer was refused.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { NevertrustError } from '../../errors.js';
import { type BundleSource, type SpiffeId, verifyX509Svid, X509SvidError } from '../../spiffe/index.js';
import type { Authorizer } from './authorizer.js';

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
