/**
 * Admin API for registration entries, join tokens and agents. Every call is authenticated
 * (`adminRoute`) and recorded as an `admin.action` event, allowed or refused.
 */
import { randomBytes } from 'node:crypto';
import { parseDuration } from '../../util/duration.js';
import {
  checkTrustDomain,
  EntryValidationError,
  entryInputSchema,
  entryUpdateSchema,
  type RegistrationEntry,
  toMillis,
  zodProblems,
} from '../../registration/entry.js';
import { parseSpiffeId } from '../../spiffe/index.js';
import { DuplicateEntryError, StoreConflictError } from '../../store/index.js';
import type { AdminPrincipal } from '../admin-auth.js';
import { HttpError, readJson, sendJson } from '../router.js';
import { adminRoute, type ServerContext, type ServerPlugin } from '../server.js';

export const JOIN_TOKEN_DEFAULT_TTL = 600;
export const JOIN_TOKEN_MAX_TTL = 7 * 86400;

/** The wire form of an entry (snake_case, as in SPIRE's API and our CLI flags). */
export function entryJson(e: RegistrationEntry): Record<string, unknown> {
  return {
    id: e.id,
    spiffe_id: e.spiffeId,
    parent_id: e.parentId,
    selectors: e.selectors,
    x509_svid_ttl: e.x509SvidTtl,
    jwt_svid_ttl: e.jwtSvidTtl,
    dns_names: e.dnsNames,
    hint: e.hint,
    admin: e.admin,
    expires_at: e.expiresAt === null ? null : new Date(e.expiresAt).toISOString(),
    revision: e.revision,
    created_at: new Date(e.createdAt).toISOString(),
    updated_at: new Date(e.updatedAt).toISOString(),
  };
}

function invalid(problems: { field: string; message: string }[]): HttpError {
  return new HttpError(400, 'invalid_entry', problems.map((p) => `${p.field || 'entry'}: ${p.message}`).join('; '), {
    problems,
  });
}

/** Change notifications for entries, consumed by the agent sync streams. */
export type EntryChangeListener = (change: { op: 'create' | 'update' | 'delete'; entry: RegistrationEntry }) => void;

