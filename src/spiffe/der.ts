/**
 * Minimal DER reader and writer: only what X.509 / PKCS#10 handling here needs.
 * Kept in-house so certificate checks do not depend on the builder that made the
 * certificate, and so the CA can assemble a TBSCertificate with no per-field objects.
 * @internal not part of the public API
 */
import { NevertrustError } from '../errors.js';

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Raised on any malformed DER; callers wrap it into their own error kind. */
export class DerError extends NevertrustError<'ERR_DER_MALFORMED'> {
  override readonly name = 'DerError';
  readonly code = 'ERR_DER_MALFORMED';
  constructor(message: string) {
    // Malformed DER comes from the caller (a certificate or CSR it sent).
    super(message, { status: 400 });
  }
}

/** One decoded TLV; `value` and `raw` are views into the input, not copies. */
export interface Tlv {
  tag: number;
  /** Contents octets. */
  value: Buffer;
  /** The whole TLV, header included. */
  raw: Buffer;
}

/** Reads one TLV at `offset`; returns it and the offset after it. */
export function readTlv(buf: Buffer, offset = 0): { tlv: Tlv; next: number } {
  if (offset + 2 > buf.length) throw new DerError('truncated DER header');
  const tag = buf[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte DER tags are not supported');
  let len = buf[offset + 1] as number;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported DER length');
    if (p + n > buf.length) throw new DerError('truncated DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[p + i] as number);
    if (len < 0x80 || (n > 1 && buf[p] === 0)) throw new DerError('non-minimal DER length');
    p += n;
  }
  const end = p + len;
  if (end > buf.length) throw new DerError('DER value runs past its container');
  return { tlv: { tag, value: buf.subarray(p, end), raw: buf.subarray(offset, end) }, next: end };
}

/** Decodes exactly one TLV that must fill `buf`. */
export function readOne(buf: Buffer, expectTag?: number): Tlv {
  const { tlv, next } = readTlv(buf, 0);
  if (next !== buf.length) throw new DerError('trailing data after DER value');
  if (expectTag !== undefined && tlv.tag !== expectTag) {
    throw new DerError(`expected DER tag 0x${expectTag.toString(16)}, found 0x${tlv.tag.toString(16)}`);
  }
  return tlv;
}

/** Splits a constructed value's contents into its children. */
export function children(value: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let off = 0;
  while (off < value.length) {
    const { tlv, next } = readTlv(value, off);
    out.push(tlv);
    off = next;
  }
  return out;
}

/** Dotted string of an OBJECT IDENTIFIER's contents. */
export function decodeOid(value: Buffer): string {
  if (value.length === 0) throw new DerError('empty OID');
  const parts: number[] = [];
  const first = value[0] as number;
  parts.push(first < 80 ? Math.floor(first / 40) : 2, first < 80 ? first % 40 : first - 80);
  let acc = 0;
  for (let i = 1; i < value.length; i++) {
    const b = value[i] as number;
    acc = acc * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      parts.push(acc);
      acc = 0;
    }
  }
  return parts.join('.');
}

/** Parses UTCTime / GeneralizedTime (the Z forms RFC 5280 requires). */
export function decodeTime(tlv: Tlv): Date {
  const s = tlv.value.toString('latin1');
  const utc = tlv.tag === TAG.UTC_TIME ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s) : null;
  if (utc) {
    const yy = Number(utc[1]);
    // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, else 20YY
    const year = yy >= 50 ? 1900 + yy : 2000 + yy;
    return new Date(Date.UTC(year, Number(utc[2]) - 1, Number(utc[3]), Number(utc[4]), Number(utc[5]), Number(utc[6])));
  }
  const gen = tlv.tag === TAG.GENERALIZED_TIME ? /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s) : null;
  if (gen) {
    return new Date(
      Date.UTC(Number(gen[1]), Number(gen[2]) - 1, Number(gen[3]), Number(gen[4]), Number(gen[5]), Number(gen[6])),
    );
  }
  throw new DerError('malformed certificate time');
}

// ---------------------------------------------------------------- writer

function lengthBytes(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  if (len < 0x100) return Buffer.from([0x81, len]);
  if (len < 0x10000) return Buffer.from([0x82, len >> 8, len & 0xff]);
  if (len < 0x1000000) return Buffer.from([0x83, len >> 16, (len >> 8) & 0xff, len & 0xff]);
  throw new DerError('DER value too long');
}

/** Encodes one TLV from already-encoded contents. */
export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = contents.length === 1 ? (contents[0] as Buffer) : Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

export const seq = (...items: Buffer[]): Buffer => tlv(TAG.SEQUENCE, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(TAG.SET, ...items);
export const octets = (b: Buffer): Buffer => tlv(TAG.OCTET_STRING, b);
/** BIT STRING with zero unused bits. */
export const bits = (b: Buffer): Buffer => tlv(TAG.BIT_STRING, Buffer.from([0]), b);
export const DER_NULL = Buffer.from([0x05, 0x00]);
export const DER_TRUE = Buffer.from([0x01, 0x01, 0xff]);

/** INTEGER from an unsigned big-endian magnitude (minimal, positive). */
export function uint(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  let m = magnitude.subarray(i);
  if (m.length === 0) m = Buffer.from([0]);
  if ((m[0] as number) & 0x80) m = Buffer.concat([Buffer.from([0]), m]);
  return tlv(TAG.INTEGER, m);
}

export function smallInt(n: number): Buffer {
  const hex = n.toString(16);
  return uint(Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex'));
}

export function oid(dotted: string): Buffer {
  const p = dotted.split('.').map(Number);
  const out: number[] = [(p[0] as number) * 40 + (p[1] as number)];
  for (const n of p.slice(2)) {
    const stack: number[] = [n & 0x7f];
    let v = Math.floor(n / 128);
    while (v > 0) {
      stack.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...stack);
  }
  return tlv(TAG.OID, Buffer.from(out));
}

/** UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5). Seconds precision. */
export function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const p2 = (n: number) => String(n).padStart(2, '0');
  const rest = `${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG.UTC_TIME, Buffer.from(`${p2(y % 100)}${rest}`, 'latin1'));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'latin1'));
}

/** Context-specific tag helpers. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
export const implicitPrimitive = (n: number, value: Buffer): Buffer => tlv(0x80 | n, value);
