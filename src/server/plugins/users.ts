/**
 * Admin API for the built-in OpenID provider's people: add, list, show, update, remove; and for
 * people's second factors at the access proxy: list, reset, enrollment links. Every call
 * is authenticated (`adminRoute`) and recorded as an `admin.action` event, allowed or refused, with
 * the fields that changed but never a password, hash or token. Contracts: src/api/users.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hashPassword } from '../../access/idp/password.js';
import type { MfaService } from '../../access/mfa/service.js';
import { toIso } from '../../api/fields.js';
import type { SignalOf } from '../../api/signals.js';
import {
  DEFAULT_ENROLL_LINK_TTL_S,
  ENROLL_LINK_PATH,
  type EnrollLinkWire,
  enrollLinkRequestSchema,
  type MfaFactorWire,
  personNameText,
  USERNAME_PATTERN,
  userCreateSchema,
  userToWire,
  userUpdateSchema,
} from '../../api/users.js';
import type { AuditEventInput } from '../../audit/event.js';
import { isNevertrustError } from '../../errors.js';
import { zodProblems } from '../../registration/entry.js';
import { DuplicateUserError } from '../../store/index.js';
import type { AdminPrincipal } from '../admin-auth.js';
import { HttpError, readJson, sendJson } from '../router.js';
import type { ServerEvent } from '../events.js';
import { adminRoute, type ServerContext, type ServerPlugin } from '../server.js';

const PREFIX = '/v1/admin/users/';

type Handler = (
  ctx: ServerContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  who: AdminPrincipal,
) => Promise<void>;

function invalid(problems: { field: string; message: string }[]): HttpError {
  return new HttpError(400, 'invalid_user', problems.map((p) => `${p.field || 'user'}: ${p.message}`).join('; '), {
    problems,
  });
}

/** Runs an admin operation, recording refusals (bad input, conflicts) as well as successes. */
async function guarded<T>(
  ctx: ServerContext,
  who: AdminPrincipal,
  action: string,
  target: string,
  fn: () => Promise<{ out: T; details?: Record<string, unknown> }>,
): Promise<T> {
  const record = (outcome: 'allow' | 'deny', reason: string, details?: Record<string, unknown>) =>
    ctx.events.record({
      kind: 'admin.action',
      outcome,
      source: { id: who.id },
      target: { id: target, resource: action },
      reason,
      ...(details && { details }),
    });
  try {
    const { out, details } = await fn();
    record('allow', 'ok', details);
    return out;
  } catch (e) {
    if (e instanceof HttpError) record('deny', e.message);
    throw e;
  }
}

/** One percent-encoded path segment, decoded; `''` when the encoding is malformed (refused as a name). */
function decodeSegment(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return '';
  }
}

function usernameOf(url: URL): string {
  const name = decodeSegment(url.pathname.slice(PREFIX.length));
  if (!USERNAME_PATTERN.test(name))
    throw new HttpError(400, 'invalid_user', `username: "${name.slice(0, 80)}" is not a username`);
  return name;
}

const notFound = (name: string) => new HttpError(404, 'no_such_user', `no user ${name}`);

/** `POST /v1/admin/users` */
const addUser: Handler = async (ctx, req, res, _url, who) => {
  const body = await readJson(req);
  const target =
    typeof (body as { username?: unknown } | null)?.username === 'string'
      ? String((body as { username: string }).username).slice(0, 64)
      : '';
  const user = await guarded(ctx, who, 'user.add', target, async () => {
    const parsed = userCreateSchema.safeParse(body);
    if (!parsed.success) throw invalid(zodProblems(parsed.error));
    const u = parsed.data;
    try {
      const out = await ctx.store.users.create({
        username: u.username,
        ...(u.email !== undefined && { email: u.email }),
        ...(u.name !== undefined && { name: u.name }),
        groups: u.groups ?? [],
        passwordHash: await hashPassword(u.password),
        disabled: u.disabled ?? false,
      });
      return { out, details: { groups: out.groups, disabled: out.disabled } };
    } catch (e) {
      if (e instanceof DuplicateUserError) throw new HttpError(409, 'duplicate_user', e.message);
      throw e;
    }
  });
  sendJson(res, 201, userToWire(user));
};

/** `GET /v1/admin/users` */
const listUsers: Handler = async (ctx, _req, res, _url, who) => {
  const users = await guarded(ctx, who, 'user.list', '', async () => ({ out: await ctx.store.users.list() }));
  sendJson(res, 200, { users: users.map(userToWire) });
};

