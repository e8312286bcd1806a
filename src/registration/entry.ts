/**
 * Registration entries: which SPIFFE ID a workload (or a node) gets, under which parent, for which
 * selectors. Input is validated here once, for the API and the CLI alike.
 */
import { z } from 'zod';
import { NevertrustError } from '../errors.js';
import { parseSpiffeId, reservedIdReason, type SpiffeId } from '../spiffe/index.js';
import { parseDuration } from '../util/duration.js';
import { parseSelector } from './selector.js';

/** The model type of an entry lives with its wire form in src/api/entries.ts. */
export type { RegistrationEntry } from '../api/entries.js';

const ttl = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    const s = parseDuration(v);
    if (s < 1 || s > 30 * 86400) throw new Error('must be between 1s and 30d');
    return Math.round(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const spiffeIdString = z.string().transform((v, ctx) => {
  try {
    return parseSpiffeId(v).toString();
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const selector = z.string().transform((v, ctx) => {
  try {
    parseSelector(v);
    return v;
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const dnsName = z
  .string()
  .max(253)
  .regex(/^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i, 'not a DNS name');

export const entryInputSchema = z.strictObject({
  spiffe_id: spiffeIdString,
  parent_id: spiffeIdString,
  selectors: z.array(selector).min(1, 'at least one selector is required').max(64),
  x509_svid_ttl: ttl.optional(),
  jwt_svid_ttl: ttl.optional(),
  dns_names: z.array(dnsName).max(32).default([]),
  hint: z.string().max(256).default(''),
  admin: z.boolean().default(false),
  /** ISO time or ms since epoch. */
  expires_at: z
    .union([z.iso.datetime({ offset: true }), z.number().int().positive()])
    .nullable()
    .optional(),
});
export type EntryInput = z.input<typeof entryInputSchema>;
export type ValidEntryInput = z.output<typeof entryInputSchema>;

export const entryUpdateSchema = entryInputSchema.partial().extend({
  /** The revision the caller last saw: the update fails if someone changed the entry since. */
  revision: z.number().int().positive().optional(),
});
export type EntryUpdate = z.output<typeof entryUpdateSchema>;

/** An entry breaks a rule; `problems` name each field and why. */
export class EntryValidationError extends NevertrustError<'ERR_ENTRY_INVALID'> {
  override readonly name = 'EntryValidationError';
  readonly code = 'ERR_ENTRY_INVALID';
  constructor(readonly problems: { field: string; message: string }[]) {
    super(problems.map((p) => `${p.field || 'entry'}: ${p.message}`).join('; '), { status: 400 });
  }
}

export function zodProblems(error: z.ZodError): { field: string; message: string }[] {
  return error.issues.map((i) => ({
    field: i.path.map(String).join('.'),
    message: i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message,
  }));
}

/**
 * Both IDs must be in the server's trust domain: a server only issues identities it is the authority
 * for; and the entry's own ID must not be a reserved one (the server's, an agent's, a device's), which
 * only the server issues, for itself and for what it attested.
 */
export function checkTrustDomain(input: { spiffe_id?: string; parent_id?: string }, trustDomain: string): void {
  const problems: { field: string; message: string }[] = [];
  for (const field of ['spiffe_id', 'parent_id'] as const) {
    const v = input[field];
    if (v === undefined) continue;
    const id: SpiffeId = parseSpiffeId(v);
    if (id.trustDomain.name !== trustDomain) {
      problems.push({ field, message: `${v} is not in this server's trust domain ${trustDomain}` });
    }
    if (field === 'spiffe_id' && id.path === '') problems.push({ field, message: 'a workload SPIFFE ID needs a path' });
    const reserved = field === 'spiffe_id' ? reservedIdReason(id) : undefined;
    if (reserved !== undefined) problems.push({ field, message: reserved });
  }
  if (problems.length) throw new EntryValidationError(problems);
}

export function toMillis(v: string | number | null | undefined): number | null {
  if (v === undefined || v === null) return null;
  return typeof v === 'number' ? v : Date.parse(v);
}
