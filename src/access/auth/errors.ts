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

/** A login callback refused; `reason` is the short code shown on the page and recorded in audit. */
export class LoginRefusedError extends NevertrustError<'ERR_ACCESS_LOGIN_REFUSED'> {
  override readonly name = 'LoginRefusedError';
  readonly code = 'ERR_ACCESS_LOGIN_REFUSED' as const;
  constructor(readonly loginReason: string) {
    super(`login refused: ${loginReason}`, { status: 400 });
  }
}
