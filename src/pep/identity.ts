import { X509Certificate } from 'node:crypto';
/**
 * Who is calling, from what a proxy in front of us says: XFCC (Envoy's
 * `x-forwarded-client-cert`) or nginx's `X-Client-Cert` (`$ssl_client_escaped_cert`). Such headers
 * are believed only from configured proxy addresses, and only in the form each proxy is configured
 * to send: a proxy that forwards whatever its client sent would otherwise turn a client's own header
 * into an identity. Certificates in them are verified as X.509-SVIDs against the trust bundle, with
 * `verifyX509Svid` (no handshake needed).
 */
import { z } from 'zod';
import { cidrContains, parseCidr, parseIp } from '../policy/match.js';
import type { Cidr } from '../policy/model.js';
import { type BundleSource, parseSpiffeId, verifyX509Svid, X509SvidError } from '../spiffe/index.js';
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

/**
 * The forms in which a trusted proxy may forward its client's identity:
 * - `x-client-cert`: nginx's `X-Client-Cert` header, the client certificate (`$ssl_client_escaped_cert`);
 * - `xfcc-cert`: an XFCC element with `Cert=` (Envoy's `set_current_client_cert_details: {cert: true}`);
 * - `xfcc-uri`: an XFCC element with a bare `URI=` and no certificate, believed as the proxy says it.
 *
 * Certificates are verified against the trust bundle; a bare URI is the proxy's word alone, so it is
 * believed only from a proxy listed with `xfcc-uri`.
 */
export const FORWARDED_IDENTITY_FORMS = ['x-client-cert', 'xfcc-cert', 'xfcc-uri'] as const;
export type ForwardedIdentityForm = (typeof FORWARDED_IDENTITY_FORMS)[number];

/** What a proxy listed by address alone may send: certificates, never a bare URI. */
export const DEFAULT_FORWARDED_IDENTITY: readonly ForwardedIdentityForm[] = ['x-client-cert', 'xfcc-cert'];

/** One trusted proxy: its address (IP or CIDR) and the identity forms it sends. */
export interface TrustedProxyEntry {
  address: string;
  /** Default {@link DEFAULT_FORWARDED_IDENTITY}. */
  identity?: readonly ForwardedIdentityForm[];
}

/** A trusted proxy as configured: an address alone (certificates only) or an entry naming its forms. */
export type TrustedProxy = string | TrustedProxyEntry;

function cidrOf(address: string): Cidr | string {
  const text = address.includes('/') ? address : address.includes(':') ? `${address}/128` : `${address}/32`;
  return parseCidr(text);
}

/**
 * The zod schema of one trusted proxy in configuration files (the server's `decision.trusted_proxies`,
 * the sidecar's `inbound.trusted_proxies`): `10.0.0.7` or `{address: 10.0.0.0/24, identity: [xfcc-uri]}`.
 * An address alone is read as `{address}` (certificates only), so each problem names its own field.
 */
export const trustedProxySchema = z.preprocess(
  (v) => (typeof v === 'string' ? { address: v } : v),
  z.strictObject({
    address: z
      .string()
      .min(1)
      .superRefine((address, ctx) => {
        const c = cidrOf(address);
        if (typeof c === 'string') {
          ctx.addIssue({ code: 'custom', message: `${JSON.stringify(address)} is not an IP address or CIDR: ${c}` });
        }
      }),
    identity: z.array(z.enum(FORWARDED_IDENTITY_FORMS)).min(1).optional(),
  }),
);

/** Trusted proxies (IPs or CIDRs, each with the identity forms it sends), parsed once. */
export class TrustedProxies {
  private readonly entries: { cidr: Cidr; forms: ReadonlySet<ForwardedIdentityForm> }[];

  /**
   * @example
   * ```ts
   * const proxies = new TrustedProxies(['127.0.0.1', { address: '10.0.0.0/8', identity: ['xfcc-uri'] }]);
   * proxies.has('::ffff:127.0.0.1'); // true
   * proxies.formsFor('127.0.0.1');   // Set { 'x-client-cert', 'xfcc-cert' }
   * ```
   * @throws {Error} for an entry that is not an IP address or CIDR
   */
  constructor(entries: readonly TrustedProxy[]) {
    this.entries = entries.map((e) => {
      const address = typeof e === 'string' ? e : e.address;
      const c = cidrOf(address);
      if (typeof c === 'string') throw new Error(`trusted proxy ${JSON.stringify(address)}: ${c}`);
      const forms = typeof e === 'string' ? DEFAULT_FORWARDED_IDENTITY : (e.identity ?? DEFAULT_FORWARDED_IDENTITY);
      return { cidr: c, forms: new Set(forms) };
    });
  }

  get size(): number {
    return this.entries.length;
  }

  has(address: string | undefined): boolean {
    return this.formsFor(address) !== undefined;
  }

