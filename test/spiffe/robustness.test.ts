import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JwtSvidError,
  parseSpiffeId,
  SpiffeIdError,
  TrustBundle,
  TrustBundleError,
  validateJwtSvid,
  validateX509Svid,
  X509SvidError,
} from '../../src/spiffe/index.js';
import { CA_EXTS, LEAF_EXTS, OpenSslPki } from './openssl.js';

let pki: OpenSslPki;
let leafDer: Buffer;
let bundle: TrustBundle;

beforeAll(() => {
  pki = new OpenSslPki();
  const root = pki.selfSigned('root', '/CN=root', CA_EXTS('example.org'));
  leafDer = new X509Certificate(
    pki.issue('leaf', 'root', { subj: '/CN=leaf', exts: LEAF_EXTS('spiffe://example.org/a') }),
  ).raw;
  bundle = TrustBundle.fromPem('example.org', root);
});
afterAll(() => pki?.cleanup());

/** Runs fn; any exception must be of the given class (no TypeError/RangeError leaking out). */
function onlyThrows(cls: abstract new (...a: never[]) => Error, fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof cls)) throw e;
  }
}

describe('hostile input yields only typed errors', () => {
  it('parseSpiffeId on arbitrary strings', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `spiffe://${s}`),
          fc.string({ unit: 'binary' }),
        ),
        (s) => {
          onlyThrows(SpiffeIdError, () => parseSpiffeId(s));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('validateX509Svid on random bytes and on a certificate with random byte flips', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
        onlyThrows(X509SvidError, () => validateX509Svid([Buffer.from(b)], bundle));
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        (flips) => {
          const der = Buffer.from(leafDer);
          for (const [pos, x] of flips) der[pos % der.length] = (der[pos % der.length] as number) ^ x;
          if (der.equals(leafDer)) return; // flips cancelled out
          // a modified certificate never validates, and fails only with a typed error
          expect(() => validateX509Svid([der], bundle)).toThrow(X509SvidError);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('TrustBundle.fromJwks on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        onlyThrows(TrustBundleError, () => TrustBundle.fromJwks('example.org', JSON.stringify(v)));
        onlyThrows(TrustBundleError, () => TrustBundle.fromJwks('example.org', JSON.stringify({ keys: [v] })));
      }),
      { numRuns: 500 },
    );
  });

  it('validateJwtSvid on arbitrary strings and dotted triples', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.tuple(fc.string(), fc.string(), fc.string()).map((t) => t.join('.')),
        ),
        async (s) => {
          try {
            await validateJwtSvid(s, bundle, 'aud');
          } catch (e) {
            if (!(e instanceof JwtSvidError)) throw e;
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('the unmodified leaf used above does validate', () => {
    expect(validateX509Svid([leafDer], bundle).toString()).toBe('spiffe://example.org/a');
  });
});

describe('bounded work on hostile chains', () => {
  it('many same-name, same-key intermediates do not explode the path search', () => {
    const p = new OpenSslPki();
    try {
      const exts = CA_EXTS('example.org');
      p.selfSigned('evil', '/CN=loop', exts);
      // copies of one self-issued CA (same name, same key): every copy verifies every other copy
      const copies = Array.from({ length: 14 }, (_, i) => {
        return new X509Certificate(p.issue(`c${i}`, 'evil', { subj: '/CN=loop', exts, keyOf: 'evil' })).raw;
      });
      const a = new X509Certificate(copies[0] as Buffer);
      expect(a.checkIssued(new X509Certificate(copies[1] as Buffer))).toBe(true);
      expect(a.verify(new X509Certificate(copies[1] as Buffer).publicKey)).toBe(true);
      const leaf = new X509Certificate(
        p.issue('l', 'evil', { subj: '/CN=leaf', exts: LEAF_EXTS('spiffe://example.org/a') }),
      ).raw;
      const t0 = Date.now();
      expect(() => validateX509Svid([leaf, ...copies], bundle)).toThrow(X509SvidError);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(() =>
        validateX509Svid(
          Array.from({ length: 17 }, () => leaf),
          bundle,
        ),
      ).toThrow(/at most 16/);
    } finally {
      p.cleanup();
    }
  }, 60_000);
});
