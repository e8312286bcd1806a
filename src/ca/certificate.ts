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
import { type SignatureProfile, signatureProfile } from './keys.js';

const OIDS = {
  C: '2.5.4.6',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  CN: '2.5.4.3',
  serialNumber: '2.5.4.5',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
} as const;

export type NameAttribute = ['C' | 'O' | 'OU' | 'CN' | 'serialNumber', string];

/** DER Name (RDNSequence), one attribute per RDN. */
export function encodeName(attrs: readonly NameAttribute[]): Buffer {
  return seq(
    ...attrs.map(([type, value]) => {
      const printable = type === 'C' || type === 'serialNumber';
      const v = tlv(printable ? TAG.PRINTABLE_STRING : TAG.UTF8_STRING, Buffer.from(value, 'utf8'));
      return set(seq(oid(OIDS[type]), v));
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
  return id === OIDS.ecPublicKey ? 'ec' : id === OIDS.rsaEncryption ? 'rsa' : 'other';
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

const EXT_BC_LEAF = extension(OIDS.basicConstraints, true, seq());
const EXT_KU_LEAF_EC = extension(OIDS.keyUsage, true, KU_LEAF_EC);
const EXT_KU_LEAF_RSA = extension(OIDS.keyUsage, true, KU_LEAF_RSA);
const EXT_EKU = extension(OIDS.extKeyUsage, false, seq(oid(OIDS.serverAuth), oid(OIDS.clientAuth)));
const VERSION_V3 = explicit(0, smallInt(2));
const SAN_OID = oid(OIDS.subjectAltName);
const SKI_OID = oid(OIDS.subjectKeyIdentifier);

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
    extension(OIDS.basicConstraints, true, bc),
    extension(OIDS.keyUsage, true, KU_CA),
    extension(OIDS.subjectKeyIdentifier, false, octets(ski)),
    extension(OIDS.authorityKeyIdentifier, false, seq(implicitPrimitive(0, p.issuerKeyId ?? ski))),
    extension(OIDS.subjectAltName, false, seq(tlv(0x86, Buffer.from(p.trustDomainId, 'latin1')))),
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

  constructor(caCert: Buffer, caKey: KeyObject) {
    this.#key = caKey;
    this.#profile = signatureProfile(caKey);
    const tbs = children((children(readOne(caCert, TAG.SEQUENCE).value)[0] as { value: Buffer }).value);
    const off = tbs[0]?.tag === 0xa0 ? 1 : 0;
    this.#issuer = (tbs[off + 4] as { raw: Buffer }).raw;
    const caSki = keyIdentifier((tbs[off + 5] as { raw: Buffer }).raw);
    this.#extTail = Buffer.concat([
      EXT_EKU,
      extension(OIDS.authorityKeyIdentifier, false, seq(implicitPrimitive(0, caSki))),
    ]);
  }

  issue(p: LeafParams): IssuedLeaf {
    const { tbs, serialHex } = this.#tbs(p);
    return { der: signTbs(tbs, this.#key, this.#profile), serialHex };
  }

  /** Same as {@link issue}, with the signature computed on libuv's thread pool. */
  issueAsync(p: LeafParams): Promise<IssuedLeaf> {
    const { tbs, serialHex } = this.#tbs(p);
    return new Promise((resolve, reject) => {
      sign(this.#profile.hash, tbs, this.#key, (err, sig) => {
        if (err) reject(err);
        else resolve({ der: seq(tbs, this.#profile.algorithmIdentifier, bits(sig)), serialHex });
      });
    });
  }

  #tbs(p: LeafParams): { tbs: Buffer; serialHex: string } {
    const serial = randomSerial();
    const san: Buffer[] = [tlv(0x86, Buffer.from(p.spiffeId, 'latin1'))];
    for (const d of p.dnsNames) san.push(tlv(0x82, Buffer.from(d, 'latin1')));
    const firstDns = p.dnsNames[0];
    const subject = firstDns === undefined ? LEAF_SUBJECT : encodeName([...LEAF_SUBJECT_PREFIX, ['CN', firstDns]]);
    const ski = keyIdentifier(p.spki);
    const exts = seq(
      EXT_BC_LEAF,
      p.family === 'rsa' ? EXT_KU_LEAF_RSA : EXT_KU_LEAF_EC,
      seq(SAN_OID, octets(seq(...san))),
      seq(SKI_OID, octets(octets(ski))),
      this.#extTail,
    );
    const tbs = seq(
      VERSION_V3,
      serial,
      this.#profile.algorithmIdentifier,
      this.#issuer,
      seq(time(p.notBefore), time(p.notAfter)),
      subject,
      p.spki,
      explicit(3, exts),
    );
    // serial is INTEGER TLV: skip tag + one length byte (always < 128 content bytes)
    return { tbs, serialHex: serial.subarray(2).toString('hex') };
  }
}
