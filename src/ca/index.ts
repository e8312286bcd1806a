/**
 * The certificate authority of one trust domain: keys, KEK, CSR signing, rotation, bundle.
 */
export {
  type AuthorityInfo,
  CertificateAuthority,
  type CertificateAuthorityOptions,
  certificatesToPem,
  DEFAULT_CA_TTL_SECONDS,
  DEFAULT_JWT_SVID_TTL_SECONDS,
  DEFAULT_X509_SVID_TTL_SECONDS,
  type IssuedJwtSvid,
  type MintedX509Svid,
  type MintJwtSvidRequest,
  type MintX509SvidRequest,
  type SignX509SvidRequest,
} from './authority.js';
export { NOT_BEFORE_CUSHION_SECONDS } from './generation.js';
export type { IssuedX509Svid } from './issuance.js';
export { loadUpstreamAuthority, type UpstreamAuthority } from './upstream.js';
export {
  createCsr,
  createCsrWithSigner,
  csrRequestedUris,
  csrToPem,
  type VerifiedCsr,
  verifyCsr,
  verifyCsrAsync,
} from './csr.js';
export { CaError, type CaErrorCode, CsrError, type CsrErrorCode, KekError, type KekErrorCode } from './errors.js';
export { KEK_ENV_VAR, Kek, type LoadedKek, type LoadKekOptions, loadOrCreateKek, type SealedKey } from './kek.js';
export { DEFAULT_KEY_TYPE, exportPkcs8, generatePrivateKey, type KeyType } from './keys.js';
export {
  closeSharedSigningPool,
  SigningPool,
  type SigningPoolOptions,
  sharedSigningPool,
} from './signing-pool.js';
export { type CaStateStore, FileCaStateStore, MemoryCaStateStore } from './state.js';
export { buildCrl, type BuildCrlOptions, type CrlEntry } from './crl.js';
