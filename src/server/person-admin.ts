/**
 * People as admins (the console, docs/console.md): the access proxy vouches for a person with its
 * signed person assertion; the server verifies it with the keys that proxy registered here (its own
 * store, no HTTP), then checks the admin group, CSRF for a non-GET call and, for a destructive call,
 * a fresh second factor (RFC 9470 step-up). Every failure is an {@link AdminAuthError} (fail closed).
 */
import type { IncomingMessage } from 'node:http';
import { decodeJwt } from 'jose';
import type { Config } from '../config/index.js';
import { isNevertrustError } from '../errors.js';
import { verifyPersonAssertion } from '../pep/assertion/verify.js';
import { IdentityAssertionError, PERSON_ASSERTION_HEADER } from '../pep/assertion/wire.js';
import type { Store } from '../store/index.js';
import { AdminAuthError } from './admin-auth-error.js';
import { registeredKeysOf } from './assertion-key-store.js';

/** The console's settings (config `console`). */
export type ConsoleConfig = Config['console'];

/** A person the proxy vouched for, as the admin principal carries them. */
export interface AdminPerson {
  /** Their name at the proxy (the assertion's `user`, else email, else `sub`). */
  user: string;
  groups: string[];
  /** Epoch seconds of their last second factor, when known. */
  mfaAt?: number;
  /** The proxy session's public id. */
  sid?: string;
  /** The verified device the request came with. */
  device?: string;
  /** The access proxy that vouched (its SPIFFE ID). */
  proxy: string;
}

/**
 * POSTs that only read (a what-if evaluation, a log verification): a person needs no fresh second
 * factor for them, only for calls that change something.
 */
export const READ_ONLY_POSTS: ReadonlySet<string> = new Set(['/v1/admin/policy/evaluate', '/v1/admin/audit/verify']);

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/** Whether `method path` changes something, and so needs a fresh second factor from a person. */
export function isDestructive(method: string, path: string): boolean {
  if (SAFE_METHODS.has(method)) return false;
  return !(method === 'POST' && READ_ONLY_POSTS.has(path));
}

/** Whether a second factor at `mfaAt` (epoch s) is fresh at `nowMs`: within `maxAgeS`, not from the future. */
export function mfaFresh(mfaAt: number | undefined, maxAgeS: number, nowMs = Date.now()): boolean {
  if (mfaAt === undefined) return false;
  const age = nowMs / 1000 - mfaAt;
  // A few seconds of clock skew between proxy and server; a time far ahead is not believed.
  return age <= maxAgeS && age >= -5;
}

/** The RFC 9470 challenge for a call that needs a fresher second factor. */
function stepUpChallenge(description: string, maxAgeS: number): string {
  return `Bearer error="insufficient_user_authentication", error_description="${description}", max_age=${Math.round(maxAgeS)}`;
}

/** The one header value, or undefined when absent or repeated (a repeated credential is refused). */
function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Whether the request carries a person assertion at all (then it is the credential to check). */
export function hasPersonAssertion(req: IncomingMessage): boolean {
  return req.headers[PERSON_ASSERTION_HEADER] !== undefined;
}

/** Verifies person assertions of the proxies listed in `console.proxies`. */
export class PersonAdmin {
  private readonly audienceHost: string | undefined;

  constructor(
    private readonly store: Store,
    private readonly config: ConsoleConfig,
  ) {
    this.audienceHost = config.audience === undefined ? undefined : new URL(config.audience).hostname;
  }