/** `GET /v1/admin/users/<name>` */
const showUser: Handler = async (ctx, _req, res, url, who) => {
  const name = usernameOf(url);
  const user = await guarded(ctx, who, 'user.show', name, async () => {
    const u = await ctx.store.users.get(name);
    if (!u) throw notFound(name);
    return { out: u };
  });
  sendJson(res, 200, userToWire(user));
};

/** `PATCH /v1/admin/users/<name>` (only the fields given) */
const updateUser: Handler = async (ctx, req, res, url, who) => {
  const name = usernameOf(url);
  const body = await readJson(req);
  const user = await guarded(ctx, who, 'user.update', name, async () => {
    const parsed = userUpdateSchema.safeParse(body);
    if (!parsed.success) throw invalid(zodProblems(parsed.error));
    const u = parsed.data;
    const out = await ctx.store.users.update(name, {
      ...(u.email !== undefined && { email: u.email }),
      ...(u.name !== undefined && { name: u.name }),
      ...(u.groups !== undefined && { groups: u.groups }),
      ...(u.disabled !== undefined && { disabled: u.disabled }),
      ...(u.password !== undefined && { passwordHash: await hashPassword(u.password) }),
    });
    if (!out) throw notFound(name);
    // Which fields changed, and the new groups/disabled (who may do what); never the password.
    const signal = u.disabled
      ? personSignal('user.disabled', name, 'disabled by an admin', who)
      : u.password !== undefined
        ? personSignal('user.credentials-changed', name, 'password changed by an admin', who)
        : undefined;
    return {
      out,
      details: {
        changed: Object.keys(u).sort(),
        groups: out.groups,
        disabled: out.disabled,
        ...(signal && { signal }),
      },
    };
  });
  sendJson(res, 200, userToWire(user));
};

/**
 * The signal a change of a person carries in its event: the signals plugin raises it, ending their
 * sessions everywhere (issue #23).
 */
function personSignal(
  kind: 'user.disabled' | 'user.credentials-changed',
  user: string,
  reason: string,
  who: AdminPrincipal,
): SignalOf<typeof kind> {
  return { kind, user: { user }, reason, source: 'admin', at: new Date().toISOString(), origin: `admin:${who.id}` };
}

/** `DELETE /v1/admin/users/<name>` */
const removeUser: Handler = async (ctx, _req, res, url, who) => {
  const name = usernameOf(url);
  await guarded(ctx, who, 'user.remove', name, async () => {
    if (!(await ctx.store.users.remove(name))) throw notFound(name);
    return { out: undefined, details: { signal: personSignal('user.disabled', name, 'removed by an admin', who) } };
  });
  sendJson(res, 200, { deleted: name });
};

// `/v1/admin/users/<name>/mfa[/reset|/enroll-link]`: the name is one encoded path segment.
const MFA_PATH = /^\/v1\/admin\/users\/([^/]+)\/mfa(\/reset|\/enroll-link)?$/;

