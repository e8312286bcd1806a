/**
 * Admin API for registration entries, join tokens and agents. Every call is authenticated
 * (`adminRoute`) and recorded as an `admin.action` event, allowed or refused. Requests and answers
 * have their contracts in src/api/ (entries, join-tokens, agents); one named handler per route.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { agentToWire, banRequestSchema } from '../../api/agents.js';
import { entryToWire, type RegistrationEntry } from '../../api/entries.js';
import { joinTokenRequestSchema, joinTokenToWire } from '../../api/join-tokens.js';
import { firstIssue } from '../../api/parse.js';
import type { SignalOf } from '../../api/signals.js';
import {
  checkTrustDomain,
  EntryValidationError,
  entryInputSchema,
  entryUpdateSchema,
  toMillis,
  zodProblems,
} from '../../registration/entry.js';
import { parseSpiffeId } from '../../spiffe/index.js';
import { DuplicateEntryError, StoreConflictError } from '../../store/index.js';
import { parseDuration } from '../../util/duration.js';
import type { AdminPrincipal } from '../admin-auth.js';
import { HttpError, readJson, sendJson } from '../router.js';
import { adminRoute, type ServerContext, type ServerPlugin } from '../server.js';

export const JOIN_TOKEN_DEFAULT_TTL = 600;
export const JOIN_TOKEN_MAX_TTL = 7 * 86400;

function invalid(problems: { field: string; message: string }[]): HttpError {
  return new HttpError(400, 'invalid_entry', problems.map((p) => `${p.field || 'entry'}: ${p.message}`).join('; '), {
    problems,
  });
}

/** Change notifications for entries, consumed by the agent sync streams. */
export type EntryChangeListener = (change: { op: 'create' | 'update' | 'delete'; entry: RegistrationEntry }) => void;

/** What every handler of this plugin works with. */
interface Deps {
  ctx: ServerContext;
  onEntryChange?: EntryChangeListener;
}

type AdminHandler = (
  d: Deps,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  who: AdminPrincipal,
) => Promise<void>;

function record(
  d: Deps,
  who: AdminPrincipal,
  action: string,
  target: string,
  outcome: 'allow' | 'deny',
  reason: string,
) {
  d.ctx.events.record({
    kind: 'admin.action',
    outcome,
    source: { id: who.id },
    target: { id: target, resource: action },
    reason,
  });
}

function entryDeletedSignal(entry: RegistrationEntry, who: AdminPrincipal): SignalOf<'workload.entry-deleted'> {
  return {
    kind: 'workload.entry-deleted',
    entryId: entry.id,
    spiffeId: entry.spiffeId,
    reason: `entry ${entry.id} deleted`,
    source: 'admin',
    at: new Date().toISOString(),
    origin: `admin:${who.id}`,
  };
}

function changed(d: Deps, op: 'create' | 'update' | 'delete', entry: RegistrationEntry, who: AdminPrincipal): void {
  d.ctx.events.record({
    kind: 'entry.changed',
    outcome: 'allow',
    source: { id: who.id },
    target: { id: entry.id, resource: entry.spiffeId },
    reason: `entry ${op}d`,
    details: {
      op,
      parent_id: entry.parentId,
      selectors: entry.selectors,
      revision: entry.revision,
      // Raised as a signal by the signals plugin: sidecars cut this workload's connections.
      ...(op === 'delete' && { signal: entryDeletedSignal(entry, who) }),
    },
  });
  d.onEntryChange?.({ op, entry });
}

/** Runs an admin operation, recording refusals (bad input, conflicts) as well as successes. */
async function guarded<T>(
  d: Deps,
  who: AdminPrincipal,
  action: string,
  target: string,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    const out = await fn();
    record(d, who, action, target, 'allow', 'ok');
    return out;
  } catch (e) {
    if (e instanceof HttpError) record(d, who, action, target, 'deny', e.message);
    throw e;
  }
}

function checkDomain(input: { spiffe_id?: string; parent_id?: string }, trustDomain: string): void {
  try {
    checkTrustDomain(input, trustDomain);
  } catch (e) {
    if (e instanceof EntryValidationError) throw invalid(e.problems);
    throw e;
  }
}

function entryId(pathname: string): string {
  const id = decodeURIComponent(pathname.slice('/v1/admin/entries/'.length));
  if (!/^[0-9a-f-]{36}$/.test(id)) throw new HttpError(400, 'bad_entry_id', `"${id}" is not an entry id`);
  return id;
}