export function registrationPlugin(opts: { onEntryChange?: EntryChangeListener } = {}): ServerPlugin {
  return {
    name: 'registration',
    register(ctx: ServerContext) {
      const { router, store, config, events } = ctx;
      const record = (who: AdminPrincipal, action: string, target: string, outcome: 'allow' | 'deny', reason: string) =>
        events.record({
          kind: 'admin.action',
          outcome,
          source: { id: who.id },
          target: { id: target, resource: action },
          reason,
        });
      const changed = (op: 'create' | 'update' | 'delete', entry: RegistrationEntry, who: AdminPrincipal) => {
        events.record({
          kind: 'entry.changed',
          outcome: 'allow',
          source: { id: who.id },
          target: { id: entry.id, resource: entry.spiffeId },
          reason: `entry ${op}d`,
          details: { op, parent_id: entry.parentId, selectors: entry.selectors, revision: entry.revision },
        });
        opts.onEntryChange?.({ op, entry });
      };
      /** Runs an admin operation, recording refusals (bad input, conflicts) as well as successes. */
      const guarded = async <T>(
        who: AdminPrincipal,
        action: string,
        target: string,
        fn: () => Promise<T>,
      ): Promise<T> => {
        try {
          const out = await fn();
          record(who, action, target, 'allow', 'ok');
          return out;
        } catch (e) {
          if (e instanceof HttpError) record(who, action, target, 'deny', e.message);
          throw e;
        }
      };

      router.on(
        'POST',
        '/v1/admin/entries',
        adminRoute(ctx, async (req, res, _url, who) => {
          const entry = await guarded(who, 'entry.create', '', async () => {
            const parsed = entryInputSchema.safeParse(await readJson(req));
            if (!parsed.success) throw invalid(zodProblems(parsed.error));
            const input = parsed.data;
            try {
              checkTrustDomain(input, config.trust_domain);
            } catch (e) {
              if (e instanceof EntryValidationError) throw invalid(e.problems);
              throw e;
            }
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
          changed('create', entry, who);
          sendJson(res, 201, entryJson(entry));
        }),
      );

      router.on(
        'GET',
        '/v1/admin/entries',
        adminRoute(ctx, async (_req, res, url, who) => {
          const entries = await guarded(who, 'entry.list', '', () =>
            store.entries.list({
              parentId: url.searchParams.get('parent_id') ?? undefined,
              spiffeId: url.searchParams.get('spiffe_id') ?? undefined,
              selector: url.searchParams.get('selector') ?? undefined,
            }),
          );
          sendJson(res, 200, { entries: entries.map(entryJson) });
        }),
      );

      const entryId = (pathname: string) => {
        const id = decodeURIComponent(pathname.slice('/v1/admin/entries/'.length));
        if (!/^[0-9a-f-]{36}$/.test(id)) throw new HttpError(400, 'bad_entry_id', `"${id}" is not an entry id`);
        return id;
      };

      router.onPrefix(
        'GET',
        '/v1/admin/entries/',
        adminRoute(ctx, async (_req, res, url, who) => {
          const id = entryId(url.pathname);
          const entry = await guarded(who, 'entry.show', id, async () => {
            const e = await store.entries.get(id);
            if (!e) throw new HttpError(404, 'no_such_entry', `no entry ${id}`);
            return e;
          });
          sendJson(res, 200, entryJson(entry));
        }),
      );

      router.onPrefix(
        'PATCH',
        '/v1/admin/entries/',
        adminRoute(ctx, async (req, res, url, who) => {
          const id = entryId(url.pathname);
          const entry = await guarded(who, 'entry.update', id, async () => {
            const parsed = entryUpdateSchema.safeParse(await readJson(req));
            if (!parsed.success) throw invalid(zodProblems(parsed.error));
            const u = parsed.data;
            try {
              checkTrustDomain(u, config.trust_domain);
            } catch (e) {
              if (e instanceof EntryValidationError) throw invalid(e.problems);
              throw e;
            }
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
          changed('update', entry, who);
          sendJson(res, 200, entryJson(entry));
        }),
      );

      router.onPrefix(
        'DELETE',
        '/v1/admin/entries/',
        adminRoute(ctx, async (_req, res, url, who) => {
          const id = entryId(url.pathname);
          const entry = await guarded(who, 'entry.delete', id, async () => {
            const e = await store.entries.get(id);
            if (!e || !(await store.entries.delete(id))) throw new HttpError(404, 'no_such_entry', `no entry ${id}`);
            return e;
          });
          changed('delete', entry, who);
          sendJson(res, 200, { deleted: id });
        }),
      );

      router.on(
        'POST',
        '/v1/admin/join-tokens',
        adminRoute(ctx, async (req, res, _url, who) => {
          const out = await guarded(who, 'token.generate', '', async () => {
            const body = ((await readJson(req)) ?? {}) as { ttl?: unknown };
            let ttl = JOIN_TOKEN_DEFAULT_TTL;
            if (body.ttl !== undefined) {
              try {
                ttl = parseDuration(body.ttl as string | number);
              } catch (e) {
                throw new HttpError(400, 'invalid_ttl', (e as Error).message);
              }
              if (ttl < 1 || ttl > JOIN_TOKEN_MAX_TTL)
                throw new HttpError(400, 'invalid_ttl', 'ttl must be between 1s and 7d');
            }
            // 128 bits of randomness, hex (SPIRE's join tokens are UUIDs; the agent ID embeds the token's hash prefix instead of the token).
            const token = randomBytes(16).toString('hex');
            const { expiresAt } = await store.joinTokens.create(token, ttl);
            return { token, expires_at: new Date(expiresAt).toISOString(), ttl };
          });
          sendJson(res, 201, out);
        }),
      );

      router.on(
        'GET',
        '/v1/admin/agents',
        adminRoute(ctx, async (_req, res, _url, who) => {
          const agents = await guarded(who, 'agent.list', '', () => store.agents.list());
          sendJson(res, 200, {
            agents: agents.map((a) => ({
              spiffe_id: a.spiffeId,
              attestation: a.attestation,
              serial: a.serial,
              expires_at: new Date(a.svidExpiresAt).toISOString(),
              attested_at: new Date(a.attestedAt).toISOString(),
              renewed_at: new Date(a.renewedAt).toISOString(),
              banned: a.banned,
              remote_addr: a.remoteAddr,
            })),
          });
        }),
      );

      router.on(
        'POST',
        '/v1/admin/agents/ban',
        adminRoute(ctx, async (req, res, _url, who) => {
          const body = ((await readJson(req)) ?? {}) as { spiffe_id?: unknown };
          const id = typeof body.spiffe_id === 'string' ? body.spiffe_id : '';
          await guarded(who, 'agent.ban', id, async () => {
            try {
              parseSpiffeId(id);
            } catch (e) {
              throw new HttpError(400, 'invalid_spiffe_id', (e as Error).message);
            }
            if (!(await store.agents.ban(id))) throw new HttpError(404, 'no_such_agent', `no attested agent ${id}`);
          });
          events.record({
            kind: 'revocation',
            outcome: 'allow',
            source: { id: who.id },
            target: { id },
            reason: 'agent banned',
          });
          sendJson(res, 200, { banned: id });
        }),
      );
    },
  };
}
