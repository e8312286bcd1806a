/**
 * PEM encoding and decoding, in one place for the validator, the CA, the agent and the sidecar
 * (go-spiffe's `internal/pemutil` is the model).
 */

/**
 * The DER contents of every PEM block with `label`, in order; other blocks and text are skipped.
 *
 * @example
 * pemBlocks(readFileSync('bundle.pem', 'utf8'), 'CERTIFICATE') // [Buffer, Buffer]
 */
export function pemBlocks(pem: string, label: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  const out: Buffer[] = [];
  for (const m of pem.matchAll(re)) out.push(Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64'));
  return out;
}

/**
 * The DER certificates of PEM text (a chain leaf first, or a bundle), in order.
 *
 * @example
 * const [leaf, ...intermediates] = certificatesFromPem(readFileSync('svid.pem', 'utf8'));
 */
export function certificatesFromPem(pem: string): Buffer[] {
  return pemBlocks(pem, 'CERTIFICATE');
}

/** PEM text for one DER block (64-column lines, trailing newline). */
export function toPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}
