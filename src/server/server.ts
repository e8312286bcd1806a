/**
 * The control-plane process (NIST SP 800-207: the Policy Administrator). It binds its port first so
 * that a port conflict fails before anything touches the data dir, then opens and migrates the store
 * (`/readyz` turns 200 only after that), then registers plugins that add their routes.
 */
import { statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/index.js';
import { openStore, type Store, sqliteCorruption } from '../store/index.js';
import type { Logger } from '../util/logger.js';
import { AdminAuth, AdminAuthError, type AdminPrincipal, recordAdminRefusal } from './admin-auth.js';
import { ServerEvents } from './events.js';
import { ServerMetrics } from './metrics.js';
import { dispatch, type Handler, Router, sendJson, sendText } from './router.js';
import { listen } from '../util/listen.js';
import { NevertrustError } from '../errors.js';

export interface ServerContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly store: Store;
  readonly router: Router;
  readonly metrics: ServerMetrics;
  /** Authenticates admin callers; wrap admin routes with `adminRoute`. */
  readonly admin: AdminAuth;
  /** Things to record (admin actions, issuance…); the audit plugin listens. */
  readonly events: ServerEvents;
  /** Tells people about an endpoint a plugin opened (printed in the start banner). */
  announce(label: string, where: string): void;
}

/** A part of the server with its own routes and lifecycle, in the spirit of Fastify plugins. */
export interface ServerPlugin {
  readonly name: string;
  register(ctx: ServerContext): void | Promise<void>;
  close?(): void | Promise<void>;
}

export interface StartServerOptions {
  config: Config;
  logger: Logger;
  plugins?: ServerPlugin[];
}

export interface RunningServer {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly store: Store;
  readonly metrics: ServerMetrics;
  /** Where parts of the process report things to record (the audit plugin listens). */
  readonly events: ServerEvents;
  /** Endpoints plugins announced, for the start banner. */
  readonly endpoints: readonly { label: string; where: string }[];
  /** Stops accepting, lets in-flight requests finish (up to shutdown_timeout), closes plugins and the store. */
  close(): Promise<void>;
}

export class ServerStartError extends NevertrustError<'ERR_SERVER_START'> {
  override readonly name = 'ServerStartError';
  readonly code = 'ERR_SERVER_START';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { status: 500, cause: options?.cause });
  }
}

/** Listens on host:port; a failure becomes a ServerStartError that says what to change. */
async function listenOrExplain(server: Server, host: string, port: number): Promise<AddressInfo> {
  try {
    await listen(server, { host, port });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') {
      throw new ServerStartError(
        `${host}:${port} is already in use (another nevertrust server?): stop it or pick another port with --port / server.port`,
        { cause: err },
      );
    }
    if (err.code === 'EACCES') {
      throw new ServerStartError(`not allowed to listen on ${host}:${port}: use a port above 1023`, { cause: err });
    }
    if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') {
      throw new ServerStartError(`cannot listen on ${host}: no such local address (check --host / server.host)`, {
        cause: err,
      });
    }
    throw new ServerStartError(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err });
  }
  return server.address() as AddressInfo;
}

/**
 * The data dir holds the KEK, the admin token and the audit key: readable or writable by group or
 * others is a warning (traverse-only 0711, which the agent's public socket dir needs, is fine).
 */
function warnLooseDataDir(dir: string, logger: Logger): void {
  let mode: number;
  try {
    mode = statSync(dir).mode & 0o777;
  } catch {
    return; // PostgreSQL without a data dir yet: nothing to warn about.
  }
  if ((mode & 0o066) !== 0) {
    logger.warn(
      { dataDir: dir, mode: mode.toString(8) },
      `data dir ${dir} is open to group or others (mode ${mode.toString(8)}): run chmod 700 ${dir}`,
    );
  }
}

/**
 * Starts the control plane.
 *
 * @example
 * const server = await startServer({ config: loadConfig(), logger: createLogger('info') });
 * // … later
 * await server.close();
 */
