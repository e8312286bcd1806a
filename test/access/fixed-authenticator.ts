/**
 * A small real {@link Authenticator} for the proxy's tests: a fixed token per person, presented as
 * `Authorization: Bearer <token>` (a bearer caller) or in the `__Host-test` cookie (a session);
 * login sends browsers to a fake provider URL. The OIDC authenticator replaces it end to end.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type Authenticator,
  type Identification,
  type LoginOptions,
  MFA_AMR,
  type PersonIdentity,
  type RequestContext,
} from '../../src/access/identity.js';

export const ISSUER = 'https://idp.example.test';
export const LOGIN_URL = 'https://idp.example.test/authorize';

/** A person; with a second factor in `amr`, `mfaAt` is the login time (as the default mapping gives). */
export function person(sub: string, groups: string[], amr: string[] = ['pwd']): PersonIdentity {
  return {
    issuer: ISSUER,
    sub,
    email: `${sub}@example.test`,
    groups,
    amr,
    authTime: 1_780_000_000,
    ...(amr.some((m) => MFA_AMR.includes(m)) ? { mfaAt: 1_780_000_000 } : {}),
    claims: { groups, email: `${sub}@example.test`, sub, iss: 'https://forged.example' },
  };
}

export class FixedAuthenticator implements Authenticator {
  readonly credentialCookies = ['__Host-test'];
  readonly logins: { returnTo: string; origin: string; opts?: LoginOptions }[] = [];
  readonly elevations: { sessionId: string; methods: readonly string[] }[] = [];
  readonly handled: string[] = [];
  closed = false;
  /** When set, identify() throws (a broken authenticator must deny). */
  explode = false;

  constructor(private readonly people: Record<string, PersonIdentity>) {}

  identify(req: IncomingMessage, _ctx: RequestContext): Identification {
    if (this.explode) throw new Error('authenticator exploded');
    const cookie = /(?:^|;\s*)__Host-test=([^;]*)/.exec(req.headers.cookie ?? '')?.[1];
    if (cookie !== undefined) {
      const p = this.people[cookie];
      return p
        ? { kind: 'session', person: p, sessionId: `sid-${p.sub}` }
        : { kind: 'invalid', code: 'session_unknown', reason: 'no such session' };
    }
    const auth = req.headers.authorization;
    if (auth === undefined) return { kind: 'none' };
    const m = /^Bearer (\S+)$/.exec(auth);
    // A refusal whose reason is hostile to a header line (quotes, CR LF, non-ASCII).
    if (m?.[1] === 'weird-token')
      return { kind: 'invalid', code: 'invalid_token', reason: 'bad "token"\r\nx-evil: é\\' };
    const p = m?.[1] ? this.people[m[1]] : undefined;
    return p
      ? { kind: 'bearer', person: p }
      : { kind: 'invalid', code: 'invalid_token', reason: 'token not recognized' };
  }

  async handle(req: IncomingMessage, res: ServerResponse, _ctx: RequestContext): Promise<boolean> {
    this.handled.push(req.url ?? '');
    if (req.url?.startsWith('/.nevertrust/ping')) {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('own endpoint');
      return true;
    }
    return false;
  }

  async startLogin(
    _req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    returnTo: string,
    opts?: LoginOptions,
  ): Promise<void> {
    this.logins.push({ returnTo, origin: ctx.origin, ...(opts ? { opts } : {}) });
    res.writeHead(302, { location: `${LOGIN_URL}?return_to=${encodeURIComponent(ctx.origin + returnTo)}` }).end();
  }

  async elevate(sessionId: string, methods: readonly string[]): Promise<boolean> {
    this.elevations.push({ sessionId, methods });
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
