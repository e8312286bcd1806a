/** An independent RFC 6238 / RFC 4226 implementation for tests (node:crypto HMAC, no otpauth). */
import { createHmac } from 'node:crypto';

export function base32Decode(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const ch of text.replace(/=+$/, '')) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The 6-digit code of `secret` (base32) at `atMs`, `offset` steps away. */
export function code(secretBase32: string, atMs: number, offset = 0): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(atMs / 30_000) + offset));
  const mac = createHmac('sha1', base32Decode(secretBase32)).update(counter).digest();
  const o = (mac[mac.length - 1] as number) & 0x0f;
  const n = mac.readUInt32BE(o) & 0x7fffffff;
  return String(n % 1_000_000).padStart(6, '0');
}