/** `POST /v1/admin/entries` */
const createEntry: AdminHandler = async (d, req, res, _url, who) => {
  const { store, config } = d.ctx;
  const entry = await guarded(d, who, 'entry.create', '', async () => {
    const parsed = entryInputSchema.safeParse(await readJson(req));
    if (!parsed.success) throw invalid(zodProblems(parsed.error));
    const input = parsed.data;
    checkDomain(input, config.trust_domain);
    try {
      return await store.entries.create({
        spiffeId: input.spiffe_id,
        parentId: input.parent_id,
        selectors: input.selectors,
        x509SvidTtl: input.x509_svid_ttl ?? config.ca.x509_svid_ttl,
        jwtSvidTtl: input.jwt_svid_ttl ?? config.ca.jwt_svid_ttl,
        dnsNames: input.dns_names,
        hint: input.hint,
        admin: input.admin,
        expiresAt: toMillis(input.expires_at),
      });
    } catch (e) {
      if (e instanceof DuplicateEntryError) throw new HttpError(409, 'duplicate_entry', e.message);
      throw e;
    }
  });
  changed(d, 'create', entry, who);
  sendJson(res, 201, entryToWire(entry));
};

/** `GET /v1/admin/entries[?parent_id=&spiffe_id=&selector=]` */
const listEntries: AdminHandler = async (d, _req, res, url, who) => {
  const entries = await guarded(d, who, 'entry.list', '', () =>
    d.ctx.store.entries.list({
      parentId: url.searchParams.get('parent_id') ?? undefined,
      spiffeId: url.searchParams.get('spiffe_id') ?? undefined,
      selector: url.searchParams.get('selector') ?? undefined,
    }),
  );
  sendJson(res, 200, { entries: entries.map(entryToWire) });
};

/** `GET /v1/admin/entries/<id>` */
const showEntry: AdminHandler = async (d, _req, res, url, who) => {
  const id = entryId(url.pathname);
  const entry = await guarded(d, who, 'entry.show', id, async () => {
    const e = await d.ctx.store.entries.get(id);
    if (!e) throw new HttpError(404, 'no_such_entry', `no entry ${id}`);
    return e;
  });
  sendJson(res, 200, entryToWire(entry));
};

/** `PATCH /v1/admin/entries/<id>` (only the fields given; `revision` makes it a compare-and-set) */
const updateEntry: AdminHandler = async (d, req, res, url, who) => {
  const { store, config } = d.ctx;
  const id = entryId(url.pathname);
  const entry = await guarded(d, who, 'entry.update', id, async () => {
    const parsed = entryUpdateSchema.safeParse(await readJson(req));
    if (!parsed.success) throw invalid(zodProblems(parsed.error));
    const u = parsed.data;
    checkDomain(u, config.trust_domain);
    try {
      const updated = await store.entries.update(
        id,
        {
          ...(u.spiffe_id !== undefined && { spiffeId: u.spiffe_id }),
          ...(u.parent_id !== undefined && { parentId: u.parent_id }),
          ...(u.selectors !== undefined && { selectors: u.selectors }),
          ...(u.x509_svid_ttl !== undefined && { x509SvidTtl: u.x509_svid_ttl }),
          ...(u.jwt_svid_ttl !== undefined && { jwtSvidTtl: u.jwt_svid_ttl }),
          ...(u.dns_names !== undefined && { dnsNames: u.dns_names }),
          ...(u.hint !== undefined && { hint: u.hint }),
          ...(u.admin !== undefined && { admin: u.admin }),
          ...(u.expires_at !== undefined && { expiresAt: toMillis(u.expires_at) }),
        },
        u.revision,
      );
      if (!updated) throw new HttpError(404, 'no_such_entry', `no entry ${id}`);
      return updated;
    } catch (e) {
      if (e instanceof StoreConflictError) throw new HttpError(409, 'conflict', e.message);
      throw e;
    }
  });
  changed(d, 'update', entry, who);
  sendJson(res, 200, entryToWire(entry));
};

/** `DELETE /v1/admin/entries/<id>` */
const deleteEntry: AdminHandler = async (d, _req, res, url, who) => {
  const { store } = d.ctx;
  const id = entryId(url.pathname);
  const entry = await guarded(d, who, 'entry.delete', id, async () => {
    const e = await store.entries.get(id);
    if (!e || !(await store.entries.delete(id))) throw new HttpError(404, 'no_such_entry', `no entry ${id}`);
    return e;
  });
  changed(d, 'delete', entry, who);
  sendJson(res, 200, { deleted: id });
};

