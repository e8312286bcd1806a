/** An audit event was malformed, oversized or carried a field that is not allowed; nothing was stored. */
export class AuditEventError extends Error {
  readonly code = 'ERR_AUDIT_EVENT';
  constructor(
    message: string,
    /** Where in the event (dotted path) the problem is, when known. */
    readonly path?: string,
  ) {
    super(message);
    this.name = 'AuditEventError';
  }
}

/** An audit event's canonical form is larger than the limit. */
export class AuditEventTooLargeError extends Error {
  readonly code = 'ERR_AUDIT_EVENT_TOO_LARGE';
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`audit event is ${size} bytes, over the ${limit}-byte limit: move bulky data out of "details"`);
    this.name = 'AuditEventTooLargeError';
  }
}

/** A Merkle proof or checkpoint did not verify, or was asked for a size the log does not have. */
export class AuditProofError extends Error {
  readonly code = 'ERR_AUDIT_PROOF';
  constructor(message: string) {
    super(message);
    this.name = 'AuditProofError';
  }
}

/** The audit signing key could not be loaded or unsealed. */
export class AuditKeyError extends Error {
  readonly code = 'ERR_AUDIT_KEY';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditKeyError';
  }
}

/** The recorder was used after close(). */
export class AuditRecorderClosedError extends Error {
  readonly code = 'ERR_AUDIT_RECORDER_CLOSED';
  constructor() {
    super('audit recorder is closed');
    this.name = 'AuditRecorderClosedError';
  }
}