/** The person named in an MFA path (any access-proxy user name, not only provider users). */
function personOf(encoded: string): string {
  const r = personNameText.safeParse(decodeSegment(encoded));
  if (!r.success) throw new HttpError(400, 'invalid_user', `user: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

/**
 * The MFA service for one admin call, its audit events (`mfa.reset`, `mfa.enroll_link`) recorded
 * like the server's own, about `user`. Loaded on first use: WebAuthn and QR code libraries are
 * not needed by a server that never manages factors.
 */
async function mfaFor(ctx: ServerContext, user: string): Promise<MfaService> {
  const { createMfaService } = await import('../../access/mfa/service.js');
  const record = (e: AuditEventInput) => {
    const event: ServerEvent = {
      kind: e.kind as ServerEvent['kind'],
      outcome: e.outcome ?? 'allow',
      // The service names the acting admin as the event's user: the same principal id as admin.action.
      source: { ...(e.source?.user !== undefined && { id: e.source.user }) },
      target: { id: user },
      reason: e.reason ?? e.kind,
      ...(e.details && { details: e.details }),
    };
    ctx.events.record(event);
  };
  return createMfaService({ store: ctx.store, record });
}

/** The service's refusals of bad input as HTTP refusals, so that `guarded` records them. */
async function mfaCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isNevertrustError(e) && !(e instanceof HttpError) && e.status < 500)
      throw new HttpError(e.status, 'invalid_mfa_request', e.message);
    throw e;
  }
}

/** `GET /v1/admin/users/<name>/mfa`: the person's factors (confirmed and pending), never a secret. */
const listMfa = async (ctx: ServerContext, res: ServerResponse, user: string, who: AdminPrincipal) => {
  const factors = await guarded(ctx, who, 'user.mfa.list', user, async () => {
    const mfa = await mfaFor(ctx, user);
    return { out: await mfaCall(() => mfa.listByUser(user)) };
  });
  const wire: MfaFactorWire[] = factors.map((f) => ({
    id: f.id,
    kind: f.kind,
    name: f.name,
    issuer: f.issuer,
    sub: f.sub,
    confirmed: f.confirmed,
    created_at: toIso(f.createdAt),
    last_used_at: f.lastUsedAt === undefined ? null : toIso(f.lastUsedAt),
  }));
  sendJson(res, 200, { user, factors: wire });
};

/**
 * `POST /v1/admin/users/<name>/mfa/reset`: deletes the person's factors and recovery codes and ends
 * their access-proxy sessions (every provider identity with that user name); audited `mfa.reset`.
 */
const resetMfa = async (ctx: ServerContext, res: ServerResponse, user: string, who: AdminPrincipal) => {
  const out = await guarded(ctx, who, 'user.mfa.reset', user, async () => {
    const mfa = await mfaFor(ctx, user);
    const r = await mfaCall(() => mfa.resetUser(user, who.id));
    return { out: r, details: { factors: r.factors, sessions: r.sessions } };
  });
  sendJson(res, 200, { user, factors: out.factors, sessions: out.sessions });
};

/** `POST /v1/admin/users/<name>/mfa/enroll-link` `{ttl?}`: a one-time enrollment link (shown once). */
const enrollLink = async (
  ctx: ServerContext,
  req: IncomingMessage,
  res: ServerResponse,
  user: string,
  who: AdminPrincipal,
) => {
  const body = await readJson(req);
  const link = await guarded(ctx, who, 'user.mfa.enroll_link', user, async () => {
    const parsed = enrollLinkRequestSchema.safeParse(body ?? {});
    if (!parsed.success) throw invalid(zodProblems(parsed.error));
    const ttlS = parsed.data.ttl ?? DEFAULT_ENROLL_LINK_TTL_S;
    const mfa = await mfaFor(ctx, user);
    const r = await mfaCall(() => mfa.createEnrollLink(user, who.id, Math.round(ttlS * 1000)));
    // The token is in the answer only: never in the admin.action record.
    return { out: r, details: { expires_at: toIso(r.expiresAt) } };
  });
  const wire: EnrollLinkWire = {
    user,
    token: link.token,
    expires_at: toIso(link.expiresAt),
    path: `${ENROLL_LINK_PATH}?token=${encodeURIComponent(link.token)}`,
  };
  sendJson(res, 201, wire);
};

/** `GET /v1/admin/users/<name>[/mfa]` */
const getUser: Handler = async (ctx, req, res, url, who) => {
  const m = MFA_PATH.exec(url.pathname);
  if (!m) return showUser(ctx, req, res, url, who);
  if (m[2] !== undefined) throw new HttpError(405, 'method_not_allowed', `GET not allowed on ${url.pathname}`);
  return listMfa(ctx, res, personOf(m[1] as string), who);
};

/** `POST /v1/admin/users/<name>/mfa/reset|enroll-link` */
const postUser: Handler = async (ctx, req, res, url, who) => {
  const m = MFA_PATH.exec(url.pathname);
  if (!m || m[2] === undefined) throw new HttpError(404, 'not_found', `no route for ${url.pathname}`);
  const user = personOf(m[1] as string);
  if (m[2] === '/reset') return resetMfa(ctx, res, user, who);
  return enrollLink(ctx, req, res, user, who);
};

/**
 * The users plugin: the built-in provider's people, managed by admins.
 *
 * @example
 * ```ts
 * startServer({ config, logger, plugins: [usersPlugin()] });
 * // POST /v1/admin/users {"username":"alice","email":"alice@example.com","groups":["staff"],"password":"…"}
 * // POST /v1/admin/users/alice%40example.com/mfa/reset
 * ```
 */
export function usersPlugin(): ServerPlugin {
  return {
    name: 'users',
    register(ctx: ServerContext) {
      const route = (h: Handler) => adminRoute(ctx, (req, res, url, who) => h(ctx, req, res, url, who));
      ctx.router.on('POST', '/v1/admin/users', route(addUser));
      ctx.router.on('GET', '/v1/admin/users', route(listUsers));
      ctx.router.onPrefix('GET', PREFIX, route(getUser));
      ctx.router.onPrefix('POST', PREFIX, route(postUser));
      ctx.router.onPrefix('PATCH', PREFIX, route(updateUser));
      ctx.router.onPrefix('DELETE', PREFIX, route(removeUser));
    },
  };
}
