/**
 * The identity-assertion contract for `nevertrust/assertion`: its wire part (header, media type,
 * routes, request and JWKS schemas) lives in src/api/assertion-keys.ts, shared with the server's key
 * registry, and is re-exported here; the error type of signer and verifier is defined here.
 */
import { NevertrustError } from '../../errors.js';

export {
  ASSERTION_ALG,
  ASSERTION_HEADER,
  ASSERTION_IDENTITY_KINDS,
  ASSERTION_JWKS_PATH,
  ASSERTION_KEYS_PATH,
  ASSERTION_TYP,
  type AssertionIdentityKind,
  JWK_OWNER_MEMBER,
} from '../../api/assertion-keys.js';

/** The path of the server's own SVID on the agent port (defined once in src/spiffe/well-known.ts). */
export { SERVER_ID_PATH } from '../../spiffe/well-known.js';

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

/**
 * The access proxy's header vouching for a person to the app behind it (IAP style). Its JWT's `typ`
 * differs from the workload assertion's, so neither verifier accepts the other kind.
 */
export const PERSON_ASSERTION_HEADER = 'x-nevertrust-jwt-assertion';
/** The `typ` of a person assertion (a workload assertion's is {@link ASSERTION_TYP}). */
export const PERSON_ASSERTION_TYP = 'nevertrust-person+jwt';
