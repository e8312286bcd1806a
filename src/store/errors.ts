/** A write lost a race with another writer (another server on the same database). Retry after re-reading. */
import { NevertrustError } from '../errors.js';
export class StoreConflictError extends NevertrustError<'ERR_STORE_CONFLICT'> {
  override readonly name = 'StoreConflictError';
  readonly code = 'ERR_STORE_CONFLICT';
  constructor(what: string) {
    super(`${what} was changed by another writer; re-read and retry`, { status: 409 });
  }
}

/** The store could not be opened; the message is one line saying what and how to fix it. */
export class StoreOpenError extends NevertrustError<'ERR_STORE_OPEN'> {
  override readonly name = 'StoreOpenError';
  readonly code = 'ERR_STORE_OPEN';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { status: 500, cause: options?.cause });
  }
}
