/**
 * Safe request-path and method normalization. Matching an unnormalized path is an
 * authorization bypass (`/v1/charges/../admin` must never match `/v1/charges*`), so every
 * path goes through {@link normalizePath} before any rule sees it, and anything that cannot
 * be normalized unambiguously is refused rather than guessed at.
 *
 * Strict mode (the default) goes further: an enforcement point forwards the path as the client
 * sent it, and backends resolve `..;/` (Tomcat), `%2f`, `%252e` or `%c0%ae` in their own ways,
 * so any form whose meaning depends on the backend is refused instead of normalized.
 */

/**
 * The named normalization modes of configurations (`path_normalization` in the sidecar and server
 * configs, `--path-normalization` in the CLI). `strict` is the default; `lenient` is the behaviour
 * before strict mode existed (Istio's `MERGE_SLASHES`); `decode_and_merge_slashes` is strict with
 * `%2F`/`%5C` decoded and then checked (Istio's `DECODE_AND_MERGE_SLASHES`) instead of refused.
 */
export const PATH_NORMALIZATIONS = ['strict', 'lenient', 'decode_and_merge_slashes'] as const;
export type PathNormalization = (typeof PATH_NORMALIZATIONS)[number];

/**
 * The {@link PathOptions} of a named mode; undefined for `strict`, the default, so that a strict
 * policy set's options (and content hash) are what they were before the modes existed.
 *
 * @example
 * compile(policies, { path: pathOptionsFor('lenient') })
 */
export function pathOptionsFor(mode: PathNormalization): PathOptions | undefined {
  switch (mode) {
    case 'strict':
      return undefined;
    case 'lenient':
      return { strict: false };
    case 'decode_and_merge_slashes':
      return { decodeSlashes: true };
  }
}

