/**
 * The identity-assertion contract shared by the signer (sidecar), the verifier (apps) and the
 * server's key registry: header and media type, routes, the JWK member naming a key's owner, and
 * the error type. One place, so the three sides cannot drift apart.
 */
import { NevertrustError } from '../../errors.js';

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

/** The path of the server's own SVID on the agent port (defined once in src/spiffe/well-known.ts). */
export { SERVER_ID_PATH } from '../../spiffe/well-known.js';

/** How the sidecar established the caller; carried in the `nevertrust.identity` claim. */
export const ASSERTION_IDENTITY_KINDS = ['x509', 'xfcc', 'jwt-svid', 'user-jwt'] as const;
export type AssertionIdentityKind = (typeof ASSERTION_IDENTITY_KINDS)[number];

/** One code per reason a token, a caller or a signer setup is refused. */
export type IdentityAssertionErrorCode =
  // verification
  | 'ERR_ASSERTION_MALFORMED'
  | 'ERR_ASSERTION_ALG_NOT_ALLOWED'
  | 'ERR_ASSERTION_BAD_TYP'
  | 'ERR_ASSERTION_KID_MISSING'
  | 'ERR_ASSERTION_UNKNOWN_KID'
  | 'ERR_ASSERTION_AMBIGUOUS_KID'
  | 'ERR_ASSERTION_KEYS_UNAVAILABLE'
  | 'ERR_ASSERTION_BAD_SIGNATURE'
  | 'ERR_ASSERTION_ISSUER_MISMATCH'
  | 'ERR_ASSERTION_AUD_MISMATCH'
  | 'ERR_ASSERTION_EXP_MISSING'
  | 'ERR_ASSERTION_EXPIRED'
  | 'ERR_ASSERTION_NOT_YET_VALID'
  | 'ERR_ASSERTION_SUBJECT_INVALID'
  | 'ERR_ASSERTION_IDENTITY_INVALID'
  | 'ERR_ASSERTION_INVALID_REQUEST'
  // signing
  | 'ERR_ASSERTION_CONFIG'
  | 'ERR_ASSERTION_REGISTER_TIMEOUT'
  | 'ERR_ASSERTION_NO_KEY'
  | 'ERR_ASSERTION_INVALID_CALLER'
  | 'ERR_ASSERTION_CLOSED';

/** Thrown when an assertion is refused, or cannot be made; `code` names the reason. */
export class IdentityAssertionError extends NevertrustError<IdentityAssertionErrorCode> {
  override readonly name = 'IdentityAssertionError';
  constructor(
    readonly code: IdentityAssertionErrorCode,
    message: string,
  ) {
    super(message, { status: assertionStatus(code) });
  }
}

/** A refused token or caller is the caller's fault; a signer that cannot work is ours. */
function assertionStatus(code: IdentityAssertionErrorCode): number {
  switch (code) {
    case 'ERR_ASSERTION_INVALID_REQUEST':
      return 400;
    case 'ERR_ASSERTION_KEYS_UNAVAILABLE':
    case 'ERR_ASSERTION_REGISTER_TIMEOUT':
      return 503;
    case 'ERR_ASSERTION_CONFIG':
    case 'ERR_ASSERTION_NO_KEY':
    case 'ERR_ASSERTION_CLOSED':
      return 500;
    default:
      return 401;
  }
}
