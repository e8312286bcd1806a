/** gRPC status codes and the error handlers throw to answer with one. */
import { grpcErrorCode, NevertrustError } from '../../errors.js';

/** The gRPC status codes (grpc/grpc `doc/statuscodes.md`). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

/**
 * Thrown by a handler to end the call with `code` and `message` (sent to the client as
 * `grpc-status` / `grpc-message`). Any other thrown error becomes `INTERNAL` with a generic message,
 * so internals never leak to the caller.
 *
 * @example
 * ```ts
 * throw new GrpcError(Status.PERMISSION_DENIED, 'no identity issued');
 * ```
 */
export class GrpcError extends NevertrustError<`ERR_GRPC_${string}`> {
  override readonly name = 'GrpcError';
  /** `ERR_GRPC_<STATUS NAME>`, e.g. `ERR_GRPC_PERMISSION_DENIED`. */
  readonly code: `ERR_GRPC_${string}`;
  constructor(
    /** The status sent as `grpc-status`. */
    readonly grpcStatus: StatusCode,
    message: string,
  ) {
    const { code, status } = grpcErrorCode('ERR_GRPC', grpcStatus);
    super(message, { status });
    this.code = code;
  }
}

/**
 * Percent-encodes a `grpc-message` (gRPC over HTTP/2 spec: bytes outside 0x20–0x7E and `%` as %XX
 * of their UTF-8 encoding).
 *
 * @example
 * ```ts
 * encodeGrpcMessage('100% ✓'); // '100%25 %E2%9C%93'
 * ```
 */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x25) out += String.fromCharCode(byte);
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Decodes a percent-encoded `grpc-message`; malformed escapes are kept as they are (spec: lenient).
 *
 * @example
 * ```ts
 * decodeGrpcMessage('100%25 %E2%9C%93'); // '100% ✓'
 * ```
 */
export function decodeGrpcMessage(encoded: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const c = encoded.charCodeAt(i);
    if (c === 0x25 && /^[0-9A-Fa-f]{2}$/.test(encoded.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(encoded.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(c & 0xff);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
