/**
 * `nevertrust/spiffe`: SPIFFE IDs, trust bundles, X.509-SVID and JWT-SVID validation.
 * Pure: no I/O, no state.
 */
export {
  BundleSet,
  type BundleSource,
  bundleSet,
  DEFAULT_REFRESH_HINT_SECONDS,
  type SpiffeJwk,
  type SpiffeJwks,
  TrustBundle,
  TrustBundleError,
  type TrustBundleErrorCode,
  type TrustBundleInit,
} from './bundle.js';
export {
  MAX_SPIFFE_ID_BYTES,
  MAX_TRUST_DOMAIN_BYTES,
  parseSpiffeId,
  parseTrustDomain,
  parseWorkloadSpiffeId,
  SpiffeId,
  SpiffeIdError,
  type SpiffeIdErrorCode,
  spiffeIdFromSegments,
  TrustDomain,
  tryParseSpiffeId,
  type WorkloadCoordinates,
  workloadCoordinates,
} from './id.js';
export {
  DEFAULT_JWT_LEEWAY_SECONDS,
  DEFAULT_JWT_SVID_TTL_SECONDS,
  JWT_SVID_ALGORITHMS,
  type JwtSigningKey,
  type JwtSvid,
  type JwtSvidAlgorithm,
  JwtSvidError,
  type JwtSvidErrorCode,
  type MintJwtSvidOptions,
  mintJwtSvid,
  type ValidateJwtSvidOptions,
  validateJwtSvid,
} from './jwtsvid.js';
export {
  type CertificateChainInput,
  MAX_CHAIN_CERTIFICATES,
  spiffeIdFromCertificate,
  type VerifiedX509Svid,
  validateX509Svid,
  verifyX509Svid,
  X509SvidError,
  type X509SvidErrorCode,
  type X509SvidValidationOptions,
} from './x509svid.js';
export { serialText } from './cert.js';
export { certificatesFromPem, toPem } from './pem.js';
export {
  AGENT_ID_PREFIX,
  agentSpiffeId,
  DEVICE_ID_PREFIX,
  reservedIdReason,
  SERVER_ID_PATH,
  serverSpiffeId,
} from './well-known.js';
