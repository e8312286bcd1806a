/**
 * The server side of mTLS: an HTTPS server (or an existing TLS server) that requires a client SVID,
 * verifies and authorizes it on every connection before any byte is read, and follows the source's
 * rotations with a new secure context.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions } from 'node:https';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Authorizer } from './authorizer.js';
import { PeerAuthorizationError, verifyPeer } from './peer.js';
import { tlsOptionsFrom, type X509SvidSource } from './source.js';

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
  server: HttpsServer | TlsServer,
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
