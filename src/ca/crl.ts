/**
 * X.509 CRLs of revoked X.509-SVID serials (issue #23): v2, signed by a CA generation's key, with the
 * CRL number and the authority key identifier extensions RFC 5280 §5.2 requires of a conforming CA.
 * Built with @peculiar/x509 over WebCrypto; the CA key is imported into WebCrypto only for the call.
 *
 * @example
 * ```ts
 * const der = await buildCrl({ caCert, caKey, crlNumber: 7n, thisUpdate: now, nextUpdate: later,
 *   entries: [{ serial: '0a1b…', revokedAt: new Date() }] });
 * // openssl crl -inform DER -in crl.der -CAfile ca.pem -noout  → "verify OK"
 * ```
 */
import { type KeyObject, webcrypto } from 'node:crypto';
import type * as X509 from '@peculiar/x509';
import { CaError } from './errors.js';

type Params = Parameters<typeof X509.X509CrlGenerator.create>[0];
const crypto = webcrypto as unknown as NonNullable<Parameters<typeof X509.X509CrlGenerator.create>[1]>;

/** @peculiar/x509 (and the reflect polyfill it needs), loaded on the first CRL, not at every start. */
let lib: Promise<typeof X509> | undefined;
const x509lib = (): Promise<typeof X509> => (lib ??= import('reflect-metadata').then(() => import('@peculiar/x509')));
const ID_CE_CRL_NUMBER = '2.5.29.20';

/** One revoked certificate: its serial (hex, any case) and when it was revoked. */
export interface CrlEntry {
  serial: string;
  revokedAt: Date;
}

export interface BuildCrlOptions {
  /** The issuing CA certificate (DER): its subject is the CRL's issuer, its key id the AKI. */
  caCert: Buffer;
  caKey: KeyObject;
  /** Must grow with every CRL this issuer publishes (RFC 5280 §5.2.3). */
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: readonly CrlEntry[];
}

/** WebCrypto import and signature parameters for a CA key. */
function algorithms(key: KeyObject): {
  importAlg: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  signAlg: Params['signingAlgorithm'];
} {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'P-256')
      return { importAlg: { name: 'ECDSA', namedCurve: 'P-256' }, signAlg: { name: 'ECDSA', hash: 'SHA-256' } };
    if (curve === 'secp384r1' || curve === 'P-384')
      return { importAlg: { name: 'ECDSA', namedCurve: 'P-384' }, signAlg: { name: 'ECDSA', hash: 'SHA-384' } };
  }
  if (key.asymmetricKeyType === 'rsa')
    return {
      importAlg: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      signAlg: { name: 'RSASSA-PKCS1-v1_5' },
    };
  throw new CaError('ERR_CA_STATE_CORRUPT', `cannot sign a CRL with a ${key.asymmetricKeyType} key`);
}

/** DER INTEGER of a non-negative bigint (minimal, with a leading zero when the high bit is set). */
function derInteger(n: bigint): ArrayBuffer {
  if (n < 0n) throw new RangeError('a CRL number is never negative');
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let body = Buffer.from(hex, 'hex');
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  if (body.length > 20) throw new RangeError('a CRL number has at most 20 octets');
  const der = Buffer.concat([Buffer.from([0x02, body.length]), body]);
  return der.buffer.slice(der.byteOffset, der.byteOffset + der.length) as ArrayBuffer;
}

/** A signed CRL (DER). */
export async function buildCrl(o: BuildCrlOptions): Promise<Buffer> {
  const x509 = await x509lib();
  const ca = new x509.X509Certificate(o.caCert);
  const ski = ca.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = ski
    ? new x509.AuthorityKeyIdentifierExtension(ski.keyId as unknown as ArrayBuffer)
    : await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey, false, crypto);
  const { importAlg, signAlg } = algorithms(o.caKey);
  const signingKey = await webcrypto.subtle.importKey(
    'pkcs8',
    o.caKey.export({ format: 'der', type: 'pkcs8' }),
    importAlg,
    false,
    ['sign'],
  );
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: ca.subjectName,
      thisUpdate: o.thisUpdate,
      nextUpdate: o.nextUpdate,
      signingAlgorithm: signAlg,
      signingKey: signingKey as unknown as Params['signingKey'],
      extensions: [aki, new x509.Extension(ID_CE_CRL_NUMBER, false, derInteger(o.crlNumber))],
      entries: o.entries.map((e) => ({
        // @peculiar/x509 writes it as a minimal positive INTEGER (leading zeros, case, high bit).
        serialNumber: e.serial,
        revocationDate: e.revokedAt,
        reason: x509.X509CrlReason.keyCompromise,
      })),
    },
    crypto,
  );
  return Buffer.from(crl.rawData);
}
