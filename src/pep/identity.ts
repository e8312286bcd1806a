/**
 * Who is calling, from what a proxy in front of us says: XFCC (Envoy's
 * `x-forwarded-client-cert`) or nginx's `X-Client-Cert` (`$ssl_client_escaped_cert`). Such headers
 * are believed only from configured proxy addresses: anyone can send them. Certificates in them
 * are verified as X.509-SVIDs against the trust bundle, with `verifyX509Svid` (no handshake needed).
 */
import { type BundleSource, parseSpiffeId, verifyX509Svid, X509SvidError } from '../spiffe/index.js';
import { type Cidr, cidrContains, parseCidr, parseIp } from '../policy/index.js';
import { NevertrustError } from '../errors.js';

/** One XFCC element: the client certificate facts one proxy hop added. Keys are lower-case. */
export interface XfccElement {
  by?: string;
  hash?: string;
  /** URL-encoded PEM of the client certificate. */
  cert?: string;
  /** URL-encoded PEM of the client chain. */
  chain?: string;
  subject?: string;
  /** URI SANs (there may be several `URI=` pairs). */
  uri: string[];
  dns: string[];
}

/** Thrown for an XFCC header that cannot be parsed (an unterminated quote, a pair without `=`). */
export class XfccParseError extends NevertrustError<'ERR_XFCC_MALFORMED'> {
  override readonly name = 'XfccParseError';
  readonly code = 'ERR_XFCC_MALFORMED';
  constructor(message: string) {
    super(message, { status: 400 });
  }
}

/**
 * Parses an `x-forwarded-client-cert` value: comma-separated elements of `;`-separated `Key=value`
 * pairs; values may be double-quoted (then `,` `;` `=` are literal and `\"` escapes a quote).
 *
 * @example
 * ```ts
 * parseXfcc('By=spiffe://example.org/ns/a/sa/proxy;URI=spiffe://example.org/ns/payments/sa/api-gateway');
 * // [{ by: 'spiffe://…/proxy', uri: ['spiffe://…/api-gateway'], dns: [] }]
 * ```
 * @throws {XfccParseError} when the value is malformed
 */
export function parseXfcc(value: string): XfccElement[] {
  if (value.length > 64 * 1024) throw new XfccParseError('XFCC header longer than 64 KiB');
  const out: XfccElement[] = [];
  let el: XfccElement = { uri: [], dns: [] };
  let i = 0;
  const n = value.length;
  const finishElement = () => {
    out.push(el);
    el = { uri: [], dns: [] };
  };
  while (i < n) {
    // key
    while (i < n && value[i] === ' ') i++;
    const eq = value.indexOf('=', i);
    if (eq < 0) throw new XfccParseError(`XFCC: pair without "=" at offset ${i}`);
    const key = value.slice(i, eq).trim().toLowerCase();
    i = eq + 1;
    let v = '';
    if (value[i] === '"') {
      i++;
      for (;;) {
        if (i >= n) throw new XfccParseError('XFCC: unterminated quoted value');
        const c = value[i] as string;
        if (c === '\\' && i + 1 < n) {
          v += value[i + 1];
          i += 2;
        } else if (c === '"') {
          i++;
          break;
        } else {
          v += c;
          i++;
        }
      }
    } else {
      let j = i;
      while (j < n && value[j] !== ';' && value[j] !== ',') j++;
      v = value.slice(i, j).trim();
      i = j;
    }
    switch (key) {
      case 'by':
        el.by = v;
        break;
      case 'hash':
        el.hash = v;
        break;
      case 'cert':
        el.cert = v;
        break;
      case 'chain':
        el.chain = v;
        break;
      case 'subject':
        el.subject = v;
        break;
      case 'uri':
        el.uri.push(v);
        break;
      case 'dns':
        el.dns.push(v);
        break;
      default:
        // Unknown keys are ignored, as Envoy's own parser does.
        break;
    }
    while (i < n && value[i] === ' ') i++;
    if (i >= n) break;
    if (value[i] === ';') i++;
    else if (value[i] === ',') {
      i++;
      finishElement();
    } else throw new XfccParseError(`XFCC: unexpected character at offset ${i}`);
  }
  finishElement();
  return out;
}

/** A list of trusted proxy addresses (IPs or CIDRs), parsed once. */
export class TrustedProxies {
  private readonly cidrs: Cidr[];

  /**
   * @example
   * ```ts
   * const proxies = new TrustedProxies(['127.0.0.1', '10.0.0.0/8']);
   * proxies.has('::ffff:127.0.0.1'); // true
   * ```
   * @throws {Error} for an entry that is not an IP address or CIDR
   */
  constructor(entries: readonly string[]) {
    this.cidrs = entries.map((e) => {
      const text = e.includes('/') ? e : e.includes(':') ? `${e}/128` : `${e}/32`;
      const c = parseCidr(text);
      if (typeof c === 'string') throw new Error(`trusted proxy ${JSON.stringify(e)}: ${c}`);
      return c;
    });
  }

  get size(): number {
    return this.cidrs.length;
  }

