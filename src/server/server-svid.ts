/**
 * The server's own X.509-SVID (`spiffe://<trust domain>/nevertrust/server`), as a source that its
 * mTLS listeners (agent port, Envoy ext_authz) share: re-minted at half its lifetime and on every
 * bundle change (CA rotation), so a listener never presents a certificate its peers cannot verify.
 */
import { certificatesToPem } from '../ca/index.js';
import { MemorySvidSource } from '../pep/mtls/index.js';
import { SERVER_ID_PATH, serverSpiffeId } from '../spiffe/index.js';
import type { CaHandle } from './plugins/ca.js';

/** Path of the server's SPIFFE ID in its trust domain (the one definition is in src/spiffe/well-known.ts). */
export const SERVER_SVID_PATH = SERVER_ID_PATH;

/** A rotating server SVID; `stop()` ends its timer and bundle subscription. */
export interface ServerSvid {
  readonly source: MemorySvidSource;
  readonly spiffeId: string;
  stop(): void;
}

/**
 * Mints the server SVID now and keeps it fresh.
 *
 * @example
 * ```ts
 * const svid = serverSvidSource(ca.handle, 'example.org');
 * const server = createMtlsServer(svid.source, { authorize: authorizeMemberOf('example.org') });
 * ```
 */
export function serverSvidSource(ca: CaHandle, trustDomain: string, checkEveryMs = 10_000): ServerSvid {
  const spiffeId = serverSpiffeId(trustDomain);
  let renewAt = 0;
  const mint = () => {
    const authority = ca.current();
    const s = authority.mintX509Svid({ spiffeId, dnsNames: ['localhost'] });
    const now = Date.now();
    renewAt = now + (s.notAfter.getTime() - now) / 2;
    return {
      svid: {
        spiffeId,
        certChainPem: certificatesToPem(s.chain),
        privateKeyPem: s.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      },
      bundles: [authority.bundle()],
    };
  };
  const first = mint();
  const source = new MemorySvidSource(first.svid, first.bundles);
  const renew = () => {
    const next = mint();
    source.set(next.svid, next.bundles);
  };
  const unsubscribe = ca.onBundleChange(renew);
  const timer = setInterval(() => {
    if (Date.now() >= renewAt) renew();
  }, checkEveryMs);
  timer.unref();
  return {
    source,
    spiffeId,
    stop: () => {
      clearInterval(timer);
      unsubscribe();
    },
  };
}
