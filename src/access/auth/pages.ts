/** The authenticator's own small HTML pages: no script, a strict CSP, never cached. */
import type { ServerResponse } from 'node:http';
import { escapeHtml } from '../../util/html.js';

/**
 * `formTargets`: origins a form post may end at besides ours. Browsers hold the redirects that answer
 * a form post to `form-action` too, so the sign-out form must name the provider's logout origin.
 */
const csp = (formTargets: readonly string[]) =>
  `default-src 'none'; style-src 'unsafe-inline'; form-action ${["'self'", ...formTargets].join(' ')}; frame-ancestors 'none'; base-uri 'none'`;

// One escaper for every page of the product; re-exported for the MFA pages.
export { escapeHtml };

/** Security headers every own response carries. */
export function noStoreHeaders(res: ServerResponse): void {
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Pragma', 'no-cache');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
}

/** Sends a page; `bodyHtml` must already be escaped; `formTargets` are origins (`new URL(…).origin`). */
export function sendPage(
  res: ServerResponse,
  status: number,
  title: string,
  bodyHtml: string,
  cookies: string[] = [],
  formTargets: readonly string[] = [],
): void {
  noStoreHeaders(res);
  res.setHeader('Content-Security-Policy', csp(formTargets));
  res.setHeader('X-Frame-Options', 'DENY');
  if (cookies.length > 0) res.setHeader('Set-Cookie', cookies);
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>` +
      '<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}</style>' +
      `</head><body><h1>${escapeHtml(title)}</h1>${bodyHtml}</body></html>`,
  );
}

/** A 302 with no-store and the given cookies. */
export function redirect(res: ServerResponse, location: string, cookies: string[] = []): void {
  noStoreHeaders(res);
  if (cookies.length > 0) res.setHeader('Set-Cookie', cookies);
  res.writeHead(302, { Location: location });
  res.end();
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  noStoreHeaders(res);
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}
