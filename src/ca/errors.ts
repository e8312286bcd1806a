/** Error kinds of the certificate authority. Messages never include key material. */
import { NevertrustError } from '../errors.js';

export type CaErrorCode =
  | 'ERR_CA_TRUST_DOMAIN_MISMATCH'
  | 'ERR_CA_NO_ACTIVE_AUTHORITY'
  | 'ERR_CA_AUTHORITY_EXPIRED'
  | 'ERR_CA_INVALID_TTL'
  | 'ERR_CA_INVALID_DNS_NAME'
  | 'ERR_CA_INVALID_REQUEST'
  | 'ERR_CA_STATE_CORRUPT'
  | 'ERR_CA_STATE_MISMATCH'
  | 'ERR_CA_UPSTREAM_INVALID'
  | 'ERR_CA_SIGNER_FAILED'
  | 'ERR_CA_SIGNER_CLOSED';

/** The CA refusals that are the caller's fault (400); every other CA error is internal (500). */
const CA_CALLER_ERRORS: ReadonlySet<CaErrorCode> = new Set([
  'ERR_CA_TRUST_DOMAIN_MISMATCH',
  'ERR_CA_INVALID_TTL',
  'ERR_CA_INVALID_DNS_NAME',
  'ERR_CA_INVALID_REQUEST',
]);

/** Thrown by {@link CertificateAuthority} operations; `code` names the broken rule. */
export class CaError extends NevertrustError<CaErrorCode> {
  override readonly name = 'CaError';
  constructor(
    readonly code: CaErrorCode,
    message: string,
  ) {
    // A request the CA refuses is the caller's fault; a CA that cannot sign is ours.
    super(message, { status: CA_CALLER_ERRORS.has(code) ? 400 : 500 });
  }
}

export type KekErrorCode =
  | 'ERR_KEK_FILE_PERMISSIONS'
  | 'ERR_KEK_INVALID'
  | 'ERR_KEK_MISMATCH'
  | 'ERR_KEK_DECRYPT_FAILED';

/** Thrown when the key-encryption key cannot be loaded or does not open a sealed key. */
export class KekError extends NevertrustError<KekErrorCode> {
  override readonly name = 'KekError';
  constructor(
    readonly code: KekErrorCode,
    message: string,
  ) {
    super(message, { status: 500 });
  }
}

export type CsrErrorCode =
  | 'ERR_CSR_MALFORMED'
  | 'ERR_CSR_BAD_SIGNATURE'
  | 'ERR_CSR_UNSUPPORTED_ALGORITHM'
  | 'ERR_CSR_UNSUPPORTED_KEY';

/** Thrown when a PKCS#10 request is malformed, unsupported or fails proof of possession. */
export class CsrError extends NevertrustError<CsrErrorCode> {
  override readonly name = 'CsrError';
  constructor(
    readonly code: CsrErrorCode,
    message: string,
  ) {
    super(message, { status: 400 });
  }
}
