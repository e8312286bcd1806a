/**
 * The sidecar: zero code changes for the service. Inbound, it terminates mTLS, decides every
 * request against the local policy snapshot, strips identity headers a client may have forged, and
 * forwards to the app on 127.0.0.1 with the verified peer in `x-nevertrust-peer-id`. Outbound, the
 * app speaks plain HTTP to a local egress port naming the target service in `Host`; the sidecar
 * originates mTLS with the workload's SVID and checks the target's SPIFFE ID. HTTP/1.1 with
 * keep-alive on both legs, streamed bodies (pipe: backpressure both ways) and timeouts.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import {
  Agent as HttpAgent,
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  request as httpRequest,
  type Server,
} from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import YAML from 'yaml';
import { PolicyWatcher } from '../policy/index.js';
import { type SpiffeId, spiffeIdFromCertificate, TrustBundle } from '../spiffe/index.js';
import type { DecisionRecorder } from './decision.js';
import { createEnforcer, sendRefusal } from './middleware/index.js';
import {
  authorizeAny,
  authorizeId,
  createMtlsAgent,
  createMtlsServer,
  MemorySvidSource,
  type X509SvidSource,
} from './mtls/index.js';

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected HOST:PORT');

/** The sidecar config file (YAML), validated. */
export const SidecarConfigSchema = z
  .object({
    svid: z.union([
      z.object({ cert: z.string(), key: z.string(), bundle: z.string() }).strict(),
      z.object({ workload_api: z.string() }).strict(),
    ]),
    policies: z.string().describe('policy file or directory, watched'),
    inbound: z
      .object({
        listen: hostPort,
        app: hostPort,
        /** This service as policy target; default: the SVID's SPIFFE ID. */
        target: z.string().optional(),
        timeout_ms: z.number().int().positive().default(30_000),
        trusted_proxies: z.array(z.string()).default([]),
      })
      .strict()
      .optional(),
    /** Where decisions go: the server's audit log (batched, spilled to disk while the server is away). */
    audit: z
      .object({
        /** Server API base URL, e.g. http://127.0.0.1:8181. */
        server: z.url(),
        /** File holding the bearer token for `POST /v1/audit/events` (admin or ingest token). */
        token_file: z.string(),
        /** Spill directory (default: a directory next to the config file). */
        spill_dir: z.string().optional(),
      })
      .strict()
      .optional(),
    outbound: z
      .object({
        listen: hostPort,
        timeout_ms: z.number().int().positive().default(30_000),
        services: z.record(z.string(), z.object({ address: hostPort, spiffe_id: z.string() }).strict()),
      })
      .strict()
      .optional(),
  })
  .strict();

export type SidecarConfig = z.infer<typeof SidecarConfigSchema>;

/** A config file that cannot be used, with the field that is wrong. */
export class SidecarConfigError extends Error {
  override readonly name = 'SidecarConfigError';
  readonly code = 'ERR_SIDECAR_CONFIG';
}

/**
 * Reads and validates a sidecar config file.
 *
 * @example
 * ```ts
 * const config = loadSidecarConfig('sidecar.yaml');
 * ```
 * @throws {SidecarConfigError} naming the file and field
 */
export function loadSidecarConfig(file: string): SidecarConfig {
  let doc: unknown;
  try {
    doc = YAML.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new SidecarConfigError(`${file}: ${(e as Error).message}`);
  }
  const r = SidecarConfigSchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new SidecarConfigError(`${file}: ${i?.path.join('.') || '(root)'}: ${i?.message ?? 'invalid'}`);
  }
  if (!r.data.inbound && !r.data.outbound) throw new SidecarConfigError(`${file}: needs inbound, outbound or both`);
  return r.data;
}

/** Options of {@link startSidecar} beyond the config. */
export interface SidecarOptions {
  /** Supplies SVIDs when the config names files is not wanted (tests, embedding). */
  source?: X509SvidSource;
  recorder?: DecisionRecorder;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface RunningSidecar {
  inboundPort?: number;
  outboundPort?: number;
  close(): Promise<void>;
}

// Hop-by-hop headers (RFC 9110 §7.6.1) and identity headers a client must never supply.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const IDENTITY = /^(x-nevertrust-|x-forwarded-client-cert$|x-client-cert$|x-spiffe-)/;

function forwardHeaders(h: IncomingHttpHeaders, stripIdentity: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const conn = typeof h.connection === 'string' ? h.connection.toLowerCase().split(/\s*,\s*/) : [];
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP.has(k) || conn.includes(k)) continue;
    if (stripIdentity && IDENTITY.test(k)) continue;
    out[k] = v;
  }
  return out;
}

function split(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
}

