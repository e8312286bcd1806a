import { NevertrustError } from '../../errors.js';

export type MfaErrorCode = 'ERR_MFA_INPUT' | 'ERR_MFA_NOT_FOUND' | 'ERR_MFA_KEY_MISSING';

/**
 * An MFA operation that cannot run: bad input (a factor name, a TTL; 400), an unknown factor (404),
 * or a service without the sealing key asked for TOTP secrets (ours, 500). A refused code or
 * assertion is not an error: it is a `VerifyResult` with a reason.
 */
export class MfaError extends NevertrustError<MfaErrorCode> {
  override readonly name = 'MfaError';
  constructor(
    readonly code: MfaErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, { status: code === 'ERR_MFA_INPUT' ? 400 : code === 'ERR_MFA_NOT_FOUND' ? 404 : 500, ...options });
  }
}
