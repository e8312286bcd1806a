/**
 * `x509 validate` and `jwt validate` as an operator runs them: the built CLI, openssl-made
 * certificates, jose-signed tokens. Every refusal here is one the CLI used to accept.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CA_EXTS, LEAF_EXTS, OpenSslPki } from '../spiffe/openssl.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const ID = 'spiffe://example.org/ns/production/sa/api-gateway';
const dir = tempDir();
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
let pki: OpenSslPki;
const leafFile: Record<string, string> = {};
let bundlePem: string;
let anonBundlePem: string;

beforeAll(() => {
  pki = new OpenSslPki();
  bundlePem = file('bundle.pem', pki.selfSigned('root', '/CN=example.org root', CA_EXTS('example.org'), 3));
  // A CA certificate that does not name its trust domain (no URI SAN).
  anonBundlePem = file(
    'anon.pem',
    pki.selfSigned(
      'anon',
      '/CN=anonymous root',
      CA_EXTS('x').filter((e) => !e.startsWith('subjectAltName')),
      3,
    ),
  );
  const leaf = (name: string, id: string, issuer = 'root') =>
    (leafFile[name] = file(`${name}.pem`, pki.issue(name, issuer, { subj: `/CN=${name}`, exts: LEAF_EXTS(id) })));
  leaf('good', ID);
  leaf('tdOnly', 'spiffe://example.org');
  leaf('upperScheme', 'SPIFFE://example.org/ok');
  // `\#`: unescaped, openssl's config parser would take `#x` for a comment.
  leaf('fragment', `${ID}\\#x`);
  // Signed by example.org's CA but claiming another trust domain.
  leaf('foreignClaim', 'spiffe://evil.org/ns/production/sa/api-gateway');
  leaf('anonGood', ID, 'anon');
}, 60_000);
afterAll(() => pki.cleanup());

const validate = (leaf: string, ...extra: string[]) =>
  runCli(['x509', 'validate', '--bundle', bundlePem, ...extra, leaf]);

describe('x509 validate', { timeout: 60_000 }, () => {
  it('accepts a good SVID, the bundle naming its trust domain', async () => {
    const r = await validate(leafFile.good as string);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(ID);
  });

  it.each([
    ['tdOnly', /invalid: .*non-root path/],
    ['upperScheme', /invalid: .*ERR_SPIFFEID_WRONG_SCHEME/],
    ['fragment', /invalid: .*ERR_SPIFFEID_FRAGMENT/],
    ['foreignClaim', /invalid: the SVID's trust domain evil\.org is not the bundle's trust domain example\.org/],
  ])('refuses %s', async (name, why) => {
    const r = await validate(leafFile[name] as string);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(why);
  });

  it('--trust-domain: the SVID must be in it; a bundle naming no trust domain needs it', async () => {
    const mismatch = await validate(leafFile.good as string, '--trust-domain', 'other.org');
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(/trust domain example\.org is not the bundle's trust domain other\.org/);
    const anon = ['x509', 'validate', '--bundle', anonBundlePem];
    const noName = await runCli([...anon, leafFile.anonGood as string]);
    expect(noName.code).toBe(1);
    expect(noName.stderr).toMatch(/does not name its trust domain .*--trust-domain/);
    const named = await runCli([...anon, '--trust-domain', 'example.org', leafFile.anonGood as string]);
    expect(named.code, named.stderr).toBe(0);
    expect(named.stdout.trim()).toBe(ID);
    const bad = await runCli([...anon, '--trust-domain', 'Example.org', leafFile.anonGood as string]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--trust-domain: .*lowercase/);
  });
});

describe('jwt validate', { timeout: 60_000 }, () => {
  let key: { publicKey: KeyObject; privateKey: KeyObject };
  let jwks: string;
  const now = () => Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' }).sign(key.privateKey);
  const validateJwt = (token: string, ...extra: string[]) =>
    runCli(['jwt', 'validate', '--audience', 'p', '--bundle', jwks, '--data-dir', dir, ...extra, token]);

  beforeAll(() => {
    key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = key.publicKey.export({ format: 'jwk' });
    jwks = file('bundle.json', JSON.stringify({ keys: [{ ...jwk, use: 'jwt-svid', kid: 'k1' }] }));
  });

  it('accepts a good token for the trust domain given', async () => {
    const r = await validateJwt(await sign({ sub: ID, aud: ['p'], exp: now() + 60 }), '--trust-domain', 'example.org');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(ID);
  });

  it.each([
    ['a sub of another trust domain', { sub: 'spiffe://evil.org/x' }, /not in trust domain example\.org/],
    ['a trust-domain-only sub', { sub: 'spiffe://example.org' }, /workload SPIFFE ID/],
    ['nbf as a string', { nbf: String(now()) }, /nbf claim must be a NumericDate/],
    ['exp of 1e300', { exp: 1e300 }, /exp claim must be a NumericDate/],
    ['iat a year ahead', { iat: now() + 365 * 86_400 }, /issued in the future/],
  ])('refuses %s', async (_what, extra, why) => {
    const token = await sign({ sub: ID, aud: ['p'], exp: now() + 60, ...extra });
    const r = await validateJwt(token, '--trust-domain', 'example.org');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(why);
  });
});
