/**
 * A posture report signed by the device key as a compact JWS (issue #22): header
 * `{"alg":"ES256","typ":"nevertrust-posture+jws"}`, payload the report's JSON. The key signs in DER
 * (ECDSA-Sig-Value, what X.509 carries); JWS wants the raw 64-byte r||s (RFC 7518 §3.4).
 */
import { POSTURE_JWS_TYP, type PostureReport, postureReportSchema } from '../../api/index.js';
import { DeviceError } from './errors.js';
import type { DeviceKey } from './key.js';

/** Bytes of each of r and s for P-256. */
const P256_SCALAR_BYTES = 32;

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/**
 * Reads a DER length at `at`: short form, or long form of 1-2 bytes (an ECDSA-Sig-Value is never
 * longer). Returns the length and where the contents start.
 */
function derLength(der: Buffer, at: number): { len: number; next: number } {
  const first = der[at];
  if (first === undefined) throw new Error('truncated length');
  if (first < 0x80) return { len: first, next: at + 1 };
  const n = first & 0x7f;
  if (n < 1 || n > 2 || at + 1 + n > der.length) throw new Error('bad length');
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + (der[at + 1 + i] as number);
  return { len, next: at + 1 + n };
}

/** One positive DER INTEGER, as exactly `size` big-endian bytes (leading zeros stripped or added). */
function derInteger(der: Buffer, at: number, size: number): { value: Buffer; next: number } {
  if (der[at] !== 0x02) throw new Error('expected an INTEGER');
  const { len, next } = derLength(der, at + 1);
  if (len < 1 || next + len > der.length) throw new Error('bad INTEGER length');
  let bytes = der.subarray(next, next + len);
  if ((bytes[0] as number) & 0x80) throw new Error('negative INTEGER');
  // A DER INTEGER gets a leading 0x00 when its top bit is set; r or s may also be shorter than 32 bytes.
  while (bytes.length > 1 && bytes[0] === 0) bytes = bytes.subarray(1);
  if (bytes.length > size) throw new Error('INTEGER too large for the curve');
  const value = Buffer.alloc(size);
  bytes.copy(value, size - bytes.length);
  return { value, next: next + len };
}

/**
 * An ES256 signature in DER (SEQUENCE of two INTEGERs) as the raw r||s JWS uses: 64 bytes.
 *
 * @example
 * ```ts
 * const raw = derToJoseEs256(sign('sha256', data, { key, dsaEncoding: 'der' })); // raw.length === 64
 * ```
 * @throws {Error} for anything but a well-formed P-256 ECDSA-Sig-Value
 */
export function derToJoseEs256(der: Buffer): Buffer {
  if (der[0] !== 0x30) throw new Error('ECDSA signature: expected a SEQUENCE');
  const seq = derLength(der, 1);
  if (seq.next + seq.len !== der.length) throw new Error('ECDSA signature: length does not match');
  const r = derInteger(der, seq.next, P256_SCALAR_BYTES);
  const s = derInteger(der, r.next, P256_SCALAR_BYTES);
  if (s.next !== der.length) throw new Error('ECDSA signature: trailing bytes');
  return Buffer.concat([r.value, s.value]);
}

/**
 * Signs `report` with the device key: a compact JWS the server verifies against the device
 * certificate's public key. The report is checked against its schema first, so a device never sends
 * what the server would refuse for shape.
 *
 * @example
 * ```ts
 * const jws = await signPostureReport(await collectPosture({ deviceId }), key);
 * await client.report(jws);
 * ```
 */
export async function signPostureReport(report: PostureReport, key: DeviceKey): Promise<string> {
  const checked = postureReportSchema.parse(report);
  const input = `${b64url(JSON.stringify({ alg: 'ES256', typ: POSTURE_JWS_TYP }))}.${b64url(JSON.stringify(checked))}`;
  const der = await key.sign(Buffer.from(input, 'ascii'));
  let raw: Buffer;
  try {
    raw = derToJoseEs256(der);
  } catch (e) {
    throw new DeviceError(
      'ERR_DEVICE_KEY_INVALID',
      `the device key gave a malformed signature: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  return `${input}.${b64url(raw)}`;
}