  /** The identity forms `address` may send (the union over the entries it falls in); undefined: not a proxy. */
  formsFor(address: string | undefined): ReadonlySet<ForwardedIdentityForm> | undefined {
    if (!address || this.entries.length === 0) return undefined;
    const ip = parseIp(address);
    if (!ip) return undefined;
    let out: Set<ForwardedIdentityForm> | undefined;
    for (const e of this.entries) {
      if (!cidrContains(e.cidr, ip)) continue;
      out ??= new Set();
      for (const f of e.forms) out.add(f);
    }
    return out;
  }
}

/** The outcome of reading identity from proxy headers. */
export type ProxyIdentity =
  /** No identity header (or only ignored ones). */
  | { kind: 'none'; ignored?: string[] }
  | {
      kind: 'ok';
      spiffeId: string;
      via: 'xfcc' | 'x-client-cert' | 'envoy-principal';
      verified: boolean;
      /** The verified leaf's serial (hex) and notBefore (ms), when a certificate was forwarded. */
      serial?: string;
      notBeforeMs?: number;
      /** Identity headers present but not believed (a form this proxy is not configured to send). */
      ignored?: string[];
    }
  /** A header was present and trusted but did not hold a valid identity: refuse, never fall back. */
  | { kind: 'invalid'; reason: string };

/** Where proxy-supplied identity may come from. */
export interface ProxyTrust {
  /** Only these addresses may assert identity through headers, each in the forms it is listed with. */
  proxies: TrustedProxies;
  /** Verifies forwarded certificates; without it, a forwarded certificate cannot be believed. */
  bundles?: BundleSource;
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
    const leaf = new X509Certificate(v.verifiedChain[0] as Buffer);
    return {
      kind: 'ok',
      spiffeId: v.spiffeId.toString(),
      via,
      verified: true,
      serial: leaf.serialNumber,
      notBeforeMs: Date.parse(leaf.validFrom),
    };
  } catch (e) {
    if (e instanceof X509SvidError) return { kind: 'invalid', reason: `x509svid_invalid: ${e.code}` };
    return { kind: 'invalid', reason: 'cert_malformed: the forwarded certificate could not be read' };
  }
}

/**
 * Reads the caller's identity from `x-client-cert` (nginx) or `x-forwarded-client-cert` (Envoy),
 * believing them only when `remoteAddress` is a trusted proxy, and only in the forms that proxy is
 * listed with. A header from anyone else, or one its proxy is not listed as sending, is reported in
 * `ignored` so that the caller can record it. An XFCC without a certificate from a proxy not listed
 * with `xfcc-uri` is refused: that proxy was to send certificates.
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
  const forms = trust.proxies.formsFor(remoteAddress);
  const useClientCert = clientCert !== undefined && forms?.has('x-client-cert') === true;
  const useXfcc = xfcc !== undefined && (forms?.has('xfcc-cert') === true || forms?.has('xfcc-uri') === true);
  const ignored: string[] = [];
  if (clientCert !== undefined && !useClientCert) ignored.push('x-client-cert');
  if (xfcc !== undefined && !useXfcc) ignored.push('x-forwarded-client-cert');
  const withIgnored = (r: ProxyIdentity): ProxyIdentity => (r.kind === 'ok' && ignored.length ? { ...r, ignored } : r);

  if (useClientCert && clientCert !== '') {
    return withIgnored(verifyForwardedCertificate(clientCert, trust.bundles, 'x-client-cert'));
  }
  if (useXfcc && xfcc !== '') {
    let els: XfccElement[];
    try {
      els = parseXfcc(xfcc);
    } catch (e) {
      return { kind: 'invalid', reason: `xfcc_malformed: ${(e as Error).message}` };
    }
    // The last element is the one the nearest (trusted) proxy appended about its own client.
    const el = els[els.length - 1];
    if (!el) return ignored.length ? { kind: 'none', ignored } : { kind: 'none' };
    if (el.cert) return withIgnored(verifyForwardedCertificate(el.cert, trust.bundles, 'xfcc'));
    if (!forms?.has('xfcc-uri')) {
      return {
        kind: 'invalid',
        reason: 'xfcc_no_cert: XFCC carries no certificate, and this proxy is not trusted for a bare URI (xfcc-uri)',
      };
    }
    const uris = el.uri.filter((u) => u.startsWith('spiffe://'));
    if (uris.length !== 1) return { kind: 'invalid', reason: 'xfcc_no_spiffe_id: XFCC needs exactly one SPIFFE URI' };
    try {
      return withIgnored({
        kind: 'ok',
        spiffeId: parseSpiffeId(uris[0] as string).toString(),
        via: 'xfcc',
        verified: false,
      });
    } catch {
      return { kind: 'invalid', reason: 'xfcc_bad_spiffe_id: the XFCC URI is not a SPIFFE ID' };
    }
  }
  return ignored.length ? { kind: 'none', ignored } : { kind: 'none' };
}
