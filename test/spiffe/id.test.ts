import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  parseSpiffeId,
  parseTrustDomain,
  parseWorkloadSpiffeId,
  SpiffeId,
  SpiffeIdError,
  spiffeIdFromSegments,
  tryParseSpiffeId,
  workloadCoordinates,
} from '../../src/spiffe/index.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(SpiffeIdError);
    return (e as SpiffeIdError).code;
  }
}

describe('parseSpiffeId accepts', () => {
  it.each([
    ['spiffe://example.org', 'example.org', ''],
    ['spiffe://example.org/ns/prod/sa/api', 'example.org', '/ns/prod/sa/api'],
    ['spiffe://a-b_c.9/A.b-C_9', 'a-b_c.9', '/A.b-C_9'],
    ['spiffe://example.org/...', 'example.org', '/...'],
    ['spiffe://example.org/.a/b.', 'example.org', '/.a/b.'],
  ])('%s', (text, td, path) => {
    const id = parseSpiffeId(text);
    expect(id.trustDomain.name).toBe(td);
    expect(id.path).toBe(path);
    expect(id.toString()).toBe(`spiffe://${td}${path}`);
  });

  it('a 2048-byte ID and a 255-byte trust domain', () => {
    const td = 'a'.repeat(255);
    const prefix = `spiffe://${td}/`;
    const id = prefix + 'p'.repeat(2048 - prefix.length);
    expect(Buffer.byteLength(id)).toBe(2048);
    expect(parseSpiffeId(id).trustDomain.name).toBe(td);
    expect(parseTrustDomain(td).name).toBe(td);
  });

  it('round-trips every valid ID (property)', () => {
    const seg = fc.stringMatching(/^[a-zA-Z0-9._-]{1,12}$/).filter((s) => s !== '.' && s !== '..');
    const td = fc.stringMatching(/^[a-z0-9._-]{1,30}$/);
    fc.assert(
      fc.property(td, fc.array(seg, { maxLength: 6 }), (t, segs) => {
        const text = `spiffe://${t}${segs.map((s) => `/${s}`).join('')}`;
        expect(parseSpiffeId(text).toString()).toBe(text);
      }),
    );
  });
});

