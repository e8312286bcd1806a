/** An audit event was malformed, oversized or carried a field that is not allowed; nothing was stored. */
import { NevertrustError } from '../errors.js';
export class AuditEventError extends NevertrustError<'ERR_AUDIT_EVENT'> {
  override readonly name = 'AuditEventError';
  readonly code = 'ERR_AUDIT_EVENT';
  constructor(
    message: string,
    /** Where in the event (dotted path) the problem is, when known. */
    readonly path?: string,
  ) {
    super(message, { status: 400 });
  }
}

/** An audit event's canonical form is larger than the limit. */
export class AuditEventTooLargeError extends NevertrustError<'ERR_AUDIT_EVENT_TOO_LARGE'> {
  override readonly name = 'AuditEventTooLargeError';
  readonly code = 'ERR_AUDIT_EVENT_TOO_LARGE';
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`audit event is ${size} bytes, over the ${limit}-byte limit: move bulky data out of "details"`, {
      status: 413,
    });
  }
}

/** A Merkle proof or checkpoint did not verify, or was asked for a size the log does not have. */
export class AuditProofError extends NevertrustError<'ERR_AUDIT_PROOF'> {
  override readonly name = 'AuditProofError';
  readonly code = 'ERR_AUDIT_PROOF';
  constructor(message: string) {
    // No such leaf, size or checkpoint: what the caller asked for does not exist.
    super(message, { status: 404 });
  }
}

/** The audit signing key could not be loaded or unsealed. */
export class AuditKeyError extends NevertrustError<'ERR_AUDIT_KEY'> {
  override readonly name = 'AuditKeyError';
  readonly code = 'ERR_AUDIT_KEY';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { status: 500, cause: options?.cause });
  }
}

/** The recorder was used after close(). */
export class AuditRecorderClosedError extends NevertrustError<'ERR_AUDIT_RECORDER_CLOSED'> {
  override readonly name = 'AuditRecorderClosedError';
  readonly code = 'ERR_AUDIT_RECORDER_CLOSED';
  constructor() {
    super('audit recorder is closed', { status: 503 });
  }
}
