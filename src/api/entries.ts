/**
 * Registration entries on the wire: what the admin API returns (`/v1/admin/entries[/<id>]`), what
 * the sync stream sends an agent, and what the agent holds and caches. The admin *input* (selector
 * grammar, TTL durations, trust-domain rules) is validated in src/registration/entry.ts.
 *
 * `RegistrationEntry` is the model type the store keeps and the server works with (camelCase, ms);
 * {@link entryToWire} is the one conversion to the snake_case wire form (RFC 3339 times, as in
 * SPIRE's API and our CLI flags), {@link entryFromWire} the way back.
 */
import { z } from 'zod';
import { isoTime, spiffeIdText, toIso } from './fields.js';

/** A registration entry as the store keeps it and the server uses it. */
export interface RegistrationEntry {
  id: string;
  spiffeId: string;
  parentId: string;
  selectors: string[];
  x509SvidTtl: number;
  jwtSvidTtl: number;
  dnsNames: string[];
  hint: string;
  admin: boolean;
  /** ms since epoch, or null for no expiry. */
  expiresAt: number | null;
  revision: number;
  createdAt: number;
  updatedAt: number;
}

/** The wire form of an entry. */
export const entrySchema = z.object({
  id: z.string().min(1),
  spiffe_id: spiffeIdText,
  parent_id: spiffeIdText,
  selectors: z.array(z.string()),
  x509_svid_ttl: z.number().int().positive(),
  jwt_svid_ttl: z.number().int().positive(),
  dns_names: z.array(z.string()),
  hint: z.string(),
  admin: z.boolean(),
  expires_at: isoTime.nullable(),
  revision: z.number().int().positive(),
  created_at: isoTime,
  updated_at: isoTime,
});
export type EntryWire = z.infer<typeof entrySchema>;

/**
 * What the node agent holds of an entry and keeps in its cache file: the fields it matches and
 * issues with. A full {@link EntryWire} is one.
 */
export const entryViewSchema = entrySchema.pick({
  id: true,
  spiffe_id: true,
  selectors: true,
  x509_svid_ttl: true,
  jwt_svid_ttl: true,
  hint: true,
  revision: true,
});
export type EntryView = z.infer<typeof entryViewSchema>;

/** `GET /v1/admin/entries` */
export const entryListSchema = z.object({ entries: z.array(entrySchema) });
export type EntryList = z.infer<typeof entryListSchema>;

/** `DELETE /v1/admin/entries/<id>` */
export const entryDeletedSchema = z.object({ deleted: z.string() });

/** The one conversion model → wire. */
export function entryToWire(e: RegistrationEntry): EntryWire {
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
    expires_at: e.expiresAt === null ? null : toIso(e.expiresAt),
    revision: e.revision,
    created_at: toIso(e.createdAt),
    updated_at: toIso(e.updatedAt),
  };
}

/** The way back, wire → model (a parsed {@link EntryWire}). */
export function entryFromWire(w: EntryWire): RegistrationEntry {
  return {
    id: w.id,
    spiffeId: w.spiffe_id,
    parentId: w.parent_id,
    selectors: w.selectors,
    x509SvidTtl: w.x509_svid_ttl,
    jwtSvidTtl: w.jwt_svid_ttl,
    dnsNames: w.dns_names,
    hint: w.hint,
    admin: w.admin,
    expiresAt: w.expires_at === null ? null : Date.parse(w.expires_at),
    revision: w.revision,
    createdAt: Date.parse(w.created_at),
    updatedAt: Date.parse(w.updated_at),
  };
}
