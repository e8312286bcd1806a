/**
 * `nevertrust/assertion`: identity assertions. A sidecar vouches for the verified caller of each
 * request with a short-lived ES256 JWT (header `x-nevertrust-assertion`); the app behind it checks
 * the token with any JWT library against the JWKS the server publishes for that sidecar, instead of
 * trusting a plain `x-nevertrust-peer-id` header that anything on the host could send.
 *
 * - {@link startAssertionSigner} (sidecars): ephemeral key, registered over mTLS, rotated, cached tokens.
 * - {@link verifyIdentityAssertion} and {@link assertionKeySet} (apps).
 * - {@link verifyPersonAssertion}: the access proxy's person assertion (`x-nevertrust-jwt-assertion`).
 */
export {
  type AssertionCaller,
  type AssertionFetch,
  type AssertionSigner,
  type AssertionSignerOptions,
  type AssertionSignerStats,
  startAssertionSigner,
} from './assertion/signer.js';
export {
  type AssertionKeySetOptions,
  type AssertionKeys,
  assertionKeySet,
  DEFAULT_ASSERTION_LEEWAY_SECONDS,
  type VerifiedIdentityAssertion,
  type VerifiedPersonAssertion,
  type VerifyIdentityAssertionOptions,
  type VerifyPersonAssertionOptions,
  verifyIdentityAssertion,
  verifyPersonAssertion,
} from './assertion/verify.js';
export {
  ASSERTION_ALG,
  ASSERTION_HEADER,
  ASSERTION_IDENTITY_KINDS,
  ASSERTION_JWKS_PATH,
  ASSERTION_KEYS_PATH,
  ASSERTION_TYP,
  type AssertionIdentityKind,
  IdentityAssertionError,
  type IdentityAssertionErrorCode,
  JWK_OWNER_MEMBER,
  PERSON_ASSERTION_HEADER,
  PERSON_ASSERTION_TYP,
} from './assertion/wire.js';
