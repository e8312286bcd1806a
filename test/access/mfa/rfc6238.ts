/** An independent RFC 6238 / RFC 4226 implementation for tests (node:crypto HMAC, no otpauth). */
import { createHmac } from 'node:crypto';

/** RFC 4648 base32, as authenticator apps read the secret (spaces, padding and case ignored). */
export function base32Decode(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const ch of text.replace(/[\s=]/g, '').toUpperCase()) {
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

/** RFC 4226 HOTP (HMAC-SHA-1, dynamic truncation, 6 digits). */
export function hotp(key: Buffer, counter: number): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const o = (mac[mac.length - 1] as number) & 0x0f;
  return String((mac.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** The 6-digit code of `secret` (base32) at `atMs`, `offset` steps away. */
export function code(secretBase32: string, atMs: number, offset = 0): string {
  return hotp(base32Decode(secretBase32), Math.floor(atMs / 30_000) + offset);
}
