/**
 * Safe request-path and method normalization. Matching an unnormalized path is an
 * authorization bypass (`/v1/charges/../admin` must never match `/v1/charges*`), so every
 * path goes through {@link normalizePath} before any rule sees it, and anything that cannot
 * be normalized unambiguously is refused rather than guessed at.
 */

export interface PathOptions {
  /** Collapse `//` into `/` (default true: an empty segment is never meaningful to a policy). */
  mergeSlashes?: boolean;
  /** Decode `%2F`/`%5C` into `/` before resolving segments (default false, as in Istio). */
  decodeSlashes?: boolean;
  /** `decode` (default): `%2e` is a dot and takes part in dot-segment removal; `reject`: refuse it. */
  encodedDots?: 'decode' | 'reject';
  /** Longer paths are refused (default 4096 bytes). */
  maxLength?: number;
}

export type PathResult = { ok: true; path: string } | { ok: false; reason: string };

const HEX = '0123456789ABCDEF';

// Character classes as 128-entry tables: one indexed load per character instead of a regular
// expression run per character (the decision hot path normalizes every request's path).
// PCHAR: characters that may stay as they are in a canonical path (RFC 3986 pchar and `/`).
// UNRESERVED: characters whose percent-encoding is decoded (`%2e` → `.`, `%61` → `a`).
const PCHAR = new Uint8Array(128);
const UNRESERVED = new Uint8Array(128);
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') {
  PCHAR[ch.charCodeAt(0)] = 1;
  UNRESERVED[ch.charCodeAt(0)] = 1;
}
for (const ch of "!$&'()*+,;=:@/") PCHAR[ch.charCodeAt(0)] = 1;

const SLASH = 0x2f;
const DOT = 0x2e;
const QUERY = 0x3f;
const FRAGMENT = 0x23;

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Normalizes a request path: query and fragment dropped, `\` → `/`, percent-encoded unreserved
 * characters decoded (so `%2e%2e` is `..` and `%61dmin` is `admin`), other escapes upper-cased,
 * `%2F`/`%5C` kept encoded unless `decodeSlashes`, duplicate slashes merged (option), then RFC 3986
 * dot segments removed. Refuses null bytes, control and non-ASCII characters, bad escapes,
 * relative paths and paths over `maxLength`.
 *
 * @example
 * normalizePath('/v1/charges/%2e%2e/admin?x=1') // { ok: true, path: '/v1/admin' }
 * normalizePath('/a%00b')                       // { ok: false, reason: 'path contains a null byte' }
 */
export function normalizePath(raw: string, opts: PathOptions = {}): PathResult {
  const max = opts.maxLength ?? 4096;
  if (raw.length > max) return { ok: false, reason: `path longer than ${max} bytes` };
  // One scan decides whether the path (up to `?`/`#`) is already canonical: it starts with `/`,
  // holds only pchar characters, and has no dot segment, empty segment or trailing dot. Such a
  // path is returned as it is; anything else takes the full normalization below.
  let end = raw.length;
  let canonical = end > 0 && raw.charCodeAt(0) === SLASH;
  let prev = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === QUERY || c === FRAGMENT) {
      end = i;
      break;
    }
    if (c > 0x7f || PCHAR[c] !== 1 || (prev === SLASH && (c === DOT || c === SLASH))) canonical = false;
    prev = c;
  }
  if (prev === DOT) canonical = false;
  const p = end === raw.length ? raw : raw.slice(0, end);
  if (canonical) return { ok: true, path: p };

  let s = '';
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c === 0) return { ok: false, reason: 'path contains a null byte' };
    if (c < 0x20 || c === 0x7f) return { ok: false, reason: 'path contains a control character' };
    if (c > 0x7e) return { ok: false, reason: 'path contains a non-ASCII character' };
    const ch = p[i] as string;
    if (ch === '\\') {
      s += '/';
    } else if (ch === '%') {
      const hi = hexVal(p.charCodeAt(i + 1));
      const lo = hexVal(p.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return { ok: false, reason: `path has an invalid percent-escape at offset ${i}` };
      const v = hi * 16 + lo;
      i += 2;
      if (v === 0) return { ok: false, reason: 'path contains a null byte' };
      const dec = String.fromCharCode(v);
      if (dec === '.' && opts.encodedDots === 'reject') return { ok: false, reason: 'path contains an encoded dot' };
      if (v < 0x80 && UNRESERVED[v] === 1) s += dec;
      else if ((v === 0x2f || v === 0x5c) && opts.decodeSlashes) s += '/';
      else s += `%${HEX[hi]}${HEX[lo]}`;
    } else if (PCHAR[c] === 1) {
      s += ch;
    } else {
      return { ok: false, reason: `path contains a character that must be percent-encoded: ${JSON.stringify(ch)}` };
    }
  }
  if (!s.startsWith('/')) return { ok: false, reason: 'path must begin with /' };
  return { ok: true, path: removeDotSegments(s, opts.mergeSlashes ?? true) };
}

/** RFC 3986 §5.2.4 on an absolute path; `..` above the root stays at the root. */
function removeDotSegments(p: string, merge: boolean): string {
  const segs = p.split('/');
  const out: string[] = [];
  let trailing = false;
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i] as string;
    const last = i === segs.length - 1;
    trailing = false;
    if (seg === '.') trailing = last;
    else if (seg === '..') {
      out.pop();
      trailing = last;
    } else if (seg === '' && merge) trailing = last;
    else out.push(seg);
  }
  const body = `/${out.join('/')}`;
  return trailing && out.length > 0 ? `${body}/` : body;
}

/** The methods a rule may name. Anything else (including lower-case spellings) is denied. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
]);

/**
 * Checks an HTTP method: it must be an upper-case known token.
 *
 * @example
 * checkMethod('POST') // undefined (fine)
 * checkMethod('post') // 'method "post" must be upper-case'
 */
export function checkMethod(method: string): string | undefined {
  if (KNOWN_METHODS.has(method)) return undefined;
  if (KNOWN_METHODS.has(method.toUpperCase())) return `method ${JSON.stringify(method)} must be upper-case`;
  return `unknown method ${JSON.stringify(method.slice(0, 32))}`;
}
