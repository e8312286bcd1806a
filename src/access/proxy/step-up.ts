/**
 * What the gate answers for a `step_up` decision: a browser with a session goes to the proxy's MFA
 * challenge (303; a form post is never replayed: it comes back to the page it was posted from) or
 * to the provider's login for more (`step_up: {via: provider}`); everyone else gets 401 with the
 * RFC 9470 challenge (`insufficient_user_authentication`, `acr_values`, `max_age`).
 */
import type { IncomingMessage } from 'node:http';
import type { StepUpRequirement } from '../../policy/step-up.js';
import { safeReturnTo } from '../auth/return-to.js';
import { OWN_PATH_PREFIX } from '../identity.js';
import type { RouteConfig } from './config.js';

export const MFA_PATH = `${OWN_PATH_PREFIX}mfa`;
export const MFA_CHALLENGE_PATH = `${MFA_PATH}/challenge`;

/** The `acr_values` API clients are told when the route names none: the OpenID PAPE multi-factor policy. */
export const DEFAULT_STEP_UP_ACR = 'http://schemas.openid.net/pape/policies/2007/06/multi-factor';

/**
 * Where the browser returns after the challenge: the request itself for a GET; for a form post the
 * page it came from (same origin only), which says to submit again.
 */
export function returnPath(req: IncomingMessage, origin: string, pathAndQuery: string): { rd: string; again: boolean } {
  if (req.method === 'GET' || req.method === 'HEAD') return { rd: safeReturnTo(pathAndQuery), again: false };
  let rd = '/';
  const referer = req.headers.referer;
  if (typeof referer === 'string') {
    try {
      const u = new URL(referer);
      if (u.origin === origin) rd = safeReturnTo(u.pathname + u.search);
    } catch {
      // not a URL: the home page
    }
  }
  return { rd, again: true };
}

/**
 * The challenge page's URL: `rd` the return path, `m` the methods that satisfy the rule (advisory:
 * the page offers only those; the gate decides again either way), `again` for a form post.
 *
 * @example challengeLocation('/admin', { methods: ['hwk', 'swk'] }, false) // '/.nevertrust/mfa/challenge?rd=%2Fadmin&m=hwk%2Cswk'
 */
export function challengeLocation(rd: string, need: StepUpRequirement, again: boolean): string {
  const q = new URLSearchParams({ rd });
  if (need.methods?.length) q.set('m', need.methods.join(','));
  if (again) q.set('again', '1');
  return `${MFA_CHALLENGE_PATH}?${q.toString()}`;
}

const quoted = (s: string) => s.replace(/[^\x20-\x7e]|["\\]/g, ' ');

/** The RFC 9470 `WWW-Authenticate` value. */
export function insufficientAuthentication(
  host: string,
  reason: string,
  route: RouteConfig,
  need: StepUpRequirement,
): string {
  const acr = route.step_up?.acr_values.length ? route.step_up.acr_values : [DEFAULT_STEP_UP_ACR];
  return (
    `Bearer realm="${quoted(host)}", error="insufficient_user_authentication", ` +
    `error_description="${quoted(reason).slice(0, 300)}", acr_values="${quoted(acr.join(' '))}"` +
    (need.maxAge !== undefined ? `, max_age=${need.maxAge}` : '')
  );
}
