/** A write lost a race with another writer (another server on the same database). Retry after re-reading. */
export class StoreConflictError extends Error {
  readonly code = 'ERR_STORE_CONFLICT';
  constructor(what: string) {
    super(`${what} was changed by another writer; re-read and retry`);
    this.name = 'StoreConflictError';
  }
}

/** The store could not be opened; the message is one line saying what and how to fix it. */
export class StoreOpenError extends Error {
  readonly code = 'ERR_STORE_OPEN';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreOpenError';
  }
}
