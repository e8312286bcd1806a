/**
 * People of the built-in OpenID provider on the wire: the admin API (`/v1/admin/users[/<name>]`)
 * and the CLI (`nevertrust user …`). Passwords travel only in requests, hashes never.
 */
import { z } from 'zod';
import { durationSchema } from '../util/duration.js';
import { isoTime, toIso } from './fields.js';

/** Lower-case letters, digits, `.`, `_`, `-`; starts with a letter or digit; 1–64 characters. */
export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export const usernameText = z
  .string()
  .regex(USERNAME_PATTERN, 'use 1-64 lower-case letters, digits, . _ - (starting with a letter or digit)');

const groupText = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/,
    'use 1-128 letters, digits, . _ : @ - (starting with a letter or digit)',
  );

// No control characters: names end up in pages, tokens and logs.
const nameText = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}]+$/u, 'no control characters');

/** At least 10 characters; the upper bound keeps one scrypt cheap to refuse. */
export const passwordText = z.string().min(10, 'at least 10 characters').max(1024);

const groupsList = z.array(groupText).max(100);

/** `POST /v1/admin/users` */
export const userCreateSchema = z.strictObject({
  username: usernameText,
  email: z.email().max(254).optional(),
  name: nameText.optional(),
  groups: groupsList.optional(),
  password: passwordText,
  disabled: z.boolean().optional(),
});
export type UserCreate = z.infer<typeof userCreateSchema>;

/** `PATCH /v1/admin/users/<name>`: only the fields given change; `null` clears email or name. */
export const userUpdateSchema = z
  .strictObject({
    email: z.email().max(254).nullable().optional(),
    name: nameText.nullable().optional(),
    groups: groupsList.optional(),
    password: passwordText.optional(),
    disabled: z.boolean().optional(),
  })
  .refine((u) => Object.keys(u).length > 0, 'nothing to change: give at least one field');
export type UserUpdate = z.infer<typeof userUpdateSchema>;

/** A user as the API answers it. */
export const userSchema = z.object({
  username: z.string(),
  email: z.string().nullable(),
  name: z.string().nullable(),
  groups: z.array(z.string()),
  disabled: z.boolean(),
  created_at: isoTime,
  updated_at: isoTime,
});
export type UserWire = z.infer<typeof userSchema>;

/** `GET /v1/admin/users` */
export const userListSchema = z.object({ users: z.array(userSchema) });

/** `DELETE /v1/admin/users/<name>` */
export const userDeletedSchema = z.object({ deleted: z.string() });

/** What {@link userToWire} needs of a stored user (the store's `UserRecord` is one). */
export interface UserModel {
  username: string;
  email?: string;
  name?: string;
  groups: string[];
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
}

/** The one conversion model → wire (never the password hash). */
export function userToWire(u: UserModel): UserWire {
  return {
    username: u.username,
    email: u.email ?? null,
    name: u.name ?? null,
    groups: u.groups,
    disabled: u.disabled,
    created_at: toIso(u.createdAt),
    updated_at: toIso(u.updatedAt),
  };
}

// People's second factors (MFA at the access proxy): `/v1/admin/users/<name>/mfa…`. The name is the
// access proxy's user claim (an email, a provider's user name): it need not be a built-in
// provider user, so it is not held to USERNAME_PATTERN.

/** A person's name as the access proxy knows it: 1–256 characters, no control characters. */
export const personNameText = z
  .string()
  .min(1, 'a user name is required')
  .max(256, 'at most 256 characters')
  .regex(/^[^\p{Cc}]+$/u, 'no control characters');

/** One second factor, never its secret. */
export const mfaFactorSchema = z.object({
  id: z.string(),
  kind: z.enum(['totp', 'webauthn']),
  name: z.string(),
  /** The provider identity it belongs to (factors are keyed by issuer and subject). */
  issuer: z.string(),
  sub: z.string(),
  /** False while a TOTP enrollment awaits its first code. */
  confirmed: z.boolean(),
  created_at: isoTime,
  last_used_at: isoTime.nullable(),
});
export type MfaFactorWire = z.infer<typeof mfaFactorSchema>;

/** `GET /v1/admin/users/<name>/mfa` */
export const mfaFactorListSchema = z.object({ user: z.string(), factors: z.array(mfaFactorSchema) });

/** `POST /v1/admin/users/<name>/mfa/reset`: how many factors were deleted and sessions ended. */
export const mfaResetSchema = z.object({
  user: z.string(),
  factors: z.number().int().nonnegative(),
  sessions: z.number().int().nonnegative(),
});

/** Enrollment links live 24 hours unless asked otherwise, 30 days at most. */
export const DEFAULT_ENROLL_LINK_TTL_S = 86_400;
export const MAX_ENROLL_LINK_TTL_S = 30 * 86_400;

/** `POST /v1/admin/users/<name>/mfa/enroll-link` body: `ttl` in seconds or as `24h`, `7d`… */
export const enrollLinkRequestSchema = z.strictObject({
  ttl: durationSchema
    .optional()
    .refine((s) => s === undefined || (s >= 60 && s <= MAX_ENROLL_LINK_TTL_S), 'between 1 minute and 30 days'),
});

/** Where the access proxy takes an enrollment link (behind login, for that user only). */
export const ENROLL_LINK_PATH = '/.nevertrust/mfa/enroll';

/** The link, shown once: `path` is relative to any of the access proxy's routes. */
export const enrollLinkSchema = z.object({
  user: z.string(),
  token: z.string(),
  expires_at: isoTime,
  path: z.string(),
});
export type EnrollLinkWire = z.infer<typeof enrollLinkSchema>;