export interface PathOptions {
  /**
   * Refuse the forms that backends decode differently (default true): `;` and `%3B` (path
   * parameters), a raw `\`, `%2F`/`%5C` (unless `decodeSlashes`), `%2E`, `%25` followed by two hex
   * digits (double encoding), escapes that are not well-formed UTF-8 (`%C0%AE`), and `.`/`..`
   * segments. False: the lenient normalization, which resolves what it can.
   */
  strict?: boolean;
  /** Collapse `//` into `/` (default true: an empty segment is never meaningful to a policy). */
  mergeSlashes?: boolean;
  /** Decode `%2F`/`%5C` into `/` before resolving segments (default false, as in Istio). */
  decodeSlashes?: boolean;
  /**
   * `decode` (default): `%2e` is a dot and takes part in dot-segment removal; `reject`: refuse it.
   * Strict mode refuses it either way.
   */
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
// Strict mode's table: `;` (a path parameter to Tomcat and Spring) never stays as it is.
const PCHAR_STRICT = PCHAR.slice();
PCHAR_STRICT[0x3b] = 0;

const SLASH = 0x2f;
const DOT = 0x2e;
const QUERY = 0x3f;
const FRAGMENT = 0x23;
const BACKSLASH = 0x5c;
const PERCENT = 0x25;
const SEMICOLON = 0x3b;

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

// A call without options shares one object instead of allocating `{}` per request.
const NO_OPTIONS: PathOptions = Object.freeze({});

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
export function normalizePath(raw: string, opts: PathOptions = NO_OPTIONS): PathResult {
  const s = normalizePathText(raw, opts);
  return isPath(s) ? { ok: true, path: s } : { ok: false, reason: s };
}

/**
 * True when a {@link normalizePathText} result is a path rather than a refusal: a normalized path
 * always begins with `/`, and no refusal reason does.
 */
export function isPath(s: string): boolean {
  return s.charCodeAt(0) === SLASH;
}

/**
 * {@link normalizePath} without a result object, for the decision hot path: returns the
 * normalized path (always beginning with `/`) or the reason for refusing it (never beginning
 * with `/`; tell them apart with {@link isPath}). An already canonical path is returned as the
 * very string given.
 */
export function normalizePathText(raw: string, opts: PathOptions = NO_OPTIONS): string {
  const max = opts.maxLength ?? 4096;
  if (raw.length > max) return `path longer than ${max} bytes`;
  // One scan decides whether the path (up to `?`/`#`) is already canonical: it starts with `/`,
  // holds only pchar characters, and has no dot segment, empty segment or trailing dot. Such a
  // path is returned as it is; anything else takes the full normalization below.
  let end = raw.length;
  const strict = opts.strict !== false;
  const pchar = strict ? PCHAR_STRICT : PCHAR;
  const rooted = end > 0 && raw.charCodeAt(0) === SLASH;
  // `plain`: every character may stay as it is; `canonical`: besides, no segment needs resolving.
  let plain = rooted;
  let canonical = rooted;
  let prev = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === QUERY || c === FRAGMENT) {
      end = i;
      break;
    }
    if (c > 0x7f || pchar[c] !== 1) plain = canonical = false;
    else if (prev === SLASH && (c === DOT || c === SLASH)) canonical = false;
    prev = c;
  }
  if (prev === DOT) canonical = false;
  const p = end === raw.length ? raw : raw.slice(0, end);
  if (canonical) return p;
  // Only dot segments or empty segments to resolve (`/v1/charges/../admin`): no character needs
  // decoding or refusing, so the character pass below would copy the path unchanged.
  if (plain) return removeDotSegments(p, opts.mergeSlashes ?? true, strict);

  // Characters that stay as they are are copied in runs (`p.slice(run, i)`) rather than one by
  // one, so a path that only needs its dot segments removed builds no intermediate strings here.
  let s = '';
  let run = 0;
  // Strict mode: continuation bytes still owed by a multi-byte UTF-8 sequence already checked whole.
  let owed = 0;
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c === 0) return 'path contains a null byte';
    if (c < 0x20 || c === 0x7f) return 'path contains a control character';
    if (c > 0x7e) return 'path contains a non-ASCII character';
    if (c === BACKSLASH) {
      if (strict) return `path contains a backslash ${STRICT}`;
      s += `${p.slice(run, i)}/`;
      run = i + 1;
    } else if (c === PERCENT) {
      const hi = hexVal(p.charCodeAt(i + 1));
      const lo = hexVal(p.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return `path has an invalid percent-escape at offset ${i}`;
      const v = hi * 16 + lo;
      if (v === 0) return 'path contains a null byte';
      if (v === DOT && (strict || opts.encodedDots === 'reject'))
        return strict ? `path contains an encoded dot (%2E) ${STRICT}` : 'path contains an encoded dot';
      if (strict) {
        const bad = strictEscape(p, i, v, opts.decodeSlashes === true);
        if (bad !== undefined) return bad;
        if (owed > 0) owed--;
        else if (v >= 0x80) {
          owed = utf8Tail(p, i, v);
          if (owed < 0) return `path contains percent-escapes that are not well-formed UTF-8 at offset ${i} ${STRICT}`;
        }
      }
      s += p.slice(run, i);
      if (v < 0x80 && UNRESERVED[v] === 1) s += String.fromCharCode(v);
      else if ((v === SLASH || v === BACKSLASH) && opts.decodeSlashes) s += '/';
      else s += `%${HEX[hi]}${HEX[lo]}`;
      i += 2;
      run = i + 1;
    } else if (pchar[c] !== 1) {
      if (c === SEMICOLON) return `path contains a ";" path parameter ${STRICT}`;
      return `path contains a character that must be percent-encoded: ${JSON.stringify(p[i])}`;
    }
  }
  s = run === 0 ? p : s + p.slice(run);
  if (!isPath(s)) return 'path must begin with /';
  return removeDotSegments(s, opts.mergeSlashes ?? true, strict);
}

// The end of every strict-mode refusal: says which setting refused, and how to relax it.
const STRICT = '(refused by path_normalization: strict)';

/**
 * Strict mode's check of one percent-escape of value `v` below 0x80 at offset `i`, after the
 * checks every mode makes: the reason to refuse it, or undefined. (Escapes from 0x80 up are
 * checked as whole UTF-8 sequences by {@link utf8Tail}.)
 */
function strictEscape(p: string, i: number, v: number, decodeSlashes: boolean): string | undefined {
  if (v === SEMICOLON) return `path contains an encoded ";" (%3B) path parameter ${STRICT}`;
  if ((v === SLASH || v === BACKSLASH) && !decodeSlashes)
    return `path contains an encoded ${v === SLASH ? 'slash (%2F)' : 'backslash (%5C)'} ${STRICT}`;
  // `%25` then two hex digits decodes to another escape: a backend that decodes twice sees `%2e` as `.`.
  if (v === PERCENT && hexVal(p.charCodeAt(i + 3)) >= 0 && hexVal(p.charCodeAt(i + 4)) >= 0)
    return `path contains a double-encoded escape (%25${p.slice(i + 3, i + 5).toUpperCase()}) ${STRICT}`;
  return undefined;
}

