/**
 * Direct DER certificate building. The leaf path precomputes every constant part of the
 * TBSCertificate once per CA, so issuing a certificate costs one random serial, one SHA-1
 * (subject key id), a few small concatenations and a single `crypto.sign`.
 */
import { createHash, createPublicKey, type KeyObject, randomFillSync, sign } from 'node:crypto';
import {
  bits,
  children,
  DER_TRUE,
  decodeOid,
  explicit,
  implicitPrimitive,
  octets,
  oid,
  readOne,
  seq,
  set,
  smallInt,
  TAG,
  time,
  tlv,
  uint,
} from '../spiffe/der.js';
import { OID } from '../spiffe/oid.js';
import { type SignatureProfile, signatureProfile } from './keys.js';
import { nativeP256Signer, type P256Sign } from './p256-native.js';

export type NameAttribute = ['C' | 'O' | 'OU' | 'CN' | 'serialNumber', string];

/** DER Name (RDNSequence), one attribute per RDN. */
export function encodeName(attrs: readonly NameAttribute[]): Buffer {
  return seq(
    ...attrs.map(([type, value]) => {
      const printable = type === 'C' || type === 'serialNumber';
      const v = tlv(printable ? TAG.PRINTABLE_STRING : TAG.UTF8_STRING, Buffer.from(value, 'utf8'));
      return set(seq(oid(OID[type]), v));
    }),
  );
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), DER_TRUE, octets(value)) : seq(oid(id), octets(value));
}

/** Key family of a SubjectPublicKeyInfo, from its algorithm OID. */
export function spkiFamily(spki: Buffer): 'ec' | 'rsa' | 'other' {
  const [alg] = children(readOne(spki, TAG.SEQUENCE).value);
  const first = alg ? children(alg.value)[0] : undefined;
  const id = first ? decodeOid(first.value) : '';
  return id === OID.ecPublicKey ? 'ec' : id === OID.rsaEncryption ? 'rsa' : 'other';
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Buffer): Buffer {
  const parts = children(readOne(spki, TAG.SEQUENCE).value);
  const bitString = parts[1];
  if (!bitString || bitString.tag !== TAG.BIT_STRING) throw new TypeError('malformed SubjectPublicKeyInfo');
  return createHash('sha1').update(bitString.value.subarray(1)).digest();
}

export function spkiOf(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ format: 'der', type: 'spki' });
}

// Serial numbers come from a pooled CSPRNG buffer: one syscall per 256 certificates.
const serialPool = Buffer.alloc(16 * 256);
let serialOffset = serialPool.length;

/** 128 random bits as a positive DER INTEGER (RFC 5280 §4.1.2.2: positive, ≤ 20 octets). */
export function randomSerial(): Buffer {
  for (;;) {
    if (serialOffset >= serialPool.length) {
      randomFillSync(serialPool);
      serialOffset = 0;
    }
    const raw = serialPool.subarray(serialOffset, serialOffset + 16);
    serialOffset += 16;
    // zero is not a valid serial; astronomically unlikely, but cheap to exclude
    if (raw.some((b) => b !== 0)) return uint(Buffer.from(raw));
  }
}

// KeyUsage BIT STRINGs (bit 0 = 0x80 of the first octet; unused trailing bits counted per DER).
const KU_LEAF_EC = Buffer.from([0x03, 0x02, 0x03, 0x88]); // digitalSignature, keyAgreement
const KU_LEAF_RSA = Buffer.from([0x03, 0x02, 0x05, 0xa0]); // digitalSignature, keyEncipherment
const KU_CA = Buffer.from([0x03, 0x02, 0x01, 0x86]); // digitalSignature, keyCertSign, cRLSign

const EXT_BC_LEAF = extension(OID.basicConstraints, true, seq());
const EXT_KU_LEAF_EC = extension(OID.keyUsage, true, KU_LEAF_EC);
const EXT_KU_LEAF_RSA = extension(OID.keyUsage, true, KU_LEAF_RSA);
const EXT_EKU = extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth)));
const VERSION_V3 = explicit(0, smallInt(2));
const SAN_OID = oid(OID.subjectAltName);
// SEQUENCE { OID subjectKeyIdentifier, OCTET STRING { OCTET STRING (20 bytes) } }, before the 20 key-id bytes
const SKI_EXT_PREFIX = Buffer.from([0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x0e, 0x04, 0x16, 0x04, 0x14]);

function hdrLen(n: number): number {
  return n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : 5;
}

function putHdr(b: Buffer, o: number, tag: number, n: number): number {
  b[o++] = tag;
  if (n < 0x80) b[o++] = n;
  else if (n < 0x100) {
    b[o++] = 0x81;
    b[o++] = n;
  } else if (n < 0x10000) {
    b[o++] = 0x82;
    b[o++] = n >> 8;
    b[o++] = n & 0xff;
  } else {
    b[o++] = 0x83;
    b[o++] = n >> 16;
    b[o++] = (n >> 8) & 0xff;
    b[o++] = n & 0xff;
  }
  return o;
}

const utc = (d: Date) => d.getUTCFullYear() >= 1950 && d.getUTCFullYear() < 2050;

