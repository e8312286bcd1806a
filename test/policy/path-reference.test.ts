import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PathOptions } from '../../src/policy/index.js';
import { normalizePath, type PathResult } from '../../src/policy/path.js';

// The path normalizer as it was before its hot-path rewrite (character by character, split and
// join), kept here as the reference the rewrite must agree with on every input. Strict mode (the
// default) was added to both: here each check is written out plainly, UTF-8 checked by TextDecoder.
const HEX = '0123456789ABCDEF';

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

const STRICT = '(refused by path_normalization: strict)';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes of the UTF-8 sequence led by `%XX` at `i` (by its leading one bits), or undefined if they are not escapes. */
function utf8Sequence(p: string, i: number): number[] | undefined {
  const lead = Number.parseInt(p.slice(i + 1, i + 3), 16);
  const n = lead >= 0xf0 && lead < 0xf8 ? 4 : lead >= 0xe0 && lead < 0xf0 ? 3 : lead >= 0xc0 && lead < 0xe0 ? 2 : 0;
  if (n === 0) return undefined;
  const bytes: number[] = [];
  for (let k = 0; k < n; k++) {
    const esc = p.slice(i + 3 * k, i + 3 * k + 3);
    if (!/^%[0-9a-fA-F]{2}$/.test(esc)) return undefined;
    bytes.push(Number.parseInt(esc.slice(1), 16));
  }
  return bytes;
}

function wellFormedUtf8(bytes: number[] | undefined): boolean {
  if (!bytes) return false;
  try {
    utf8.decode(new Uint8Array(bytes));
    return true;
  } catch {
    return false;
  }
}

function referenceNormalizePath(raw: string, opts: PathOptions = {}): PathResult {
  const strict = opts.strict !== false;
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
    if (c > 0x7f || PCHAR[c] !== 1 || (strict && c === 0x3b) || (prev === SLASH && (c === DOT || c === SLASH)))
      canonical = false;
    prev = c;
  }
  if (prev === DOT) canonical = false;
  const p = end === raw.length ? raw : raw.slice(0, end);
  if (canonical) return { ok: true, path: p };

  let s = '';
  let owed = 0;
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c === 0) return { ok: false, reason: 'path contains a null byte' };
    if (c < 0x20 || c === 0x7f) return { ok: false, reason: 'path contains a control character' };
    if (c > 0x7e) return { ok: false, reason: 'path contains a non-ASCII character' };
    const ch = p[i] as string;
    if (ch === '\\') {
      if (strict) return { ok: false, reason: `path contains a backslash ${STRICT}` };
      s += '/';
    } else if (ch === '%') {
      const hi = hexVal(p.charCodeAt(i + 1));
      const lo = hexVal(p.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return { ok: false, reason: `path has an invalid percent-escape at offset ${i}` };
      const v = hi * 16 + lo;
      if (v === 0) return { ok: false, reason: 'path contains a null byte' };
      const dec = String.fromCharCode(v);
      if (dec === '.' && strict) return { ok: false, reason: `path contains an encoded dot (%2E) ${STRICT}` };
      if (dec === '.' && opts.encodedDots === 'reject') return { ok: false, reason: 'path contains an encoded dot' };
      if (strict) {
        if (dec === ';') return { ok: false, reason: `path contains an encoded ";" (%3B) path parameter ${STRICT}` };
        if (dec === '/' && !opts.decodeSlashes)
          return { ok: false, reason: `path contains an encoded slash (%2F) ${STRICT}` };
        if (dec === '\\' && !opts.decodeSlashes)
          return { ok: false, reason: `path contains an encoded backslash (%5C) ${STRICT}` };
        if (dec === '%' && /^[0-9a-fA-F]{2}$/.test(p.slice(i + 3, i + 5)))
          return {
            ok: false,
            reason: `path contains a double-encoded escape (%25${p.slice(i + 3, i + 5).toUpperCase()}) ${STRICT}`,
          };
        if (owed > 0) owed--;
        else if (v >= 0x80) {
          const seq = utf8Sequence(p, i);
          if (!wellFormedUtf8(seq))
            return {
              ok: false,
              reason: `path contains percent-escapes that are not well-formed UTF-8 at offset ${i} ${STRICT}`,
            };
          owed = (seq as number[]).length - 1;
        }
      }
      i += 2;
      if (v < 0x80 && UNRESERVED[v] === 1) s += dec;
      else if ((v === 0x2f || v === 0x5c) && opts.decodeSlashes) s += '/';
      else s += `%${HEX[hi]}${HEX[lo]}`;
    } else if (strict && ch === ';') {
      return { ok: false, reason: `path contains a ";" path parameter ${STRICT}` };
    } else if (PCHAR[c] === 1) {
      s += ch;
    } else {
      return { ok: false, reason: `path contains a character that must be percent-encoded: ${JSON.stringify(ch)}` };
    }
  }
  if (!s.startsWith('/')) return { ok: false, reason: 'path must begin with /' };
  const dot = strict ? s.split('/').find((seg) => seg === '.' || seg === '..') : undefined;
  if (dot !== undefined) return { ok: false, reason: `path contains a "${dot}" segment ${STRICT}` };
  return { ok: true, path: removeDotSegments(s, opts.mergeSlashes ?? true) };
}

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

const alphabet = [
  ';',
  '3',
  'b',
  '8',
  'A',
  '/',
  '/',
  '.',
  '.',
  'a',
  'b',
  '%',
  '2',
  'e',
  'E',
  'f',
  'F',
  '5',
  'c',
  '0',
  '\\',
  '?',
  '#',
  ' ',
  '~',
  '\u0001',
];
const paths = fc.oneof(
  fc.array(fc.constantFrom(...alphabet), { maxLength: 24 }).map((cs) => cs.join('')),
  fc
    .array(
      fc.constantFrom(
        '/a',
        '/..',
        '/.',
        '/',
        '/%2e%2e',
        '/%2E',
        '/b%2F',
        '\\..',
        '/x?y',
        '/%41',
        '..;',
        '%3b',
        '%5c',
        '%252e',
        '%25',
        '%c0%ae',
        '%C3%A9',
        '%c3',
        '%e0%a0%80',
        '%ed%a0%80',
        '%f4%90%80%80',
        '%f0%9f%98%80',
        '%80',
      ),
      { maxLength: 8 },
    )
    .map((cs) => cs.join('')),
  fc.string({ maxLength: 16 }),
);
const options = fc.record({
  strict: fc.option(fc.boolean(), { nil: undefined }),
  mergeSlashes: fc.option(fc.boolean(), { nil: undefined }),
  decodeSlashes: fc.option(fc.boolean(), { nil: undefined }),
  encodedDots: fc.option(fc.constantFrom('decode' as const, 'reject' as const), { nil: undefined }),
  maxLength: fc.option(fc.constantFrom(8, 4096), { nil: undefined }),
});

describe('normalizePath agrees with the reference normalizer', () => {
  it('on random paths and options', () => {
    fc.assert(
      fc.property(paths, options, (raw, opts: PathOptions) => {
        expect(normalizePath(raw, opts)).toEqual(referenceNormalizePath(raw, opts));
      }),
      { numRuns: 20000 },
    );
  });
});
