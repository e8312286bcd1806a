/** Join tokens on the wire: `POST /v1/admin/join-tokens`. */
import { z } from 'zod';
import { isoTime, toIso } from './fields.js';

/** The request: an optional lifetime, a duration (`10m`) or seconds; the server checks its range. */
export const joinTokenRequestSchema = z.object({ ttl: z.union([z.string(), z.number()]).optional() }).nullish();

/** The answer: the token (32 hex digits), its expiry and lifetime in seconds. */
export const joinTokenSchema = z.object({
  token: z.string().regex(/^[0-9a-f]{32}$/, 'expected 32 hex digits'),
  expires_at: isoTime,
  ttl: z.number().positive(),
});
export type JoinTokenWire = z.infer<typeof joinTokenSchema>;

/** The one conversion of a generated token to its answer. */
export function joinTokenToWire(token: string, expiresAt: number, ttl: number): JoinTokenWire {
  return { token, expires_at: toIso(expiresAt), ttl };
}
