/**
 * Reads and verifies the X.509-SVID a TLS peer presented, with our own SPIFFE validator (not only
 * OpenSSL's), against the bundle in force now: the agent port must accept certificates across CA
 * rotations without restarting its listener.
 */
import type { TLSSocket } from 'node:tls';
import { type BundleSource, type VerifiedX509Svid, verifyX509Svid } from '../spiffe/index.js';

/** The peer's certificate chain as sent (leaf first), DER. Empty when the peer sent none. */
export function peerChain(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let cert = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (cert?.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    out.push(cert.raw);
    const next = cert.issuerCertificate;
    if (!next || next === cert) break;
    cert = next;
  }
  return out;
}

export class PeerSvidError extends Error {
  readonly code = 'ERR_PEER_SVID';
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
