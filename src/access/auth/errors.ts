import { NevertrustError } from '../../errors.js';

export type AccessAuthErrorCode = 'ERR_ACCESS_AUTH_CONFIG' | 'ERR_ACCESS_AUTH_PROVIDER';

/** The authenticator cannot start: a bad config (caller's fault) or an unreachable provider (ours). */
export class AccessAuthError extends NevertrustError<AccessAuthErrorCode> {
  override readonly name = 'AccessAuthError';
  constructor(
    readonly code: AccessAuthErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, { status: code === 'ERR_ACCESS_AUTH_CONFIG' ? 400 : 502, ...options });
  }
}
