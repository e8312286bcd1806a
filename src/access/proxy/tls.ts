/**
 * The certificate browsers see. By default the proxy's SVID (our CA; DNS names from its registration
 * entry), swapped in without a restart when the SVID rotates; or a certificate and key from files
 * (a public CA's), re-read when they change. With `devices`, the handshake also asks for a client
 * certificate (optional: a browser without one still reaches the login page), naming the trust
 * domain's roots from the SVID source as acceptable issuers, kept current when the bundle changes.
 */
import { constants } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Server } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import type { X509SvidSource } from '../../pep/mtls/index.js';
import { parseTrustDomain } from '../../spiffe/index.js';
import type { AccessProxyConfig } from './config.js';

/** The initial key material and a way to keep the server's in step; `stop()` ends watching. */
export interface ServingTls {
  options: SecureContextOptions;
  attach(server: Server): void;
  stop(): void;
}

/**
 * @example
 * ```ts
 * const tls = servingTls(config.tls, source, log);
 * const server = createServer({ ...tls.options }, handler);
 * tls.attach(server);
 * ```
 */
export function servingTls(
  tls: AccessProxyConfig['tls'],
  source: X509SvidSource,
  log: (msg: string, fields?: Record<string, unknown>) => void,
  devices?: { trustDomain: string },
): ServingTls {
  // Device certificates are checked per request (device.ts), never by OpenSSL: an invalid one is
  // answered with why, and none at all is the login page's normal case.
  const clientCa = (): SecureContextOptions => {
    if (!devices) return {};
    const b = source.getBundleForTrustDomain(parseTrustDomain(devices.trustDomain));
    // No session resumption: a resumed session keeps only the peer's leaf, not the intermediates
    // it sent, so a device certificate under an intermediate (an upstream CA) would not verify.
    const noTickets = { secureOptions: constants.SSL_OP_NO_TICKET };
    return b && b.x509Authorities.length > 0 ? { ca: b.toPem(), ...noTickets } : noTickets;
  };
  const clientAuth = devices ? { requestCert: true, rejectUnauthorized: false } : {};
  if (tls) {
    const read = () => ({
      cert: readFileSync(tls.cert_file, 'utf8'),
      key: readFileSync(tls.key_file, 'utf8'),
      ...clientCa(),
    });
    let server: Server | undefined;
    const onChange = () => {
      try {
        server?.setSecureContext(read());
        log('serving certificate reloaded', { cert_file: tls.cert_file });
      } catch (e) {
        // Half-written files: the old certificate stays until the next change event.
        log('serving certificate reload failed; keeping the current one', { error: (e as Error).message });
      }
    };
    // The bundle comes from the SVID source even when the serving certificate is a public CA's.
    const onBundle = () => devices && onChange();
    return {
      options: { ...read(), ...clientAuth },
      attach: (s) => {
        server = s;
        for (const f of [tls.cert_file, tls.key_file]) watchFile(f, { interval: 1000 }, onChange);
        source.on('update', onBundle);
      },
      stop: () => {
        for (const f of [tls.cert_file, tls.key_file]) unwatchFile(f, onChange);
        source.off('update', onBundle);
      },
    };
  }
  const fromSvid = () => ({ cert: source.svid.certChainPem, key: source.svid.privateKeyPem, ...clientCa() });
  let server: Server | undefined;
  const onUpdate = () => {
    try {
      server?.setSecureContext(fromSvid());
    } catch (e) {
      log('serving certificate rotation failed; keeping the current one', { error: (e as Error).message });
    }
  };
  return {
    options: { ...fromSvid(), ...clientAuth },
    attach: (s) => {
      server = s;
      source.on('update', onUpdate);
    },
    stop: () => source.off('update', onUpdate),
  };
}