describe('parseSpiffeId rejects, naming the rule', () => {
  it.each([
    ['', 'ERR_SPIFFEID_EMPTY'],
    ['http://example.org/x', 'ERR_SPIFFEID_WRONG_SCHEME'],
    ['spiffe:/example.org', 'ERR_SPIFFEID_WRONG_SCHEME'],
    ['example.org/x', 'ERR_SPIFFEID_WRONG_SCHEME'],
    // One spelling per principal: go-spiffe and SPIRE refuse any other case of the scheme.
    ['SPIFFE://example.org/x', 'ERR_SPIFFEID_WRONG_SCHEME'],
    ['Spiffe://example.org/x', 'ERR_SPIFFEID_WRONG_SCHEME'],
    ['spiffE://example.org', 'ERR_SPIFFEID_WRONG_SCHEME'],
    ['spiffe://', 'ERR_SPIFFEID_MISSING_TRUST_DOMAIN'],
    ['spiffe:///path', 'ERR_SPIFFEID_MISSING_TRUST_DOMAIN'],
    ['spiffe://Example.org/x', 'ERR_SPIFFEID_TRUST_DOMAIN_UPPERCASE'],
    ['spiffe://exa mple.org', 'ERR_SPIFFEID_TRUST_DOMAIN_CHAR'],
    ['spiffe://exämple.org', 'ERR_SPIFFEID_TRUST_DOMAIN_CHAR'],
    ['spiffe://example.org:8080/x', 'ERR_SPIFFEID_PORT'],
    ['spiffe://user@example.org/x', 'ERR_SPIFFEID_USERINFO'],
    ['spiffe://user:pw@example.org/x', 'ERR_SPIFFEID_USERINFO'],
    ['spiffe://ex%41mple.org/x', 'ERR_SPIFFEID_PERCENT_ENCODING'],
    ['spiffe://example.org/a%20b', 'ERR_SPIFFEID_PERCENT_ENCODING'],
    ['spiffe://example.org/x?y=1', 'ERR_SPIFFEID_QUERY'],
    ['spiffe://example.org?y', 'ERR_SPIFFEID_QUERY'],
    ['spiffe://example.org/x#frag', 'ERR_SPIFFEID_FRAGMENT'],
    ['spiffe://example.org/a//b', 'ERR_SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://example.org//', 'ERR_SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://example.org/', 'ERR_SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://example.org/a/./b', 'ERR_SPIFFEID_DOT_SEGMENT'],
    ['spiffe://example.org/a/../b', 'ERR_SPIFFEID_DOT_SEGMENT'],
    ['spiffe://example.org/..', 'ERR_SPIFFEID_DOT_SEGMENT'],
    ['spiffe://example.org/a/.', 'ERR_SPIFFEID_DOT_SEGMENT'],
    ['spiffe://example.org/a/', 'ERR_SPIFFEID_TRAILING_SLASH'],
    ['spiffe://example.org/a b', 'ERR_SPIFFEID_PATH_CHAR'],
    ['spiffe://example.org/a:b', 'ERR_SPIFFEID_PATH_CHAR'],
    ['spiffe://example.org/a@b', 'ERR_SPIFFEID_PATH_CHAR'],
    ['spiffe://example.org/ä', 'ERR_SPIFFEID_PATH_CHAR'],
  ])('%j → %s', (text, code) => {
    expect(codeOf(() => parseSpiffeId(text))).toBe(code);
  });

  it('an ID over 2048 bytes', () => {
    const prefix = 'spiffe://example.org/';
    const id = prefix + 'p'.repeat(2049 - prefix.length);
    expect(codeOf(() => parseSpiffeId(id))).toBe('ERR_SPIFFEID_TOO_LONG');
  });

  it('a trust domain over 255 bytes', () => {
    expect(codeOf(() => parseSpiffeId(`spiffe://${'a'.repeat(256)}/x`))).toBe('ERR_SPIFFEID_TRUST_DOMAIN_TOO_LONG');
    expect(codeOf(() => parseTrustDomain('a'.repeat(256)))).toBe('ERR_SPIFFEID_TRUST_DOMAIN_TOO_LONG');
  });

  it('messages name the rule', () => {
    expect(() => parseSpiffeId('spiffe://Example.org')).toThrow(/must be lowercase/);
    expect(() => parseSpiffeId('spiffe://example.org/a/')).toThrow(/must not end with a slash/);
  });
});

