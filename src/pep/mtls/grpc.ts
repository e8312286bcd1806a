/**
 * mTLS with SPIFFE identities for `@grpc/grpc-js` servers: credentials that follow an SVID source
 * (a new secure context on every update, no rebind), and the caller's verified SPIFFE ID for a call.
 * grpc-js shows a handler only the leaf certificate, so the leaf must chain directly to a bundle
 * authority (nevertrust's own CA signs leaves directly); anything else is refused, never passed.
 */
import * as grpc from '@grpc/grpc-js';
import { verifyX509Svid } from '../../spiffe/index.js';
import {
  type Authorizer,
  PeerAuthorizationError,
  tlsOptionsFrom,
  type VerifiedPeer,
  type X509SvidSource,
} from './index.js';

class SvidServerCredentials extends grpc.ServerCredentials {
  constructor(source: X509SvidSource) {
    super({ requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, tlsOptionsFrom(source));
    source.on('update', () => {
      try {
        this.updateSecureContextOptions(tlsOptionsFrom(source));
      } catch {
        // No usable SVID right now: the previous context stays, established clients keep working.
      }
    });
  }
  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/**
 * Server credentials presenting the source's SVID and requiring a client certificate from its
 * bundles; they follow the source's rotations.
 *
 * @example
 * ```ts
 * server.bindAsync('127.0.0.1:9191', svidServerCredentials(source), cb);
 * ```
 */
export function svidServerCredentials(source: X509SvidSource): grpc.ServerCredentials {
  return new SvidServerCredentials(source);
}

/**
 * Verifies the caller of a gRPC call as an X.509-SVID and authorizes it. Results are cached per
 * certificate until it expires or the bundles change.
 *
 * @example
 * ```ts
 * const peers = grpcPeerVerifier(source, authorizeMemberOf('example.org'));
 * const peer = peers.verify(call); // in a handler; throws PeerAuthorizationError
 * ```
 */
export function grpcPeerVerifier(source: X509SvidSource, authorize: Authorizer) {
  let cache = new Map<string, VerifiedPeer>();
  source.on('update', () => {
    cache = new Map();
  });
  return {
    verify(call: {
      getAuthContext(): { sslPeerCertificate?: { raw?: Buffer; fingerprint256?: string } };
    }): VerifiedPeer {
      const cert = call.getAuthContext().sslPeerCertificate;
      if (!cert?.raw || !cert.fingerprint256)
        throw new PeerAuthorizationError('ERR_PEER_NO_CERTIFICATE', 'the caller sent no client certificate');
      let peer = cache.get(cert.fingerprint256);
      if (peer && peer.expiresAt.getTime() <= Date.now()) peer = undefined;
      if (!peer) {
        try {
          const v = verifyX509Svid([cert.raw], source);
          peer = { spiffeId: v.spiffeId, expiresAt: v.expiresAt };
        } catch (e) {
          throw new PeerAuthorizationError(
            'ERR_PEER_INVALID_SVID',
            `the caller's certificate is not a valid X.509-SVID (${(e as { code?: string }).code ?? 'invalid'})`,
          );
        }
        if (cache.size >= 1024) cache.clear();
        cache.set(cert.fingerprint256, peer);
      }
      if (!authorize(peer.spiffeId))
        throw new PeerAuthorizationError(
          'ERR_PEER_UNAUTHORIZED',
          `caller ${peer.spiffeId.toString()} is not authorized (expected ${authorize.expected})`,
          peer.spiffeId.toString(),
        );
      return peer;
    },
  };
}