/** `POST /v1/admin/join-tokens` `{ttl?}` */
const generateJoinToken: AdminHandler = async (d, req, res, _url, who) => {
  const out = await guarded(d, who, 'token.generate', '', async () => {
    const parsed = joinTokenRequestSchema.safeParse(await readJson(req));
    if (!parsed.success) {
      const { field, message } = firstIssue(parsed.error);
      throw new HttpError(400, 'invalid_ttl', `${field}: ${message}`);
    }
    let ttl = JOIN_TOKEN_DEFAULT_TTL;
    if (parsed.data?.ttl !== undefined) {
      try {
        ttl = parseDuration(parsed.data.ttl);
      } catch (e) {
        throw new HttpError(400, 'invalid_ttl', (e as Error).message);
      }
      if (ttl < 1 || ttl > JOIN_TOKEN_MAX_TTL) throw new HttpError(400, 'invalid_ttl', 'ttl must be between 1s and 7d');
    }
    // 128 bits of randomness, hex (SPIRE's join tokens are UUIDs; the agent ID embeds the token's hash prefix instead of the token).
    const token = randomBytes(16).toString('hex');
    const { expiresAt } = await d.ctx.store.joinTokens.create(token, ttl);
    return joinTokenToWire(token, expiresAt, ttl);
  });
  sendJson(res, 201, out);
};

/** `GET /v1/admin/agents` */
const listAgents: AdminHandler = async (d, _req, res, _url, who) => {
  const agents = await guarded(d, who, 'agent.list', '', () => d.ctx.store.agents.list());
  sendJson(res, 200, { agents: agents.map(agentToWire) });
};

/** `POST /v1/admin/agents/ban` `{spiffe_id}` */
const banAgent: AdminHandler = async (d, req, res, _url, who) => {
  const parsed = banRequestSchema.safeParse(await readJson(req));
  // A missing or mistyped ID is refused (and recorded) as an invalid SPIFFE ID below.
  const id = parsed.success ? (parsed.data?.spiffe_id ?? '') : '';
  await guarded(d, who, 'agent.ban', id, async () => {
    try {
      parseSpiffeId(id);
    } catch (e) {
      throw new HttpError(400, 'invalid_spiffe_id', (e as Error).message);
    }
    if (!(await d.ctx.store.agents.ban(id))) throw new HttpError(404, 'no_such_agent', `no attested agent ${id}`);
  });
  d.ctx.events.record({
    kind: 'revocation',
    outcome: 'allow',
    source: { id: who.id },
    target: { id },
    reason: 'agent banned',
    details: {
      signal: {
        kind: 'agent.banned',
        agentId: id,
        reason: 'agent banned',
        source: 'admin',
        at: new Date().toISOString(),
        origin: `admin:${who.id}`,
      } satisfies SignalOf<'agent.banned'>,
    },
  });
  sendJson(res, 200, { banned: id });
};

/**
 * The registration plugin: entries, join tokens, agents.
 *
 * @example
 * ```ts
 * startServer({ config, logger, plugins: [registrationPlugin({ onEntryChange: (c) => log.info(c.op) })] });
 * ```
 */
export function registrationPlugin(opts: { onEntryChange?: EntryChangeListener } = {}): ServerPlugin {
  return {
    name: 'registration',
    register(ctx: ServerContext) {
      const d: Deps = { ctx, onEntryChange: opts.onEntryChange };
      const route = (h: AdminHandler) => adminRoute(ctx, (req, res, url, who) => h(d, req, res, url, who));
      ctx.router.on('POST', '/v1/admin/entries', route(createEntry));
      ctx.router.on('GET', '/v1/admin/entries', route(listEntries));
      ctx.router.onPrefix('GET', '/v1/admin/entries/', route(showEntry));
      ctx.router.onPrefix('PATCH', '/v1/admin/entries/', route(updateEntry));
      ctx.router.onPrefix('DELETE', '/v1/admin/entries/', route(deleteEntry));
      ctx.router.on('POST', '/v1/admin/join-tokens', route(generateJoinToken));
      ctx.router.on('GET', '/v1/admin/agents', route(listAgents));
      ctx.router.on('POST', '/v1/admin/agents/ban', route(banAgent));
    },
  };
}
