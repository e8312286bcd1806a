/** A real CA (src/ca) and a test resolver that the Workload API serves from. */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CertificateAuthority, Kek, MemoryCaStateStore } from '../../src/ca/index.js';
import type { TrustBundle } from '../../src/spiffe/index.js';
import { entryMatches, parseSelector, type Selector } from '../../src/agent/unix-attestor.js';
import type { WorkloadIdentity, WorkloadResolver } from '../../src/agent/workload-api.js';

export const TD = 'example.org';

export async function newCa(td = TD): Promise<CertificateAuthority> {
  return CertificateAuthority.open({
    trustDomain: td,
    store: new MemoryCaStateStore(),
    kek: Kek.fromBytes(randomBytes(32)),
  });
}

interface Entry {
  spiffeId: string;
  selectors: Selector[];
  identity: WorkloadIdentity;
  ttlSeconds: number;
}

/** Entries in memory, SVIDs minted by a real CA; `emit('change')` after every mutation. */
export class TestResolver extends EventEmitter implements WorkloadResolver {
  readonly entries = new Map<string, Entry>();
  extraBundles: TrustBundle[] = [];
  jwtMints = 0;
  /** JWT-SVID lifetime; undefined = the CA default (5 min). */
  jwtTtlSeconds: number | undefined;

  constructor(readonly ca: CertificateAuthority) {
    super();
    this.setMaxListeners(100);
  }

  /** Adds (or replaces) an entry and issues its SVID. */
  add(
    spiffeId: string,
    selectors: string[],
    opts: { hint?: string; ttlSeconds?: number; federatesWith?: string[] } = {},
  ): WorkloadIdentity {
    const ttlSeconds = opts.ttlSeconds ?? 3600;
    const identity = this.issue(spiffeId, ttlSeconds, opts.hint, opts.federatesWith);
    this.entries.set(spiffeId, { spiffeId, selectors: selectors.map((s) => parseSelector(s)), identity, ttlSeconds });
    this.emit('change');
    return identity;
  }

  /** Re-issues the SVID of an entry (rotation). */
  rotate(spiffeId: string): WorkloadIdentity {
    const e = this.entries.get(spiffeId);
    if (!e) throw new Error(`no entry ${spiffeId}`);
    e.identity = this.issue(spiffeId, e.ttlSeconds, e.identity.hint, e.identity.federatesWith);
    this.emit('change');
    return e.identity;
  }

  remove(spiffeId: string): void {
    this.entries.delete(spiffeId);
    this.emit('change');
  }

  private issue(
    spiffeId: string,
    ttlSeconds: number,
    hint?: string,
    federatesWith?: readonly string[],
  ): WorkloadIdentity {
    const minted = this.ca.mintX509Svid({ spiffeId, ttlSeconds });
    const id: WorkloadIdentity = {
      spiffeId,
      x509Chain: minted.chain,
      privateKeyPkcs8: minted.privateKey.export({ format: 'der', type: 'pkcs8' }),
    };
    if (hint !== undefined) id.hint = hint;
    if (federatesWith !== undefined) id.federatesWith = federatesWith;
    return id;
  }

  identitiesFor(selectors: readonly Selector[]): WorkloadIdentity[] {
    return [...this.entries.values()].filter((e) => entryMatches(e.selectors, selectors)).map((e) => e.identity);
  }

  bundles(): TrustBundle[] {
    return [this.ca.bundle(), ...this.extraBundles];
  }

  async mintJwtSvid(spiffeId: string, audience: readonly string[]): Promise<string> {
    this.jwtMints++;
    const req: Parameters<CertificateAuthority['mintJwtSvid']>[0] = { spiffeId, audience };
    if (this.jwtTtlSeconds !== undefined) req.ttlSeconds = this.jwtTtlSeconds;
    return (await this.ca.mintJwtSvid(req)).token;
  }
}