/**
 * For the lead byte `v` of a percent-encoded UTF-8 sequence at offset `i`: how many continuation
 * escapes follow it, or -1 when the sequence is not well-formed (Unicode Table 3-7: no overlong
 * forms such as `%C0%AE`, no surrogates, nothing above U+10FFFF, no stray or missing continuation).
 */
function utf8Tail(p: string, i: number, v: number): number {
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (v >= 0xc2 && v <= 0xdf) n = 1;
  else if (v >= 0xe0 && v <= 0xef) {
    n = 2;
    if (v === 0xe0) lo = 0xa0;
    else if (v === 0xed) hi = 0x9f;
  } else if (v >= 0xf0 && v <= 0xf4) {
    n = 3;
    if (v === 0xf0) lo = 0x90;
    else if (v === 0xf4) hi = 0x8f;
  } else return -1;
  for (let k = 1; k <= n; k++) {
    const at = i + 3 * k;
    if (p.charCodeAt(at) !== PERCENT) return -1;
    const h = hexVal(p.charCodeAt(at + 1));
    const l = hexVal(p.charCodeAt(at + 2));
    if (h < 0 || l < 0) return -1;
    const b = h * 16 + l;
    if (b < lo || b > hi) return -1;
    lo = 0x80;
    hi = 0xbf;
  }
  return n;
}

/**
 * RFC 3986 §5.2.4 on an absolute path; `..` above the root stays at the root. One pass over the
 * segments, remembering each kept segment as its range in `p` (with its leading `/`), so that
 * `..` drops a range instead of cutting strings; the result is then built from the runs of
 * adjacent ranges: one slice for `/a/b/../c`'s `/a` and one for `/c`, or `p` itself when nothing
 * was dropped. With `refuseDots` (strict mode) a `.` or `..` segment is refused instead: a backend
 * that does not resolve it would see another resource than the one decided on.
 */
function removeDotSegments(p: string, merge: boolean, refuseDots: boolean): string {
  // Its own list: only paths that need resolving come here, and they build strings anyway.
  const ranges: number[] = [];
  let trailing = false;
  let i = 1;
  while (i <= p.length) {
    let j = p.indexOf('/', i);
    if (j < 0) j = p.length;
    const len = j - i;
    const last = j === p.length;
    trailing = false;
    const dots =
      len === 1 && p.charCodeAt(i) === DOT
        ? 1
        : len === 2 && p.charCodeAt(i) === DOT && p.charCodeAt(i + 1) === DOT
          ? 2
          : 0;
    if (dots > 0 && refuseDots) {
      return `path contains a "${dots === 1 ? '.' : '..'}" segment ${STRICT}`;
    }
    if (dots === 1) trailing = last;
    else if (dots === 2) {
      if (ranges.length > 0) {
        ranges.pop();
        ranges.pop();
      }
      trailing = last;
    } else if (len === 0 && merge) trailing = last;
    else ranges.push(i - 1, j);
    i = j + 1;
  }
  let out = '';
  let k = 0;
  while (k < ranges.length) {
    const start = ranges[k] as number;
    let stop = ranges[k + 1] as number;
    k += 2;
    while (k < ranges.length && ranges[k] === stop) {
      stop = ranges[k + 1] as number;
      k += 2;
    }
    out = start === 0 && stop === p.length ? p : out + p.slice(start, stop);
  }
  if (out === '') return '/';
  return trailing ? `${out}/` : out;
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

/** Bit of a request without a method in {@link methodBit}'s numbering. */
export const NO_METHOD_BIT = 1 << 9;
/** Bit of any other method (not one of {@link KNOWN_METHODS}) in {@link methodBit}'s numbering. */
export const OTHER_METHOD_BIT = 1 << 10;

/**
 * The method as one bit, so that a rule's methods test as one mask (`mask & bit`): the known
 * methods take bits 0–8, a missing method {@link NO_METHOD_BIT}, anything else
 * {@link OTHER_METHOD_BIT}. Every request has exactly one bit.
 */
export function methodBit(method: string | undefined): number {
  switch (method) {
    case 'GET':
      return 1;
    case 'POST':
      return 2;
    case 'PUT':
      return 4;
    case 'DELETE':
      return 8;
    case 'PATCH':
      return 16;
    case 'HEAD':
      return 32;
    case 'OPTIONS':
      return 64;
    case 'CONNECT':
      return 128;
    case 'TRACE':
      return 256;
    case undefined:
      return NO_METHOD_BIT;
    default:
      return OTHER_METHOD_BIT;
  }
}

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