function filesSource(c: { cert: string; key: string; bundle: string }): { source: MemorySvidSource; stop(): void } {
  const read = () => {
    const certChainPem = readFileSync(c.cert, 'utf8');
    const bundlePem = readFileSync(c.bundle, 'utf8');
    const spiffeId: SpiffeId = spiffeIdFromCertificate(new X509Certificate(certChainPem));
    const bundle = new TrustBundle({
      trustDomain: spiffeId.trustDomain,
      x509Authorities: bundlePem
        .split(/(?=-----BEGIN CERTIFICATE-----)/)
        .filter((p) => p.includes('BEGIN CERTIFICATE'))
        .map((p) => new X509Certificate(p)),
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
  let stopSource = () => {};
  let source = opts.source;
  if (!source) {
    if ('workload_api' in config.svid) {
      const { X509Source } = await import('../workload/index.js');
      const s = await X509Source.create({ address: config.svid.workload_api });
      source = s;
      stopSource = () => s.close();
    } else {
      const f = filesSource(config.svid);
      source = f.source;
      stopSource = f.stop;
    }
  }
  const watcher = new PolicyWatcher(config.policies);
  watcher.on('error', (e) =>
    log('policy change rejected; the last good snapshot stays in force', { issues: e.issues }),
  );
  const closers: (() => Promise<void> | void)[] = [() => watcher.close(), stopSource];
  const out: RunningSidecar = { close: async () => {} };

  if (config.inbound) {
    const ib = config.inbound;
    const app = split(ib.app);
    // Idle upstream sockets are closed well before the app's own keep-alive timeout (Node's default
    // is 5 s): reusing a socket the app is closing at that moment would fail the request with a 502.
    const appAgent = new HttpAgent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256, timeout: 2000 });
    const target = ib.target ?? source.svid.spiffeId.toString();
    const enforcer = createEnforcer({
      target,
      snapshot: () => watcher.current,
      bundles: source,
      trustedProxies: ib.trusted_proxies,
      recorder: opts.recorder,
    });
    const server: HttpsServer = createMtlsServer(source, { authorize: authorizeAny() }, (req, res) => {
      enforcer.check(req).then(
        (r) => {
          if (!r.ok) {
            req.resume();
            return sendRefusal(res, r);
          }
          const headers = forwardHeaders(req.headers, true);
          if (r.identity.spiffeId) headers['x-nevertrust-peer-id'] = r.identity.spiffeId;
          headers['x-nevertrust-decision-id'] = r.decision.decision_id;
          const up = httpRequest(
            { host: app.host, port: app.port, method: req.method, path: req.url, headers, agent: appAgent },
            (ur) => {
              res.writeHead(ur.statusCode ?? 502, forwardHeaders(ur.headers, false));
              ur.pipe(res);
            },
          );
          up.setTimeout(ib.timeout_ms, () => up.destroy(new Error('upstream timeout')));
          up.on('error', (e) => {
            log('upstream (app) request failed', { error: e.message });
            if (!res.headersSent)
              res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"bad_gateway"}');
            else res.destroy();
          });
          req.pipe(up);
        },
        () => res.writeHead(403).end(),
      );
    });
    server.keepAliveTimeout = 60_000;
    server.headersTimeout = 10_000;
    server.requestTimeout = ib.timeout_ms;
    const l = split(ib.listen);
    await new Promise<void>((r) => server.listen(l.port, l.host, () => r()));
    out.inboundPort = (server.address() as AddressInfo).port;
    log('sidecar inbound (mTLS) listening', { port: out.inboundPort, app: ib.app, target });
    closers.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => r());
          server.closeIdleConnections();
        }),
      () => appAgent.destroy(),
    );
  }

  if (config.outbound) {
    const ob = config.outbound;
    const agents = new Map<string, { address: string; agent: ReturnType<typeof createMtlsAgent> }>();
    for (const [name, svc] of Object.entries(ob.services)) {
      agents.set(name, {
        address: svc.address,
        agent: createMtlsAgent(source, {
          authorize: authorizeId(svc.spiffe_id),
          agent: { headersTimeout: ob.timeout_ms, bodyTimeout: ob.timeout_ms },
        }),
      });
    }
    const server: Server = createHttpServer((req, res) => {
      const name = (req.headers.host ?? '').replace(/:\d+$/, '');
      const svc = agents.get(name);
      if (!svc) {
        req.resume();
        res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"unknown_service"}');
        return;
      }
      const headers = forwardHeaders(req.headers, true);
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
      svc.agent
        .request({
          origin: `https://${svc.address}`,
          path: req.url ?? '/',
          method: (req.method ?? 'GET') as 'GET',
          headers: headers as Record<string, string>,
          body: hasBody ? req : undefined,
        })
        .then(
          (ur) => {
            const h: Record<string, string | string[]> = {};
            for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP.has(k)) h[k] = v;
            res.writeHead(ur.statusCode, h);
            ur.body.pipe(res);
          },
          (e: Error) => {
            log('outbound request failed', { service: name, error: e.message });
            if (!res.headersSent) {
              res.writeHead(502, { 'content-type': 'application/json' }).end(
                JSON.stringify({
                  error: /authoriz|SVID|certificate/i.test(e.message) ? 'peer_rejected' : 'bad_gateway',
                }),
              );
            } else res.destroy();
          },
        );
    });
    server.keepAliveTimeout = 60_000;
    const l = split(ob.listen);
    await new Promise<void>((r) => server.listen(l.port, l.host, () => r()));
    out.outboundPort = (server.address() as AddressInfo).port;
    log('sidecar outbound (plain HTTP → mTLS) listening', { port: out.outboundPort });
    closers.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => r());
          server.closeIdleConnections();
        }),
      async () => {
        for (const a of agents.values()) await a.agent.close();
      },
    );
  }
  out.close = async () => {
    for (const c of closers.reverse()) await c();
  };
  return out;
}
