/**
 * The access proxy (`nevertrust access-proxy`): an HTTPS identity-aware reverse proxy in front of
 * internal web apps, like Google IAP or Pomerium. Each request is routed by host and path prefix,
 * its person identified by the {@link Authenticator}, decided by the policy engine, and forwarded
 * with a signed assertion of who the person is. See docs/people.md.
 */
import { createServer, type Server } from 'node:https';
import type { Duplex } from 'node:stream';
import { startAssertionSigner } from '../../pep/assertion/signer.js';
import type { DecisionRecorder } from '../../pep/decision.js';
import type { X509SvidSource } from '../../pep/mtls/index.js';
import { svidSourceFor } from '../../pep/sidecar/index.js';
import { splitHostPort } from '../../pep/sidecar/config.js';
import { pathOptionsFor } from '../../policy/path.js';
import { PolicyWatcher } from '../../policy/watcher.js';
import { decide } from '../../policy/evaluate.js';
import type { AuditEventInput } from '../../audit/event.js';
import type { Authenticator } from '../identity.js';
import { createMfaHandler } from '../mfa/handler.js';
import type { MfaService } from '../mfa/service.js';
import type { AccessProxyConfig, RouteConfig } from './config.js';
import { forwardRequest, forwardUpgrade, raw } from './forward.js';
import { type GateDeps, gate, PEP_NAME, unparsedRequestRefusal } from './gate.js';
import { LiveConnections, type LiveSubject } from './live.js';
import { type ProxySignals, riskScore, signalRefusal, startProxySignals } from './signals.js';
import { refusalAnswer } from './pages.js';
import { RouteTable } from './routes.js';
import { servingTls } from './tls.js';
import type { DeviceLookup } from './device.js';
import { parseSpiffeId } from '../../spiffe/index.js';
import { type Upstream, upstreamFor } from './upstream.js';

export {
  type AccessProxyConfig,
  AccessProxyConfigError,
  AccessProxyConfigSchema,
  loadAccessProxyConfig,
  parseAccessProxyConfig,
  type RouteConfig,
} from './config.js';
export { routeAudience } from './person-assertion.js';
export { cachedDeviceLookup, type DeviceLookup } from './device.js';

/** Options of {@link startAccessProxy} beyond the config. */
export interface AccessProxyOptions {
  /** Who the people are (the OIDC authenticator of src/access/auth/, or a test's). Closed with the proxy. */
  authenticator: Authenticator;
  /** Supplies the SVID instead of the config's `svid` (tests, `nevertrust up`). */
  source?: X509SvidSource;
  /** Where decisions go when `ship` gives nothing. */
  recorder?: DecisionRecorder;
  /** As the sidecar's: the recorder shipping to the server with the SVID, and how to stop it. */
  ship?: (source: X509SvidSource) => { recorder: DecisionRecorder; close(): Promise<void> } | undefined;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /**
   * People's second factors at the proxy (`createMfaService` with the authenticator's `kek`), and
   * where the pages' audit events go: turns on `/.nevertrust/mfa` and the local step-up, with the
   * config's `mfa` section (defaults when absent).
   */
  mfa?: { service: MfaService; record: (e: AuditEventInput) => void };
  /**
   * Enrolled devices (`cachedDeviceLookup` over `store.devices`): the TLS handshake asks for a
   * device certificate (optional), sessions are bound to the device they signed in with, and policy
   * sees its posture (`source.device`). Absent: no device certificates are asked for.
   */
  devices?: DeviceLookup;
  /** Where the proxy's own audit events go (`device.refused`, `access.cut`). */
  audit?: (e: AuditEventInput) => void;
}

export interface RunningAccessProxy {
  port: number;
  /** Live keep-alive connections and WebSockets (decided again on every policy change and signal). */
  readonly liveConnections: number;
  close(): Promise<void>;
}

/**
 * Starts the access proxy.
 *
 * @example
 * ```ts
 * const proxy = await startAccessProxy(loadAccessProxyConfig('access-proxy.yaml'), { authenticator });
 * // … https://wiki.example.test:<proxy.port>/
 * await proxy.close();
 * ```
 */
