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
import { AdminAuth, AdminAuthError, type AdminPrincipal } from './admin-auth.js';
import { ServerEvents } from './events.js';
import { ServerMetrics } from './metrics.js';
import { refusalRecorder } from './refusal-hook.js';
import { dispatch, type Handler, Router, refusal, sendJson, sendText } from './router.js';
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
  /**
   * Names of plugins this one uses (their handles, their routes): they must be in the server's
   * plugin list before this one, which `startServer` checks before it binds anything.
   */
  readonly dependsOn?: readonly string[];
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

/**
 * Checks the plugins' declared dependencies: each named plugin is present and listed earlier. Wrong
 * order is refused rather than sorted: the list's order is also the order of routes and of closing,
 * so it stays the one the caller wrote.
 *
 * @example
 * checkPluginDependencies([policy, decision]); // ok; [decision, policy] throws ServerStartError
 */
export function checkPluginDependencies(plugins: readonly ServerPlugin[]): void {
  const position = new Map<string, number>();
  plugins.forEach((p, i) => {
    if (position.has(p.name))
      throw new ServerStartError(`two plugins are named '${p.name}': plugin names must be unique`);
    position.set(p.name, i);
  });
  plugins.forEach((p, i) => {
    for (const dep of p.dependsOn ?? []) {
      if (dep === p.name) throw new ServerStartError(`plugin '${p.name}' depends on itself`);
      const at = position.get(dep);
      if (at === undefined)
        throw new ServerStartError(`plugin '${p.name}' depends on plugin '${dep}', which is not registered: add it`);
      if (at > i)
        throw new ServerStartError(
          `plugin '${p.name}' depends on plugin '${dep}', which is listed after it: list '${dep}' before '${p.name}'`,
        );
    }
  });
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
  const plugins = opts.plugins ?? [];
  checkPluginDependencies(plugins);
  const metrics = new ServerMetrics();
  const router = new Router();
  const events = new ServerEvents();
  // Every refusal (auth failure, rate limit, banned caller) is recorded here, once, for all plugins.
  router.onRefusal(refusalRecorder({ events, logger }));
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

  try {
    store = await openStore({ url: config.database.url, dataDir: config.data_dir });
    warnLooseDataDir(config.data_dir, logger);
    const admin = await AdminAuth.init(store, config.data_dir, config.console);
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
    events.endStartup();
  } catch (e) {
    events.endStartup();
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

/** A route handler for an authenticated admin (see {@link adminRoute}). */
export type AdminHandler = (...args: [...Parameters<Handler>, AdminPrincipal]) => void | Promise<void>;

/**
 * Wraps an admin handler: the caller must authenticate as an admin, or gets 401 with a reason (a
 * refusal: recorded by the router's refusal hook).
 *
 * @example
 * router.on('GET', '/v1/admin/entries', adminRoute(ctx, async (req, res, url, who) => sendJson(res, 200, [])));
 */
export function adminRoute(ctx: Pick<ServerContext, 'admin'>, handler: AdminHandler): Handler {
  return async (req, res, url) => {
    let who: AdminPrincipal;
    try {
      who = await ctx.admin.authenticate(req, url);
    } catch (e) {
      // dispatch() answers it (401, reason `unauthenticated`) and the router's refusal hook records it.
      if (e instanceof AdminAuthError)
        throw refusal(e, {
          log: 'admin request refused',
          ...(e.options.by !== undefined ? { by: e.options.by } : {}),
          ...(e.options.headers ? { headers: e.options.headers } : {}),
        });
      throw e;
    }
    return handler(req, res, url, who);
  };
}
