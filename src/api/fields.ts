/** Field schemas several wire contracts share. */
import { z } from 'zod';
import { SpiffeIdError, tryParseSpiffeId } from '../spiffe/index.js';

/** A SPIFFE ID in its canonical text form, checked with the one parser (src/spiffe/id.ts). */
export const spiffeIdText = z.string().superRefine((v, ctx) => {
  const r = tryParseSpiffeId(v);
  if (r instanceof SpiffeIdError) ctx.addIssue({ code: 'custom', message: `not a SPIFFE ID (${r.code})` });
});

/** An RFC 3339 time, as every timestamp on the wire (`new Date(ms).toISOString()`). */
export const isoTime = z.iso.datetime({ offset: true });

/** ms since the epoch → the wire's RFC 3339 text. */
export const toIso = (ms: number): string => new Date(ms).toISOString();

/** A SPIFFE bundle as JWKS (the keys are checked by `TrustBundle.fromJwks`, which reads them). */
export const jwksSchema = z.object({
  keys: z.array(
    z.looseObject({
      // Optional in the type as in `SpiffeJwks` (JsonWebKey); `TrustBundle.fromJwks` refuses a key without it.
      kty: z.string().optional(),
      use: z.string().optional(),
      kid: z.string().optional(),
      x5c: z.array(z.string()).optional(),
    }),
  ),
  spiffe_sequence: z.number().int().nonnegative().optional(),
  spiffe_refresh_hint: z.number().nonnegative().optional(),
});
export type JwksWire = z.infer<typeof jwksSchema>;

/** The error body every API answers a refusal with (`router.ts` `dispatch()`). */
export const errorBodySchema = z.object({ error: z.string(), message: z.string() });
export type ErrorBody = z.infer<typeof errorBodySchema>;