export async function startAccessProxy(
  config: AccessProxyConfig,
  opts: AccessProxyOptions,
): Promise<RunningAccessProxy> {
  const log = opts.log ?? (() => {});
  const closers: (() => Promise<void> | void)[] = [() => opts.authenticator.close()];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (e) {
        log('close failed', { error: (e as Error).message });
      }
    }
  };
  try {
    let source = opts.source;
    if (!source) {
      const own = await svidSourceFor(config.svid);
      source = own.source;
      closers.push(() => own.stop());
    }
    const path = pathOptionsFor(config.path_normalization);
    const watcher = new PolicyWatcher(config.policies, { path });
    watcher.on('error', (e) =>
      log('policy change rejected; the last good snapshot stays in force', { issues: e.issues }),
    );
    closers.push(() => watcher.close());
    const live = new LiveConnections({ enforcer: PEP_NAME, log, ...(opts.audit ? { record: opts.audit } : {}) });
    // A new policy: every live connection is decided again as its last request was; what the new
    // policy no longer allows ends now, not at its next request (a WebSocket has none).
    watcher.on('reload', (snap) => {
      void live
        .recheck({ policyVersion: snap.version }, (c) => {
          const d = decide(snap, c.request);
          return d.decision === 'allow' ? undefined : d.reason;
        })
        .catch((e: unknown) => log('re-deciding live connections failed', { error: (e as Error).message }));
    });
    let signals: ProxySignals | undefined;
    if (config.signals) {
      const sigSource = source;
      /** A live connection's verdict after a signal: what the signal takes away, else the policy with the new risk. */
      const afterSignal = (c: LiveSubject): string | undefined => {
        const s = signals as ProxySignals;
        const no = signalRefusal(
          s.state,
          {
            person: c.person,
            ...(c.session ? { session: c.session } : {}),
            ...(c.deviceId !== undefined ? { deviceId: c.deviceId } : {}),
          },
          s.deviceNonCompliant,
        );
        if (no) return no.reason;
        const snap = watcher.current;
        const risk = riskScore(s.state, c.person, c.deviceId);
        const request =
          risk === undefined ? c.request : { ...c.request, source: { ...c.request.source, risk_score: risk } };
        const d = decide(snap, request);
        return d.decision === 'allow' ? undefined : d.reason;
      };
      signals = startProxySignals({
        config: config.signals,
        source: sigSource,
        log,
        onSignal: (seq, signal, subject) => {
          if (signal.kind === 'session.revoked') opts.authenticator.evict?.(signal.sessionId);
          void live
            .recheck({ signal: { seq, kind: signal.kind, subject } }, afterSignal)
            .catch((e: unknown) => log('re-deciding live connections failed', { error: (e as Error).message }));
        },
      });
      const s = signals;
      closers.push(() => s.stop());
      // Silence past the bound: people's live connections on `deny` routes end too.
      const bound = config.signals.max_disconnected;
      const timer = setInterval(
        () => {
          if (!s.lost()) return;
          void live.recheck({ signalsLost: true }, (c) =>
            c.route.on_signals_lost === 'deny' ? 'signals_unavailable: no contact with the signal stream' : undefined,
          );
        },
        Math.min(1000, bound * 1000),
      );
      timer.unref();
      closers.push(() => clearInterval(timer));
    }
    const shipping = opts.ship?.(source);
    if (shipping) closers.push(() => shipping.close());
    const a = config.assertion;
    // The first key is registered before the port opens: an app never gets a request it cannot verify.
    const signer = a
      ? await startAssertionSigner({ source, server: a.server, serverId: a.server_id, ttlSeconds: a.ttl_seconds, log })
      : undefined;
    if (signer) closers.push(() => signer.close());

    const upstreams = new Map<RouteConfig, Upstream>(
      config.routes.map((r) => [r, upstreamFor(r, source as X509SvidSource)]),
    );
    closers.push(() => {
      for (const u of upstreams.values()) u.agent.destroy();
    });
    const { host, port } = splitHostPort(config.listen);
    const svidId = source.svid.spiffeId;
    const trustDomain = (typeof svidId === 'string' ? parseSpiffeId(svidId) : svidId).trustDomain.name;
    const deps: GateDeps = {
      routes: new RouteTable(config.routes),
      upstreams,
      authenticator: opts.authenticator,
      snapshot: () => watcher.current,
      recorder: shipping?.recorder ?? opts.recorder,
      path,
      publicPort: config.public_port ?? port,
      signer,
      assertionTtl: a?.ttl_seconds,
      ...(opts.devices
        ? {
            devices: {
              bundles: source,
              trustDomain,
              lookup: opts.devices,
              maxPostureAge: config.devices.max_posture_age,
              ...(opts.audit ? { record: opts.audit } : {}),
            },
          }
        : {}),
      ...(signals ? { signals } : {}),
      log,
    };
    if (opts.mfa) {
      deps.mfa = createMfaHandler({
        service: opts.mfa.service,
        authenticator: opts.authenticator,
        firstLoginEnrollment: config.mfa?.first_login_enrollment ?? false,
        ...(config.mfa?.webauthn.rp_id !== undefined ? { rpId: config.mfa.webauthn.rp_id } : {}),
        rpName: config.mfa?.webauthn.rp_name ?? 'nevertrust',
        hosts: config.routes.map((r) => r.from.host),
        publicPort: () => deps.publicPort,
        record: opts.mfa.record,
        log,
      });
    }
    const tls = servingTls(config.tls, source, log, opts.devices ? { trustDomain } : undefined);
    closers.push(() => tls.stop());
    const server: Server = createServer(
      {
        ...tls.options,
        maxHeaderSize: config.limits.max_header_bytes,
        requestTimeout: config.limits.request_timeout_ms,
        // Browsers speak HTTP/1.1 here; no HTTP/2 upgrade games.
        ALPNProtocols: ['http/1.1'],
      },
      (req, res) => {
        gate(deps, req, res)
          .then((g) => {
            if (g.kind === 'forward') {
              if (g.target.live) live.request(req.socket, res, g.target.live);
              forwardRequest(req, res, g.target, log);
            } else if (g.kind === 'answer' && !res.headersSent)
              res.writeHead(g.answer.status, g.answer.headers).end(g.answer.body);
          })
          .catch((e: unknown) => {
            // Fail closed: nothing was forwarded (or the answer could not be written).
            log('request failed', { error: (e as Error).message });
            try {
              if (res.headersSent) throw e;
              const x = refusalAnswer(req, 503, {
                error: 'internal',
                reason: 'the proxy could not decide this request',
              });
              res.writeHead(x.status, x.headers).end(x.body);
            } catch {
              res.destroy();
            }
          });
      },
    );
    tls.attach(server);
    // Node answers what it cannot parse (431, 400) before any handler: record those refusals too.
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const answer = unparsedRequestRefusal(deps, err.code, (socket as { remoteAddress?: string }).remoteAddress);
      const fresh = socket.writable && (socket as { bytesWritten?: number }).bytesWritten === 0;
      if (fresh && answer) socket.end(raw(answer), 'latin1');
      else if (fresh && err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
        socket.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      gate(deps, req, undefined)
        .then((g) => {
          if (g.kind === 'forward') {
            const subject = g.target.live;
            forwardUpgrade(req, socket, head, g.target, log, (join) => {
              if (subject) live.websocket(socket, join, subject);
            });
          } else if (g.kind === 'answer') socket.end(raw(g.answer), 'latin1');
          else socket.destroy();
        })
        .catch((e: unknown) => {
          log('upgrade failed', { error: (e as Error).message });
          socket.destroy();
        });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    closers.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    );
    const addr = server.address();
    const bound = typeof addr === 'object' && addr ? addr.port : port;
    // Listening on port 0 (tests, `nevertrust up`): origins name the port actually bound.
    if (config.public_port === undefined) deps.publicPort = bound;
    return {
      port: bound,
      close: closeAll,
      get liveConnections() {
        return live.size;
      },
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
