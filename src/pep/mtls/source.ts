/**
 * X.509 sources for the mTLS helpers: what a server or client needs from one (the SVID it presents
 * and the bundles it trusts, with an `update` event on rotation), a settable source held in memory,
 * and the TLS key material of a source's current SVID.
 */
import { EventEmitter } from 'node:events';
import type { SecureContextOptions } from 'node:tls';
import type { BundleSource, SpiffeId, TrustBundle, TrustDomain } from '../../spiffe/index.js';

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
