/**
 * PKCS#12 export of the device key and certificate chain (issue #22), for a browser's or the OS's
 * certificate store, so a browser presents the device certificate to the access proxy. Modern
 * algorithms only (what OpenSSL 3 writes by default): the key in a PBES2 shrouded key bag
 * (PBKDF2-HMAC-SHA256, AES-256-CBC), the certificates in a PBES2-encrypted safe, a SHA-256 MAC.
 */
import { createHash, createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { certificatesFromPem } from '../../spiffe/index.js';

const OID = {
  keyBag: '1.2.840.113549.1.12.10.1.2', // pkcs8ShroudedKeyBag
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
} as const;

/** PBKDF2 and MAC iterations: OpenSSL 3's default for PKCS#12 is 2048; this is a key a thief may attack offline. */
export const P12_ITERATIONS = 100_000;

export interface P12Options {
  /** The password people type when importing; required, never empty. */
  password: string;
  /** The name the certificate store shows (default: the certificate's URI SAN). */
  friendlyName?: string;
  iterations?: number;
}

let engine: pkijs.CryptoEngine | undefined;
/** pkijs on Node's WebCrypto (set once, for this module's calls only). */
function crypto(): pkijs.CryptoEngine {
  engine ??= new pkijs.CryptoEngine({
    name: 'node',
    crypto: webcrypto as unknown as ConstructorParameters<typeof pkijs.CryptoEngine>[0]['crypto'],
  });
  return engine;
}

const ab = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

function bagAttributes(friendlyName: string, localKeyId: Buffer): pkijs.Attribute[] {
  return [
    new pkijs.Attribute({ type: OID.friendlyName, values: [new asn1js.BmpString({ value: friendlyName })] }),
    new pkijs.Attribute({ type: OID.localKeyId, values: [new asn1js.OctetString({ valueHex: ab(localKeyId) })] }),
  ];
}

/**
 * A DER PKCS#12 file holding `keyPem` (PKCS#8 or SEC1 PEM) and `chainPem` (leaf first).
 *
 * @example
 * ```ts
 * writeFileSync('device.p12', await exportPkcs12(keyPem, certPem, { password }), { mode: 0o600 });
 * // openssl pkcs12 -in device.p12 -nodes   (asks the password)
 * ```
 */
export async function exportPkcs12(keyPem: string, chainPem: string, opts: P12Options): Promise<Buffer> {
  if (opts.password.length === 0) throw new Error('a PKCS#12 export needs a non-empty password');
  const iterations = opts.iterations ?? P12_ITERATIONS;
  const ders = certificatesFromPem(chainPem);
  const leafDer = ders[0];
  if (!leafDer) throw new Error('the certificate chain holds no certificate');
  const pkcs8 = createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' });
  const certs = ders.map((d) => pkijs.Certificate.fromBER(ab(d)));
  const san = new X509Certificate(leafDer).subjectAltName?.replace(/^URI:/, '');
  const name = opts.friendlyName ?? san ?? 'nevertrust device';
  // localKeyId ties the key bag to its certificate: the SHA-1 of the certificate, as OpenSSL does.
  const keyId = createHash('sha1').update(leafDer).digest();
  const utf8 = ab(Buffer.from(opts.password, 'utf8'));
  const pbes2 = {
    password: utf8,
    contentEncryptionAlgorithm: { name: 'AES-CBC', length: 256 } as Parameters<
      pkijs.PKCS8ShroudedKeyBag['makeInternalValues']
    >[0]['contentEncryptionAlgorithm'],
    hmacHashAlgorithm: 'SHA-256',
    iterationCount: iterations,
  };

  const keyBag = new pkijs.PKCS8ShroudedKeyBag({ parsedValue: pkijs.PrivateKeyInfo.fromBER(ab(pkcs8)) });
  await keyBag.makeInternalValues(pbes2, crypto());
  const certBags = certs.map(
    (c, i) =>
      new pkijs.SafeBag({
        bagId: OID.certBag,
        bagValue: new pkijs.CertBag({ parsedValue: c }),
        ...(i === 0 && { bagAttributes: bagAttributes(name, keyId) }),
      }),
  );
  const pfx = new pkijs.PFX({
    parsedValue: {
      integrityMode: 0, // password integrity (the MAC)
      authenticatedSafe: new pkijs.AuthenticatedSafe({
        parsedValue: {
          safeContents: [
            // privacyMode 1: the certificates in a PBES2-encrypted safe.
            { privacyMode: 1, value: new pkijs.SafeContents({ safeBags: certBags }) },
            // privacyMode 0: a plain safe; the key bag inside is itself encrypted (shrouded).
            {
              privacyMode: 0,
              value: new pkijs.SafeContents({
                safeBags: [
                  new pkijs.SafeBag({ bagId: OID.keyBag, bagValue: keyBag, bagAttributes: bagAttributes(name, keyId) }),
                ],
              }),
            },
          ],
        },
      }),
    },
  });
  const safe = pfx.parsedValue?.authenticatedSafe as pkijs.AuthenticatedSafe;
  await safe.makeInternalValues({ safeContents: [pbes2, {}] }, crypto());
  await pfx.makeInternalValues(
    // pkijs turns the UTF-8 password into the BMPString PKCS#12's MAC key derivation wants (RFC 7292 B.1).
    { password: utf8, iterations, pbkdf2HashAlgorithm: 'SHA-256', hmacHashAlgorithm: 'SHA-256' },
    crypto(),
  );
  return Buffer.from(pfx.toSchema().toBER(false));
}
