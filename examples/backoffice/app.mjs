// The example internal web app behind the access proxy: a small back-office with `/`, `/reports`
// and `/admin`. It is reachable only on loopback and trusts nobody by position either: every request
// must carry the proxy's signed assertion (X-Nevertrust-Jwt-Assertion), verified with the server's
// published JWKS (any JWT library does this; here jose). The proxy has already decided the request;
// the app uses the verified claims to say who you are.
//
// Environment: NT_PORT (listen port), NT_JWKS_URL (the server's assertion JWKS), NT_ASSERTION_ISSUER
// (the proxy's SPIFFE ID), NT_AUDIENCE (this app's route audience). Started by `nevertrust up`.
import { createServer } from 'node:http';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const port = Number(process.env.NT_PORT ?? 0);
const jwksUrl = process.env.NT_JWKS_URL;
const issuer = process.env.NT_ASSERTION_ISSUER;
const audience = process.env.NT_AUDIENCE;
if (!jwksUrl || !issuer || !audience) {
  process.stderr.write('backoffice: NT_JWKS_URL, NT_ASSERTION_ISSUER and NT_AUDIENCE are required\n');
  process.exit(2);
}
const jwks = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge: 60_000 });

const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const page = (title, who, body) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)} · back-office</title>
<style>body{font:15px system-ui,sans-serif;margin:2rem auto;max-width:46rem;color:#1d2330}
nav a{margin-right:1rem}table{border-collapse:collapse}td,th{border:1px solid #ccd;padding:.3rem .6rem}
.who{color:#556;font-size:.9rem}</style></head>
<body><nav><a href="/">Home</a><a href="/reports">Reports</a><a href="/admin">Admin</a>
<a href="/.nevertrust/sign_out">Sign out</a></nav>
<h1>${esc(title)}</h1><p class="who" id="who">Signed in as <b id="email">${esc(who.email ?? who.sub)}</b>
(groups: <span id="groups">${esc((who.groups ?? []).join(', '))}</span>; signed in with
<span id="amr">${esc((who.amr ?? []).join(', '))}</span>; decision ${esc(who.decision_id ?? '')})</p>
${body}</body></html>`;

const routes = {
  '/': () =>
    '<p>Welcome to the back-office. Reports are for staff; the admin pages for admins, after a second factor (MFA).</p>',
  '/reports': () =>
    '<table id="reports"><tr><th>month</th><th>charges</th><th>refunds</th></tr><tr><td>2026-10</td><td>18,204</td><td>311</td></tr><tr><td>2026-11</td><td>19,877</td><td>287</td></tr></table>',
  '/admin': () => '<p id="admin">Admin tools: users, refunds above limits, audit exports.</p>',
};

createServer(async (req, res) => {
  const send = (status, html) => {
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
    });
    res.end(html);
  };
  const token = req.headers['x-nevertrust-jwt-assertion'];
  let who;
  try {
    if (typeof token !== 'string') throw new Error('no assertion');
    ({ payload: who } = await jwtVerify(token, jwks, { issuer, audience, algorithms: ['ES256'] }));
  } catch (e) {
    return send(401, `<h1>Not through the access proxy</h1><p>${esc(e.message)}</p>`);
  }
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path === '/healthz') return send(200, 'ok');
  const key = path.startsWith('/reports') ? '/reports' : path.startsWith('/admin') ? '/admin' : path;
  const body = routes[key];
  if (!body) return send(404, page('Not found', who, '<p>No such page.</p>'));
  send(200, page(key === '/' ? 'Back-office' : key.slice(1).replace(/^./, (c) => c.toUpperCase()), who, body()));
}).listen(port, '127.0.0.1', function () {
  process.send?.({ type: 'ready', port: this.address().port });
});
