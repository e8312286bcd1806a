/**
 * The sidecar: zero code changes for the service. Inbound (./inbound.ts), it terminates mTLS over
 * HTTP/2 or HTTP/1.1, decides every request and WebSocket handshake against the local policy
 * snapshot, strips identity headers a client may have forged, and forwards to the app on its local
 * port with the verified caller in `x-nevertrust-*` headers. Outbound (./outbound.ts), the app
 * speaks plain HTTP to a local egress port naming the target service in `Host`; the sidecar
 * originates mTLS with the workload's SVID and checks the target's SPIFFE ID.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { pathOptionsFor } from '../../policy/path.js';
import { PolicyWatcher } from '../../policy/watcher.js';
import { certificatesFromPem, type SpiffeId, spiffeIdFromCertificate, TrustBundle } from '../../spiffe/index.js';
import { startAssertionSigner } from '../assertion.js';
import type { DecisionRecorder } from '../decision.js';
import { MemorySvidSource, type X509SvidSource } from '../mtls/index.js';
import type { SidecarConfig } from './config.js';
import { startInbound } from './inbound.js';
import { startOutbound } from './outbound.js';
import { ConnectionGuard, followForSidecar } from './revocation.js';
import type { AuditEventInput } from '../../audit/event.js';
import type { SignalFollower } from '../../signals/follow.js';

export { sidecarShipper } from './audit-shipping.js';
export {
  type InboundConfig,
  loadSidecarConfig,
  type OutboundConfig,
  type SidecarConfig,
  SidecarConfigError,
  SidecarConfigSchema,
} from './config.js';

/** Options of {@link startSidecar} beyond the config. */
export interface SidecarOptions {
  /** Supplies SVIDs when the config names files is not wanted (tests, embedding). */
  source?: X509SvidSource;
  /** Where decisions go when `ship` is not given or gives nothing. */
  recorder?: DecisionRecorder;
  /**
   * Called once the SVID source exists (the audit connection presents the SVID): the recorder to
   * use instead of `recorder`, and how to flush and stop it when the sidecar closes (after the
   * listeners, before the SVID source).
   */
  ship?: (source: X509SvidSource) => { recorder: DecisionRecorder; close(): Promise<void> } | undefined;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface RunningSidecar {
  inboundPort?: number;
  outboundPort?: number;
  /** The signal stream follower, when `signals` is configured. */
  signals?: SignalFollower;
  close(): Promise<void>;
}

/** An SVID source from PEM files, re-read when they change (also used by the access proxy). */
function filesSource(c: { cert: string; key: string; bundle: string }): {
  source: MemorySvidSource;
  stop(): void;
} {
  const read = () => {
    const certChainPem = readFileSync(c.cert, 'utf8');
    const bundlePem = readFileSync(c.bundle, 'utf8');
    const spiffeId: SpiffeId = spiffeIdFromCertificate(new X509Certificate(certChainPem));
    const bundle = new TrustBundle({
      trustDomain: spiffeId.trustDomain,
      x509Authorities: certificatesFromPem(bundlePem).map((d) => new X509Certificate(d)),
    });
    return { svid: { spiffeId, certChainPem, privateKeyPem: readFileSync(c.key, 'utf8') }, bundle };
  };
  const first = read();
  const source = new MemorySvidSource(first.svid, [first.bundle]);
  // Rotation without restart: whoever renews the files (an agent, a cron) is picked up within a second.
  const onChange = () => {
    try {
      const next = read();
      source.set(next.svid, [next.bundle]);
    } catch {
      // Half-written files: the next change event retries; the old SVID stays in use meanwhile.
    }
  };
  for (const f of [c.cert, c.key, c.bundle]) watchFile(f, { interval: 1000 }, onChange);
  return {
    source,
    stop: () => {
      for (const f of [c.cert, c.key, c.bundle]) unwatchFile(f, onChange);
    },
  };
}

/**
 * The SVID source a config's `svid` section names: the Workload API, or files watched for renewal.
 * Shared by the sidecar and the access proxy.
 *
 * @example
 * ```ts
 * const { source, stop } = await svidSourceFor({ workload_api: 'unix:///run/nevertrust/agent.sock' });
 * ```
 */
export async function svidSourceFor(
  svid: SidecarConfig['svid'],
): Promise<{ source: X509SvidSource; stop(): void | Promise<void> }> {
  if ('workload_api' in svid) {
    const { X509Source } = await import('../../workload/index.js');
    const s = await X509Source.create({ address: svid.workload_api });
    return { source: s, stop: () => s.close() };
  }
  return filesSource(svid);
}

/**
 * Starts the sidecar.
 *
 * @example
 * ```ts
 * const sc = await startSidecar(loadSidecarConfig('sidecar.yaml'));
 * // …
 * await sc.close();
 * ```
 */
export async function startSidecar(config: SidecarConfig, opts: SidecarOptions = {}): Promise<RunningSidecar> {
  const log = opts.log ?? (() => {});
  const own = opts.source ? undefined : await svidSourceFor(config.svid);
  const source = opts.source ?? (own?.source as X509SvidSource);
  const stopSource = own?.stop ?? (() => {});
  // The same normalization for the rules' paths (checked at load) and for every request's path.
  const watcher = new PolicyWatcher(config.policies, { path: pathOptionsFor(config.path_normalization) });
  watcher.on('error', (e) =>
    log('policy change rejected; the last good snapshot stays in force', { issues: e.issues }),
  );
  const closers: (() => Promise<void> | void)[] = [() => watcher.close(), stopSource];
  const out: RunningSidecar = {
    close: async () => {
      for (const c of closers.reverse()) await c();
    },
  };
  try {
    const shipping = opts.ship?.(source);
    if (shipping) closers.push(() => shipping.close());
    const recorder = shipping?.recorder ?? opts.recorder;
    let guard: ConnectionGuard | undefined;
    if (config.signals) {
      // The recorders a sidecar is given (audit shippers, AuditRecorder) take any audit event, not
      // only decisions: the cuts go the same way as the decisions.
      const sink = recorder as unknown as { record(e: AuditEventInput): void } | undefined;
      guard = new ConnectionGuard({
        self: () => String(source.svid.spiffeId),
        record: sink ? (e) => sink.record(e) : undefined,
        log,
      });
      const follower = followForSidecar(config.signals, source, guard, log);
      out.signals = follower;
      closers.push(() => follower.stop());
    }
    if (config.inbound) {
      const a = config.inbound.assertion;
      // The first key is registered before the port opens: an app never sees a request it cannot verify.
      const signer = a
        ? await startAssertionSigner({
            source,
            server: a.server,
            serverId: a.server_id,
            ttlSeconds: a.ttl_seconds,
            log,
          })
        : undefined;
      if (signer) closers.push(() => signer.close());
      const leg = await startInbound(config.inbound, {
        source,
        snapshot: () => watcher.current,
        recorder,
        log,
        assert: signer ? (identity) => signer.assertionFor(identity) : undefined,
        guard,
      });
      out.inboundPort = leg.port;
      closers.push(() => leg.close());
    }
    if (config.outbound) {
      const leg = await startOutbound(config.outbound, source, log);
      out.outboundPort = leg.port;
      closers.push(() => leg.close());
    }
  } catch (e) {
    await out.close();
    throw e;
  }
  return out;
}
