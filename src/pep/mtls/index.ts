/**
 * `nevertrust/mtls`: mutual TLS with SPIFFE identities, in the spirit of go-spiffe's `spiffetls`.
 * Servers and clients take an X.509 source (the Workload API `X509Source`, or anything shaped like
 * it), rotate their certificate on every update without a restart (a new secure context for new
 * handshakes; established connections finish on the old one), and authorize the peer's SPIFFE ID
 * after verifying its chain with `verifyX509Svid` against the source's bundles. A peer without a
 * valid SPIFFE ID never passes: OpenSSL refuses unknown authorities during the handshake, and the
 * SPIFFE rules and the authorizer run on the verified connection before any byte is read.
 *
 * One file per job: `source.ts` (X.509 sources, TLS material), `authorizer.ts` (whom to accept),
 * `peer.ts` (verifying a connection's peer), `server.ts`, `client.ts`; `grpc.ts` for grpc-js servers.
 */
export { type Authorizer, authorizeAny, authorizeId, authorizeMemberOf, authorizeOneOf } from './authorizer.js';
export {
  type MtlsClientOptions,
  type MtlsConnectOptions,
  type MtlsFetch,
  connectMtls,
  createMtlsAgent,
  createMtlsFetch,
} from './client.js';
export { PeerAuthorizationError, peerChain, peerIdentity, type VerifiedPeer, verifyPeer } from './peer.js';
export { attachMtls, createMtlsServer, type MtlsServerOptions } from './server.js';
export { MemorySvidSource, type SvidMaterial, tlsOptionsFrom, type X509SvidSource } from './source.js';
