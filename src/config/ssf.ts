/**
 * `signals.ssf`: OpenID Shared Signals (SSF 1.0) on the server — transmitters we receive SETs from
 * (`receivers`) and our own transmitter (`transmitter`). See docs/signals.md.
 */
import { z } from 'zod';
import { durationSchema } from '../util/duration.js';

/** A receiver's or stream's name: it is a path segment (`/v1/ssf/push/<name>`). */
const name = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lowercase letters, digits, "-" and "_" (a path segment)');
const httpUrl = z.url({ protocol: /^https?$/ });

/** One transmitter we receive SETs from. */
export const ssfReceiverConfigSchema = z.strictObject({
  /** Our name for it; its push endpoint is `POST /v1/ssf/push/<name>`. */
  name,
  /** The transmitter's issuer: SETs must carry exactly this `iss`; discovery is under it. */
  issuer: httpUrl,
  /** Our audience: SETs must carry it in `aud` (and stream creation asks for it). */
  audience: z.string().min(1),
  /** `push` (RFC 8935: the transmitter POSTs to us) or `poll` (RFC 8936: we fetch). */
  delivery: z.enum(['push', 'poll']).default('push'),
  /** A JWKS file instead of the discovered `jwks_uri` (a transmitter whose keys we pin). */
  jwks_file: z.string().min(1).optional(),
  /** File with the bearer token we present to the transmitter's stream and poll endpoints. */
  token_file: z.string().min(1).optional(),
  /** File with the bearer token the transmitter must present to our push endpoint (absent: none asked). */
  push_token_file: z.string().min(1).optional(),
  /** Our push endpoint's public URL, sent at stream creation (push delivery). */
  push_url: httpUrl.optional(),
  /** Create (or read) the stream at the transmitter's configuration_endpoint at start. */
  create_stream: z.boolean().default(true),
  /** How old a SET's `iat` may be. */
  max_age: durationSchema.default(300),
  /** Pause between polls that returned nothing (poll delivery). */
  poll_interval: durationSchema.default(5),
});
export type SsfReceiverConfig = z.output<typeof ssfReceiverConfigSchema>;

/** A receiver our transmitter sends SETs to (one stream each). */
export const ssfStreamConfigSchema = z.strictObject({
  name,
  /** The `aud` of the SETs it gets. */
  audience: z.string().min(1),
  /** File with the bearer token it presents to our stream management and poll endpoints. */
  token_file: z.string().min(1),
  /** `push`: we POST each SET to `endpoint_url`; `poll`: it fetches them (RFC 8936). */
  delivery: z.enum(['push', 'poll']).default('push'),
  /** Its RFC 8935 push endpoint (push delivery; the receiver may set it at stream creation). */
  endpoint_url: httpUrl.optional(),
  /** File with the Authorization header value we send with each push (absent: none). */
  authorization_file: z.string().min(1).optional(),
});
export type SsfStreamConfig = z.output<typeof ssfStreamConfigSchema>;

export const ssfConfigSchema = z
  .strictObject({
    receivers: z.array(ssfReceiverConfigSchema).default([]),
    transmitter: z
      .strictObject({
        /** Our issuer (an https URL; http only for localhost): `iss` of every SET we sign. */
        issuer: httpUrl,
        /** PEM private key (RSA ≥ 2048 bits: RS256; P-256: ES256), mode 0600. */
        key_file: z.string().min(1),
        /** Key id published in the JWKS (default: the key's JWK thumbprint). */
        kid: z.string().min(1).optional(),
        receivers: z.array(ssfStreamConfigSchema).default([]),
      })
      .optional(),
  })
  .refine((c) => new Set(c.receivers.map((r) => r.name)).size === c.receivers.length, {
    message: 'receiver names must be unique',
    path: ['receivers'],
  })
  .refine(
    (c) =>
      !c.transmitter || new Set(c.transmitter.receivers.map((r) => r.name)).size === c.transmitter.receivers.length,
    {
      message: 'receiver names must be unique',
      path: ['transmitter', 'receivers'],
    },
  )
  .prefault({});
export type SsfConfig = z.output<typeof ssfConfigSchema>;
