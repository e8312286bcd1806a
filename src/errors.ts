/**
 * The one error base of nevertrust. Every error the product throws on purpose extends
 * {@link NevertrustError}: a stable `code` (`ERR_<AREA>_<RULE>`) that callers and tests switch on,
 * and the HTTP `status` it maps to when it crosses an API boundary. The router's `dispatch()` is the
 * one place that turns an error into a response: a status below 500 is the caller's fault and its
 * message is shown; 500 and above are ours, and the message stays in the log.
 *
 * Model: jose's `util/errors.ts` (one base, a `code` per class) and fastify's `lib/errors.js`
 * (a status per code). This module is the bottom of the tree: it imports nothing.
 *
 * @example
 * ```ts
 * export class WidgetError extends NevertrustError<'ERR_WIDGET_BROKEN' | 'ERR_WIDGET_MISSING'> {
 *   override readonly name = 'WidgetError';
 *   constructor(readonly code: 'ERR_WIDGET_BROKEN' | 'ERR_WIDGET_MISSING', message: string) {
 *     super(message, { status: code === 'ERR_WIDGET_MISSING' ? 404 : 400 });
 *   }
 * }
 * ```
 */

/** Every code has this shape: `ERR_`, then the area, then the rule, in upper snake case. */
export type ErrorCode = `ERR_${string}`;

export interface NevertrustErrorOptions {
  /** The HTTP status when this error answers an API request. Default 500 (internal). */
  status?: number;
  /** The error this one wraps; kept for the log, never shown to a caller. */
  cause?: unknown;
}

/** `ERR_CSR_MALFORMED` → `csr_malformed`: the lowercase reason code of the JSON wire format. */
export function wireReason(code: ErrorCode): string {
  return code.slice(4).toLowerCase();
}

/** The base of every nevertrust error. `code` is stable; messages may be reworded. */
export abstract class NevertrustError<C extends ErrorCode = ErrorCode> extends Error {
  abstract override readonly name: string;
  abstract readonly code: C;
  /** HTTP status at an API boundary: < 500 the caller's fault (message shown), ≥ 500 ours (message logged only). */
  readonly status: number;

  constructor(message: string, options: NevertrustErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status ?? 500;
  }

  /** Whether the message may be shown to the caller (4xx), or only logged (5xx). */
  get expose(): boolean {
    return this.status < 500;
  }

  /** The `error` field of a JSON answer: the code in wire form unless a class keeps an older reason. */
  get reason(): string {
    return wireReason(this.code);
  }

  /** Extra fields of a JSON answer (only ever sent when {@link expose}). */
  get details(): Record<string, unknown> {
    return {};
  }
}

/** gRPC status names by number (grpc/grpc `doc/statuscodes.md`), for the `ERR_…` code of a gRPC error. */
const GRPC_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** The HTTP status of each gRPC status (grpc-gateway's mapping), same order as {@link GRPC_NAMES}. */
const GRPC_HTTP = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401] as const;

/**
 * The `ERR_<AREA>_<STATUS NAME>` code and HTTP status of a gRPC status number, so errors carrying a
 * gRPC status fit the one taxonomy; the number itself stays on the error for the gRPC wire.
 *
 * @example
 * grpcErrorCode('ERR_GRPC', 7); // { code: 'ERR_GRPC_PERMISSION_DENIED', status: 403 }
 */
export function grpcErrorCode<A extends ErrorCode>(
  area: A,
  grpcStatus: number,
): { code: `${A}_${string}`; status: number } {
  return { code: `${area}_${GRPC_NAMES[grpcStatus] ?? 'UNKNOWN'}`, status: GRPC_HTTP[grpcStatus] ?? 500 };
}

/** Whether `e` is one of ours; a plain `Error` reaching an API boundary is always an internal error. */
export function isNevertrustError(e: unknown): e is NevertrustError {
  return e instanceof NevertrustError;
}
