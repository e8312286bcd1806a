/**
 * The decision APIs on their own listener, without a store or admin API: what a node agent serves
 * so that decisions stay on the node (`nevertrust agent --decision-listen`). Same routes, same
 * fail-closed handling and the same decision records as the server's `decisionPlugin`.
 */
import { createServer } from 'node:http';
import type { TrustedProxy } from '../pep/identity.js';
import type { RevocationState } from '../signals/state.js';
import { type BundleSource, serialText } from '../spiffe/index.js';
import { listen } from '../util/listen.js';
import type { Logger } from '../util/logger.js';
import { type ServerEvent, ServerEvents } from './events.js';
import { type CallerCertificate, decisionPlugin } from './plugins/decision.js';
import type { PolicyHandle } from './plugins/policy.js';
import { dispatch, Router, sendJson } from './router.js';

export interface DecisionListenerOptions {
  host: string;
  port: number;
  trustDomain: string;
  policy: PolicyHandle;
  /** Bundles that forwarded certificates (XFCC, nginx `X-Client-Cert`) are verified against. */
  bundles: () => BundleSource | undefined;
  /** Proxies whose identity headers are believed, in the forms each is listed with (default: loopback, certificates only). */
  trustedProxies?: readonly TrustedProxy[];
  defaultTarget?: string;
  /**
   * Signals followed by the host (the node agent): a caller whose certificate's serial was revoked,
   * or issued before its entry was deleted, is denied naming the signal, whatever the policy says.
   */
  revocations?: RevocationState;
  /** Every decision, allowed or denied. */
  record: (event: ServerEvent) => void;
  logger: Logger;
}

export interface RunningDecisionListener {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The reason a caller is refused by a signal, or undefined. Only a certificate tells its serial and
 * when it was issued; an SVID issued after the deletion belongs to an entry created again.
 */
export function revokedBy(state: RevocationState): (c: CallerCertificate) => string | undefined {
  return (c) => {
    const bySerial = c.serial !== undefined ? state.svidRevoked(c.serial) : undefined;
    const byEntry = c.notBeforeMs !== undefined ? state.spiffeIdCut(c.spiffeId) : undefined;
    const why =
      bySerial ?? (byEntry && c.notBeforeMs !== undefined && c.notBeforeMs <= byEntry.atMs ? byEntry : undefined);
    if (!why) return undefined;
    const subject = why === bySerial ? `svid ${serialText(c.serial ?? '')}` : c.spiffeId;
    return `revoked: ${why.kind} (seq ${why.seq}) of ${subject}: ${why.reason}`.slice(0, 1024);
  };
}

/**
 * Starts the listener.
 *
 * @example
 * ```ts
 * const d = await startDecisionListener({ host: '127.0.0.1', port: 8182, trustDomain, policy, bundles, record, logger });
 * // POST http://127.0.0.1:8182/v1/data/service_auth/allow {"input": {...}}
 * ```
 */
export async function startDecisionListener(opts: DecisionListenerOptions): Promise<RunningDecisionListener> {
  const router = new Router();
  const events = new ServerEvents();
  events.on('event', opts.record);
  router.on('GET', '/healthz', (_req, res) => sendJson(res, 200, { status: 'ok' }));
  const plugin = decisionPlugin({
    policy: opts.policy,
    bundles: opts.bundles,
    trustedProxies: opts.trustedProxies,
    defaultTarget: opts.defaultTarget,
    ...(opts.revocations && { callerRevoked: revokedBy(opts.revocations) }),
  });
  await plugin.register({
    router,
    events,
    logger: opts.logger,
    config: { trust_domain: opts.trustDomain },
    announce: () => {},
  });
  const server = createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    void dispatch(router, req, res, (err, path) => opts.logger.error({ err, path }, 'decision request failed'));
  });
  let port: number;
  try {
    port = await listen(server, { host: opts.host, port: opts.port });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    throw new Error(`decision port ${opts.host}:${opts.port} is already in use: pick another with --decision-listen`);
  }
  return {
    port,
    url: `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        void plugin.close?.();
      }),
  };
}