/** Encoded size of a certificate time (RFC 5280 §4.1.2.5: UTCTime until 2049, then GeneralizedTime). */
function timeLen(d: Date): number {
  return utc(d) ? 15 : 17;
}

function putTime(b: Buffer, o: number, d: Date): number {
  const isUtc = utc(d);
  b[o++] = isUtc ? TAG.UTC_TIME : TAG.GENERALIZED_TIME;
  b[o++] = isUtc ? 13 : 15;
  const put2 = (n: number) => {
    b[o++] = 0x30 + Math.floor(n / 10);
    b[o++] = 0x30 + (n % 10);
  };
  const y = d.getUTCFullYear();
  if (!isUtc) put2(Math.floor(y / 100));
  put2(y % 100);
  put2(d.getUTCMonth() + 1);
  put2(d.getUTCDate());
  put2(d.getUTCHours());
  put2(d.getUTCMinutes());
  put2(d.getUTCSeconds());
  b[o++] = 0x5a; // 'Z'
  return o;
}

export interface CaCertificateParams {
  /** Public (or private) key the new CA certificate certifies. */
  subjectKey: KeyObject;
  subject: Buffer;
  /** Issuer Name DER; equal to `subject` for a self-signed root. */
  issuer: Buffer;
  /** The issuer's key identifier (AKI); omitted → the subject key id (self-signed). */
  issuerKeyId?: Buffer;
  signingKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** `spiffe://<td>` placed as the CA's URI SAN (X509-SVID §3.2: no path). */
  trustDomainId: string;
  pathLen?: number;
}

/**
 * Builds a CA certificate: cA=true (critical), key usage keyCertSign+cRLSign+digitalSignature
 * (critical), SKI/AKI and the trust-domain URI SAN.
 */
export function buildCaCertificate(p: CaCertificateParams): Buffer {
  const spki = spkiOf(p.subjectKey);
  const ski = keyIdentifier(spki);
  const profile = signatureProfile(p.signingKey);
  const bc = p.pathLen === undefined ? seq(DER_TRUE) : seq(DER_TRUE, smallInt(p.pathLen));
  const exts = [
    extension(OID.basicConstraints, true, bc),
    extension(OID.keyUsage, true, KU_CA),
    extension(OID.subjectKeyIdentifier, false, octets(ski)),
    extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, p.issuerKeyId ?? ski))),
    extension(OID.subjectAltName, false, seq(tlv(0x86, Buffer.from(p.trustDomainId, 'latin1')))),
  ];
  const tbs = seq(
    VERSION_V3,
    randomSerial(),
    profile.algorithmIdentifier,
    p.issuer,
    seq(time(p.notBefore), time(p.notAfter)),
    p.subject,
    spki,
    explicit(3, seq(...exts)),
  );
  return signTbs(tbs, p.signingKey, profile);
}

function signTbs(tbs: Buffer, key: KeyObject, profile: SignatureProfile): Buffer {
  const sig = sign(profile.hash, tbs, key);
  return seq(tbs, profile.algorithmIdentifier, bits(sig));
}

export interface LeafParams {
  /** SubjectPublicKeyInfo DER of the workload key. */
  spki: Buffer;
  family: 'ec' | 'rsa';
  spiffeId: string;
  dnsNames: readonly string[];
  notBefore: Date;
  notAfter: Date;
}

/** One issued leaf. */
export interface IssuedLeaf {
  der: Buffer;
  serialHex: string;
}

const LEAF_SUBJECT_PREFIX: NameAttribute[] = [
  ['C', 'US'],
  ['O', 'nevertrust'],
];
const LEAF_SUBJECT = encodeName(LEAF_SUBJECT_PREFIX);

/**
 * Issues X.509-SVID leaves for one CA: constant parts precomputed at construction.
 * Profile: v3, 128-bit random serial, subject C=US/O=nevertrust (+CN = first DNS name, as SPIRE),
 * cA=false (critical), key usage critical digitalSignature + keyAgreement (EC) or + keyEncipherment (RSA),
 * EKU serverAuth+clientAuth, one URI SAN plus DNS SANs, SKI and AKI.
 */
export class LeafIssuer {
  readonly #key: KeyObject;
  readonly #profile: SignatureProfile;
  readonly #issuer: Buffer;
  readonly #extTail: Buffer;
  /** The CA's P-256 key in the native addon, when it is built (same signatures, less per-call setup). */
  readonly #native: P256Sign | undefined;

