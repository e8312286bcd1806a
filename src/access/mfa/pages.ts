/**
 * The MFA pages, rendered on the server: the person's factors and enrollment, the TOTP setup (QR
 * code as inline SVG, the secret as text), new recovery codes (shown once), and the step-up
 * challenge. Every value is escaped; every form carries the CSRF token; no inline script.
 */
import type { ServerResponse } from 'node:http';
import { escapeHtml, noStoreHeaders } from '../auth/pages.js';
import { ASSETS_PATH } from './assets.js';
import type { FactorInfo } from './service.js';

export const MFA_BASE = '/.nevertrust/mfa';

/** The pages' CSP: scripts and styles from the proxy only, inline SVG and data: images, forms to us. */
export const MFA_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const e = escapeHtml;

/** Sends a page with the MFA CSP, never cached, not framed. `body` must be escaped already. */
export function sendMfaPage(res: ServerResponse, status: number, title: string, body: string, script = false): void {
  noStoreHeaders(res);
  // Forms and scripts here post to us with our Origin (checked); `no-referrer` would make it `null`.
  res.setHeader('Referrer-Policy', 'same-origin');
  res.setHeader('Content-Security-Policy', MFA_CSP);
  res.setHeader('X-Frame-Options', 'DENY');
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8' });
  const scripts = script
    ? `<script src="${ASSETS_PATH}simplewebauthn-browser.js"></script><script src="${ASSETS_PATH}webauthn-client.js"></script>`
    : '';
  res.end(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${e(title)}</title>` +
      `<meta name="viewport" content="width=device-width"><link rel="stylesheet" href="${ASSETS_PATH}mfa.css">` +
      `</head><body><h1>${e(title)}</h1>${body}${scripts}</body></html>`,
  );
}

const hidden = (name: string, value: string | undefined) =>
  value === undefined ? '' : `<input type="hidden" name="${e(name)}" value="${e(value)}">`;

/** A POST form to `action` with the CSRF token (and the enrollment link's token when there is one). */
const form = (action: string, csrf: string, inner: string, token?: string) =>
  `<form method="post" action="${e(action)}">${hidden('csrf', csrf)}${hidden('token', token)}${inner}</form>`;

const when = (ms: number | undefined) =>
  ms === undefined ? 'never' : new Date(ms).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';

const message = (error?: string, notice?: string) =>
  (error ? `<p class="error" role="alert">${e(error)}</p>` : '') +
  (notice ? `<p class="notice" role="status">${e(notice)}</p>` : '');

export interface ManageView {
  user: string;
  csrf: string;
  factors: FactorInfo[];
  /** May add and remove factors now (enrollment rules of the design). */
  mayChange: boolean;
  /** Why not, when not. */
  blocked?: 'verify' | 'no_link';
  /** The enrollment link's token, carried by every form. */
  token?: string;
  error?: string;
  notice?: string;
}

/** `/.nevertrust/mfa`: the factors, and what may be added or removed. */
export function managePage(v: ManageView): string {
  const confirmed = v.factors.filter((f) => f.confirmed);
  const list = confirmed.length
    ? `<ul id="factors">${confirmed
        .map(
          (f) =>
            `<li data-kind="${e(f.kind)}"><b>${e(f.name)}</b> (${f.kind === 'totp' ? 'authenticator app' : 'security key or passkey'}), ` +
            `added ${e(when(f.createdAt))}, last used ${e(when(f.lastUsedAt))}` +
            (v.mayChange
              ? form(`${MFA_BASE}/remove`, v.csrf, `${hidden('factor', f.id)}<button type="submit">Remove</button>`)
              : '') +
            '</li>',
        )
        .join('')}</ul>`
    : '<p id="factors">No second factor yet.</p>';
  let actions = '';
  if (v.mayChange) {
    actions +=
      '<h2>Add an authenticator app</h2>' +
      form(
        `${MFA_BASE}/totp`,
        v.csrf,
        '<label>Name <input name="name" id="totp-name" maxlength="64" value="Authenticator app"></label> ' +
          '<button type="submit" id="totp-add">Set up</button>',
        v.token,
      ) +
      '<h2>Add a security key or passkey</h2>' +
      '<label>Name <input id="wa-name" maxlength="64" value="Security key"></label> ' +
      `<button type="button" id="wa-register" data-base="${MFA_BASE}" data-csrf="${e(v.csrf)}"${v.token ? ` data-token="${e(v.token)}"` : ''}>Add</button>` +
      '<p id="wa-status" role="status"></p>';
    if (confirmed.length)
      actions +=
        '<h2>Recovery codes</h2><p>One-time codes for when no factor is at hand. New ones replace the old.</p>' +
        form(
          `${MFA_BASE}/recovery-codes`,
          v.csrf,
          '<button type="submit" id="recovery-new">New recovery codes</button>',
        );
  } else if (v.blocked === 'verify') {
    actions = `<p>To add or remove factors, verify it is you first (within the last 5 minutes).</p><p><a id="verify" href="${MFA_BASE}/challenge?rd=${encodeURIComponent(MFA_BASE)}">Verify now</a></p>`;
  } else {
    actions =
      '<p>You have no second factor yet. Ask an administrator for an enrollment link (<code>nevertrust user enroll-link</code>).</p>';
  }
  return `<p>Signed in as <b id="user">${e(v.user)}</b>.</p>${message(v.error, v.notice)}<h2>Your factors</h2>${list}${actions}`;
}

/**
 * The TOTP setup: the QR code, the secret as text for typing in, and the first code to confirm.
 * Without `shown` (a wrong first code), only the confirmation: the secret is shown once.
 */
export function totpSetupPage(v: {
  csrf: string;
  factorId: string;
  shown?: { secret: string; qrSvg: string };
  token?: string;
  error?: string;
}): string {
  // The SVG comes from our QR encoder (no input reaches it but the URI, encoded as modules).
  const shown = v.shown
    ? '<p>Scan this with your authenticator app, or type the secret in.</p>' +
      `<div class="qr" id="totp-qr">${v.shown.qrSvg}</div>` +
      `<p>Secret: <code id="totp-secret" data-secret="${e(v.shown.secret)}">${e(v.shown.secret.replace(/(.{4})/g, '$1 ').trim())}</code></p>`
    : '<p>Enter the current code from your authenticator app.</p>';
  return (
    message(v.error) +
    shown +
    form(
      `${MFA_BASE}/totp/confirm`,
      v.csrf,
      `${hidden('factor', v.factorId)}<label>Code from the app <input name="code" id="totp-code" inputmode="numeric" autocomplete="one-time-code" maxlength="10" required></label> ` +
        '<button type="submit" id="totp-confirm">Confirm</button>',
      v.token,
    )
  );
}

/** New recovery codes: shown this once. */
export function recoveryCodesPage(codes: string[]): string {
  return (
    '<p>Keep these somewhere safe. Each works once; they are shown only now.</p>' +
    `<ul class="codes" id="recovery-codes">${codes.map((c) => `<li><code>${e(c)}</code></li>`).join('')}</ul>` +
    `<p><a href="${MFA_BASE}">Done</a></p>`
  );
}

export interface ChallengeView {
  csrf: string;
  rd: string;
  /** The advisory methods from the gate (`m`), passed through. */
  m?: string;
  again: boolean;
  webauthn: boolean;
  totp: boolean;
  recovery: boolean;
  /** No confirmed factor: where to enroll, if allowed. */
  enroll?: boolean;
  /** The person has confirmed factors, none of the kinds this rule accepts. */
  hasFactors?: boolean;
  error?: string;
}

/** `/.nevertrust/mfa/challenge`: WebAuthn first, then TOTP, a recovery code as the last resort. */
export function challengePage(v: ChallengeView): string {
  const keep = hidden('rd', v.rd) + hidden('m', v.m) + (v.again ? hidden('again', '1') : '');
  let body = message(v.error);
  if (v.again) body += '<p id="again">The form you sent needs this check first. After it, send the form again.</p>';
  if (!v.webauthn && !v.totp && !v.recovery) {
    return (
      body +
      '<p id="no-factor">This needs a second factor, and you have none that fits.</p>' +
      (v.hasFactors
        ? `<p>It asks for a security key or passkey. <a id="add-factor" href="${MFA_BASE}">Add one</a> (you verify with a factor you have first), then come back.</p>`
        : v.enroll
          ? `<p><a id="enroll" href="${MFA_BASE}">Set one up</a></p>`
          : '<p>Ask an administrator for an enrollment link (<code>nevertrust user enroll-link</code>).</p>')
    );
  }
  if (v.webauthn)
    body +=
      `<p><button type="button" id="wa-authenticate" data-base="${MFA_BASE}" data-csrf="${e(v.csrf)}" data-rd="${e(v.rd)}" data-again="${v.again ? '1' : '0'}">Use your security key or passkey</button></p>` +
      '<p id="wa-status" role="status"></p>';
  if (v.totp)
    body += form(
      `${MFA_BASE}/challenge`,
      v.csrf,
      `${keep}${hidden('kind', 'totp')}<label>Code from your authenticator app <input name="code" id="totp-code" inputmode="numeric" autocomplete="one-time-code" maxlength="10" required autofocus></label> ` +
        '<button type="submit" id="totp-verify">Verify</button>',
    );
  if (v.recovery)
    body += form(
      `${MFA_BASE}/challenge`,
      v.csrf,
      `${keep}${hidden('kind', 'recovery')}<details><summary id="recovery-open">Use a recovery code</summary>` +
        '<label>Recovery code <input name="code" id="recovery-code" autocomplete="off" maxlength="64"></label> ' +
        '<button type="submit" id="recovery-verify">Verify</button></details>',
    );
  return body;
}

/** After a step-up for a form post: the post is not replayed. */
export function verifiedAgainPage(rd: string): string {
  return `<p id="verified">Verified. Go back and send the form again.</p><p><a id="back" href="${e(rd)}">Back</a></p>`;
}
