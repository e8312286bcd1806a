/**
 * The OIDC authenticator's configuration, as written in the access proxy's YAML (snake_case keys).
 *
 * @example
 * ```yaml
 * oidc:
 *   issuer: https://login.example.com
 *   client_id: access-proxy
 *   client_secret_file: /etc/nevertrust/oidc-secret
 *   session: { absolute_lifetime: 12h, idle_lifetime: 1h, key_file: /var/lib/nevertrust/session.key }
 *   mfa: { amr: [otp, hwk, swk, mfa], acr: { "http://schemas.openid.net/pape/policies/2007/06/multi-factor": [mfa] } }
 * ```
 */
import { z } from 'zod';
import { durationSchema } from '../../util/duration.js';
import { MFA_AMR } from '../identity.js';

const amrValue = z.string().regex(/^[\x21-\x7e]{1,64}$/, 'an amr value is printable ASCII, up to 64 characters');

const positiveDuration = durationSchema.refine((s) => s > 0, 'must be longer than 0s');

export const oidcAuthConfigSchema = z
  .strictObject({
    issuer: z.url(),
    client_id: z.string().min(1),
    client_secret: z.string().min(1).optional(),
    client_secret_file: z.string().min(1).optional(),
    scopes: z
      .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope is printable ASCII without spaces'))
      .default(['openid', 'email', 'profile', 'offline_access']),
    user_claim: z.string().min(1).default('email'),
    groups_claim: z.string().min(1).default('groups'),
    ca_file: z.string().min(1).optional(),
    allow_insecure_issuer: z.boolean().default(false),
    session: z
      .strictObject({
        cookie_name: z
          .string()
          .regex(
            /^__Host-[A-Za-z0-9_-]+$/,
            'the session cookie name must start with __Host- (Secure, Path=/, no Domain)',
          )
          .default('__Host-nevertrust_session'),
        absolute_lifetime: positiveDuration.default(12 * 3600),
        idle_lifetime: positiveDuration.default(3600),
        key_file: z.string().min(1),
      })
      .strict(),
    bearer: z
      .strictObject({ enabled: z.boolean().default(true), audience: z.string().min(1).optional() })
      .default({ enabled: true }),
    change_feed_interval_ms: z.number().int().min(10).max(60_000).default(250),
    /**
     * Which of the provider's authentications count as MFA: `amr` values (default the RFC 8176
     * second-factor methods), and `acr` values mapped to the methods they stand for.
     */
    mfa: z
      .strictObject({
        amr: z.array(amrValue).default([...MFA_AMR]),
        acr: z.record(z.string().min(1).max(256), z.array(amrValue).min(1)).default({}),
      })
      .default({ amr: [...MFA_AMR], acr: {} }),
  })
  .refine((c) => c.scopes.includes('openid'), { message: 'scopes must include openid', path: ['scopes'] })
  .refine((c) => (c.client_secret === undefined) !== (c.client_secret_file === undefined), {
    message: 'set exactly one of client_secret and client_secret_file',
    path: ['client_secret'],
  })
  .refine((c) => c.allow_insecure_issuer || c.issuer.startsWith('https://'), {
    message: 'the issuer must be https:// (allow_insecure_issuer: true is for local development only)',
    path: ['issuer'],
  });

/** What a config file holds (durations as text). */
export type OidcAuthConfigInput = z.input<typeof oidcAuthConfigSchema>;
/** After parsing: durations in seconds, defaults filled in. */
export type OidcAuthConfig = z.output<typeof oidcAuthConfigSchema>;
