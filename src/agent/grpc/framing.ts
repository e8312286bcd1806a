/**
 * gRPC length-prefixed messages (gRPC over HTTP/2 spec, "Length-Prefixed-Message"):
 * 1 byte compressed flag, 4 bytes big-endian length, then the message.
 */
import { GrpcError, Status } from './status.js';

/** Default maximum message size, as grpc-go and grpc-js (4 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Frames one message.
 *
 * @example
 * ```ts
 * stream.write(frameMessage(Type.encode(msg).finish()));
 * ```
 */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/**
 * Incremental parser for the request body. Checks each header as soon as its 5 bytes arrive, so an
 * oversized message is refused before it is buffered.
 *
 * @example
 * ```ts
 * const reader = new MessageReader(4 << 20);
 * stream.on('data', (chunk) => { for (const m of reader.push(chunk)) handle(m); });
 * ```
 */
export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);
  private need = -1;

  constructor(private readonly maxBytes: number = DEFAULT_MAX_MESSAGE_BYTES) {}

  /**
   * Adds bytes and returns every message now complete.
   *
   * @throws {GrpcError} `INTERNAL` for a compressed message (no compression is negotiated),
   *   `RESOURCE_EXHAUSTED` for a message larger than the limit
   */
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      if (this.need < 0) {
        if (this.buf.length < 5) break;
        const flag = this.buf[0];
        if (flag !== 0) {
          throw new GrpcError(
            Status.INTERNAL,
            flag === 1
              ? 'compressed messages are not supported (grpc-accept-encoding: identity)'
              : `invalid compressed-flag byte ${flag}`,
          );
        }
        const len = this.buf.readUInt32BE(1);
        if (len > this.maxBytes) {
          throw new GrpcError(
            Status.RESOURCE_EXHAUSTED,
            `received message larger than max (${len} vs. ${this.maxBytes})`,
          );
        }
        this.need = len;
        this.buf = this.buf.subarray(5);
      }
      if (this.buf.length < this.need) break;
      out.push(Buffer.from(this.buf.subarray(0, this.need)));
      this.buf = this.buf.subarray(this.need);
      this.need = -1;
    }
    return out;
  }

  /** True when the stream ended in the middle of a message. */
  get partial(): boolean {
    return this.need >= 0 || this.buf.length > 0;
  }
}

const TIMEOUT_UNITS_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/**
 * Parses `grpc-timeout` (at most 8 digits and a unit H M S m u n) into milliseconds.
 *
 * @example
 * ```ts
 * parseGrpcTimeout('250m'); // 250
 * parseGrpcTimeout('1H');   // 3600000
 * ```
 * @throws {GrpcError} `INVALID_ARGUMENT` for a malformed value
 */
export function parseGrpcTimeout(value: string): number {
  const m = /^([0-9]{1,8})([HMSmun])$/.exec(value);
  if (!m) throw new GrpcError(Status.INVALID_ARGUMENT, `malformed grpc-timeout ${JSON.stringify(value)}`);
  return Number(m[1]) * (TIMEOUT_UNITS_MS[m[2] as string] ?? 1);
}
