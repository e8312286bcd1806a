/** The one error of admin authentication (its own module: admin-auth.ts and person-admin.ts both throw it). */
import { NevertrustError } from '../errors.js';

/** What an {@link AdminAuthError} adds to the answer and the refusal record. */
export interface AdminAuthErrorOptions {
  /** The wire `error`; default `unauthenticated` (401) or `forbidden` (403). */
  reason?: string;
  /** Answer headers, e.g. an RFC 9470 `www-authenticate` challenge. */
  headers?: Record<string, string>;
  /** Who was refused, when known (`person:<user>`): the refusal record names them. */
  by?: string;
}

export class AdminAuthError extends NevertrustError<'ERR_ADMIN_AUTH'> {
  override readonly name = 'AdminAuthError';
  readonly code = 'ERR_ADMIN_AUTH';
  constructor(
    message: string,
    status: 401 | 403 = 401,
    readonly options: AdminAuthErrorOptions = {},
  ) {
    super(message, { status });
  }

  override get reason(): string {
    return this.options.reason ?? (this.status === 403 ? 'forbidden' : 'unauthenticated');
  }
}
