/**
 * The web console's pages (docs/console.md): the HTML shell at `/console/`, its built assets
 * (`dist/console/`, from `npm run build`) under `/console/assets/`, and `/console/step-up`, where the
 * access proxy's policy demands a fresh second factor before sending the person back. Every response
 * needs the same admin authentication as the admin API (a person assertion of an admin, or the admin
 * token) and carries a strict CSP: the shell has no inline script or style.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { packageRoot } from '../../util/package-root.js';
import { type Handler, HttpError, sendJson } from '../router.js';
import { type AdminHandler, adminRoute, type ServerContext, type ServerPlugin } from '../server.js';

/** The console's Content-Security-Policy, on every console response. */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** Where the console is served. */
export const CONSOLE_PATH = '/console/';
export const CONSOLE_ASSETS_PATH = '/console/assets/';
export const CONSOLE_STEP_UP_PATH = '/console/step-up';

/** The assets the build writes, by extension; anything else is not served. */
const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

// One file name directly in the assets directory: no separator, no leading dot, no encoding.
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)+$/;
// A hash route of the console (`/people`, `/decisions/<id>`): no scheme, no quotes, bounded.
const RETURN_HASH = /^[A-Za-z0-9/_.~%-]{0,256}$/;

const IMMUTABLE = 'private, max-age=31536000, immutable';

/** Headers every console response carries, refusals included. */
const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

function send(res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string>): void {
  res.writeHead(status, { 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

/** Options of {@link consolePlugin}. */
export interface ConsolePluginOptions {
  /** The built assets; default `dist/console/` of the package. */
  assetsDir?: string;
}

interface Asset {
  body: Buffer;
  hash: string;
  mtimeMs: number;
  size: number;
}

/**
 * The console's pages, behind admin authentication. Not registered when `console.enabled` is false.
 *
 * @example
 * ```ts
 * startServer({ config, logger, plugins: [consolePlugin()] }); // GET /console/ with a person assertion of an admin
 * ```
 */
export function consolePlugin(opts: ConsolePluginOptions = {}): ServerPlugin {
  const cache = new Map<string, Asset>();

  /** An asset's bytes and content hash, re-read when the file changes (a rebuild while running). */
  const asset = async (dir: string, name: string): Promise<Asset | undefined> => {
    const file = join(dir, name);
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(file);
    } catch {
      return undefined;
    }
    if (!st.isFile()) return undefined;
    const hit = cache.get(name);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit;
    const body = await readFile(file);
    const hash = createHash('sha256').update(body).digest('base64url').slice(0, 16);
    const entry = { body, hash, mtimeMs: st.mtimeMs, size: st.size };
    cache.set(name, entry);
    return entry;
  };

  // Answered, not thrown: a 5xx error's message is never shown, and this one tells the operator what to do.
  const notBuilt = (res: ServerResponse, dir: string) =>
    sendJson(res, 503, {
      error: 'console_not_built',
      message: `the console is not built (no ${dir}/app.js): run npm run build`,
    });

  return {
    name: 'console',
    register(ctx: ServerContext) {
      if (!ctx.config.console.enabled) return;
      const dir = opts.assetsDir ?? join(packageRoot(), 'dist', 'console');
      // Set before authentication, so that a 401/403/404 of a console path carries them too.
      const page = (handler: AdminHandler): Handler => {
        const authenticated = adminRoute(ctx, handler);
        return (req, res, url) => {
          for (const [k, v] of Object.entries(CONSOLE_HEADERS)) res.setHeader(k, v);
          return authenticated(req, res, url);
        };
      };

      const shell = page(async (_req, res) => {
        const js = await asset(dir, 'app.js');
        const css = await asset(dir, 'app.css');
        if (!js || !css) return notBuilt(res, dir);
        const html =
          '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
          '<meta name="viewport" content="width=device-width, initial-scale=1">\n' +
          '<title>nevertrust console</title>\n' +
          // No favicon request: the browser would log its 404 as a console error.
          '<link rel="icon" href="data:,">\n' +
          `<link rel="stylesheet" href="${CONSOLE_ASSETS_PATH}app.css?v=${css.hash}">\n` +
          `<script type="module" src="${CONSOLE_ASSETS_PATH}app.js?v=${js.hash}"></script>\n` +
          '</head>\n<body>\n<div id="app"></div>\n<noscript>The console needs JavaScript.</noscript>\n</body>\n</html>\n';
        send(res, 200, html, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      });

      const assets = page(async (_req, res, url) => {
        const name = url.pathname.slice(CONSOLE_ASSETS_PATH.length);
        const ext = name.slice(name.lastIndexOf('.'));
        const type = CONTENT_TYPES[ext];
        if (!ASSET_NAME.test(name) || type === undefined)
          throw new HttpError(404, 'not_found', `no console asset ${name.slice(0, 80)}`);
        const a = await asset(dir, name);
        if (!a) {
          if (!(await asset(dir, 'app.js'))) return notBuilt(res, dir);
          throw new HttpError(404, 'not_found', `no console asset ${name}`);
        }
        // The shell names each asset with its content hash: that exact version never changes.
        const cacheControl = url.searchParams.get('v') === a.hash ? IMMUTABLE : 'no-cache';
        send(res, 200, a.body, { 'content-type': type, 'cache-control': cacheControl, etag: `"${a.hash}"` });
      });

      // The proxy's policy demands a fresh second factor on this path; once through, back to the page.
      const stepUp = page((_req, res, url) => {
        const back = url.searchParams.getAll('return');
        if (back.length > 1) throw new HttpError(400, 'invalid_return', 'return: give it at most once');
        const hash = (back[0] ?? '').replace(/^#/, '');
        if (!RETURN_HASH.test(hash))
          throw new HttpError(
            400,
            'invalid_return',
            'return: a console route such as /people (at most 256 characters)',
          );
        const location = hash === '' ? CONSOLE_PATH : `${CONSOLE_PATH}#${hash}`;
        send(res, 303, `See ${location}\n`, {
          location,
          'content-type': 'text/plain; charset=utf-8',
          'cache-control': 'no-store',
        });
      });

      ctx.router.on('GET', CONSOLE_PATH, shell);
      ctx.router.on('GET', '/console', shell);
      ctx.router.onPrefix('GET', CONSOLE_ASSETS_PATH, assets);
      ctx.router.on('GET', CONSOLE_STEP_UP_PATH, stepUp);
    },
  };
}
