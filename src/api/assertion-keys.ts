/**
 * The identity-assertion contract shared by the signer (sidecar), the verifier (apps) and the
 * server's key registry: header, JWS type and algorithm, routes, the key registration request and
 * answer, and the published JWKS with the member naming a key's owner. One place, so the three sides
 * cannot drift apart (`nevertrust/assertion` re-exports it from src/pep/assertion/wire.ts).
 */
import { z } from 'zod';
import { isoTime, spiffeIdText } from './fields.js';

/** The header a sidecar forwards the assertion in (like Pomerium's `X-Pomerium-Jwt-Assertion`). */
export const ASSERTION_HEADER = 'x-nevertrust-assertion';

/**
 * The JWS `typ` of an assertion (RFC 8725 §3.11: explicit typing). A JWT-SVID or any other JWT
 * signed by a key of the same set can therefore never pass as an assertion, nor the reverse.
 */
export const ASSERTION_TYP = 'nevertrust-assertion+jwt';

/** The only signature algorithm of assertions (keys are P-256). */
export const ASSERTION_ALG = 'ES256';

/** Agent port (mTLS, caller authenticated by its X.509-SVID): register a public key. */
export const ASSERTION_KEYS_PATH = '/workload/v1/assertion-keys';

/** API port (public: public keys only): the JWKS, `?issuer=<SPIFFE ID>` for one workload's keys. */
export const ASSERTION_JWKS_PATH = '/v1/assertion-keys/jwks.json';

/** Non-standard JWK member (RFC 7517 §4 allows them) naming the SPIFFE ID a key belongs to. */
export const JWK_OWNER_MEMBER = 'spiffe_id';

/** How the sidecar established the caller; carried in the `nevertrust.identity` claim. */
export const ASSERTION_IDENTITY_KINDS = ['x509', 'xfcc', 'jwt-svid', 'user-jwt'] as const;
export type AssertionIdentityKind = (typeof ASSERTION_IDENTITY_KINDS)[number];

/** RFC 7517/7518 private (or symmetric secret) JWK members: refused by name, never their values. */
export const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

// base64url of a 32-byte P-256 coordinate, unpadded (RFC 7518 §6.2.1.2: full length, 43 characters).
const coordinate = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'a base64url 32-byte coordinate (43 characters)');

/** `POST /workload/v1/assertion-keys`: public-key members only; `.strict()` refuses any other (and so any private one). */
export const assertionKeyRequestSchema = z
  .object({
    jwk: z
      .object({
        kty: z.literal('EC', { error: 'must be "EC"' }),
        crv: z.literal('P-256', { error: 'must be "P-256"' }),
        x: coordinate,
        y: coordinate,
      })
      .strict(),
    expires_at: z.iso.datetime({ offset: true, error: 'an RFC 3339 date-time' }),
  })
  .strict();
export type AssertionKeyRequest = z.infer<typeof assertionKeyRequestSchema>;

/** The answer: the kid the server computed (RFC 7638 thumbprint), the owner and the expiry. */
export const assertionKeyResponseSchema = z.object({ kid: z.string(), spiffe_id: spiffeIdText, expires_at: isoTime });
export type AssertionKeyResponse = z.infer<typeof assertionKeyResponseSchema>;

/** A published key of `GET /v1/assertion-keys/jwks.json`. */
export const assertionJwkSchema = z.object({
  kty: z.literal('EC'),
  crv: z.literal('P-256'),
  x: coordinate,
  y: coordinate,
  kid: z.string(),
  alg: z.literal(ASSERTION_ALG),
  use: z.literal('sig'),
  [JWK_OWNER_MEMBER]: spiffeIdText,
});
export type AssertionJwk = z.infer<typeof assertionJwkSchema>;
export const assertionJwksSchema = z.object({ keys: z.array(assertionJwkSchema) });

/** A registered key as the registry stores it (times in ms since the epoch). */
export interface AssertionKeyRecord {
  kid: string;
  x: string;
  y: string;
  expires_at: number;
  registered_at: number;
}

/** The one conversion of a stored key of `owner` to its published JWK. */
export function assertionKeyToJwk(owner: string, k: AssertionKeyRecord): AssertionJwk {
  return {
    kty: 'EC',
    crv: 'P-256',
    x: k.x,
    y: k.y,
    kid: k.kid,
    alg: ASSERTION_ALG,
    use: 'sig',
    [JWK_OWNER_MEMBER]: owner,
  };
}
