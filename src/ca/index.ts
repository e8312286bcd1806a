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
  type IssuedX509Svid,
  loadUpstreamAuthority,
  type MintedX509Svid,
  type MintJwtSvidRequest,
  type MintX509SvidRequest,
  NOT_BEFORE_CUSHION_SECONDS,
  type SignX509SvidRequest,
  type UpstreamAuthority,
} from './authority.js';
export { createCsr, csrToPem, type VerifiedCsr, verifyCsr, verifyCsrAsync } from './csr.js';
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