describe('trust domains, workload IDs and coordinates', () => {
  it('parseTrustDomain', () => {
    expect(parseTrustDomain('example.org').idString()).toBe('spiffe://example.org');
    expect(codeOf(() => parseTrustDomain(''))).toBe('ERR_SPIFFEID_MISSING_TRUST_DOMAIN');
    expect(codeOf(() => parseTrustDomain('EXAMPLE'))).toBe('ERR_SPIFFEID_TRUST_DOMAIN_UPPERCASE');
    expect(codeOf(() => parseTrustDomain('a:1'))).toBe('ERR_SPIFFEID_PORT');
  });

  it('parseWorkloadSpiffeId requires a path', () => {
    expect(parseWorkloadSpiffeId('spiffe://example.org/x').path).toBe('/x');
    expect(codeOf(() => parseWorkloadSpiffeId('spiffe://example.org'))).toBe('ERR_SPIFFEID_PATH_REQUIRED');
  });

  it('spiffeIdFromSegments validates segments', () => {
    const td = parseTrustDomain('example.org');
    expect(spiffeIdFromSegments(td, 'ns', 'prod').toString()).toBe('spiffe://example.org/ns/prod');
    expect(codeOf(() => spiffeIdFromSegments(td, 'a', '..'))).toBe('ERR_SPIFFEID_DOT_SEGMENT');
    expect(codeOf(() => spiffeIdFromSegments(td, 'a/b%'))).toBe('ERR_SPIFFEID_PERCENT_ENCODING');
  });

  it('equality and membership', () => {
    const a = parseSpiffeId('spiffe://example.org/x');
    expect(a.equals(parseSpiffeId('spiffe://example.org/x'))).toBe(true);
    expect(a.equals(parseSpiffeId('spiffe://example.org/X'))).toBe(false);
    expect(a.memberOf(parseTrustDomain('example.org'))).toBe(true);
    expect(JSON.stringify({ a })).toBe('{"a":"spiffe://example.org/x"}');
  });

  it('workloadCoordinates', () => {
    expect(workloadCoordinates(parseSpiffeId('spiffe://cluster.local/ns/prod/sa/api'))).toEqual({
      namespace: 'prod',
      serviceAccount: 'api',
      service: 'api',
    });
    expect(workloadCoordinates(parseSpiffeId('spiffe://example.org/region/eu/ns/prod/sa/api')).namespace).toBe('prod');
    expect(workloadCoordinates(parseSpiffeId('spiffe://example.org/billing/worker'))).toEqual({ service: 'worker' });
    expect(workloadCoordinates(parseSpiffeId('spiffe://example.org'))).toEqual({});
  });
});

describe('tryParseSpiffeId (the hot-path form)', () => {
  it('returns the error instead of throwing, and caches both outcomes', () => {
    const bad = tryParseSpiffeId('SPIFFE://example.org/x');
    expect(bad).toBeInstanceOf(SpiffeIdError);
    expect((bad as SpiffeIdError).code).toBe('ERR_SPIFFEID_WRONG_SCHEME');
    expect(tryParseSpiffeId('SPIFFE://example.org/x')).toBe(bad);
    const ok = tryParseSpiffeId('spiffe://example.org/x');
    expect(ok).toBeInstanceOf(SpiffeId);
    expect(tryParseSpiffeId('spiffe://example.org/x')).toBe(ok);
    expect((tryParseSpiffeId('x'.repeat(10_000)) as SpiffeIdError).code).toBe('ERR_SPIFFEID_TOO_LONG');
  });

  // Held to the throwing parser over random and hostile strings: same accept/reject, same rule, same ID.
  it('agrees with parseSpiffeId on every input (differential property)', () => {
    const piece = fc.constantFrom(
      'spiffe://',
      'SPIFFE://',
      'Spiffe:/',
      'example.org',
      'Example.org',
      'ex%41mple.org',
      ':8080',
      'user@',
      '/',
      '//',
      '/.',
      '/..',
      '/ns/prod/sa/api',
      '%20',
      '?q',
      '#f',
      ' ',
      'ä',
      '\u0000',
      'a'.repeat(300),
    );
    const hostile = fc.array(piece, { maxLength: 8 }).map((xs) => xs.join(''));
    const anyText = fc.oneof(hostile, fc.string({ maxLength: 64 }), fc.string({ unit: 'binary', maxLength: 64 }));
    const outcome = (f: () => SpiffeId | SpiffeIdError) => {
      const r = f();
      return r instanceof SpiffeIdError ? { err: r.code, msg: r.message } : { id: r.toString(), path: r.path };
    };
    fc.assert(
      fc.property(anyText, (text) => {
        const thrown = outcome(() => {
          try {
            return parseSpiffeId(text);
          } catch (e) {
            if (e instanceof SpiffeIdError) return e;
            throw e;
          }
        });
        // twice: the second answer comes from the cache
        expect(outcome(() => tryParseSpiffeId(text))).toEqual(thrown);
        expect(outcome(() => tryParseSpiffeId(text))).toEqual(thrown);
      }),
      { numRuns: 3000 },
    );
  });
});
