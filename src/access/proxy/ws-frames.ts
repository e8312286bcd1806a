/**
 * Just enough of WebSocket framing (RFC 6455 §5) for the proxy to end a tunnelled WebSocket itself:
 * the close frame it writes toward the browser, and where the app's frames end in the byte stream
 * it relays, so that close frame never lands inside one of the app's frames (the proxy forwards
 * upgraded sockets as raw bytes and otherwise never parses them).
 */

/** RFC 6455 §7.4.1: policy violation. */
export const WS_POLICY_VIOLATION = 1008;

/** A close frame's payload is at most 125 bytes (§5.5): 2 for the code, 123 for the reason. */
export const WS_CLOSE_REASON_MAX_BYTES = 123;

/** `reason` cut to at most `max` bytes of UTF-8 without splitting a character. */
export function clipUtf8(reason: string, max = WS_CLOSE_REASON_MAX_BYTES): Buffer {
  const b = Buffer.from(reason, 'utf8');
  if (b.length <= max) return b;
  let end = max;
  // Back off continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && ((b[end] as number) & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

/**
 * An unmasked close frame (a server's, §5.5.1): FIN + opcode 0x8, payload length, the status code
 * big-endian, then the reason (UTF-8, clipped to 123 bytes).
 *
 * @example
 * ```ts
 * socket.write(closeFrame(1008, 'access revoked: session.revoked'));
 * ```
 */
export function closeFrame(code: number, reason: string): Buffer {
  if (!Number.isInteger(code) || code < 1000 || code > 4999) throw new RangeError(`bad close code ${code}`);
  const r = clipUtf8(reason);
  const f = Buffer.alloc(4 + r.length);
  f[0] = 0x88;
  f[1] = 2 + r.length;
  f.writeUInt16BE(code, 2);
  r.copy(f, 4);
  return f;
}

/**
 * Follows frame boundaries in one direction of a WebSocket byte stream: `push` every chunk relayed,
 * `atBoundary` says whether the bytes so far end exactly after a frame. Header bytes may arrive
 * split across chunks. A length beyond 2^53 (never sent in practice) counts as never ending.
 */
export class FrameBoundary {
  /** Header bytes of the frame being read (until its length is known). */
  #head: number[] = [];
  /** Payload bytes still to come of the current frame. */
  #remaining = 0;

  get atBoundary(): boolean {
    return this.#head.length === 0 && this.#remaining === 0;
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, chunk.length - i);
        this.#remaining -= n;
        i += n;
        continue;
      }
      this.#head.push(chunk[i] as number);
      i++;
      const need = headerLength(this.#head);
      if (need !== undefined && this.#head.length === need) {
        this.#remaining = payloadLength(this.#head);
        this.#head = [];
      }
    }
  }
}

/** The full header length once the first two bytes are known. */
function headerLength(h: readonly number[]): number | undefined {
  if (h.length < 2) return undefined;
  const b1 = h[1] as number;
  const len7 = b1 & 0x7f;
  const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
  return 2 + ext + (b1 & 0x80 ? 4 : 0);
}

function payloadLength(h: readonly number[]): number {
  const len7 = (h[1] as number) & 0x7f;
  if (len7 < 126) return len7;
  if (len7 === 126) return ((h[2] as number) << 8) | (h[3] as number);
  let n = 0;
  for (let k = 2; k < 10; k++) n = n * 256 + (h[k] as number);
  return Number.isSafeInteger(n) ? n : Number.POSITIVE_INFINITY;
}