  constructor(caCert: Buffer, caKey: KeyObject) {
    this.#key = caKey;
    this.#profile = signatureProfile(caKey);
    this.#native = nativeP256Signer(caKey);
    const tbs = children((children(readOne(caCert, TAG.SEQUENCE).value)[0] as { value: Buffer }).value);
    const off = tbs[0]?.tag === 0xa0 ? 1 : 0;
    this.#issuer = (tbs[off + 4] as { raw: Buffer }).raw;
    const caSki = keyIdentifier((tbs[off + 5] as { raw: Buffer }).raw);
    this.#extTail = Buffer.concat([
      EXT_EKU,
      extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, caSki))),
    ]);
  }

  issue(p: LeafParams): IssuedLeaf {
    const { tbs, serialHex } = this.#tbs(p);
    const sig = this.#native ? this.#native(tbs) : sign(this.#profile.hash, tbs, this.#key);
    return { der: this.#certificate(tbs, sig), serialHex };
  }

  /** Same as {@link issue}, with the signature computed on libuv's thread pool. */
  issueAsync(p: LeafParams): Promise<IssuedLeaf> {
    const { tbs, serialHex } = this.#tbs(p);
    return new Promise((resolve, reject) => {
      sign(this.#profile.hash, tbs, this.#key, (err, sig) => {
        if (err) reject(err);
        else resolve({ der: this.#certificate(tbs, sig), serialHex });
      });
    });
  }

  /** Certificate ::= SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }, written in one pass. */
  #certificate(tbs: Buffer, sig: Buffer): Buffer {
    const alg = this.#profile.algorithmIdentifier;
    const bitsLen = 1 + sig.length;
    const content = tbs.length + alg.length + hdrLen(bitsLen) + bitsLen;
    const out = Buffer.allocUnsafe(hdrLen(content) + content);
    let o = putHdr(out, 0, TAG.SEQUENCE, content);
    o += tbs.copy(out, o);
    o += alg.copy(out, o);
    o = putHdr(out, o, TAG.BIT_STRING, bitsLen);
    out[o++] = 0;
    sig.copy(out, o);
    return out;
  }

  // The TBSCertificate is sized first and written once: nested concatenation cost more than the signature.
  #tbs(p: LeafParams): { tbs: Buffer; serialHex: string } {
    const serial = randomSerial();
    const firstDns = p.dnsNames[0];
    const subject = firstDns === undefined ? LEAF_SUBJECT : encodeName([...LEAF_SUBJECT_PREFIX, ['CN', firstDns]]);
    const ku = p.family === 'rsa' ? EXT_KU_LEAF_RSA : EXT_KU_LEAF_EC;
    const ski = keyIdentifier(p.spki);
    const uriLen = p.spiffeId.length;
    let namesLen = hdrLen(uriLen) + uriLen;
    for (const d of p.dnsNames) namesLen += hdrLen(d.length) + d.length;
    const sanSeqLen = hdrLen(namesLen) + namesLen;
    const sanOctLen = hdrLen(sanSeqLen) + sanSeqLen;
    const sanExtContent = SAN_OID.length + sanOctLen;
    const sanExtLen = hdrLen(sanExtContent) + sanExtContent;
    const extsContent =
      EXT_BC_LEAF.length + ku.length + sanExtLen + SKI_EXT_PREFIX.length + ski.length + this.#extTail.length;
    const extsSeqLen = hdrLen(extsContent) + extsContent;
    const t1 = timeLen(p.notBefore);
    const t2 = timeLen(p.notAfter);
    const validityContent = t1 + t2;
    const alg = this.#profile.algorithmIdentifier;
    const tbsContent =
      VERSION_V3.length +
      serial.length +
      alg.length +
      this.#issuer.length +
      hdrLen(validityContent) +
      validityContent +
      subject.length +
      p.spki.length +
      hdrLen(extsSeqLen) +
      extsSeqLen;
    const tbs = Buffer.allocUnsafe(hdrLen(tbsContent) + tbsContent);
    let o = putHdr(tbs, 0, TAG.SEQUENCE, tbsContent);
    o += VERSION_V3.copy(tbs, o);
    o += serial.copy(tbs, o);
    o += alg.copy(tbs, o);
    o += this.#issuer.copy(tbs, o);
    o = putHdr(tbs, o, TAG.SEQUENCE, validityContent);
    o = putTime(tbs, o, p.notBefore);
    o = putTime(tbs, o, p.notAfter);
    o += subject.copy(tbs, o);
    o += p.spki.copy(tbs, o);
    o = putHdr(tbs, o, 0xa3, extsSeqLen);
    o = putHdr(tbs, o, TAG.SEQUENCE, extsContent);
    o += EXT_BC_LEAF.copy(tbs, o);
    o += ku.copy(tbs, o);
    o = putHdr(tbs, o, TAG.SEQUENCE, sanExtContent);
    o += SAN_OID.copy(tbs, o);
    o = putHdr(tbs, o, TAG.OCTET_STRING, sanSeqLen);
    o = putHdr(tbs, o, TAG.SEQUENCE, namesLen);
    o = putHdr(tbs, o, 0x86, uriLen);
    o += tbs.write(p.spiffeId, o, 'latin1');
    for (const d of p.dnsNames) {
      o = putHdr(tbs, o, 0x82, d.length);
      o += tbs.write(d, o, 'latin1');
    }
    o += SKI_EXT_PREFIX.copy(tbs, o);
    o += ski.copy(tbs, o);
    o += this.#extTail.copy(tbs, o);
    if (o !== tbs.length) throw new Error(`internal: TBSCertificate size mismatch (${o} != ${tbs.length})`);
    // serial is INTEGER TLV: skip tag + one length byte (always < 128 content bytes)
    return { tbs, serialHex: serial.subarray(2).toString('hex') };
  }
}
