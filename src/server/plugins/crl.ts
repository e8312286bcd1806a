/**
 * The CRL of revoked X.509-SVID serials (issue #23): every `svid.revoked` signal the store keeps,
 * signed by the CA (one CRL per CA generation that may have issued live SVIDs) and served at
 * `GET /v1/bundle/crl`, public like the bundle, on the API port and on the agent port.
 *
 * Signed lazily and cached: a request re-signs when the store's newest signal changed (a revocation,
 * by this server or another one on the same PostgreSQL), when the CA's bundle changed, or when half
 * of the CRL's validity has passed, so what is served is never older than the newest revocation and
 * never close to its nextUpdate. The CRL number is the newest signal's seq × 10¹⁰ + the signing time
 * in seconds: it grows with every revocation and every re-signing, on every server.
 *
 * A serial stays listed as long as its signal is kept (`signals.retention`, 24 h by default): keep
 * retention above `ca.x509_svid_ttl` so a revoked SVID expires before it leaves the CRL.
 */
import { CRL_PATH, type CrlSetWire } from '../../api/ca.js';
import type { CrlEntry } from '../../ca/index.js';
import type { Store } from '../../store/index.js';
import { HttpError, sendJson } from '../router.js';
import type { ServerContext, ServerPlugin } from '../server.js';
import type { AgentPortRoute } from './agent-endpoint.js';
import type { CaHandle } from './ca.js';

/** A CRL's validity (nextUpdate − thisUpdate); it is re-signed at half of it. */
export const CRL_VALIDITY_MS = 3_600_000;

interface Signed {
  head: number;
  caSequence: number;
  signedAt: number;
  wire: CrlSetWire;
  ders: Buffer[];
}

export interface CrlPublisher {
  /** The current CRLs, re-signed first when stale. */
  current(): Promise<{ ders: Buffer[]; wire: CrlSetWire }>;
}

/** Every revoked serial still kept in the store, with when it was revoked. */
async function revokedSerials(store: Store): Promise<CrlEntry[]> {
  const bySerial = new Map<string, CrlEntry>();
  for (let after = 0; ; ) {
    const page = await store.signals.after(after, 1000);
    if (page.length === 0) break;
    for (const m of page) {
      after = m.seq;
      if (m.signal.kind !== 'svid.revoked') continue;
      const serial = m.signal.serial.toLowerCase().replace(/^0+(?=.)/, '');
      const at = Math.min(Date.parse(m.signal.at), Date.parse(m.received_at));
      if (!bySerial.has(serial)) bySerial.set(serial, { serial, revokedAt: new Date(at) });
    }
  }
  return [...bySerial.values()];
}

export function crlPublisher(ca: CaHandle, store: Store, clock: () => number = Date.now): CrlPublisher {
  let signed: Signed | undefined;
  let signing: Promise<Signed> | undefined;

  const sign = async (head: number): Promise<Signed> => {
    const authority = ca.current();
    const entries = await revokedSerials(store);
    const now = clock();
    const crlNumber = BigInt(head) * 10_000_000_000n + BigInt(Math.floor(now / 1000));
    const crls = await authority.signCrls({ entries, crlNumber, validityMs: CRL_VALIDITY_MS, now: new Date(now) });
    const ders = crls.map((c) => c.der);
    return {
      head,
      caSequence: authority.sequence,
      signedAt: now,
      ders,
      wire: {
        crls: ders.map((d) => d.toString('base64')),
        crl_number: crlNumber.toString(),
        this_update: new Date(Math.floor(now / 1000) * 1000).toISOString(),
        next_update: new Date(Math.floor((now + CRL_VALIDITY_MS) / 1000) * 1000).toISOString(),
        revoked: entries.length,
      },
    };
  };

  return {
    async current() {
      const head = await store.signals.head();
      const fresh = (s: Signed | undefined): s is Signed =>
        s !== undefined &&
        s.head === head &&
        s.caSequence === ca.current().sequence &&
        clock() - s.signedAt < CRL_VALIDITY_MS / 2;
      let s = signed;
      if (!fresh(s)) {
        // One signing at a time; requests that arrive meanwhile share it.
        signing ??= sign(head).finally(() => {
          signing = undefined;
        });
        s = await signing;
        if (!signed || s.head >= signed.head) signed = s;
      }
      return { ders: s.ders, wire: s.wire };
    },
  };
}

/** `GET /v1/bundle/crl`: the active CA's CRL as DER; `?format=json` all of them ({@link CrlSetWire}). */
export function crlRoutes(publisher: CrlPublisher): AgentPortRoute[] {
  return [
    {
      method: 'GET',
      path: CRL_PATH,
      handler: async (_req, res, url) => {
        const { ders, wire } = await publisher.current();
        if (url.searchParams.get('format') === 'json') return sendJson(res, 200, wire);
        const der = ders[0] as Buffer;
        res.writeHead(200, {
          'content-type': 'application/pkix-crl',
          'content-length': der.length,
          'cache-control': 'no-cache',
        });
        res.end(der);
      },
    },
  ];
}

/**
 * The CRL on the API port; `agentRoutes` serve it on the agent port too (register this plugin before
 * the agent endpoint, which takes them).
 */
export function crlPlugin(opts: { ca: CaHandle }): ServerPlugin & { agentRoutes: AgentPortRoute[] } {
  let publisher: CrlPublisher | undefined;
  const unavailable = (): CrlPublisher => {
    if (!publisher) throw new HttpError(503, 'unavailable', 'the CRL is not available yet');
    return publisher;
  };
  const late: CrlPublisher = { current: () => unavailable().current() };
  return {
    name: 'crl',
    dependsOn: ['ca'],
    agentRoutes: crlRoutes(late),
    register(ctx: ServerContext) {
      publisher = crlPublisher(opts.ca, ctx.store);
      ctx.router.add(crlRoutes(publisher));
    },
  };
}
