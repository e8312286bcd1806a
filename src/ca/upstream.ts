/**
 * An upstream CA that signs the trust domain's intermediates instead of a self-signed root: read
 * from PEM (text or files) and checked once — a CA certificate with keyCertSign whose key matches —
 * with the roots to publish and the chain certificates to send after our own.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseCert } from '../spiffe/cert.js';
import { pemBlocks } from '../spiffe/pem.js';
import { keyIdentifier, spkiOf } from './certificate.js';
import { CaError } from './errors.js';

/** An upstream CA that signs our intermediate: PEM text (use {@link loadUpstreamAuthority} for files). */
export interface UpstreamAuthority {
  /** The upstream signing certificate first, then any further chain certificates. */
  certificatePem: string;
  /** Its private key, PKCS#8 or traditional PEM. Kept in memory only, never in the CA state. */
  privateKeyPem: string;
  /** Root certificates to publish in the bundle; default: the last certificate of `certificatePem`. */
  bundlePem?: string;
}

/**
 * Reads an upstream CA from certificate and key PEM files.
 *
 * @example
 * ```ts
 * const upstream = await loadUpstreamAuthority('/etc/pki/root.pem', '/etc/pki/root.key');
 * const ca = await CertificateAuthority.open({ trustDomain: 'example.org', store, kek, upstream });
 * ```
 */
export async function loadUpstreamAuthority(
  certificateFile: string,
  privateKeyFile: string,
  bundleFile?: string,
): Promise<UpstreamAuthority> {
  const u: UpstreamAuthority = {
    certificatePem: await readFile(certificateFile, 'utf8'),
    privateKeyPem: await readFile(privateKeyFile, 'utf8'),
  };
  if (bundleFile) u.bundlePem = await readFile(bundleFile, 'utf8');
  return u;
}

/** A checked upstream CA, parsed. */
export interface Upstream {
  cert: Buffer;
  key: KeyObject;
  subject: Buffer;
  keyId: Buffer;
  notAfter: number;
  roots: Buffer[];
  extraChain: Buffer[];
}

export function loadUpstream(u: UpstreamAuthority): Upstream {
  const certs = pemBlocks(u.certificatePem, 'CERTIFICATE');
  const first = certs[0];
  if (!first) throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream certificate file holds no certificate');
  let parsed: ReturnType<typeof parseCert>;
  let key: KeyObject;
  try {
    parsed = parseCert(first);
    key = createPrivateKey(u.privateKeyPem);
  } catch {
    throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream certificate or key cannot be parsed');
  }
  if (!parsed.basicConstraints?.ca || parsed.keyUsage === undefined || !(parsed.keyUsage & 0x0400)) {
    throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream certificate must have cA=true and keyCertSign');
  }
  if (!spkiOf(key).equals(spkiOf(parsed.node.publicKey))) {
    throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream private key does not match its certificate');
  }
  const roots = u.bundlePem ? pemBlocks(u.bundlePem, 'CERTIFICATE') : [certs[certs.length - 1] as Buffer];
  if (roots.length === 0) throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream bundle holds no certificate');
  return {
    cert: first,
    key,
    subject: parsed.subject,
    keyId: parsed.subjectKeyId ?? keyIdentifier(spkiOf(parsed.node.publicKey)),
    notAfter: parsed.notAfter.getTime(),
    roots,
    extraChain: certs.filter((c) => !roots.some((r) => r.equals(c))),
  };
}
