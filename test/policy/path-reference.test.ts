import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizePath, type PathOptions, type PathResult } from '../../src/policy/index.js';

// The path normalizer as it was before its hot-path rewrite (character by character, split and
// join), kept here verbatim as the reference the rewrite must agree with on every input.
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

function referenceNormalizePath(raw: string, opts: PathOptions = {}): PathResult {
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
    .array(fc.constantFrom('/a', '/..', '/.', '/', '/%2e%2e', '/%2E', '/b%2F', '\\..', '/x?y', '/%41'), {
      maxLength: 8,
    })
    .map((cs) => cs.join('')),
  fc.string({ maxLength: 16 }),
);
const options = fc.record({
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
