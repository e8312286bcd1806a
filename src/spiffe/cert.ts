/**
 * X.509 certificate decoding for validation: only the fields and extensions that
 * RFC 5280 path validation and the X509-SVID profile look at.
 * @internal
 */
import { X509Certificate } from 'node:crypto';
import { children, DerError, decodeOid, decodeTime, readOne, readTlv, TAG, type Tlv } from './der.js';
import { OID } from './oid.js';

export { OID } from './oid.js';

/**
 * A certificate serial as hex, the form stored and compared: lower-case, without leading zeros
 * (node's `X509Certificate.serialNumber` is upper-case and may keep a leading zero byte).
 */
export const serialText = (hex: string): string => hex.toLowerCase().replace(/^0+(?=.)/, '');

/** Key usage bits as masks over the first two content octets (RFC 5280 §4.2.1.3). */
export const KU = {
  digitalSignature: 0x8000,
  nonRepudiation: 0x4000,
  keyEncipherment: 0x2000,
  dataEncipherment: 0x1000,
  keyAgreement: 0x0800,
  keyCertSign: 0x0400,
  cRLSign: 0x0200,
} as const;

export interface Extension {
  critical: boolean;
  value: Buffer;
}

export interface ParsedCert {
  der: Buffer;
  node: X509Certificate;
  serialHex: string;
  issuer: Buffer;
  subject: Buffer;
  notBefore: Date;
  notAfter: Date;
  extensions: Map<string, Extension>;
  /** Undefined when the extension is absent. */
  basicConstraints?: { ca: boolean; pathLen?: number };
  /** Bit mask (see KU); undefined when the extension is absent. */
  keyUsage?: number;
  extKeyUsage?: string[];
  uris: string[];
  dnsNames: string[];
  subjectKeyId?: Buffer;
  authorityKeyId?: Buffer;
}

const cache = new WeakMap<Buffer, ParsedCert>();

function parseBasicConstraints(v: Buffer): { ca: boolean; pathLen?: number } {
  const items = children(readOne(v, TAG.SEQUENCE).value);
  let ca = false;
  let pathLen: number | undefined;
  for (const it of items) {
    if (it.tag === TAG.BOOLEAN) ca = it.value[0] === 0xff;
    else if (it.tag === TAG.INTEGER) {
      if (it.value.length > 4 || ((it.value[0] as number) & 0x80) !== 0) throw new DerError('bad pathLenConstraint');
      pathLen = it.value.readUIntBE(0, it.value.length);
    }
  }
  return pathLen === undefined ? { ca } : { ca, pathLen };
}

function parseKeyUsage(v: Buffer): number {
  const bs = readOne(v, TAG.BIT_STRING).value;
  if (bs.length < 2) return 0;
  return ((bs[1] as number) << 8) | (bs.length > 2 ? (bs[2] as number) : 0);
}

function parseSan(v: Buffer, uris: string[], dnsNames: string[]): void {
  for (const gn of children(readOne(v, TAG.SEQUENCE).value)) {
    if (gn.tag === 0x86) uris.push(gn.value.toString('latin1'));
    else if (gn.tag === 0x82) dnsNames.push(gn.value.toString('latin1'));
  }
}

function parseAki(v: Buffer): Buffer | undefined {
  for (const it of children(readOne(v, TAG.SEQUENCE).value)) if (it.tag === 0x80) return it.value;
  return undefined;
}

/** Decodes a DER certificate (memoised per Buffer). Throws DerError on malformed input. */
export function parseCert(der: Buffer): ParsedCert {
  const hit = cache.get(der);
  if (hit) return hit;
  const top = children(readOne(der, TAG.SEQUENCE).value);
  const tbsTlv = top[0];
  if (top.length !== 3 || !tbsTlv || tbsTlv.tag !== TAG.SEQUENCE) throw new DerError('not an X.509 certificate');
  const tbs = children(tbsTlv.value);
  let i = 0;
  let version = 0;
  if (tbs[0]?.tag === 0xa0) {
    version = (readOne((tbs[0] as Tlv).value, TAG.INTEGER).value[0] as number) ?? 0;
    i = 1;
  }
  const serial = tbs[i];
  const issuer = tbs[i + 2];
  const validity = tbs[i + 3];
  const subject = tbs[i + 4];
  if (!serial || !issuer || !validity || !subject || !tbs[i + 5]) throw new DerError('truncated TBSCertificate');
  const [nb, na] = children(validity.value);
  if (!nb || !na) throw new DerError('bad validity');
  const extensions = new Map<string, Extension>();
  for (const t of tbs.slice(i + 6)) {
    if (t.tag !== 0xa3) continue;
    if (version !== 2) throw new DerError('extensions present in a non-v3 certificate');
    for (const ext of children(readOne(t.value, TAG.SEQUENCE).value)) {
      const parts = children(ext.value);
      const id = decodeOid((parts[0] as Tlv).value);
      let critical = false;
      let val = parts[1];
      if (val?.tag === TAG.BOOLEAN) {
        critical = val.value[0] === 0xff;
        val = parts[2];
      }
      if (!val || val.tag !== TAG.OCTET_STRING) throw new DerError('bad extension');
      if (extensions.has(id)) throw new DerError(`duplicate extension ${id}`);
      extensions.set(id, { critical, value: val.value });
    }
  }
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const bc = extensions.get(OID.basicConstraints);
  const ku = extensions.get(OID.keyUsage);
  const eku = extensions.get(OID.extKeyUsage);
  const san = extensions.get(OID.subjectAltName);
  const ski = extensions.get(OID.subjectKeyIdentifier);
  const aki = extensions.get(OID.authorityKeyIdentifier);
  if (san) parseSan(san.value, uris, dnsNames);
  let node: X509Certificate;
  try {
    node = new X509Certificate(der);
  } catch (e) {
    throw new DerError(`certificate rejected by the X.509 parser: ${(e as Error).message}`);
  }
  const parsed: ParsedCert = {
    der,
    node,
    serialHex: serial.value.toString('hex'),
    issuer: issuer.raw,
    subject: subject.raw,
    notBefore: decodeTime(nb),
    notAfter: decodeTime(na),
    extensions,
    uris,
    dnsNames,
  };
  if (bc) parsed.basicConstraints = parseBasicConstraints(bc.value);
  if (ku) parsed.keyUsage = parseKeyUsage(ku.value);
  if (eku) parsed.extKeyUsage = children(readOne(eku.value, TAG.SEQUENCE).value).map((t) => decodeOid(t.value));
  if (ski) parsed.subjectKeyId = readOne(ski.value, TAG.OCTET_STRING).value;
  if (aki) {
    const k = parseAki(aki.value);
    if (k) parsed.authorityKeyId = k;
  }
  cache.set(der, parsed);
  return parsed;
}

/** Splits concatenated DER certificates (the Workload API's chain encoding). */
export function splitDerChain(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    const { tlv, next } = readTlv(buf, off);
    out.push(tlv.raw);
    off = next;
  }
  return out;
}