export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const { config, logger } = opts;
  const metrics = new ServerMetrics();
  const router = new Router();
  const events = new ServerEvents();
  const endpoints: { label: string; where: string }[] = [];
  let store: Store | undefined;
  let ready = false;
  let inFlight = 0;
  let draining: (() => void) | undefined;

  router.on('GET', '/healthz', (_req, res) => sendJson(res, 200, { status: 'ok' }));
  router.on('GET', '/readyz', async (_req, res) => {
    if (!ready || !store) return sendJson(res, 503, { status: 'starting' });
    try {
      await store.ping();
      sendJson(res, 200, { status: 'ready', store: store.engine });
    } catch (e) {
      sendJson(res, 503, { status: 'store unavailable', error: (e as Error).message });
    }
  });
  router.on('GET', '/metrics', async (_req, res) => {
    sendText(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
  });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    const routeLabel = await dispatch(router, req, res, (err, path) => logger.error({ err, path }, 'request failed'));
    metrics.httpRequests.inc({ route: routeLabel, code: String(res.statusCode) });
    metrics.httpDuration.observe({ route: routeLabel }, Number(process.hrtime.bigint() - started) / 1e9);
  };

  const http = createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    inFlight++;
    metrics.inFlight.inc();
    res.on('close', () => {
      inFlight--;
      metrics.inFlight.dec();
      if (inFlight === 0) draining?.();
    });
    void handle(req, res);
  });

  const address = await listenOrExplain(http, config.server.host, config.server.port);
  const closeHttp = () =>
    new Promise<void>((r) => {
      http.close(() => r());
      http.closeIdleConnections();
    });

  const plugins = opts.plugins ?? [];
  try {
    store = await openStore({ url: config.database.url, dataDir: config.data_dir });
    warnLooseDataDir(config.data_dir, logger);
    const admin = await AdminAuth.init(store, config.data_dir);
    const ctx: ServerContext = {
      config,
      logger,
      store,
      router,
      metrics,
      admin,
      events,
      announce: (label, where) => endpoints.push({ label, where }),
    };
    for (const p of plugins) await p.register(ctx);
  } catch (e) {
    await closeHttp();
    for (const p of plugins) await Promise.resolve(p.close?.()).catch(() => {});
    await store?.close().catch(() => {});
    // A damaged page may first be read by a plugin (CA state, audit log): one line naming the file.
    throw (store?.engine === 'sqlite' && sqliteCorruption(e, store.location)) || e;
  }
  ready = true;
  metrics.ready.set(1);
  const openedStore = store;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, store: openedStore.engine, location: openedStore.location }, 'server listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    host: address.address,
    port: address.port,
    store: openedStore,
    metrics,
    events,
    endpoints,
    close() {
      closing ??= (async () => {
        ready = false;
        metrics.ready.set(0);
        const stopped = closeHttp();
        // Let in-flight requests finish; after the timeout, cut what is left.
        const timeoutMs = config.server.shutdown_timeout * 1000;
        await new Promise<void>((r) => {
          if (inFlight === 0) return r();
          draining = r;
          setTimeout(r, timeoutMs).unref();
        });
        http.closeAllConnections();
        await stopped;
        for (const p of [...plugins].reverse()) {
          try {
            await p.close?.();
          } catch (e) {
            logger.error({ err: e, plugin: p.name }, 'plugin failed to close');
          }
        }
        await openedStore.close();
        logger.info('server stopped');
      })();
      return closing;
    },
  };
}

/**
 * Wraps an admin handler: the caller must authenticate as an admin, or gets 401 with a reason.
 *
 * @example
 * router.on('GET', '/v1/admin/entries', adminRoute(ctx, async (req, res, url, who) => sendJson(res, 200, [])));
 */
export function adminRoute(
  ctx: Pick<ServerContext, 'admin' | 'logger' | 'events'>,
  handler: (...args: [...Parameters<Handler>, AdminPrincipal]) => void | Promise<void>,
): Handler {
  return async (req, res, url) => {
    let who: AdminPrincipal;
    try {
      who = await ctx.admin.authenticate(req);
    } catch (e) {
      if (e instanceof AdminAuthError) {
        recordAdminRefusal(ctx, req, url.pathname, e);
        return sendJson(res, e.status, { error: 'unauthenticated', message: e.message });
      }
      throw e;
    }
    return handler(req, res, url, who);
  };
}
