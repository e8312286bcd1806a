/**
 * The built-in provider's HTML: the login form, the sign-out confirmation, the signed-out and error
 * pages. No script at all (the CSP forbids it); forms post back with a CSRF token.
 */
import { escapeHtml } from '../../util/html.js';

/** The stylesheet, served from the provider's own origin (`style-src 'self'`). */
export const STYLESHEET = `body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.3rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1rem}.error{color:#a00;margin:.8rem 0}`;

export const STYLESHEET_PATH = '/interaction/style.css';

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><link rel="stylesheet" href="${STYLESHEET_PATH}"></head><body>${body}</body></html>`;
}

export function loginPage(opts: {
  action: string;
  csrf: string;
  username?: string;
  error?: string;
  client?: string;
}): string {
  return page(
    'Sign in',
    `<h1>Sign in${opts.client ? ` to ${escapeHtml(opts.client)}` : ''}</h1>
${opts.error ? `<p class="error" role="alert">${escapeHtml(opts.error)}</p>` : ''}
<form method="post" action="${escapeHtml(opts.action)}" autocomplete="on">
<input type="hidden" name="csrf" value="${escapeHtml(opts.csrf)}">
<label for="username">Username</label><input type="text" id="username" name="username" value="${escapeHtml(opts.username ?? '')}" autocomplete="username" required autofocus>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form>`,
  );
}

/** oidc-provider's sign-out confirmation: its own form (with its xsrf field), posted by a button. */
export function logoutPage(form: string): string {
  // The provider's form has no submit control and relies on script; add ours inside it.
  const withButton = form.replace(
    '</form>',
    '<button type="submit" name="logout" value="yes">Sign out</button></form>',
  );
  return page('Sign out', `<h1>Sign out?</h1>${withButton}`);
}

export function signedOutPage(): string {
  return page('Signed out', '<h1>You are signed out</h1>');
}

export function errorPage(error: string, description?: string): string {
  return page(
    'Error',
    `<h1>Sign-in error</h1><p class="error">${escapeHtml(error)}${description ? `: ${escapeHtml(description)}` : ''}</p>`,
  );
}
