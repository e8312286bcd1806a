#!/usr/bin/env node
/**
 * A development aid, never part of the package's runtime: serves the console (dist/console) on
 * 127.0.0.1 with the same shell and CSP as the server's console plugin, and forwards /v1/admin/*
 * to a running server, adding `Authorization: Bearer <data_dir>/admin.token` in place of the
 * access proxy's person assertion. See docs/console.md, "Developing the console".
 *
 *   node scripts/console-dev.mjs --server http://127.0.0.1:9181 --data-dir /tmp/nt [--port 9190] [--watch]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const assets = join(root, 'dist/console');

const { values: args } = parseArgs({
  options: {
    server: { type: 'string', default: 'http://127.0.0.1:8181' },
    'data-dir': { type: 'string', default: '.nevertrust' },
    port: { type: 'string', default: '9190' },
    watch: { type: 'boolean', default: false },
  },
});
const upstream = new URL(args.server);
if (upstream.protocol !== 'http:') throw new Error('--server: an http:// URL of the API port (127.0.0.1)');
const token = readFileSync(join(args['data-dir'], 'admin.token'), 'utf8').trim();

/** The console's CSP, as the server's console plugin sends it (docs: console design). */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const SECURITY = { 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'same-origin' };

const SHELL = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nevertrust console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/assets/app.css">
<script type="module" src="/console/assets/app.js"></script>
</head>
<body><div id="app"></div></body>
</html>
`;

const TYPES = { '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json', '.txt': 'text/plain' };

/** Forwards an admin call with the admin token; the answer (an NDJSON stream too) is piped back. */
function forward(req, res) {
  const headers = { ...req.headers, host: upstream.host, authorization: `Bearer ${token}` };
  delete headers.cookie;
  const up = request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, { ...answer.headers, ...SECURITY });
      res.flushHeaders();
      answer.pipe(res);
    },
  );
  up.on('error', (e) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json', ...SECURITY });
    res.end(JSON.stringify({ error: 'bad_gateway', message: e.message }));
  });
  // The browser went away (a paused live tail): stop the upstream stream too.
  res.on('close', () => up.destroy());
  req.pipe(up);
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname.startsWith('/v1/admin/')) return forward(req, res);
  if (url.pathname === '/' || url.pathname === '/console') {
    res.writeHead(302, { location: '/console/', ...SECURITY });
    return res.end();
  }
  if (url.pathname === '/console/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...SECURITY });
    return res.end(SHELL);
  }
  // No access proxy here: the step-up is a plain redirect back to the view.
  if (url.pathname === '/console/step-up') {
    res.writeHead(303, { location: `/console/#${url.searchParams.get('return') ?? ''}`, ...SECURITY });
    return res.end();
  }
  if (url.pathname.startsWith('/console/assets/')) {
    const name = normalize(url.pathname.slice('/console/assets/'.length));
    if (name.startsWith('..') || name.includes('/')) {
      res.writeHead(404, SECURITY);
      return res.end();
    }
    try {
      const body = await readFile(join(assets, name));
      const type = TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream';
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', ...SECURITY });
      return res.end(body);
    } catch {
      res.writeHead(404, SECURITY);
      return res.end('not built: run `node scripts/build-console.mjs`');
    }
  }
  res.writeHead(404, { 'content-type': 'text/plain', ...SECURITY });
  res.end('not found');
});

server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`console: http://127.0.0.1:${server.address().port}/console/ → ${upstream.origin} (admin token)`);
});
if (args.watch) {
  spawn(process.execPath, [join(root, 'scripts/build-console.mjs'), '--watch'], { stdio: 'inherit' });
}
