/**
 * Admin API for the built-in OpenID provider's people: add, list, show, update, remove. Every call
 * is authenticated (`adminRoute`) and recorded as an `admin.action` event, allowed or refused, with
 * the fields that changed but never a password or hash. Contracts: src/api/users.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hashPassword } from '../../access/idp/password.js';
import { USERNAME_PATTERN, userCreateSchema, userToWire, userUpdateSchema } from '../../api/users.js';
import { zodProblems } from '../../registration/entry.js';
import { DuplicateUserError } from '../../store/index.js';
import type { AdminPrincipal } from '../admin-auth.js';
import { HttpError, readJson, sendJson } from '../router.js';
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

function usernameOf(url: URL): string {
  let name: string;
  try {
    name = decodeURIComponent(url.pathname.slice(PREFIX.length));
  } catch {
    name = '';
  }
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
    return { out, details: { changed: Object.keys(u).sort(), groups: out.groups, disabled: out.disabled } };
  });
  sendJson(res, 200, userToWire(user));
};

/** `DELETE /v1/admin/users/<name>` */
const removeUser: Handler = async (ctx, _req, res, url, who) => {
  const name = usernameOf(url);
  await guarded(ctx, who, 'user.remove', name, async () => {
    if (!(await ctx.store.users.remove(name))) throw notFound(name);
    return { out: undefined };
  });
  sendJson(res, 200, { deleted: name });
};

/**
 * The users plugin: the built-in provider's people, managed by admins.
 *
 * @example
 * ```ts
 * startServer({ config, logger, plugins: [usersPlugin()] });
 * // POST /v1/admin/users {"username":"alice","email":"alice@example.com","groups":["staff"],"password":"…"}
 * ```
 */
export function usersPlugin(): ServerPlugin {
  return {
    name: 'users',
    register(ctx: ServerContext) {
      const route = (h: Handler) => adminRoute(ctx, (req, res, url, who) => h(ctx, req, res, url, who));
      ctx.router.on('POST', '/v1/admin/users', route(addUser));
      ctx.router.on('GET', '/v1/admin/users', route(listUsers));
      ctx.router.onPrefix('GET', PREFIX, route(showUser));
      ctx.router.onPrefix('PATCH', PREFIX, route(updateUser));
      ctx.router.onPrefix('DELETE', PREFIX, route(removeUser));
    },
  };
}
