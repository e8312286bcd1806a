/**
 * The console's pages on a real server: the shell and its headers, assets with their cache rules,
 * path tricks on the assets route (sent raw, as a client that does not normalize would), the
 * step-up return, and a server whose console is not built or is disabled.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { ADMIN_TOKEN_FILE } from '../../src/server/admin-auth.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { CONSOLE_CSP, consolePlugin } from '../../src/server/plugins/console.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const APP_JS = 'export const hello = "console";\n';
const APP_CSS = 'main { color: black; }\n';

async function start(assetsDir: string, enabled = true): Promise<{ server: RunningServer; token: string }> {
  const dataDir = tempDir();
  const server = await startServer({
    config: configSchema.parse({ data_dir: dataDir, server: { port: 0, agent_port: 0 }, console: { enabled } }),
    logger: createLogger('silent'),
    plugins: [consolePlugin({ assetsDir })],
  });
  return { server, token: readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim() };
}

/** One request with the path exactly as given (fetch would normalize `..` and `%2e%2e` first). */
function raw(
  server: RunningServer,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

let built: { server: RunningServer; token: string };
let assets: string;
const auth = () => ({ authorization: `Bearer ${built.token}` });

beforeAll(async () => {
  assets = tempDir();
  writeFileSync(join(assets, 'app.js'), APP_JS);
  writeFileSync(join(assets, 'app.css'), APP_CSS);
  writeFileSync(join(assets, 'app.js.map'), '{"version":3}');
  mkdirSync(join(assets, 'sub'));
  writeFileSync(join(assets, 'sub', 'x.js'), 'nested');
  built = await start(assets);
});
afterAll(async () => {
  await built?.server.close();
});

describe('console pages', () => {
  it('the shell: one module script, one stylesheet, no inline code, strict headers', async () => {
    const r = await raw(built.server, '/console/', auth());
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['referrer-policy']).toBe('same-origin');
    expect(r.headers['cache-control']).toBe('no-store');
    const scripts = [...r.body.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]);
    expect(scripts).toHaveLength(1);
    expect(scripts[0]).toMatch(/^<script type="module" src="\/console\/assets\/app\.js\?v=[A-Za-z0-9_-]{16}">$/);
    expect(
      r.body.match(/<link rel="stylesheet" href="\/console\/assets\/app\.css\?v=[A-Za-z0-9_-]{16}">/g),
    ).toHaveLength(1);
    expect(r.body).not.toMatch(/<style|\sstyle=|\son[a-z]+=|javascript:/i);
    expect(r.body).toContain('<div id="app"></div>');
  });

  it('needs admin authentication: 401 (with the CSP), never the shell or an asset', async () => {
    for (const path of ['/console/', '/console', '/console/assets/app.js', '/console/step-up?return=/graph']) {
      const r = await raw(built.server, path, {});
      expect(r.status, path).toBe(401);
      expect(r.headers['content-security-policy'], path).toBe(CONSOLE_CSP);
      expect(r.body).not.toContain(APP_JS.trim());
      expect(r.body).not.toContain('<script');
      const bad = await raw(built.server, path, { authorization: `Bearer ${'x'.repeat(43)}` });
      expect(bad.status, path).toBe(401);
    }
  });

  it('assets: the hashed version is immutable, the bare name revalidated, types by extension', async () => {
    const shell = (await raw(built.server, '/console/', auth())).body;
    const src = /src="([^"]+)"/.exec(shell)?.[1] as string;
    const js = await raw(built.server, src, auth());
    expect(js.status).toBe(200);
    expect(js.body).toBe(APP_JS);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toBe('private, max-age=31536000, immutable');
    expect(js.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(js.headers['x-content-type-options']).toBe('nosniff');
    const bare = await raw(built.server, '/console/assets/app.js', auth());
    expect(bare.headers['cache-control']).toBe('no-cache');
    const old = await raw(built.server, '/console/assets/app.js?v=AAAAAAAAAAAAAAAA', auth());
    expect(old.headers['cache-control']).toBe('no-cache');
    const css = await raw(built.server, '/console/assets/app.css', auth());
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    expect((await raw(built.server, '/console/assets/app.js.map', auth())).headers['content-type']).toMatch(
      /^application\/json/,
    );
    // A rebuild while running: the shell names the new hash.
    writeFileSync(join(assets, 'app.css'), 'main { color: navy; }\n');
    const shell2 = (await raw(built.server, '/console/', auth())).body;
    expect(/app\.css\?v=([^"]+)/.exec(shell2)?.[1]).not.toBe(/app\.css\?v=([^"]+)/.exec(shell)?.[1]);
  });

  it('path tricks on assets never leave the assets directory; unknown assets are 404', async () => {
    const tricks = [
      '/console/assets/../../package.json',
      '/console/assets/%2e%2e/%2e%2e/package.json',
      '/console/assets/%2E%2E/%2E%2E/package.json',
      '/console/assets/..%2f..%2fpackage.json',
      '/console/assets/..%5c..%5cpackage.json',
      '/console/assets//etc/passwd',
      '/console/assets/%2Fetc%2Fpasswd',
      '/console/assets/sub/x.js',
      '/console/assets/sub',
      '/console/assets/.app.js',
      '/console/assets/app.js%00.css',
      '/console/assets/app.js/',
      '/console/assets/',
      '/console/assets/missing.js',
      '/console/assets/app.exe',
      `/console/assets/${'a'.repeat(5000)}.js`,
    ];
    for (const path of tricks) {
      const r = await raw(built.server, path, auth());
      expect([400, 404], `${path}: ${r.status}`).toContain(r.status);
      expect(r.body, path).not.toContain('"name": "nevertrust"');
      expect(r.body, path).not.toContain('root:');
      expect(r.body, path).not.toContain('nested');
    }
  });

  it('step-up returns to the console route it was given; anything else is refused', async () => {
    const r = await raw(built.server, '/console/step-up?return=%2Fdecisions%2Fev-42', auth());
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/console/#/decisions/ev-42');
    expect(r.headers['cache-control']).toBe('no-store');
    expect((await raw(built.server, '/console/step-up', auth())).headers.location).toBe('/console/');
    for (const bad of ['javascript:alert(1)', 'https://evil.example/', '"><script>', 'a'.repeat(300)]) {
      const b = await raw(built.server, `/console/step-up?return=${encodeURIComponent(bad)}`, auth());
      expect(b.status, bad).toBe(400);
      expect(JSON.parse(b.body)).toMatchObject({ error: 'invalid_return' });
    }
    const twice = await raw(built.server, '/console/step-up?return=/a&return=/b', auth());
    expect(twice.status).toBe(400);
  });

  it('not built: 503 naming npm run build; disabled: no console at all', async () => {
    const empty = await start(tempDir());
    try {
      for (const path of ['/console/', '/console/assets/app.js']) {
        const r = await raw(empty.server, path, { authorization: `Bearer ${empty.token}` });
        expect(r.status, path).toBe(503);
        expect(JSON.parse(r.body)).toMatchObject({ error: 'console_not_built', message: /npm run build/ });
      }
    } finally {
      await empty.server.close();
    }
    const off = await start(assets, false);
    try {
      expect((await raw(off.server, '/console/', { authorization: `Bearer ${off.token}` })).status).toBe(404);
    } finally {
      await off.server.close();
    }
  });
});