  /**
   * The person behind `req`, checked for `method path`: assertion (issuer listed, key registered by
   * that issuer, audience, expiry), admin group, CSRF and MFA freshness for a non-GET call.
   *
   * @throws {AdminAuthError} 401 (no or bad assertion, stale MFA with the RFC 9470 header), 403 (not
   *   an admin, cross-site)
   */
  async authenticate(req: IncomingMessage, method: string, path: string): Promise<AdminPerson> {
    const person = await this.verify(req);
    const by = `person:${person.user}`;
    const group = this.config.admin_group;
    if (!person.groups.includes(group))
      throw new AdminAuthError(`the console needs group ${group}`, 403, { by, reason: 'forbidden' });
    if (!SAFE_METHODS.has(method)) this.checkSameOrigin(req, by);
    if (isDestructive(method, path) && !mfaFresh(person.mfaAt, this.config.mfa_max_age)) {
      const maxAge = this.config.mfa_max_age;
      const why =
        person.mfaAt === undefined
          ? 'this action needs a second factor'
          : `this action needs a second factor within the last ${Math.round(maxAge)} s`;
      throw new AdminAuthError(why, 401, {
        by,
        reason: 'insufficient_user_authentication',
        headers: { 'www-authenticate': stepUpChallenge(why, maxAge) },
      });
    }
    return person;
  }

  private async verify(req: IncomingMessage): Promise<AdminPerson> {
    const token = single(req.headers[PERSON_ASSERTION_HEADER]);
    if (token === undefined) throw new AdminAuthError('one person assertion expected, found several');
    const { proxies, audience } = this.config;
    if (proxies.length === 0 || audience === undefined)
      throw new AdminAuthError('person assertions are not accepted: console.proxies is empty');
    // The issuer only selects which registered keys to try; verifyPersonAssertion checks it again.
    let issuer: unknown;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      throw new AdminAuthError('person assertion refused: not a JWT');
    }
    if (typeof issuer !== 'string' || !proxies.includes(issuer))
      throw new AdminAuthError('person assertion refused: its issuer is not a console proxy (console.proxies)');
    try {
      const keys = await registeredKeysOf(this.store, issuer);
      const who = await verifyPersonAssertion(token, { keys }, { issuer, audience });
      return {
        user: who.user ?? who.email ?? who.subject,
        groups: who.groups,
        ...(who.mfaAt !== undefined ? { mfaAt: who.mfaAt } : {}),
        ...(who.sessionId !== undefined ? { sid: who.sessionId } : {}),
        ...(who.device !== undefined ? { device: who.device } : {}),
        proxy: issuer,
      };
    } catch (e) {
      if (e instanceof IdentityAssertionError && e.status < 500)
        throw new AdminAuthError(`person assertion refused: ${e.message} (${e.code})`);
      // Anything else (an unreadable key document, a store failure) is ours, and denies.
      if (isNevertrustError(e) && e.expose) throw new AdminAuthError(`person assertion refused: ${e.message}`);
      throw e;
    }
  }

  /**
   * CSRF: a person's non-GET call must be JSON (a cross-site form cannot send it without a CORS
   * preflight, which we never grant) and come from the console's own origin.
   */
  private checkSameOrigin(req: IncomingMessage, by: string): void {
    const type = single(req.headers['content-type'])?.split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json')
      throw new AdminAuthError('content-type: application/json is required', 403, { by, reason: 'csrf' });
    const origin = single(req.headers.origin);
    const site = single(req.headers['sec-fetch-site']);
    if (origin !== undefined) {
      if (!this.sameOrigin(origin))
        throw new AdminAuthError(`cross-site request refused (origin ${origin.slice(0, 200)})`, 403, {
          by,
          reason: 'csrf',
        });
    } else if (site !== 'same-origin') {
      throw new AdminAuthError('cross-site request refused: no Origin and Sec-Fetch-Site is not same-origin', 403, {
        by,
        reason: 'csrf',
      });
    }
    if (site !== undefined && site !== 'same-origin')
      throw new AdminAuthError(`cross-site request refused (Sec-Fetch-Site ${site.slice(0, 40)})`, 403, {
        by,
        reason: 'csrf',
      });
  }

  /** The console's origin is https on the audience's host, on whatever port the proxy listens. */
  private sameOrigin(origin: string): boolean {
    try {
      const u = new URL(origin);
      return u.protocol === 'https:' && u.hostname === this.audienceHost && u.origin === origin;
    } catch {
      return false;
    }
  }
}
