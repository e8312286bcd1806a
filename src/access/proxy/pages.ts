/**
 * What the proxy answers itself: small HTML pages for browsers, JSON for API clients (`Accept:
 * application/json`, and always for 401s to non-browsers). Reasons are shown; secrets never are.
 */
import { escapeHtml } from '../../util/html.js';
import type { IncomingMessage } from 'node:http';

/** An answer of the proxy's own, for a `ServerResponse` or a raw (upgrade) socket alike. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The facts of a refusal. */
export interface Refusal {
  /** Stable machine-readable code, e.g. `forbidden`, `mfa_required`, `unknown_host`. */
  error: string;
  reason: string;
  decision_id?: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Sign-in required',
  403: 'Access denied',
  404: 'Not found',
  502: 'The application is unavailable',
  503: 'Temporarily unavailable',
  504: 'The application did not answer in time',
};

/** Whether the client asked for JSON (API clients, fetch from scripts). */
export function wantsJson(req: IncomingMessage): boolean {
  const a = req.headers.accept;
  return typeof a === 'string' && a.toLowerCase().includes('application/json');
}

/** A page load or form post by a browser (not a script asking for JSON): the MFA challenge is for those. */
export function isBrowserPage(req: IncomingMessage): boolean {
  const a = req.headers.accept;
  return typeof a === 'string' && a.toLowerCase().includes('text/html') && !wantsJson(req);
}

/** Whether this is a page load by a browser (login redirects are only for those). */
export function isBrowserNavigation(req: IncomingMessage): boolean {
  return (req.method === 'GET' || req.method === 'HEAD') && isBrowserPage(req);
}

/**
 * The answer for a refusal: JSON `{error, reason, decision_id}` when asked for (or `json`), else an
 * HTML page with the same facts. Never cached.
 *
 * @example
 * ```ts
 * const a = refusalAnswer(req, 403, { error: 'forbidden', reason: d.reason, decision_id: d.decision_id });
 * ```
 */
export function refusalAnswer(req: IncomingMessage, status: number, r: Refusal, json = wantsJson(req)): Answer {
  const base = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
  if (json) {
    return { status, headers: { ...base, 'content-type': 'application/json' }, body: JSON.stringify(r) };
  }
  const title = TITLES[status] ?? 'Error';
  const id = r.decision_id ? `<p>Decision id: <code>${escapeHtml(r.decision_id)}</code></p>` : '';
  const body = `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1><p>${escapeHtml(r.reason)}</p>${id}</body></html>\n`;
  return {
    status,
    headers: {
      ...base,
      'content-type': 'text/html; charset=utf-8',
      // Our own pages run no script and load nothing.
      'content-security-policy': "default-src 'none'",
    },
    body,
  };
}