  has(address: string | undefined): boolean {
    if (!address || this.cidrs.length === 0) return false;
    const ip = parseIp(address);
    if (!ip) return false;
    for (const c of this.cidrs) if (cidrContains(c, ip)) return true;
    return false;
  }
}

/** The outcome of reading identity from proxy headers. */
export type ProxyIdentity =
  /** No identity header (or only ignored ones). */
  | { kind: 'none'; ignored?: string[] }
  | { kind: 'ok'; spiffeId: string; via: 'xfcc' | 'x-client-cert' | 'envoy-principal'; verified: boolean }
  /** A header was present and trusted but did not hold a valid identity: refuse, never fall back. */
  | { kind: 'invalid'; reason: string };

/** Where proxy-supplied identity may come from. */
export interface ProxyTrust {
  /** Only these addresses may assert identity through headers. */
  proxies: TrustedProxies;
  /** Verifies forwarded certificates; without it, a forwarded certificate cannot be believed. */
  bundles?: BundleSource;
  /**
   * Accept a bare `URI=` in XFCC without a `Cert=` to verify (the proxy verified the peer). Default
   * true: Envoy sends `URI` alone unless told to forward the certificate.
   */
  trustXfccUri?: boolean;
}

type Headers = Record<string, string | string[] | undefined>;

function header(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/**
 * Verifies a URL-encoded (or plain) PEM certificate chain as an X.509-SVID and returns its ID.
 *
 * @example
 * ```ts
 * const r = verifyForwardedCertificate(req.headers['x-client-cert'], bundles);
 * if (r.kind === 'ok') console.log(r.spiffeId);
 * ```
 */
export function verifyForwardedCertificate(
  encoded: string,
  bundles: BundleSource | undefined,
  via: 'xfcc' | 'x-client-cert' | 'envoy-principal',
): ProxyIdentity {
  if (!bundles) return { kind: 'invalid', reason: 'no_trust_bundle: cannot verify the forwarded certificate' };
  let pem: string;
  try {
    pem = encoded.includes('%') ? decodeURIComponent(encoded) : encoded;
  } catch {
    return { kind: 'invalid', reason: 'cert_malformed: the forwarded certificate is not URL-encoded PEM' };
  }
  try {
    const v = verifyX509Svid(pem, bundles);
    return { kind: 'ok', spiffeId: v.spiffeId.toString(), via, verified: true };
  } catch (e) {
    if (e instanceof X509SvidError) return { kind: 'invalid', reason: `x509svid_invalid: ${e.code}` };
    return { kind: 'invalid', reason: 'cert_malformed: the forwarded certificate could not be read' };
  }
}

/**
 * Reads the caller's identity from `x-client-cert` (nginx) or `x-forwarded-client-cert` (Envoy),
 * believing them only when `remoteAddress` is a trusted proxy. Headers from anyone else are
 * reported in `ignored` so that the caller can record them.
 *
 * @example
 * ```ts
 * const who = identityFromProxyHeaders(req.headers, req.socket.remoteAddress, { proxies: new TrustedProxies(['127.0.0.1']), bundles });
 * ```
 */
export function identityFromProxyHeaders(
  headers: Headers,
  remoteAddress: string | undefined,
  trust: ProxyTrust,
): ProxyIdentity {
  const clientCert = header(headers, 'x-client-cert');
  const xfcc = header(headers, 'x-forwarded-client-cert');
  if (clientCert === undefined && xfcc === undefined) return { kind: 'none' };
  if (!trust.proxies.has(remoteAddress)) {
    const ignored: string[] = [];
    if (clientCert !== undefined) ignored.push('x-client-cert');
    if (xfcc !== undefined) ignored.push('x-forwarded-client-cert');
    return { kind: 'none', ignored };
  }
  if (clientCert !== undefined && clientCert !== '') {
    return verifyForwardedCertificate(clientCert, trust.bundles, 'x-client-cert');
  }
  if (xfcc !== undefined && xfcc !== '') {
    let els: XfccElement[];
    try {
      els = parseXfcc(xfcc);
    } catch (e) {
      return { kind: 'invalid', reason: `xfcc_malformed: ${(e as Error).message}` };
    }
    // The last element is the one the nearest (trusted) proxy appended about its own client.
    const el = els[els.length - 1];
    if (!el) return { kind: 'none' };
    if (el.cert) return verifyForwardedCertificate(el.cert, trust.bundles, 'xfcc');
    if (trust.trustXfccUri === false) return { kind: 'invalid', reason: 'xfcc_no_cert: XFCC carries no certificate' };
    const uris = el.uri.filter((u) => u.startsWith('spiffe://'));
    if (uris.length !== 1) return { kind: 'invalid', reason: 'xfcc_no_spiffe_id: XFCC needs exactly one SPIFFE URI' };
    try {
      return { kind: 'ok', spiffeId: parseSpiffeId(uris[0] as string).toString(), via: 'xfcc', verified: false };
    } catch {
      return { kind: 'invalid', reason: 'xfcc_bad_spiffe_id: the XFCC URI is not a SPIFFE ID' };
    }
  }
  return { kind: 'none' };
}
