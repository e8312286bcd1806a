/**
 * Shipping decisions to the server's audit log with the enforcement point's own X.509-SVID: mTLS to
 * the server's agent port, where the server authenticates the SVID and stamps its SPIFFE ID into each
 * event as `details.reported_by`. Nothing secret to provision, and nothing that outlives the SVID.
 */
import { AGENT_PORT_INGEST_PATH, AuditRecorder, httpSink, type RecorderOptions } from '../audit/index.js';
import { authorizeId, createMtlsAgent, type X509SvidSource } from './mtls/index.js';
import { serverIdFor } from './server-id.js';

export interface SvidShipperOptions extends Omit<RecorderOptions, 'sink'> {
  /** The server's agent port, e.g. `https://127.0.0.1:8081`. */
  server: string;
  /** The SPIFFE ID the server must present (default `spiffe://<the SVID's trust domain>/nevertrust/server`). */
  serverId?: string;
  /** Per-batch request timeout (default 10 s). */
  timeoutMs?: number;
}

/**
 * A recorder that ships batches over mTLS with `source`'s SVID (new connections use the newest one),
 * after checking that the server presents `serverId`. Retries, spills and never blocks like every
 * recorder; `close()` also closes its connections.
 *
 * @throws {TypeError} when `server` is not an https:// URL; {SpiffeIdError} when a SPIFFE ID is invalid
 * @example
 * ```ts
 * const source = await X509Source.create();
 * const recorder = createSvidShipper(source, { server: 'https://127.0.0.1:8081', spillDir: '.audit-spill' });
 * const app = withNevertrust({ target, snapshot, bundles: source, recorder }, handler);
 * ```
 */
export function createSvidShipper(source: X509SvidSource, opts: SvidShipperOptions): AuditRecorder {
  let url: URL;
  try {
    url = new URL(opts.server);
  } catch {
    throw new TypeError(`server: not a URL: ${opts.server}`);
  }
  if (url.protocol !== 'https:') throw new TypeError(`server: must be the https:// agent port, not ${opts.server}`);
  const serverId = serverIdFor(String(source.svid.spiffeId), opts.serverId);
  const dispatcher = createMtlsAgent(source, { authorize: authorizeId(serverId) });
  const sink = httpSink({ url: opts.server, path: AGENT_PORT_INGEST_PATH, dispatcher, timeoutMs: opts.timeoutMs });
  return new AuditRecorder({
    ...opts,
    name: opts.name ?? 'svid',
    sink: { append: (events) => sink.append(events), close: () => dispatcher.close() },
  });
}
