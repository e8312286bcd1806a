/**
 * Transmitter discovery (SSF 1.0 §7): the metadata document at `/.well-known/ssf-configuration`,
 * inserted between the issuer's host and its path (`https://tx.example/t1` →
 * `https://tx.example/.well-known/ssf-configuration/t1`). The document's `issuer` must be exactly
 * the configured one (§7.2), or a document served elsewhere could name keys for somebody else.
 *
 * @example
 * ```ts
 * const meta = await discoverTransmitter('https://idp.example');
 * const jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
 * ```
 */
import { request } from 'undici';
import { z } from 'zod';
import { SsfError } from './errors.js';

/** `https:`, or `http:` to a loopback host only (tests, a transmitter on the same machine). */
export function isSafeUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const u = new URL(value);
  const local = u.hostname === 'localhost' || u.hostname === '127.0.0.1' || u.hostname === '[::1]';
  return u.protocol === 'https:' || (u.protocol === 'http:' && local);
}

const endpoint = z.string().refine(isSafeUrl, 'must be an https URL (http only for localhost)');

/** The parts of the transmitter metadata a receiver uses (others are kept but not read). */
export const transmitterMetadataSchema = z.looseObject({
  issuer: z.string().min(1),
  jwks_uri: endpoint.optional(),
  delivery_methods_supported: z.array(z.string()).optional(),
  configuration_endpoint: endpoint.optional(),
  status_endpoint: endpoint.optional(),
  add_subject_endpoint: endpoint.optional(),
  remove_subject_endpoint: endpoint.optional(),
  verification_endpoint: endpoint.optional(),
});
export type TransmitterMetadata = z.infer<typeof transmitterMetadataSchema>;

/** Where an issuer's metadata is (SSF 1.0 §7.1: the well-known segment goes before the issuer's path). */
export function ssfWellKnownUrl(issuer: string): string {
  if (!isSafeUrl(issuer))
    throw new SsfError('ERR_SSF_BAD_CONFIG', `issuer ${issuer}: must be https (http only for localhost)`);
  const u = new URL(issuer);
  const path = u.pathname.replace(/\/+$/, '');
  return `${u.origin}/.well-known/ssf-configuration${path}`;
}

/** Fetches and checks a transmitter's metadata; a failure is `ERR_SSF_DISCOVERY` (502) naming why. */
export async function discoverTransmitter(
  issuer: string,
  opts: { timeoutMs?: number } = {},
): Promise<TransmitterMetadata> {
  const url = ssfWellKnownUrl(issuer);
  const timeout = opts.timeoutMs ?? 5000;
  let status: number;
  let text: string;
  try {
    // undici follows no redirects: the document must be at the well-known URL itself.
    const res = await request(url, { method: 'GET', headersTimeout: timeout, bodyTimeout: timeout });
    status = res.statusCode;
    text = await res.body.text();
  } catch (e) {
    throw new SsfError('ERR_SSF_DISCOVERY', `${url}: ${(e as Error).message}`, { cause: e });
  }
  if (status !== 200) throw new SsfError('ERR_SSF_DISCOVERY', `${url} answered ${status}`);
  if (text.length > 64 * 1024) throw new SsfError('ERR_SSF_DISCOVERY', `${url}: the document is too large`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SsfError('ERR_SSF_DISCOVERY', `${url}: not JSON`);
  }
  const parsed = transmitterMetadataSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new SsfError('ERR_SSF_DISCOVERY', `${url}: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  // SSF 1.0 §7.2: the issuer in the document is the one we asked about, exactly.
  if (parsed.data.issuer !== issuer) {
    throw new SsfError('ERR_SSF_DISCOVERY', `${url}: issuer ${parsed.data.issuer} is not ${issuer}`);
  }
  return parsed.data;
}
