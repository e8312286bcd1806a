/**
 * The contract between the access proxy (src/access/proxy/) and what authenticates people for it
 * (src/access/auth/: OIDC login, server-side sessions, bearer tokens). The proxy asks who is calling,
 * decides, and forwards; the authenticator owns cookies, the provider and the session store.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** A person as verified from a provider's ID token (or access token, for bearer callers). */
export interface PersonIdentity {
  /** The provider's issuer, exactly as discovered. */
  issuer: string;
  sub: string;
  /**
   * Who the person is for policy (`source.user`) and audit, from the authenticator's configured user
   * claim (e.g. `preferred_username`); absent: `email`, else `sub`.
   */
  user?: string;
  email?: string;
  name?: string;
  /** From the configured groups claim (default `groups`); always a list. */
  groups: string[];
  /** RFC 8176 authentication method references, e.g. `pwd`, `otp`, `hwk`, `mfa`. */
  amr: string[];
  acr?: string;
  /** Seconds since the epoch, when the person last authenticated at the provider. */
  authTime?: number;
  /**
   * Seconds since the epoch of the person's last second factor: at the provider (its `amr`/`acr`
   * counts by the authenticator's `mfa` mapping; then it is `auth_time`) or a step-up at the proxy.
   * Absent: no second factor, or one whose time is unknown (see `mfa`). Policy reads it as
   * `auth.mfa_age`.
   */
  mfaAt?: number;
  /**
   * A second factor was passed (policy's `auth.mfa`). True without `mfaAt` when the provider's
   * methods count but it gave no `auth_time`: then a freshness rule (`auth.mfa_age`) is unknown and
   * fails closed, rather than taking the token's issue time (a refreshed token is new; its MFA is not).
   */
  mfa?: boolean;
  /** The verified claims for policy (`request.auth.claims[…]`, Istio `requestPrincipals`); no tokens. */
  claims: Record<string, unknown>;
}

/** Who made a request, as the authenticator found it. */
export type Identification =
  | {
      kind: 'session';
      person: PersonIdentity;
      /** A public handle of the session (not the cookie value): logs, audit, the assertion's `sid`. */
      sessionId: string;
      /** When the session began, ms since the epoch: a person's signal cutoff ends sessions begun before it. */
      startedAt?: number;
    }
  | { kind: 'bearer'; person: PersonIdentity }
  /** No credential presented: browsers go to login, API clients get 401. */
  | { kind: 'none' }
  /** A credential was presented and refused (tampered cookie, dead session, bad token): 401, with why. */
  | { kind: 'invalid'; code: string; reason: string };

/** What the proxy knows about the request when it asks. */
export interface RequestContext {
  /** The route's host (lower case, no port), already matched against the routes. */
  host: string;
  /** The origin browsers use for this host, e.g. `https://app.example.test:8443`. */
  origin: string;
  /** The client's address. */
  ip: string;
  /**
   * The device whose certificate came with this request, verified and enrolled (not revoked): a
   * session created with it is bound to it, and refused without it.
   */
  deviceId?: string;
}

/** Authenticates people for the proxy. */
export interface Authenticator {
  /**
   * Who is calling: the session cookie, else `Authorization: Bearer`. Never throws; a cache hit
   * answers synchronously (no database read per request).
   */
  identify(req: IncomingMessage, ctx: RequestContext): Identification | Promise<Identification>;
  /**
   * Serves the proxy's own endpoints under `/.nevertrust/` (callback, sign_out, back-channel
   * logout). Resolves false when the path is not one of them (the proxy answers 404).
   */
  handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<boolean>;
  /**
   * Sends a browser to the provider's login, remembering `returnTo` (a path on `ctx.origin`). `opts`
   * asks the provider for more (a step-up there): `acr_values`, `max_age`, `prompt`.
   */
  startLogin(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    returnTo: string,
    opts?: LoginOptions,
  ): Promise<void>;
  /**
   * Records that the session passed a second factor now with `methods` (RFC 8176 `amr` values): the
   * session's very next request (at this proxy) sees it, other proxies within a change-feed interval.
   * False when the session has ended or is unknown.
   */
  elevate(sessionId: string, methods: readonly string[]): Promise<boolean>;
  /**
   * A CSRF token for the session credential in `req` and `purpose` (forms and scripts of the proxy's
   * own pages): the same for the life of the session, unguessable without the cookie. Undefined
   * without a session credential.
   */
  csrfToken?(req: IncomingMessage, purpose: string): string | undefined;
  close(): Promise<void>;
  /**
   * Forgets a cached session at once (a signal revoked it): its next request reads the store, where
   * the server has ended it too.
   */
  evict?(sessionId: string): void;
  /**
   * Names of the cookies that carry this authenticator's credential (the session cookie): the proxy
   * removes them before forwarding, so an app never holds a session reference it could replay.
   */
  readonly credentialCookies?: readonly string[];
}

/** What a login may ask the provider for (OpenID Connect Core §3.1.2.1). */
export interface LoginOptions {
  /** `acr_values`: the authentication context classes wanted, in order of preference. */
  acrValues?: readonly string[];
  /** `max_age`: seconds; the provider re-authenticates an older login. */
  maxAge?: number;
  /** `prompt`, e.g. `login` to re-authenticate even within the provider's session. */
  prompt?: string;
}

/**
 * RFC 8176 methods that are a second factor (or say one was used): `mfa` itself, one-time codes,
 * keys, and biometrics. `pwd` alone, `kba` and `user` are not. The default of the authenticator's
 * `mfa.amr` mapping.
 */
export const MFA_AMR: readonly string[] = [
  'mfa',
  'otp',
  'hwk',
  'swk',
  'sms',
  'tel',
  'sc',
  'fpt',
  'face',
  'iris',
  'retina',
  'vbm',
];

/** The prefix of the proxy's own endpoints; never forwarded to an app. */
export const OWN_PATH_PREFIX = '/.nevertrust/';
