/**
 * The console's views of people and identities: who the admin is (`GET /v1/admin/whoami`), the
 * access proxies' live sessions (`GET /v1/admin/sessions`) and the SVIDs and device certificates
 * that expire soon (`GET /v1/admin/svids`). Contracts: src/api/sessions.ts. Revoking a session is the
 * existing `POST /v1/admin/revoke`.
 */
import type { z } from 'zod';
import { firstIssue } from '../../api/parse.js';
import {
  SESSIONS_PATH,
  type SessionWire,
  SVIDS_PATH,
  type SvidExpiryWire,
  sessionsQuerySchema,
  sessionToWire,
  svidsQuerySchema,
  WHOAMI_PATH,
  type WhoamiWire,
} from '../../api/sessions.js';
import { toIso } from '../../api/fields.js';
import { queryAuditLog } from '../../audit/query.js';
import type { AdminPrincipal } from '../admin-auth.js';
import { mfaFresh } from '../person-admin.js';
import { HttpError, sendJson } from '../router.js';
import { adminRoute, type ServerContext, type ServerPlugin } from '../server.js';

/** Issuance events read per SVID listing at most (newest first): a bound on a busy log. */
const MAX_ISSUANCE_EVENTS = 100_000;

/**
 * A query string checked against `schema`; a repeated or unknown parameter, or a bad value, is a
 * 400 naming it.
 */
function parseQuery<S extends z.ZodType>(schema: S, url: URL): z.output<S> {
  const raw: Record<string, string> = {};
  for (const [k, v] of url.searchParams) {
    if (Object.hasOwn(raw, k)) throw new HttpError(400, 'invalid_query', `${k.slice(0, 64)}: give it at most once`);
    raw[k] = v;
  }
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const { field, message } = firstIssue(r.error);
  throw new HttpError(400, 'invalid_query', `${field.slice(0, 64)}: ${message}`, { field });
}

/** The admin principal on the wire. */
export function whoamiOf(who: AdminPrincipal, mfaMaxAgeS: number, now = Date.now()): WhoamiWire {
  const p = who.person;
  if (!p) return { id: who.id, kind: 'token', mfa_fresh: true };
  return {
    id: who.id,
    kind: 'person',
    user: p.user,
    groups: p.groups,
    ...(p.mfaAt !== undefined ? { mfa_at: toIso(p.mfaAt * 1000) } : {}),
    mfa_fresh: mfaFresh(p.mfaAt, mfaMaxAgeS, now),
  };
}

/** Workload SVIDs still valid and expiring by `until`, newest issuance per SPIFFE ID and agent. */
async function workloadSvids(ctx: ServerContext, now: number, until: number): Promise<SvidExpiryWire[]> {
  // No SVID outlives the CA certificate that signed it: older issuances have expired.
  const since = now - ctx.config.ca.ttl * 1000;
  const seen = new Set<string>();
  const out: SvidExpiryWire[] = [];
  let cursor: number | undefined;
  for (let read = 0; read < MAX_ISSUANCE_EVENTS; ) {
    const page = await queryAuditLog(ctx.store, {
      kind: 'svid.issued',
      outcome: 'allow',
      since,
      limit: 1000,
      ...(cursor !== undefined ? { cursor } : {}),
    });
    read += page.events.length;
    for (const e of page.events) {
      const id = e.target?.spiffe_id;
      const serial = e.details?.serial;
      const notAfter = Date.parse(String(e.details?.not_after ?? ''));
      if (id === undefined || typeof serial !== 'string') continue;
      if (Number.isNaN(notAfter)) continue; // an agent's own renewal: its record says when it expires
      // Newest first: the first issuance per workload and issuer replaces the older ones.
      const key = `${id}\n${e.source?.spiffe_id ?? e.source?.user ?? ''}`;
      if (seen.has(key)) continue;
      seen.add(key);
      if (notAfter > now && notAfter <= until)
        out.push({ spiffe_id: id, serial, expires_at: toIso(notAfter), kind: 'workload' });
    }
    if (page.next_cursor === undefined) break;
    cursor = page.next_cursor;
  }
  return out;
}

/**
 * The console's whoami, sessions and SVID-expiry routes.
 *
 * @example
 * ```ts
 * startServer({ config, logger, plugins: [sessionsPlugin()] }); // GET /v1/admin/sessions?limit=50
 * ```
 */
export function sessionsPlugin(): ServerPlugin {
  return {
    name: 'sessions',
    register(ctx: ServerContext) {
      ctx.router.on(
        'GET',
        WHOAMI_PATH,
        adminRoute(ctx, (_req, res, _url, who) => sendJson(res, 200, whoamiOf(who, ctx.config.console.mfa_max_age))),
      );

      ctx.router.on(
        'GET',
        SESSIONS_PATH,
        adminRoute(ctx, async (_req, res, url) => {
          const q = parseQuery(sessionsQuerySchema, url);
          const now = Date.now();
          const rows = await ctx.store.accessSessions.listLive(now, {
            limit: q.limit,
            ...(q.user !== undefined ? { userName: q.user } : {}),
          });
          const deviceIds = [...new Set(rows.flatMap((r) => (r.deviceId === null ? [] : [r.deviceId])))];
          const devices = new Map(
            (await Promise.all(deviceIds.map((id) => ctx.store.devices.get(id)))).flatMap((d) =>
              d ? [[d.id, d] as const] : [],
            ),
          );
          const sessions: SessionWire[] = rows.map((r) =>
            sessionToWire(r, r.deviceId === null ? undefined : devices.get(r.deviceId), now),
          );
          sendJson(res, 200, { sessions });
        }),
      );

      ctx.router.on(
        'GET',
        SVIDS_PATH,
        adminRoute(ctx, async (_req, res, url) => {
          const { within } = parseQuery(svidsQuerySchema, url);
          const now = Date.now();
          const until = now + within * 1000;
          const soon = (at: number) => at > now && at <= until;
          const agents = (await ctx.store.agents.list())
            .filter((a) => !a.banned && soon(a.svidExpiresAt))
            .map(
              (a): SvidExpiryWire => ({
                spiffe_id: a.spiffeId,
                serial: a.serial,
                expires_at: toIso(a.svidExpiresAt),
                kind: 'agent',
              }),
            );
          const devices = (await ctx.store.devices.list())
            .filter((d) => d.revokedAt === null && soon(d.certNotAfter))
            .map(
              (d): SvidExpiryWire => ({
                spiffe_id: d.spiffeId,
                serial: d.certSerial,
                expires_at: toIso(d.certNotAfter),
                kind: 'device',
              }),
            );
          const svids = [...(await workloadSvids(ctx, now, until)), ...agents, ...devices].sort(
            (a, b) => Date.parse(a.expires_at) - Date.parse(b.expires_at),
          );
          sendJson(res, 200, { svids });
        }),
      );
    },
  };
}
