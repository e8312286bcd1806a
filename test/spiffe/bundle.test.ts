import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleSet, bundleSet, parseTrustDomain, TrustBundle, TrustBundleError } from '../../src/spiffe/index.js';
import { CA_EXTS, OpenSslPki } from './openssl.js';

let pki: OpenSslPki;
let rootPem: string;
const td = parseTrustDomain('example.org');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof TrustBundleError)) throw e;
    return e.code;
  }
}

beforeAll(() => {
  pki = new OpenSslPki();
  rootPem = pki.selfSigned('root', '/CN=root', CA_EXTS('example.org'));
});
afterAll(() => pki?.cleanup());

describe('TrustBundle', () => {
  it('encodes and decodes a SPIFFE JWKS', () => {
    const jwt = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const b = new TrustBundle({
      trustDomain: td,
      x509Authorities: [new X509Certificate(rootPem)],
      jwtAuthorities: { k1: jwt },
      sequence: 7,
      refreshHintSeconds: 60,
    });
    const doc = b.toJwks();
    expect(doc.spiffe_sequence).toBe(7);
    expect(doc.spiffe_refresh_hint).toBe(60);
    const x = doc.keys.find((k) => k.use === 'x509-svid');
    expect(x?.kid).toBeUndefined();
    expect(x?.x5c).toHaveLength(1);
    expect(x?.kty).toBe('EC');
    expect(doc.keys.find((k) => k.use === 'jwt-svid')?.kid).toBe('k1');
    const back = TrustBundle.fromJwks(td, JSON.stringify(doc));
    expect(back.x509Authorities[0]?.equals(new X509Certificate(rootPem).raw)).toBe(true);
    expect(back.jwtAuthority('k1')?.equals(jwt)).toBe(true);
    expect(back.sequence).toBe(7);
    expect(back.toPem()).toBe(new X509Certificate(rootPem).toString());
  });

  it('ignores unknown use and kty, keeps an empty key set', () => {
    const doc = {
      keys: [
        { kty: 'EC', use: 'something-else', crv: 'P-256', x: 'a', y: 'b' },
        { kty: 'XYZ', use: 'jwt-svid', kid: 'z' },
        { kty: 'oct', use: 'jwt-svid', kid: 's', k: 'AAAA' },
      ],
    };
    const b = TrustBundle.fromJwks('example.org', doc);
    expect(b.x509Authorities).toHaveLength(0);
    expect(b.jwtAuthorities.size).toBe(0);
    expect(TrustBundle.fromJwks(td, { keys: [] }).x509Authorities).toHaveLength(0);
  });

  it('rejects malformed documents', () => {
    const der = new X509Certificate(rootPem).raw.toString('base64');
    expect(codeOf(() => TrustBundle.fromJwks(td, '{'))).toBe('ERR_BUNDLE_MALFORMED');
    expect(codeOf(() => TrustBundle.fromJwks(td, '{}'))).toBe('ERR_BUNDLE_MALFORMED');
    expect(codeOf(() => TrustBundle.fromJwks(td, { keys: [{ kty: 'EC', use: 'x509-svid', x5c: [der, der] }] }))).toBe(
      'ERR_BUNDLE_X5C_COUNT',
    );
    expect(codeOf(() => TrustBundle.fromJwks(td, { keys: [{ kty: 'EC', use: 'x509-svid' }] }))).toBe(
      'ERR_BUNDLE_X5C_COUNT',
    );
    expect(codeOf(() => TrustBundle.fromJwks(td, { keys: [{ kty: 'EC', use: 'x509-svid', x5c: ['AAAA'] }] }))).toBe(
      'ERR_BUNDLE_X5C_INVALID',
    );
    const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    expect(codeOf(() => TrustBundle.fromJwks(td, { keys: [{ ...jwk, use: 'jwt-svid' }] }))).toBe(
      'ERR_BUNDLE_KID_REQUIRED',
    );
    expect(
      codeOf(() =>
        TrustBundle.fromJwks(td, {
          keys: [
            { ...jwk, use: 'jwt-svid', kid: 'a' },
            { ...jwk, use: 'jwt-svid', kid: 'a' },
          ],
        }),
      ),
    ).toBe('ERR_BUNDLE_KID_DUPLICATE');
    expect(
      codeOf(() =>
        TrustBundle.fromJwks(td, { keys: [{ kty: 'EC', crv: 'P-256', x: '!', use: 'jwt-svid', kid: 'a' }] }),
      ),
    ).toBe('ERR_BUNDLE_JWK_INVALID');
    expect(codeOf(() => TrustBundle.fromJwks(td, { keys: [], spiffe_sequence: -1 }))).toBe('ERR_BUNDLE_SEQUENCE');
    expect(codeOf(() => TrustBundle.fromJwks(td, { keys: [], spiffe_refresh_hint: 1.5 }))).toBe(
      'ERR_BUNDLE_REFRESH_HINT',
    );
  });

  it('a bundle serves only its own trust domain; a set never merges domains', () => {
    const a = TrustBundle.fromPem('example.org', rootPem);
    expect(a.getBundleForTrustDomain(td)).toBe(a);
    expect(a.getBundleForTrustDomain(parseTrustDomain('other.org'))).toBeUndefined();
    expect(codeOf(() => bundleSet(a, TrustBundle.fromPem('example.org', rootPem)))).toBe(
      'ERR_BUNDLE_DUPLICATE_TRUST_DOMAIN',
    );
    const set = new BundleSet([a]);
    const replacement = new TrustBundle({ trustDomain: td });
    set.set(replacement);
    expect(set.getBundleForTrustDomain(td)).toBe(replacement);
    expect(set.bundles()).toHaveLength(1);
  });
});
