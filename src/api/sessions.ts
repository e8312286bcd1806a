/**
 * The console's who-am-I, live sessions and SVID expiry contracts (`GET /v1/admin/whoami`,
 * `/v1/admin/sessions`, `/v1/admin/svids`), with the one conversion of a stored access-proxy session
 * (and its bound device) to the wire. The store keeps a session's person and MFA as JSON written by
 * the access proxy: read here with schemas, leniently (a field it lacks is reported as unknown).
 */
import { z } from 'zod';
import { type DeviceRecord, deviceIdText } from './devices.js';
import { isoTime, spiffeIdText, toIso } from './fields.js';
import { durationSchema } from '../util/duration.js';

export const WHOAMI_PATH = '/v1/admin/whoami';
export const SESSIONS_PATH = '/v1/admin/sessions';
export const SVIDS_PATH = '/v1/admin/svids';

/** `GET /v1/admin/whoami`: the admin the server sees, and whether a destructive call would pass now. */
export const whoamiSchema = z.strictObject({
  id: z.string().min(1),
  kind: z.enum(['token', 'person']),
  user: z.string().optional(),
  groups: z.array(z.string()).optional(),
  mfa_at: isoTime.optional(),
  /** A destructive call would pass the MFA-freshness check now (always true for the admin token). */
  mfa_fresh: z.boolean(),
});
export type WhoamiWire = z.infer<typeof whoamiSchema>;

/** Most sessions one page lists. */
export const SESSIONS_MAX_LIMIT = 1000;

/** `GET /v1/admin/sessions?user=&limit=` (query values are strings). */
export const sessionsQuerySchema = z.strictObject({
  user: z.string().min(1).max(256).optional(),
  limit: z
    .string()
    .regex(/^\d{1,7}$/, 'a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1).max(SESSIONS_MAX_LIMIT))
    .default(100),
});
export type SessionsQuery = z.output<typeof sessionsQuerySchema>;

const deviceSummarySchema = z.strictObject({
  id: deviceIdText,
  owner: z.string(),
  /** Null: no posture reported yet (unknown); a revoked device is never compliant. */
  compliant: z.boolean().nullable(),
  posture_age_s: z.number().nonnegative().nullable(),
  managed: z.boolean(),
  encrypted: z.boolean(),
  os_patched: z.boolean(),
  edr_active: z.boolean(),
});

/** One live access-proxy session. */
export const sessionSchema = z.strictObject({
  /** The session's public id: `POST /v1/admin/revoke {session}` ends it. */
  id: z.string().min(1),
  /** The person's name at the proxy (policy's `source.user`). */
  user: z.string(),
  /** The person's subject at their provider (`issuer`). */
  person: z.string(),
  issuer: z.string(),
  host: z.string(),
  created_at: isoTime,
  last_seen_at: isoTime,
  expires_at: isoTime,
  /** The last second factor (at the provider or a step-up at the proxy); null: none known. */
  mfa: z.strictObject({ at: isoTime, methods: z.array(z.string()) }).nullable(),
  /** The device the session is bound to; null: none. */
  device: deviceSummarySchema.nullable(),
});
export type SessionWire = z.infer<typeof sessionSchema>;
export const sessionListSchema = z.strictObject({ sessions: z.array(sessionSchema) });

/** What the conversion needs of a stored session (the store's `AccessSessionRecord` has it). */
export interface StoredSessionView {
  id: string;
  host: string;
  issuer: string;
  sub: string;
  /** JSON of the proxy's person (src/access/identity.ts `PersonIdentity`). */
  person: string;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
  /** JSON `{at, methods}` of a step-up at the proxy (at: epoch s), or null. */
  mfa: string | null;
  userName: string | null;
  deviceId: string | null;
}

const storedPerson = z.looseObject({
  user: z.string().optional(),
  email: z.string().optional(),
  amr: z.array(z.string()).catch([]),
  mfaAt: z.number().optional().catch(undefined),
});
const storedMfa = z.object({ at: z.number(), methods: z.array(z.string()) });

function parseJson(text: string | null): unknown {
  if (text === null) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * The one conversion of a stored session (and its bound device, when known) to the wire. The MFA
 * shown is the newer of the provider's second factor and a step-up at the proxy.
 */
export function sessionToWire(s: StoredSessionView, device: DeviceRecord | undefined, now = Date.now()): SessionWire {
  const p = storedPerson.safeParse(parseJson(s.person));
  const person = p.success ? p.data : undefined;
  const stepUp = storedMfa.safeParse(parseJson(s.mfa));
  let mfa: SessionWire['mfa'] = null;
  if (stepUp.success && !(person?.mfaAt !== undefined && person.mfaAt > stepUp.data.at))
    mfa = { at: toIso(stepUp.data.at * 1000), methods: stepUp.data.methods };
  else if (person?.mfaAt !== undefined) mfa = { at: toIso(person.mfaAt * 1000), methods: person.amr };
  return {
    id: s.id,
    user: s.userName ?? person?.user ?? person?.email ?? s.sub,
    person: s.sub,
    issuer: s.issuer,
    host: s.host,
    created_at: toIso(s.createdAt),
    last_seen_at: toIso(s.lastSeenAt),
    expires_at: toIso(s.expiresAt),
    mfa,
    device: s.deviceId === null ? null : deviceSummary(s.deviceId, device, now),
  };
}

function deviceSummary(id: string, d: DeviceRecord | undefined, now: number): SessionWire['device'] {
  const p = d?.posture ?? null;
  const revoked = d === undefined || d.revokedAt !== null;
  return {
    id,
    owner: d?.owner ?? '',
    compliant: revoked ? false : p === null ? null : p.compliant,
    posture_age_s: p === null ? null : Math.max(0, Math.round((now - Date.parse(p.collected_at)) / 1000)),
    managed: p?.managed ?? false,
    encrypted: p?.encrypted ?? false,
    os_patched: p?.os_patched ?? false,
    edr_active: p?.edr_active ?? false,
  };
}

/** The longest window `GET /v1/admin/svids` looks ahead. */
export const SVIDS_MAX_WITHIN_S = 30 * 86400;

/** `GET /v1/admin/svids?within=24h`. */
export const svidsQuerySchema = z.strictObject({
  within: durationSchema.pipe(z.number().positive().max(SVIDS_MAX_WITHIN_S, 'at most 30d')).default(24 * 3600),
});

/** An SVID (or device certificate) that expires within the window. */
export const svidExpirySchema = z.strictObject({
  spiffe_id: spiffeIdText,
  serial: z.string(),
  expires_at: isoTime,
  kind: z.enum(['workload', 'agent', 'device']),
});
export type SvidExpiryWire = z.infer<typeof svidExpirySchema>;
export const svidExpiryListSchema = z.strictObject({ svids: z.array(svidExpirySchema) });
