/**
 * Reads and verifies the X.509-SVID a TLS peer presented, with our own SPIFFE validator (not only
 * OpenSSL's), against the bundle in force now: the agent port must accept certificates across CA
 * rotations without restarting its listener.
 */
import type { TLSSocket } from 'node:tls';
import { peerChain } from '../pep/mtls/index.js';
import { type BundleSource, type VerifiedX509Svid, verifyX509Svid } from '../spiffe/index.js';
import { NevertrustError } from '../errors.js';

export class PeerSvidError extends NevertrustError<'ERR_PEER_SVID'> {
  override readonly name = 'PeerSvidError';
  readonly code = 'ERR_PEER_SVID';
  constructor(message: string) {
    super(message, { status: 401 });
  }

  override get reason(): string {
    return 'unauthenticated';
  }
}

/** Verifies the peer's SVID; throws PeerSvidError with the reason. */
export function verifyPeerSvid(socket: TLSSocket, bundles: BundleSource): VerifiedX509Svid {
  const chain = peerChain(socket);
  if (chain.length === 0) throw new PeerSvidError('no client certificate (an X.509-SVID is required)');
  try {
    return verifyX509Svid(chain, bundles);
  } catch (e) {
    throw new PeerSvidError(`client certificate refused: ${(e as Error).message}`);
  }
}
