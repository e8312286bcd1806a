/**
 * The certificate browsers see. By default the proxy's SVID (our CA; DNS names from its registration
 * entry), swapped in without a restart when the SVID rotates; or a certificate and key from files
 * (a public CA's), re-read when they change.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Server } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import type { X509SvidSource } from '../../pep/mtls/index.js';
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
): ServingTls {
  if (tls) {
    const read = () => ({ cert: readFileSync(tls.cert_file, 'utf8'), key: readFileSync(tls.key_file, 'utf8') });
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
    return {
      options: read(),
      attach: (s) => {
        server = s;
        for (const f of [tls.cert_file, tls.key_file]) watchFile(f, { interval: 1000 }, onChange);
      },
      stop: () => {
        for (const f of [tls.cert_file, tls.key_file]) unwatchFile(f, onChange);
      },
    };
  }
  const fromSvid = () => ({ cert: source.svid.certChainPem, key: source.svid.privateKeyPem });
  let server: Server | undefined;
  const onUpdate = () => {
    try {
      server?.setSecureContext(fromSvid());
    } catch (e) {
      log('serving certificate rotation failed; keeping the current one', { error: (e as Error).message });
    }
  };
  return {
    options: fromSvid(),
    attach: (s) => {
      server = s;
      source.on('update', onUpdate);
    },
    stop: () => source.off('update', onUpdate),
  };
}
